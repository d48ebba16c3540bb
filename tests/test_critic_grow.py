"""`scripts/critic_grow.py` (the shipped critic's first step, `scripts/critic_small.sh`): a critic grown twice as
deep computes exactly what its source did, and its new blocks train."""

import dataclasses
import subprocess
import sys
from pathlib import Path

import torch

from dualipo.config import build_config
from dualipo.critics.prompts import point_prompt
from dualipo.critics.qwen_vl import QwenVLCritic, load_model, save_model
from dualipo.toy.world import render_prompt

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "a red circle moving left on a black background"


def test_grown_critic_has_twice_the_blocks_and_the_same_logits(tmp_path):
    run = build_config("tiny")
    cfg, judging, world = run.critic, run.judging, run.world
    model, tok = load_model(cfg)
    save_model(model, tok, tmp_path / "src", dtype="float32")
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "critic_grow.py"), str(tmp_path / "src"),
                           str(tmp_path / "grown")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    grown, tok2 = load_model(dataclasses.replace(cfg, path=str(tmp_path / "grown")))
    tc, vc = model.config.text_config, model.config.vision_config
    assert grown.config.text_config.num_hidden_layers == 2 * tc.num_hidden_layers
    assert grown.config.vision_config.depth == 2 * vc.depth
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in model.parameters())

    video, text = render_prompt(PROMPT, 0, world), point_prompt(PROMPT, "motion")
    source, bigger = QwenVLCritic(model, tok, cfg, judging), QwenVLCritic(grown, tok2, cfg, judging)
    batch_a = source.inputs([text], [[source.video_input(video)]], targets=["Answer: Good"])
    batch_b = bigger.inputs([text], [[bigger.video_input(video)]], targets=["Answer: Good"])
    with torch.no_grad():
        a, b = model(**batch_a).logits, grown(**batch_b).logits
    torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-5)

    # the inserted blocks start as identities but are not dead: their zeroed projections get gradients
    grown(**batch_b).logits.sum().backward()
    new_layer = grown.model.language_model.layers[1]
    assert new_layer.mlp.down_proj.weight.abs().sum() == 0
    assert new_layer.mlp.down_proj.weight.grad.abs().sum() > 0
