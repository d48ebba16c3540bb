"""The learning-rate schedule of the project's own loops (generator pretraining, critic training)."""

from __future__ import annotations

import math


def warmup_cosine(step: int, peak: float, warmup: int, total: int, floor: float) -> float:
    """Linear warm-up (step s < `warmup` gets peak * (s + 1) / warmup), then cosine decay from `peak` to
    `floor * peak` at step `total`, held there after."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = (step - warmup) / max(total - warmup, 1)
    return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))
