"""One critic refinement (SRPO step 6): judgments -> confident, self-consistent data -> critic update.

`critic_refine.method`:
- `sft` (default, the measured safe choice): SFT on the majority rationales, `critic_refine.seed_mix` of every
  batch drawn from the human seed set;
- `dpo`: the paper's certainty-weighted sequence DPO over (majority, minority) rationales on response tokens
  only, reference = the critic before this refinement (its log-probs computed once up front: the previous
  round's merged critic, or the adapters-disabled model under LoRA), plus `critic_refine.nll_weight` x the
  certainty-weighted per-token NLL of the chosen rationale. A guard checks the unparseable-answer rate on a
  probe set of the round's pairs every `critic_refine.probe_every` steps; when it rises above both its value
  before training and `critic_refine.max_abstain_rate`, training stops and the last checkpoint (the last
  evaluation that passed) is restored.
Both train on `loop.train_loop` (progress, checkpoints, resume, NaN guard, OUT/metrics.jsonl).
"""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import torch

from dualipo.config import CriticRefineConfig, RunConfig
from dualipo.critic_training.certainty import check_reference, keep, pce, rationale_rewards
from dualipo.critic_training.cold_start import sft_examples
from dualipo.critic_training.loop import (Example, batch_indices, load_trainable, mixed_batch, sequence_logprobs,
                                          sft_loss, train_loop)
from dualipo.critic_training.refine_data import Candidate, RefineStats, candidates, training_items
from dualipo.critic_training.seed import load_seed
from dualipo.critics import prompts
from dualipo.critics.voting import Judgment
from dualipo.losses import sequence_dpo_loss

log = logging.getLogger(__name__)


class NothingToLearn(ValueError):
    """No confident, self-consistent judgment (or no DPO pair): the critic is left as it is."""


def certainties(cfg: RunConfig, cands: list[Candidate]) -> list[float]:
    """One certainty per candidate with `critic_refine.certainty` (vote share, or PCE against the reference)."""
    ct = cfg.critic_refine
    if ct.certainty == "vote":
        return [c.judgment.certainty for c in cands]
    check_reference(cfg.critic.path, ct.pce_reference)
    from dualipo.critics.qwen_vl import QwenVLCritic, load_model

    critics = []
    for path in (cfg.critic.path, ct.pce_reference):
        model, tok = load_model(replace(cfg.critic, path=path))
        critics.append(QwenVLCritic(model.float(), tok, cfg.critic, cfg.judging))
    rewards = rationale_rewards(*critics, [next(iter(c.chosen.values())) for c in cands])
    return pce(rewards, ct.pce_beta).tolist()


def select(cfg: RunConfig, judgments: list[Judgment]) -> tuple[list[tuple[Candidate, float]], RefineStats]:
    """The confident candidates with their certainties, and the counts."""
    ct = cfg.critic_refine
    cands, stats = candidates(judgments, ct.consistency, ct.learn_ties)
    weights = certainties(cfg, cands) if cands else []
    kept = [(c, w) for c, w in zip(cands, weights) if keep(w, ct.certainty, ct.certainty_threshold, ct.pce_threshold)]
    return kept, stats


def abstention_rate(critic, probe: list[Example]) -> float:
    """Share of greedy answers on the probe prompts with no parseable verdict."""
    if not probe:
        return 0.0
    outs = critic.answers([(e.text, e.videos) for e in probe], 1, critic.judging.chain_of_thought)
    unparsed = [prompts.parse_verdict(o[0], prompts.mode_of(e.text)) is None for e, o in zip(probe, outs)]
    return sum(unparsed) / len(probe)


def refine_critic(cfg: RunConfig, judgments: list[Judgment], out: str | Path, seed_file: str | Path | None = None,
                  resume: bool = True, *, critic: str | None = None, reference: str | None = None,
                  seed: int | None = None) -> tuple[Path, dict]:
    """Refine the critic in directory `critic` (default `critic.path`) on `judgments`, with PCE against `reference`
    (default `critic_refine.pce_reference`) and batches drawn with `seed` (default `critic_refine.seed`); returns
    (OUT/final, counts). Writes OUT/data.json (the counts), OUT/metrics.jsonl and OUT/ckpt/. Raises NothingToLearn
    when no data survives the filters."""
    ct = cfg.critic_refine
    ct = replace(ct, pce_reference=ct.pce_reference if reference is None else reference,
                 seed=ct.seed if seed is None else seed)
    cfg = replace(cfg, critic=replace(cfg.critic, path=cfg.critic.path if critic is None else critic), critic_refine=ct)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kept, stats = select(cfg, judgments)
    sft, dpo = training_items(kept, stats)
    counts = stats.to_dict()
    (out / "data.json").write_text(json.dumps(counts, indent=1) + "\n")
    if not kept or (ct.method == "dpo" and not dpo):
        raise NothingToLearn(f"no {'DPO pair' if kept else 'confident judgment'} to refine the critic on: of "
                             f"{stats.judgments} judgments, {stats.candidates} had a majority verdict after the "
                             f"'{ct.consistency}' consistency filter ({stats.paths_filtered} paths filtered), "
                             f"{stats.confident} passed critic_refine.certainty={ct.certainty} at "
                             f"{ct.certainty_threshold if ct.certainty == 'vote' else ct.pce_threshold}")
    seed = sft_examples(load_seed(seed_file), True, ct.no_cot_fraction, ct.seed) if seed_file else []
    if ct.method == "sft" and ct.seed_mix > 0 and not seed:
        raise ValueError(f"critic_refine.seed_mix={ct.seed_mix} needs the seed set (critic_refine.seed_file); or "
                         "set critic_refine.seed_mix=0")
    probe = [next(iter(c.chosen.values())) for c, _ in kept[:ct.probe_pairs] if c.chosen]
    probe = [Example(e.text, e.videos, "") for e in probe]
    trainable = load_trainable(cfg, ct)
    trainable[0].eval()
    before = abstention_rate(trainable[2], probe)
    evaluate = lambda critic: {"abstention_rate": abstention_rate(critic, probe)}  # noqa: E731
    log.info("refining the critic (%s) on %d confident judgments: %s", ct.method, len(kept), counts)
    if ct.method == "sft":
        def loss_fn(critic, step):
            return sft_loss(critic, mixed_batch(step, sft, [(seed, ct.seed_mix)], ct.batch_size, ct.seed)), {}
        guard = None
    else:
        loss_fn = dpo_loss_fn(ct, trainable[2], dpo)

        def guard(row):
            rate = row["abstention_rate"]
            if rate > before and rate > ct.max_abstain_rate:
                return f"unparseable answers on the probe rose from {before:.2f} to {rate:.2f}"
            return None
    final = train_loop(cfg, ct, trainable, out, loss_fn, evaluate, resume, f"critic refinement ({ct.method})",
                       ct.steps, guard=guard, eval_every=ct.probe_every if guard is not None else None)
    counts["abstention_rate_before"] = before
    return final, counts


def dpo_loss_fn(ct: CriticRefineConfig, critic, pairs: list[tuple[Example, Example, float]]):
    """The certainty-weighted sequence DPO + NLL loss of batch `step` (settings of `ct`, the `critic_refine`
    section); the reference log-probs are the critic's before any update (computed here, once)."""
    chosen, rejected = [p[0] for p in pairs], [p[1] for p in pairs]
    weights = torch.tensor([p[2] for p in pairs])
    with torch.no_grad():
        ref_c = torch.cat([sequence_logprobs(critic, chosen[i:i + 16])[0] for i in range(0, len(pairs), 16)])
        ref_r = torch.cat([sequence_logprobs(critic, rejected[i:i + 16])[0] for i in range(0, len(pairs), 16)])

    def loss_fn(critic, step):
        idx = batch_indices(step, len(pairs), ct.batch_size, ct.seed)
        lp_c, n_c = sequence_logprobs(critic, [chosen[i] for i in idx])
        lp_r, _ = sequence_logprobs(critic, [rejected[i] for i in idx])
        w = weights[idx]
        loss, m = sequence_dpo_loss(lp_c, lp_r, ref_c[idx], ref_r[idx], ct.beta, weights=w)
        nll = (w * (-lp_c / n_c)).mean()
        return loss + ct.nll_weight * nll, {**m, "nll": float(nll.detach())}

    return loss_fn
