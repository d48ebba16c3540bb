"""What the project's own loops (generator pretraining, critic training) share: the lr schedule, the step."""

from __future__ import annotations

import math

import torch


def warmup_cosine(step: int, peak: float, warmup: int, total: int, floor: float) -> float:
    """Linear warm-up (step s < `warmup` gets peak * (s + 1) / warmup), then cosine decay from `peak` to
    `floor * peak` at step `total`, held there after."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(total - warmup, 1)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def clipped_step(optimizer, params: list, loss: torch.Tensor, lr: float, max_grad_norm: float) -> None:
    """One optimizer step at `lr` on the gradients of `loss`, their norm clipped to `max_grad_norm`."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
