import math

import pytest
import torch

from dualipo.losses import (denoising_loss, diffusion_dpo_loss, diffusion_kto_loss, per_sample_mse,
                            sequence_dpo_loss)


def test_dpo_equal_policy_and_reference_is_log2():
    e = torch.tensor([0.3, 0.7, 1.1])
    loss, m = diffusion_dpo_loss(e, e.flip(0), e, e.flip(0), beta=5000.0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-7)
    assert m["implicit_acc"] == 0.5 and m["margin"] == 0.0


def test_dpo_hand_computed():
    mw, ml = torch.tensor([0.10, 0.20]), torch.tensor([0.30, 0.10])
    rw, rl = torch.tensor([0.15, 0.15]), torch.tensor([0.25, 0.15])
    beta = 10.0
    # inside = (mw - ml) - (rw - rl) = [-0.2 - (-0.1), 0.1 - 0.0] = [-0.1, 0.1]
    expected = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(0.5)))) / 2
    loss, m = diffusion_dpo_loss(mw, ml, rw, rl, beta)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["implicit_acc"] == 0.5 and m["margin"] == pytest.approx(0.0, abs=1e-7)
    assert m["mse_w"] == pytest.approx(0.15) and m["ref_mse_l"] == pytest.approx(0.2)


def test_dpo_gradient_signs():
    mw = torch.tensor([0.5], requires_grad=True)
    ml = torch.tensor([0.5], requires_grad=True)
    loss, _ = diffusion_dpo_loss(mw, ml, torch.tensor([0.5]), torch.tensor([0.5]), beta=100.0)
    loss.backward()
    assert mw.grad.item() > 0, "descending lowers the winner's error"
    assert ml.grad.item() < 0, "descending raises the loser's error"
    assert mw.grad.item() == pytest.approx(0.5 * 100 * 0.5)  # beta/2 * sigmoid(0)


def test_kto_hand_computed_and_reference_point_clamped():
    model = torch.tensor([0.2, 0.4, 0.3])
    ref = torch.tensor([0.3, 0.3, 0.3])
    desirable = torch.tensor([True, False, True])
    beta = 2.0
    gain = [0.1, -0.1, 0.0]  # mean 0 -> z = 0
    sig = lambda x: 1 / (1 + math.exp(-x))
    expected = ((1 - sig(beta * 0.1)) * 1.0 + (1 - sig(-beta * -0.1)) * 3.0 + (1 - sig(0.0)) * 1.0) / 3
    loss, m = diffusion_kto_loss(model, ref, desirable, beta, weights=(1.0, 3.0))
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["kto_z"] == pytest.approx(0.0, abs=1e-7)
    # a negative mean gain is clamped to z = 0
    _, m = diffusion_kto_loss(torch.tensor([0.5, 0.6]), torch.tensor([0.3, 0.3]), torch.tensor([True, False]), 1.0)
    assert m["kto_z"] == 0.0
    # a positive mean gain becomes the reference point, and it is detached
    model = torch.tensor([0.1, 0.2], requires_grad=True)
    loss, m = diffusion_kto_loss(model, torch.tensor([0.4, 0.4]), torch.tensor([True, True]), 1.0)
    assert m["kto_z"] == pytest.approx(0.25)
    loss.backward()
    g = model.grad
    s0, s1 = sig(0.3 - 0.25), sig(0.2 - 0.25)
    # dL/d err_i = (1/B) * sigmoid'(g_i - z) with no gradient through z
    assert g[0].item() == pytest.approx(0.5 * s0 * (1 - s0), rel=1e-5)
    assert g[1].item() == pytest.approx(0.5 * s1 * (1 - s1), rel=1e-5)


def test_per_sample_reduction_over_5d_latents():
    torch.manual_seed(0)
    pred = torch.randn(3, 4, 2, 5, 6)
    target = torch.zeros_like(pred)
    target[1] += 1.0
    err = per_sample_mse(pred, target)
    assert err.shape == (3,)
    for i in range(3):
        assert err[i].item() == pytest.approx(((pred[i] - target[i]) ** 2).mean().item(), rel=1e-6)
    # reducing over the wrong dims (e.g. keeping channels) would not give one number per sample
    with pytest.raises(ValueError, match="differ"):
        per_sample_mse(pred, target[:, :2])
    loss, m = denoising_loss(err)
    assert loss.item() == pytest.approx(err.mean().item())


def test_sequence_dpo_weighted():
    pc, pr = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rc, rr = torch.tensor([-1.5, -2.0]), torch.tensor([-2.5, -1.5])
    beta = 0.5
    # logits = beta * ((pc - rc) - (pr - rr)) = 0.5 * [0.5 + 0.5, 0 - 0.5] = [0.5, -0.25]
    c = torch.tensor([1.0, 0.5])
    expected = (math.log1p(math.exp(-0.5)) * 1.0 + math.log1p(math.exp(0.25)) * 0.5) / 2
    loss, m = sequence_dpo_loss(pc, pr, rc, rr, beta, c)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert m["reward_acc"] == 0.5
    equal, _ = sequence_dpo_loss(pc, pr, pc, pr, beta)
    assert equal.item() == pytest.approx(math.log(2))
