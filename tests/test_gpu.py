"""The tiny critic and generator on a CUDA device (marker `gpu`; run with `python -m pytest -m gpu`)."""

import dataclasses
import json

import pytest
import torch

from dualipo.cli import main
from dualipo.config import build_config
from dualipo.critic_training.cold_start import sft_examples
from dualipo.critic_training.loop import sft_loss
from dualipo.critics import build_critic
from dualipo.critics.prompts import caption_prompt, caption_target
from dualipo.critic_training.seed import load_seed
from dualipo.toy.world import render_prompt

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

PROMPT = "a red circle moving left on a black background"


@pytest.fixture(scope="module")
def cfg():
    return build_config("tiny", overrides=["critic.device=cuda"])


def test_critic_judges_and_trains_on_cuda(cfg):
    critic = build_critic(cfg)
    assert next(critic.model.parameters()).device.type == "cuda"
    a, b = render_prompt(PROMPT, 0, cfg.world), render_prompt(PROMPT, 1, cfg.world)
    j = critic.judge(PROMPT, a, b, "motion")
    assert len(j.samples) == 2 * cfg.judging.num_votes
    two_step = build_critic(dataclasses.replace(cfg, judging=dataclasses.replace(cfg.judging, describe_first=True)))
    assert two_step.judge(PROMPT, a, b, "motion").samples[0].text.startswith("Video A shows")
    assert critic.score(PROMPT, a, "consistency").mode == "pointwise"
    batch = critic.inputs([caption_prompt()], [[critic.visual(a)]], [caption_target(PROMPT)])
    assert all(v.device.type == "cuda" for v in batch.values())
    critic.model.train()
    critic.model(**batch).loss.backward()
    grads = [p.grad for p in critic.model.parameters() if p.grad is not None]
    assert grads and all(g.device.type == "cuda" for g in grads)


def test_critic_cold_start_and_eval_cli_on_cuda(tmp_path, capsys):
    d = tmp_path / "seedset"
    assert main(["critic", "videos", "--preset", "tiny", "--out", str(d), "--prompts", "2", "--per-prompt", "2"]) == 0
    seed = d / "seed.jsonl"
    assert main(["critic", "seed", "--preset", "tiny", "--videos", str(d), "--out", str(seed), "critic_cold.seed_pairs=4",
                 "--pointwise", "0"]) == 0
    cfg = build_config("tiny", overrides=["critic.device=cuda"])
    critic = build_critic(cfg)
    with torch.no_grad():
        loss_before = float(sft_loss(critic, sft_examples(load_seed(seed), True, 0.0)))
    out = tmp_path / "cold"
    assert main(["critic", "cold-start", "--preset", "tiny", f"critic_cold.seed_file={seed}", "--out", str(out),
                 "critic.device=cuda", "critic_cold.num_steps=4", "critic_cold.checkpoint_every=2",
                 "critic_cold.learning_rate=3e-3"]) == 0
    trained = build_critic(build_config("tiny", overrides=["critic.device=cuda", f"critic.path={out / 'final'}"]))
    with torch.no_grad():
        assert float(sft_loss(trained, sft_examples(load_seed(seed), True, 0.0))) < loss_before
    capsys.readouterr()
    assert main(["critic", "eval", "--preset", "tiny", "--pairs", str(seed), "critic.device=cuda",
                 f"critic.path={out / 'final'}", "judging.num_votes=2"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == 4


def test_generator_trains_on_cuda(tmp_path):
    from dualipo.generators import build_generator
    from dualipo.trainer import build_cache, train_generator

    cfg = build_config("tiny", overrides=["train.num_steps=2", "train.batch_size=2", "train.checkpoint_every=2"])
    gen = build_generator(cfg)
    prompts = [PROMPT, "a blue square growing on a gray background"]
    chosen = [render_prompt(p, i, cfg.world) for i, p in enumerate(prompts)]
    rejected = [render_prompt(p.replace("left", "right").replace("growing", "shrinking"), i, cfg.world)
                for i, p in enumerate(prompts)]
    train_generator(gen, build_cache(gen, prompts, chosen, rejected), cfg.train, tmp_path)
    assert gen.transformer.device.type == "cuda"
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2] and all(r["loss"] == r["loss"] for r in rows)  # not NaN
