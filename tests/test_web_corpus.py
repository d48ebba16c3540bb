"""The web-like corpus: captions with attributes named wrong at configured rates, deterministic, while the videos
(and the oracle's scores) follow the true prompt."""

import json
from dataclasses import replace

import numpy as np
import pytest
from safetensors import safe_open

from dualipo.config import WebCaptionConfig, WorldConfig, build_config
from dualipo.pretrain import render_dataset
from dualipo.toy.corrupt import web_captions
from dualipo.toy.oracle import score
from dualipo.toy.world import DIRECTIONS, parse_prompt, prompt_pools, sample_scene
from test_cli import run

RATES = dict(colour=0.4, shape=0.15, count=0.2, relation=0.5, motion=0.3, speed=0.25, background=0.1)


def _differences(true, caption):
    """Per attribute: None where it does not apply to the scene, else whether the caption names it wrong."""
    a, b = parse_prompt(true), parse_prompt(caption)
    moving = a.motion in DIRECTIONS and b.motion == a.motion
    return {"colour": a.obj.colour != b.obj.colour, "shape": a.obj.shape != b.obj.shape,
            "count": a.count != b.count if a.other is None else None,
            "relation": a.relation != b.relation if a.other is not None else None,
            "motion": a.motion != b.motion, "speed": a.speed != b.speed if moving else None,
            "background": a.background != b.background,
            "second colour": a.other.colour != b.other.colour if a.other is not None else None}


def test_rates_measured_on_a_large_sample():
    world = WorldConfig(web=WebCaptionConfig(**RATES))
    rng = np.random.default_rng(0)
    prompts = [sample_scene(rng, world).prompt for _ in range(8000)]
    diffs = [_differences(p, c) for p, c in zip(prompts, web_captions(prompts, world, stream=0))]
    expected = {**RATES, "second colour": RATES["colour"]}
    for attr, rate in expected.items():
        seen = [d[attr] for d in diffs if d[attr] is not None]
        assert len(seen) > 1000
        assert np.mean(seen) == pytest.approx(rate, abs=4 * np.sqrt(rate * (1 - rate) / len(seen))), attr
    # errors are independent across attributes: colour and motion both wrong at about the product of the rates
    both = np.mean([d["colour"] and d["motion"] for d in diffs])
    assert both == pytest.approx(RATES["colour"] * RATES["motion"], abs=0.02)


def test_a_clean_world_captions_truly_and_a_wrong_value_stays_in_the_vocabulary():
    train, _ = prompt_pools(WorldConfig())
    assert web_captions(train, WorldConfig(), stream=0) == train
    world = WorldConfig(shapes=("circle",), colours=("red", "blue"), motions=("left", "right"), p_pair=0,
                        p_speed=0, web=WebCaptionConfig(colour=1, shape=1, motion=1))
    pool, _ = prompt_pools(replace(world, num_train_prompts=4, num_eval_prompts=2))
    for p, c in zip(pool, web_captions(pool, world, stream=0)):
        a, b = parse_prompt(p), parse_prompt(c)
        assert b.obj.shape == "circle"  # one shape in this world: a shape error cannot be named
        assert {a.obj.colour, b.obj.colour} == {"red", "blue"} and {a.motion, b.motion} == {"left", "right"}


def test_captions_are_deterministic_per_item_and_stream():
    world = WorldConfig(web=WebCaptionConfig(colour=0.5, motion=0.5))
    train, _ = prompt_pools(world)
    first = web_captions(train, world, stream=3)
    assert web_captions(train, world, stream=3) == first
    assert web_captions(train[:20], world, stream=3) == first[:20]  # item i's caption ignores the items after it
    assert web_captions(train, world, stream=4) != first  # fresh draws
    assert web_captions(train, replace(world, web=replace(world.web, seed=1)), stream=3) != first


def test_pretraining_corpus_has_web_captions_and_true_renders(tmp_path):
    cfg = build_config("tiny", overrides=["world.web.colour=1", "pretrain.num_videos=12"])
    captions, videos = render_dataset(cfg, tmp_path)
    with safe_open(str(tmp_path / "data.safetensors"), "pt") as f:
        prompts = json.loads(f.metadata()["prompts"])
    assert len(captions) == len(prompts) == len(videos) == 12
    for p, c, frames in zip(prompts, captions, videos.numpy()):
        from dualipo.video import Video

        video = Video(frames, cfg.world.fps)
        assert c != p
        # the render shows the true prompt: the oracle scores colour right against it and wrong against the caption
        assert score(p, video).dims["colour"] > 0.9 > score(c, video).dims["colour"]
    assert render_dataset(cfg, tmp_path)[0] == captions  # read back from the cache


def test_world_sample_shows_render_web_caption_and_true_prompt(tmp_path):
    p = run(["dualipo", "world", "sample", "--preset", "tiny", "--n", "4", "--out", "w", "world.web.motion=1"],
            tmp_path)
    records = [json.loads(line) for line in (tmp_path / "w/prompts.jsonl").read_text().splitlines()]
    assert all(r["web_caption"] != r["prompt"] and r["oracle"]["motion"] == 1.0 for r in records)
    lines = {line[:4]: line for line in p.stdout.splitlines()}
    for r in records:
        true, rest = lines[r["id"]][6:].split("  * ")
        assert (true.strip(), rest) == (r["prompt"], r["web_caption"])
    page = (tmp_path / "w/index.html").read_text()
    assert page.count("<img src='thumbs/") == 4 and all(r["web_caption"] in page for r in records)


def test_lambda2_reads_a_small_curated_set():
    from dualipo.preferences import real_videos_from_world

    world = build_config("tiny").world
    real = real_videos_from_world(world, 7, set_size=3)
    assert [p for p, _ in real] == [p for p, _ in real[:3]] * 2 + [real[0][0]]  # three renders, cycled
    assert all(real[i][1] is real[i % 3][1] for i in range(7))
    assert all(score(p, v).overall > 0.9 for p, v in real[:3])  # true captions
