import math

import pytest
import torch

from dualipo.optim import clipped_step, warmup_cosine


def test_warmup_cosine_gives_the_hand_computed_values():
    # peak 1, warm-up 2 of 10 steps: 1/2, 2/2, then floor + (1 - floor) * (1 + cos(pi * (s - 2) / 8)) / 2
    assert [warmup_cosine(s, 1.0, 2, 10, 0.1) for s in (0, 1, 2)] == [0.5, 1.0, 1.0]
    assert warmup_cosine(6, 1.0, 2, 10, 0.1) == pytest.approx(0.55, abs=1e-12)  # half way: cos = 0
    assert warmup_cosine(10, 1.0, 2, 10, 0.1) == pytest.approx(0.1, abs=1e-12)
    assert warmup_cosine(12, 1.0, 2, 10, 0.1) == pytest.approx(0.1, abs=1e-12)  # held at the floor
    assert warmup_cosine(6, 2e-4, 2, 10, 0.25) == pytest.approx(2e-4 * 0.625, rel=1e-12)
    assert warmup_cosine(0, 3.0, 0, 0, 0.1) == 3.0  # no warm-up, no decay length


def test_warmup_cosine_is_the_previous_critic_and_pretraining_schedules():
    def critic(step, base, warmup, total):  # critic_training.learning_rate before
        if step < warmup:
            return base * (step + 1) / warmup
        frac = (step - warmup) / max(total - warmup, 1)
        return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    def pretrain(step, peak, warmup, total, floor):  # pretrain._lr_at before
        if step < warmup:
            return peak * (step + 1) / warmup
        frac = (step - warmup) / max(1, total - warmup)
        return peak * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))

    for step in range(0, 40):
        assert warmup_cosine(step, 1e-4, 5, 30, 0.1) == critic(step, 1e-4, 5, 30)
        assert warmup_cosine(step, 3e-4, 7, 33, 0.05) == pretrain(step, 3e-4, 7, 33, 0.05)


def test_clipped_step_sets_the_lr_and_clips():
    w = torch.nn.Parameter(torch.tensor([3.0, 4.0]))
    opt = torch.optim.SGD([w], lr=99.0)
    clipped_step(opt, [w], (w * torch.tensor([30.0, 40.0])).sum(), lr=0.5, max_grad_norm=1.0)  # grad norm 50 -> 1
    assert opt.param_groups[0]["lr"] == 0.5
    assert torch.allclose(w.detach(), torch.tensor([3.0 - 0.5 * 0.6, 4.0 - 0.5 * 0.8]))
