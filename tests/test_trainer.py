"""The generator trainer on a tiny real Wan pipeline built from config."""

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from dualipo.config import build_config
from dualipo.generators import build_generator
from dualipo.toy.world import render_prompt
from dualipo.trainer import LatentCache, TrainingDiverged, build_cache, train_generator

CFG = build_config("tiny")
PROMPTS = ["a red circle moving left on a black background", "a blue square growing on a gray background"]


def _gen():
    torch.manual_seed(0)
    return build_generator(CFG)


@pytest.fixture(scope="module")
def cache() -> LatentCache:
    w = CFG.world
    chosen = [render_prompt(p, i, w) for i, p in enumerate(PROMPTS)]
    rejected = [render_prompt(p.replace("red", "green").replace("blue", "yellow"), i, w) for i, p in enumerate(PROMPTS)]
    return build_cache(_gen(), PROMPTS, chosen, rejected)


def _train(cache, tmp, **changes):
    cfg = replace(CFG.train, **{"num_steps": 4, "batch_size": 2, "learning_rate": 5e-3, "beta": 50.0,
                                "checkpoint_every": 2, **changes})
    gen = _gen()
    train_generator(gen, cache, cfg, tmp)
    losses = [json.loads(line) for line in (tmp / "metrics.jsonl").read_text().splitlines()]
    return gen, losses


def test_adapter_changes_base_does_not_and_loss_falls(cache, tmp_path):
    gen0 = _gen()
    base = {n: p.clone() for n, p in gen0.transformer.named_parameters()}
    gen, log = _train(cache, tmp_path, num_steps=8)
    params = dict(gen.transformer.named_parameters())
    lora = [n for n in params if "lora_" in n]
    assert lora and any(not torch.equal(params[n], torch.zeros_like(params[n])) for n in lora if "lora_B" in n)
    for n, p in base.items():
        key = n.replace(".weight", ".base_layer.weight").replace(".bias", ".base_layer.bias")
        assert torch.equal(params.get(n, params.get(key)), p), n
    assert log[0]["loss"] == pytest.approx(np.log(2), abs=1e-5)  # policy == reference at step 0
    assert log[-1]["loss"] < log[0]["loss"]
    assert {"dpo_loss", "implicit_acc", "margin", "grad_norm", "lr", "mse_w", "ref_mse_l"} <= set(log[0])


def test_grad_accumulation_matches_a_larger_batch(cache, tmp_path):
    a, la = _train(cache, tmp_path / "a", batch_size=2, grad_accum=1)
    b, lb = _train(cache, tmp_path / "b", batch_size=1, grad_accum=2)
    assert [r["loss"] for r in la] == pytest.approx([r["loss"] for r in lb], rel=1e-4)
    assert [r["grad_norm"] for r in la] == pytest.approx([r["grad_norm"] for r in lb], rel=1e-3)
    # Adam normalises each coordinate, so a gradient that is ~0 up to float summation order can move either
    # way; compare whole tensors instead of every coordinate (the grad norms above are the exact check).
    # lora_B starts at zero, so its value is the update itself.
    for (n, p), q in zip(a.transformer.named_parameters(), b.transformer.parameters()):
        if "lora_B" in n:
            assert (p - q).abs().mean() < 0.02 * p.abs().mean(), n


def test_resume_reproduces_the_uninterrupted_run(cache, tmp_path):
    full, lf = _train(cache, tmp_path / "full")
    _train(cache, tmp_path / "cut", num_steps=2)  # "interrupted" after step 2 (checkpoint at 2)
    resumed, lr_ = _train(cache, tmp_path / "cut")
    assert [r["step"] for r in lr_] == [1, 2, 3, 4]
    assert [r["loss"] for r in lr_] == pytest.approx([r["loss"] for r in lf], rel=1e-5)
    for p, q in zip(full.transformer.parameters(), resumed.transformer.parameters()):
        torch.testing.assert_close(p, q)


def test_kto_and_regularizers(tmp_path):
    w = CFG.world
    videos = [render_prompt(p, i, w) for i, p in enumerate(PROMPTS)]
    cache = build_cache(_gen(), PROMPTS, videos, desirable=[True, False], real=list(zip(PROMPTS, videos)))
    _, log = _train(cache, tmp_path, loss="kto", lambda_winner=0.5, lambda_real=0.5, num_steps=2)
    assert {"kto_loss", "kto_z", "nll_winner", "nll_real"} <= set(log[0])
    with pytest.raises(ValueError, match="needs pairs"):
        _train(cache, tmp_path / "x", loss="dpo")


def test_nan_guard_keeps_last_checkpoint(cache, tmp_path):
    bad = LatentCache(embeds=cache.embeds, latents_a=cache.latents_a.clone(), latents_b=cache.latents_b)
    bad.latents_a[0] = float("nan")
    bad.latents_a[1] = float("nan")
    with pytest.raises(TrainingDiverged, match="non-finite"):
        _train(bad, tmp_path)


def test_train_cli_on_a_pair_file(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    from dualipo.video import write_video

    w = CFG.world
    lines = []
    for i, p in enumerate(PROMPTS):
        write_video(tmp_path / f"c{i}.mp4", render_prompt(p, i, w))
        write_video(tmp_path / f"r{i}.mp4", render_prompt(p.replace("left", "right")
                                                          .replace("growing", "shrinking"), i, w))
        lines.append(json.dumps({"prompt": p, "chosen": f"c{i}.mp4", "rejected": f"r{i}.mp4"}))
    (tmp_path / "pairs.jsonl").write_text("\n".join(lines) + "\n")
    exe = Path(sys.executable).parent / "dualipo"
    cmd = [str(exe), "train", "--preset", "tiny", "--pairs", "pairs.jsonl", "--out", "run", "train.num_steps=2",
           "train.lambda_real=0.1"]
    p = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    log = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2] and "nll_real" in log[0]
    assert (tmp_path / "run/generator_lora.safetensors").is_file()
    assert (tmp_path / "run/latents.safetensors").is_file()
    bad = subprocess.run(cmd[:5] + ["missing.jsonl", "--out", "run2"], cwd=tmp_path, capture_output=True, text=True)
    assert bad.returncode == 2 and "missing.jsonl" in bad.stderr
    (tmp_path / "other.jsonl").write_text(lines[0] + "\n")
    stale = subprocess.run(cmd[:5] + ["other.jsonl", "--out", "run"], cwd=tmp_path, capture_output=True, text=True)
    assert stale.returncode == 2 and "another pair file" in stale.stderr
    assert (tmp_path / "run/config.json").is_file()
    (tmp_path / "bad.mp4").write_text("not a video")
    (tmp_path / "bad.jsonl").write_text(json.dumps({"prompt": PROMPTS[0], "chosen": "bad.mp4", "rejected": "c0.mp4"}))
    undecodable = subprocess.run(cmd[:5] + ["bad.jsonl", "--out", "run3"], cwd=tmp_path, capture_output=True, text=True)
    assert undecodable.returncode == 2 and "bad.mp4: cannot decode video" in undecodable.stderr
    assert not (tmp_path / "run3").exists()  # no config.json left behind


def test_sft_trains_on_the_chosen_items_only(cache, tmp_path):
    """train.loss=sft: the loss is the plain denoising error of latents_a (the rejected items are never read)."""
    only_chosen = LatentCache(embeds=cache.embeds, latents_a=cache.latents_a)
    gen, log = _train(only_chosen, tmp_path, loss="sft", num_steps=3)
    assert "dpo_loss" not in log[0] and log[0]["loss"] == pytest.approx(log[0]["denoise_mse"])
    # step 1's loss is the base model's own denoising error on the step's items, noise and timesteps
    from dualipo.trainer import _noise, _step_items

    cfg = replace(CFG.train, loss="sft", batch_size=2)
    items, _ = _step_items(cfg, 0, len(only_chosen), 0)
    base = _gen()
    z = only_chosen.latents_a[items]
    noise, t = _noise(base, z, cfg, 0, [0, 1], 0, torch.device("cpu"))
    with torch.no_grad():
        expected = base.denoising_errors(z, only_chosen.embeds[items], t, noise).mean()
    assert log[0]["loss"] == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("backend", ["wan", "cogvideox"])
def test_noise_range_limits_training_timesteps(backend):
    gen = build_generator(build_config("tiny", overrides=[f"generator.backend={backend}"]))
    lat = torch.zeros(64, CFG.generator.arch.latent_channels, 1, 2, 2)
    _, t_all = gen.draw_noise_and_timesteps(lat, torch.Generator().manual_seed(0))
    _, t_high = gen.draw_noise_and_timesteps(lat, torch.Generator().manual_seed(0), (0.5, 1.0))
    top = 1000
    assert t_all.min() < 0.3 * top and t_all.max() > 0.7 * top
    assert t_high.min() >= 0.5 * top and t_high.max() <= top
    with pytest.raises(ValueError, match="noise_range"):
        gen.draw_noise_and_timesteps(lat, torch.Generator(), (0.6, 0.2))
