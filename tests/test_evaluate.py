"""`dualipo evaluate` through the CLI on a tiny real generator saved as a diffusers directory (plus a LoRA)."""

import json

import pytest
import torch

from dualipo.cli import main
from dualipo.config import build_config
from dualipo.generators import build_generator

WORLD_PROMPT = "a red circle moving left on a black background"


@pytest.fixture(scope="module")
def generator_dir(tmp_path_factory):
    """A tiny random generator saved as a pipeline directory, and a perturbed LoRA for it."""
    root = tmp_path_factory.mktemp("gen")
    gen = build_generator(build_config("tiny"))
    gen.save_pretrained(root / "pipe")
    gen.add_lora(seed=0)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in gen.lora_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.2)
    return root / "pipe", gen.save_lora(root / "lora")


def test_evaluate_writes_metrics_and_oracle_scores(generator_dir, tmp_path, capsys):
    pipe, lora = generator_dir
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "circle", "prompt": WORLD_PROMPT}) + "\n"
                       + json.dumps({"prompt": "a cat playing the piano"}) + "\n")
    out = tmp_path / "eval" / "result.json"
    assert main(["evaluate", "--preset", "tiny", f"generator.path={pipe}", "--prompts", str(prompts),
                 "eval.seeds=[0,1]", "--out", str(out)]) == 0
    assert f"wrote {out}: 4 videos" in capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["num_videos"] == 4 and result["seeds"] == [0, 1] and result["loras"] == []
    videos = result["videos"]
    assert [(v["prompt_id"], v["seed"]) for v in videos] == [("circle", 0), ("circle", 1), ("f00002", 0),
                                                             ("f00002", 1)]
    for v in videos:
        m = v["metrics"]
        assert set(m) == {"temporal_flickering", "static", "dynamic", "motion_smoothness", "frame_consistency"}
        assert 0 <= m["temporal_flickering"] <= 1 and 0 <= m["motion_smoothness"] <= 1
    assert all(0 <= v["oracle"]["overall"] <= 1 for v in videos[:2])  # a shapes-world prompt: scored
    assert videos[2]["oracle"] is None and videos[3]["oracle"] is None  # not one: no oracle
    mean = result["mean"]
    assert mean["oracle_videos"] == 2 and 0 <= mean["oracle_overall"] <= 1 and "oracle_colour" in mean
    assert mean["dynamic_degree"] == pytest.approx(sum(v["metrics"]["dynamic"] for v in videos) / 4)

    with_lora = tmp_path / "lora.json"
    assert main(["evaluate", "--preset", "tiny", f"generator.path={pipe}", "--lora", str(lora), "--prompts",
                 str(prompts), "eval.seeds=[0]", "--out", str(with_lora)]) == 0
    result = json.loads(with_lora.read_text())
    assert result["loras"] == [str(lora)] and result["num_videos"] == 2


@pytest.mark.parametrize("content, args, message", [
    (None, [], "--prompts: {dir}/missing.txt does not exist"),
    ('{"prompt": "a red circle moving left on a black background"}\nnot json\n', [], "prompts.jsonl:2: not valid JSON"),
    ("# only a comment\n", [], "holds no prompts"),
    (f"{WORLD_PROMPT}\n", ["--lora", "{dir}/nope.safetensors"], "--lora: {dir}/nope.safetensors does not exist"),
])
def test_evaluate_input_errors(generator_dir, tmp_path, capsys, content, args, message):
    pipe, _ = generator_dir
    name = "prompts.jsonl" if content and content.startswith("{") else "prompts.txt"
    if content is not None:
        (tmp_path / name).write_text(content)
    prompts = tmp_path / (name if content is not None else "missing.txt")
    args = [a.format(dir=tmp_path) for a in args]
    assert main(["evaluate", "--preset", "tiny", f"generator.path={pipe}", "--prompts", str(prompts), *args,
                 "--out", str(tmp_path / "out.json")]) == 2
    assert message.format(dir=tmp_path) in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def test_evaluate_needs_a_pipeline_directory(tmp_path, capsys):
    (tmp_path / "p.txt").write_text(WORLD_PROMPT + "\n")
    assert main(["evaluate", "--preset", "tiny", f"generator.path={tmp_path / 'nowhere'}", "--prompts",
                 str(tmp_path / "p.txt"), "--out", str(tmp_path / "out.json")]) == 2
    assert "no such directory" in capsys.readouterr().err


def test_critic_accuracy_grades_the_rounds_judgments_against_the_oracle(tmp_path):
    """Three judgments of two real renders (right and kept, right tie, reversed but uncertain) and one pair."""
    from dataclasses import replace

    import numpy as np

    from dualipo.critics.voting import Judgment
    from dualipo.loop.evaluation import critic_accuracy
    from dualipo.toy.corrupt import corrupt_scene
    from dualipo.toy.world import parse_prompt, render
    from dualipo.video import write_video

    cfg = build_config("tiny")
    cfg = replace(cfg, judging=replace(cfg.judging, dimensions=("motion",)))  # the pairs' gap: on motion
    prompt = "two green triangles moving up slowly on a black background"
    scene = parse_prompt(prompt)
    write_video(tmp_path / "good.mp4", render(scene, 0, cfg.world))
    write_video(tmp_path / "wrong.mp4", render(corrupt_scene(scene, "motion", np.random.default_rng(0)), 0, cfg.world))

    def judged(a, b, verdict, certainty):
        return Judgment(prompt, (a, b), "motion", "pairwise", (), verdict, certainty)

    js = [judged("good.mp4", "wrong.mp4", "A", 1.0), judged("good.mp4", "good.mp4", "tie", 1.0),
          judged("wrong.mp4", "good.mp4", "A", 0.1)]  # reversed, below any useful threshold
    out = critic_accuracy(cfg, js, [(prompt, "good.mp4", "wrong.mp4")], tmp_path)
    assert out["critic_judgments_scored"] == 3
    assert out["critic_accuracy"] == pytest.approx(2 / 3)
    assert out["critic_kept_accuracy"] == 1.0  # the tie and the uncertain judgment make no preference
    assert out["critic_pair_accuracy"] == 1.0 and out["pair_oracle_gap"] == pytest.approx(1.0)
    # pointwise judgments against the seed annotators' level of the oracle's score (motion 1 -> Good, 0 -> Bad)
    points = [Judgment(prompt, (v,), "motion", "pointwise", (), "Good", 1.0) for v in ("good.mp4", "wrong.mp4")]
    out = critic_accuracy(cfg, points, None, tmp_path)
    assert (out["critic_judgments_scored"], out["critic_accuracy"]) == (2, 0.5)
