"""Certainty estimators for self-refinement (pure functions; `rationale_rewards` runs the critics).

- `vote`: the majority's vote share among the consistent paths (both orders), in [0.5, 1]; keep >= threshold
  (default 0.75).
- `pce`: Dual-IPO's Preference Certainty Estimator. R(y_w|x) = log pi(y_w|x) - log pi_ref(y_w|x), the implicit
  DPO reward of the majority rationale y_w under the current critic pi against a reference critic pi_ref;
  Q = mean R over the round's candidate judgments; PCE = sigmoid(beta_c * (R - Q)); keep PCE > threshold
  (the paper's 0.5). The reference must differ from the current critic (the previous round's critic or the
  cold-start critic): with pi_ref = pi, R = 0 for every judgment and PCE = 0.5 drops everything, so that is
  refused as a configuration error rather than silently training on nothing.
"""

from __future__ import annotations

import torch

from dualipo.config import ConfigError
from dualipo.critic_training.loop import sequence_logprobs

ESTIMATORS = ("vote", "pce")


def pce(rewards: torch.Tensor, beta_c: float) -> torch.Tensor:
    """PCE_i = sigmoid(beta_c * (R_i - mean(R)))."""
    if rewards.numel() == 0:
        return rewards
    return torch.sigmoid(beta_c * (rewards - rewards.mean()))


def keep(certainty: float, estimator: str, vote_threshold: float, pce_threshold: float) -> bool:
    """vote: share >= vote_threshold; pce: PCE > pce_threshold (strict, as the paper's 'PCE > 0.5')."""
    if estimator == "vote":
        return certainty >= vote_threshold
    if estimator == "pce":
        return certainty > pce_threshold
    raise ValueError(f"critic_refine.certainty: expected one of {ESTIMATORS}, got {estimator!r}")


def check_reference(current: str, reference: str) -> None:
    """The PCE reference must be set and differ from the critic being refined."""
    if not reference:
        raise ConfigError("critic_refine.certainty=pce needs a reference critic: set critic_refine.pce_reference to "
                          "the previous round's critic or the cold-start critic (a local directory)")
    if reference == current:
        raise ConfigError(f"critic_refine.pce_reference={reference!r} is the critic being refined: then "
                          "R = log pi/pi_ref = 0 for every judgment, PCE = 0.5 and the > 0.5 filter drops all data. "
                          "Use the previous round's critic or the cold-start critic")


@torch.no_grad()
def rationale_rewards(policy, reference, examples, batch_size: int = 16) -> torch.Tensor:
    """R = log pi(target | prompt, videos) - log pi_ref(target | prompt, videos) per example (sequence sums)."""
    if policy.model is reference.model:
        raise ConfigError("PCE: the policy and the reference are the same model, so every R is 0")
    out = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        out.append(sequence_logprobs(policy, chunk)[0] - sequence_logprobs(reference, chunk)[0])
    r = torch.cat(out) if out else torch.zeros(0)
    if r.numel() > 1 and bool((r == 0).all()):
        raise ConfigError("PCE: R = 0 for every judgment: the reference critic has the same weights as the critic "
                          "being refined; set critic_refine.pce_reference to another critic")
    return r
