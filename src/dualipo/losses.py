"""Pure loss functions of tensors. Each docstring gives the equation and the paper it comes from.

Errors ("err") are per-sample mean squared denoising errors, shape (B,), produced by `per_sample_mse` from
5-D latents. Every function returns (loss, metrics) where metrics are detached scalars for logging.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F

Metrics = dict[str, float]


def per_sample_mse(pred_BCFHW: torch.Tensor, target_BCFHW: torch.Tensor) -> torch.Tensor:
    """Mean squared error per sample: mean over every dim but the batch dim -> (B,).

    Works for any layout with the batch first (Wan B,C,F,H,W; CogVideoX B,F,C,H,W): the reduction is over all
    non-batch dims, so the layout inside does not matter, only that dim 0 is the batch.
    """
    if pred_BCFHW.shape != target_BCFHW.shape:
        raise ValueError(f"prediction {tuple(pred_BCFHW.shape)} and target {tuple(target_BCFHW.shape)} differ")
    return (pred_BCFHW.float() - target_BCFHW.float()).pow(2).flatten(start_dim=1).mean(dim=1)


def denoising_loss(model_err: torch.Tensor) -> tuple[torch.Tensor, Metrics]:
    """Plain denoising loss (the NLL surrogate of a diffusion model): L = mean_i err_i.

    Used for the two regularizers of Dual-IPO: lambda1 * L on generated winners, lambda2 * L on real videos.
    """
    loss = model_err.mean()
    return loss, {"denoise_mse": float(loss.detach())}


def diffusion_dpo_loss(model_err_w: torch.Tensor, model_err_l: torch.Tensor, ref_err_w: torch.Tensor,
                       ref_err_l: torch.Tensor, beta: float) -> tuple[torch.Tensor, Metrics]:
    """Diffusion-DPO (Wallace et al. 2023, "Diffusion Model Alignment Using Direct Preference Optimization").

        inside = (err_w - err_l) - (ref_err_w - ref_err_l)
        L = -log sigmoid(-beta / 2 * inside)

    with the same timestep and noise for winner and loser. Policy == reference gives inside = 0, L = log 2.
    Implicit accuracy: fraction with inside < 0 (the policy denoises the winner relatively better); ties 0.5.
    """
    model_diff = model_err_w - model_err_l
    ref_diff = ref_err_w - ref_err_l
    inside = model_diff - ref_diff
    loss = -F.logsigmoid(-0.5 * beta * inside).mean()
    with torch.no_grad():
        acc = ((inside < 0).float() + 0.5 * (inside == 0).float()).mean()
        metrics = {"dpo_loss": float(loss), "implicit_acc": float(acc), "margin": float(-inside.mean()),
                   "mse_w": float(model_err_w.mean()), "mse_l": float(model_err_l.mean()),
                   "ref_mse_w": float(ref_err_w.mean()), "ref_mse_l": float(ref_err_l.mean())}
    return loss, metrics


def kto_reference_point(gain: torch.Tensor) -> torch.Tensor:
    """z = max(0, mean(gain)), detached; averaged over all processes when torch.distributed is initialized."""
    z = gain.detach().mean()
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(z, op=dist.ReduceOp.SUM)
        z = z / dist.get_world_size()
    return z.clamp(min=0)


def diffusion_kto_loss(model_err: torch.Tensor, ref_err: torch.Tensor, desirable: torch.Tensor, beta: float,
                       weights: tuple[float, float] = (1.0, 1.0)) -> tuple[torch.Tensor, Metrics]:
    """Diffusion-KTO (Li et al. 2024, "Aligning Diffusion Models by Optimizing Human Utility").

        g = ref_err - err                       (implicit reward: how much better than the reference)
        z = max(0, mean(g))                     (reference point, detached, averaged across processes)
        L = w_y * (1 - sigmoid(s_y * beta * (g - z)))   s_y = +1 desirable, -1 undesirable

    `weights` = (w_desirable, w_undesirable).
    """
    gain = ref_err - model_err
    z = kto_reference_point(gain)
    sign = desirable.float() * 2 - 1
    w = torch.where(desirable, torch.tensor(weights[0]), torch.tensor(weights[1])).to(gain)
    loss = (w * (1 - torch.sigmoid(sign * beta * (gain - z)))).mean()
    with torch.no_grad():
        metrics = {"kto_loss": float(loss), "kto_z": float(z), "reward": float(gain.mean()),
                   "implicit_acc": float(((sign * (gain - z)) > 0).float().mean())}
    return loss, metrics


def sequence_dpo_loss(policy_logp_c: torch.Tensor, policy_logp_r: torch.Tensor, ref_logp_c: torch.Tensor,
                      ref_logp_r: torch.Tensor, beta: float,
                      weights: torch.Tensor | None = None) -> tuple[torch.Tensor, Metrics]:
    """DPO for the critic's rationales (Rafailov et al. 2023), certainty-weighted as in Dual-IPO's SRPO:

        L = E[c * -log sigmoid(beta * ((logp_c - ref_logp_c) - (logp_r - ref_logp_r)))]

    `weights` are the certainties c (default 1). Log-probs are sequence sums, shape (B,).
    """
    logits = beta * ((policy_logp_c - ref_logp_c) - (policy_logp_r - ref_logp_r))
    per = -F.logsigmoid(logits)
    c = torch.ones_like(per) if weights is None else weights.to(per)
    loss = (c * per).mean()
    with torch.no_grad():
        metrics = {"seq_dpo_loss": float(loss), "reward_acc": float((logits > 0).float().mean()),
                   "reward_margin": float(logits.mean() / beta)}
    return loss, metrics
