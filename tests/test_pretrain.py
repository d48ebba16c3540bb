"""`dualipo pretrain` at tiny sizes: it runs end to end, and an interrupted + resumed run equals an
uninterrupted one (same losses, same final weights)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from dualipo.checkpoint import latest_checkpoint
from dualipo.cli import main
from dualipo.config import build_config
from dualipo.generators import build_generator
from dualipo.pretrain import pretrain


def _losses(out):
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    return [(r["stage"], r["step"], r["loss"]) for r in rows]


def _weights(out):
    return {k: v for sub in ("vae", "transformer")
            for k, v in load_file(str(out / "generator" / sub / "diffusion_pytorch_model.safetensors")).items()}


def test_pretrain_resume_equals_uninterrupted(tmp_path):
    full, resumed = tmp_path / "full", tmp_path / "resumed"
    assert main(["pretrain", "--preset", "tiny", "--out", str(full)]) == 0
    cfg = build_config("tiny")
    assert pretrain(cfg, resumed, interrupt_after=1) is None  # stopped inside the VAE stage
    assert latest_checkpoint(resumed / "ckpt_vae") is not None and not (resumed / "generator").exists()
    assert pretrain(cfg, resumed, interrupt_after=2) is None  # stopped inside the transformer stage
    assert pretrain(cfg, resumed) == resumed / "generator"

    p = cfg.pretrain
    assert [s for s, _, _ in _losses(full)] == ["vae"] * p.vae_steps + ["transformer"] * p.steps
    assert _losses(resumed) == _losses(full)
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)

    # the written generator is a loadable diffusers pipeline with the VAE's latent statistics
    gen = build_generator(build_config("tiny", overrides=[f"generator.path={full / 'generator'}"]))
    assert gen.vae.config.latents_std != [1.0] * cfg.generator.arch.latent_channels


def test_pretrain_refuses_to_resume_with_other_settings(tmp_path):
    cfg = build_config("tiny")
    assert pretrain(cfg, tmp_path, interrupt_after=1) is None
    with pytest.raises(ValueError, match="pretrain.steps"):
        pretrain(build_config("tiny", overrides=["pretrain.steps=5"]), tmp_path)


def test_pretrain_from_another_pipelines_vae(tmp_path):
    first = pretrain(build_config("tiny"), tmp_path / "first")
    cfg = build_config("tiny", overrides=[f"pretrain.vae_from={first}", "pretrain.vae_steps=0"])
    second = pretrain(cfg, tmp_path / "second")
    a = load_file(str(first / "vae" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(second / "vae" / "diffusion_pytorch_model.safetensors"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0)
    assert [s for s, _, _ in _losses(tmp_path / "second")] == ["transformer"] * cfg.pretrain.steps
    with pytest.raises(ValueError, match="pretrain.vae_from"):
        pretrain(build_config("tiny", overrides=[f"pretrain.vae_from={first}", "generator.arch.latent_channels=8"]),
                 tmp_path / "third")
