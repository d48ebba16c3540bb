"""Tiny real Qwen2-VL / Qwen2.5-VL critics built from config: judging, voting in one generate call, I/O."""

import dataclasses
import re

import pytest
import torch

from dualipo.config import build_config
from dualipo.critics import build_critic
from dualipo.critics.qwen_vl import QwenVLCritic, load_model, save_model
from dualipo.critics.vision_inputs import VisionSpec, patchify, smart_resize
from dualipo.toy.world import render_prompt

PROMPT = "a red circle moving left on a black background"


@pytest.fixture(scope="module")
def cfg():
    return build_config("tiny")


@pytest.fixture(scope="module")
def videos(cfg):
    return render_prompt(PROMPT, 0, cfg.world), render_prompt(PROMPT, 1, cfg.world)


@pytest.fixture(scope="module")
def critic(cfg):
    return build_critic(cfg)


def record_generate(critic) -> list[tuple[list[str], int]]:
    """Make this critic instance record (texts, K) of every `generate` call in the returned list."""
    calls, original = [], critic.generate

    def recording(texts, vids, n, **kw):
        calls.append((texts, n))
        return original(texts, vids, n, **kw)

    critic.generate = recording
    return calls


def test_patchify_layout():
    spec = VisionSpec(patch_size=8, temporal_patch_size=2, merge_size=2, num_frames=4, image_size=32)
    frames = torch.randint(0, 255, (4, 48, 48, 3), dtype=torch.uint8)
    patches, grid = patchify(frames, spec)
    assert grid.tolist() == [[2, 4, 4]] and patches.shape == (32, 3 * 2 * 8 * 8)
    assert smart_resize(50, 70, 16, 256, 448 * 448) == (48, 64)


def test_judge_votes_in_one_generate_call(critic, videos, cfg):
    calls = []
    original = critic.model.generate

    def counting(*a, **k):
        calls.append(k["input_ids"].shape[0] * k["num_return_sequences"])
        return original(*a, **k)

    critic.model.generate = counting
    try:
        j = critic.judge(PROMPT, videos[0], videos[1], "motion")
    finally:
        critic.model.generate = original
    k = cfg.judging.num_votes
    assert calls == [2 * k]  # both orders x K paths, one call
    assert len(j.samples) == 2 * k and {s.order for s in j.samples} == {"AB", "BA"}
    assert j.prompt == PROMPT and j.dimension == "motion" and j.mode == "pairwise"
    assert j.abstentions + sum(j.votes.values()) == 2 * k  # a random model mostly abstains
    assert 0.0 <= j.certainty <= 1.0


def test_batch_rows_bounds_each_generate_call(cfg, videos):
    """judging.batch_rows=3: the 2 pairs x 2 orders = 4 rows go in calls of 3 and 1 rows (K sequences each); the
    answers come back per row, in order, K each; greedy answers do not depend on the split."""
    greedy = dataclasses.replace(cfg.judging, temperature=0.0)
    whole = build_critic(dataclasses.replace(cfg, judging=greedy))
    split = build_critic(dataclasses.replace(cfg, judging=dataclasses.replace(greedy, batch_rows=3)))
    calls, original = [], split.model.generate

    def counting(*a, **kw):
        calls.append(kw["input_ids"].shape[0])
        return original(*a, **kw)

    split.model.generate = counting
    items = [(PROMPT, videos[0], videos[1], "motion"), (PROMPT, videos[1], videos[0], "colour")]
    got = split.judge_many(items)
    assert calls == [3, 1]
    k = cfg.judging.num_votes
    assert [len(j.samples) for j in got] == [2 * k, 2 * k]
    assert [(j.dimension, [s.order for s in j.samples]) for j in got] == \
        [(d, ["AB"] * k + ["BA"] * k) for d in ("motion", "colour")]
    want = whole.judge_many(items)
    assert [[s.text for s in j.samples] for j in got] == [[s.text for s in j.samples] for j in want]


def test_decoded_videos_are_kept_up_to_the_cache_budget(cfg, videos, tmp_path):
    """critic.visual_cache_mb: videos given by path are decoded once while they fit, the least recently used
    dropped first; in-memory videos are never kept."""
    from dualipo.video import write_video

    paths = [write_video(tmp_path / f"{i}.mp4", v) for i, v in enumerate(videos)]
    critic = build_critic(cfg)
    decoded = []
    original = critic.video_input
    critic.video_input = lambda v: decoded.append(str(v)) or original(v)
    one = critic.visual(paths[0])
    assert critic.visual(paths[0]) is one and decoded == [str(paths[0])]
    size = critic._visual_bytes
    assert size == sum(t.nbytes for t in one) > 0
    critic.cfg = dataclasses.replace(cfg.critic, visual_cache_mb=1)  # room for about 1 MiB
    n = 2**20 // size + 1  # more videos than fit: the oldest go
    many = [write_video(tmp_path / f"m{i}.mp4", videos[i % 2]) for i in range(n + 1)]
    for p in many:
        critic.visual(p)
    assert critic._visual_bytes <= 2**20 and str(paths[0]) not in critic._visuals
    assert str(many[-1]) in critic._visuals
    kept = list(critic._visuals)
    critic.visual(videos[0])
    assert len(decoded) == 1 + (n + 1) + 1 and list(critic._visuals) == kept


def test_to_host_and_back(cfg, videos):
    """The round trip the loop's offloading makes leaves the critic where `critic.device` puts it, judging as
    before (greedy answers, so equal texts)."""
    greedy = dataclasses.replace(cfg, judging=dataclasses.replace(cfg.judging, temperature=0.0))
    critic = build_critic(greedy)
    before = [s.text for s in critic.judge(PROMPT, videos[0], videos[1], "motion").samples]
    critic.to_host()
    assert {p.device.type for p in critic.model.parameters()} == {"cpu"}
    critic.to_device()
    assert {p.device.type for p in critic.model.parameters()} == {"cuda" if torch.cuda.is_available() else "cpu"}
    assert [s.text for s in critic.judge(PROMPT, videos[0], videos[1], "motion").samples] == before


def test_two_step_judging_describes_each_video_without_the_prompt(cfg, videos):
    """describe_first: one call describes every distinct video K times (caption prompt, no text prompt), one call
    writes the verdicts; path j of both orders starts from the same j-th descriptions, in slot order."""
    two_step = dataclasses.replace(cfg, judging=dataclasses.replace(cfg.judging, describe_first=True))
    critic = build_critic(two_step)
    k, calls = cfg.judging.num_votes, record_generate(critic)
    j = critic.judge(PROMPT, videos[0], videos[1], "motion")
    (captions, k1), (verdicts, k2) = calls
    assert (len(captions), k1) == (2, k) and all(PROMPT not in t and "Describe" in t for t in captions)
    assert (len(verdicts), k2) == (2 * k, 1) and all(PROMPT in t for t in verdicts)
    desc = [re.match(r"Video A shows (.*)\. Video B shows (.*)\.", s.text, re.S) for s in j.samples]
    assert all(desc)
    ab = [d.groups() for d, s in zip(desc, j.samples) if s.order == "AB"]
    ba = [d.groups()[::-1] for d, s in zip(desc, j.samples) if s.order == "BA"]
    assert len(ab) == k and ab == ba  # the same descriptions, swapped with the videos
    no_cot = critic.judge_many([(PROMPT, videos[0], videos[1], "motion")], chain_of_thought=False)[0]
    assert not any(s.text.startswith("Video A shows") for s in no_cot.samples)  # answer-only: one step
    point = critic.score(PROMPT, videos[0], "motion")  # pointwise: the seed rationales' 'The video shows X.'
    assert len(point.samples) == k and all(re.match(r"The video shows .*\.", s.text) for s in point.samples)


def test_critic_device(cfg):
    from dualipo.critics.qwen_vl import device_of

    on = lambda d: dataclasses.replace(cfg.critic, device=d)  # noqa: E731
    assert device_of(on("cpu")) == torch.device("cpu")
    assert device_of(on("auto")).type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="is not a torch device"):
        device_of(on("gpu0"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            device_of(on("cuda"))
    model, _ = load_model(on("cpu"))
    assert next(model.parameters()).device.type == "cpu"


def test_single_vote_no_cot_and_pointwise(critic, videos):
    many = critic.judge_many([(PROMPT, videos[0], videos[1], "alignment")] * 3, num_votes=1,
                             chain_of_thought=False, both_orders=False)
    assert len(many) == 3 and all(len(j.samples) == 1 for j in many)
    # K = 1 is greedy: the same call gives the same texts. The same item at another batch position is not
    # compared: batched matmuls round differently, which can flip a near-tie argmax on another machine.
    again = critic.judge_many([(PROMPT, videos[0], videos[1], "alignment")] * 3, num_votes=1,
                              chain_of_thought=False, both_orders=False)
    assert [j.samples[0].text for j in again] == [j.samples[0].text for j in many]
    p = critic.score(PROMPT, videos[0], "consistency")
    assert p.mode == "pointwise" and len(p.samples) == 2


def test_qwen25_vl_and_save_load(cfg, videos, tmp_path):
    c25 = dataclasses.replace(cfg.critic, arch="qwen2_5_vl", max_new_tokens=4)
    model, tok = load_model(c25)
    assert model.config.model_type == "qwen2_5_vl"
    j = QwenVLCritic(model, tok, c25, cfg.judging).judge(PROMPT, videos[0], videos[1], "motion")
    assert len(j.samples) == 2 * cfg.judging.num_votes
    save_model(model, tok, tmp_path / "c", dtype="float32")
    loaded, tok2 = load_model(dataclasses.replace(c25, path=str(tmp_path / "c")))
    a = dict(model.named_parameters())
    assert all(torch.equal(a[n], p) for n, p in loaded.named_parameters())
    assert tok2.convert_tokens_to_ids("<|video_pad|>") == tok.convert_tokens_to_ids("<|video_pad|>")
    with pytest.raises(ValueError, match="critic.path=.*no such directory. Expected layout: config.json"):
        load_model(dataclasses.replace(c25, path=str(tmp_path / "missing")))


def test_oracle_backend(cfg, videos):
    oracle = build_critic(dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, backend="oracle")))
    j = oracle.judge(PROMPT, videos[0], videos[0], "alignment")
    assert j.verdict == "tie" and j.certainty == 1.0 and j.samples[0].text.endswith("Answer: tie")
    noisy = build_critic(dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, backend="oracle",
                                                                              oracle_noise=1.0)))
    assert noisy.judge(PROMPT, videos[0], videos[0], "alignment").verdict in ("A", "B")
    assert oracle.score(PROMPT, videos[0], "motion").verdict in ("Good", "Normal", "Bad")
    scores = build_critic(dataclasses.replace(cfg, critic=dataclasses.replace(cfg.critic, backend="oracle"),
                                              judging=dataclasses.replace(cfg.judging, pairs_from="scores")))
    still = render_prompt(PROMPT.replace("moving left", "staying still"), 0, cfg.world)  # the wrong motion
    j = scores.judge(PROMPT, videos[0], still, "motion")  # one pointwise label each: Good against Bad
    assert (j.verdict, j.votes, [s.order for s in j.samples]) == ("A", {"A": 1}, ["A", "B"])
    assert [s.verdict for s in j.samples] == ["Good", "Bad"]


def test_shipped_small_critic_answers_in_format(videos):
    cfg = build_config("small")
    critic = build_critic(cfg)  # critic.path=shipped: the package's cold-started weights
    assert critic.model.config.vision_config.temporal_patch_size == 2
    assert cfg.judging.pairs_from == "scores" and cfg.judging.describe_first
    j = critic.judge_many([(PROMPT, videos[0], videos[1], "alignment")], num_votes=1)[0]
    assert [s.order for s in j.samples] == ["A", "B"] and j.abstentions == 0  # trained: `Answer: Good` etc.
    assert all(s.text.startswith("The video shows") and s.verdict in ("Good", "Normal", "Bad") for s in j.samples)


def test_pairs_from_scores_scores_each_distinct_video_once(cfg, videos):
    """judging.pairs_from=scores: one batched pointwise call for the distinct (prompt, video, dimension) of all
    pairs (a video in two pairs is scored once); K x K comparison votes per pair, no presentation orders."""
    scored = dataclasses.replace(cfg, judging=dataclasses.replace(cfg.judging, pairs_from="scores"))
    critic = build_critic(scored)
    k, calls = cfg.judging.num_votes, record_generate(critic)
    third = render_prompt(PROMPT, 2, cfg.world)
    js = critic.judge_many([(PROMPT, videos[0], videos[1], "motion"), (PROMPT, videos[0], third, "motion")])
    assert len(calls) == 1 and len(calls[0][0]) == 3 and calls[0][1] == k
    assert all("How good is the video on motion?" in t and t.count("<|video_pad|>") == 1 for t in calls[0][0])
    for j in js:
        assert [s.order for s in j.samples] == ["A"] * k + ["B"] * k and j.mode == "pairwise"
        assert sum(j.votes.values()) == (k - sum(s.verdict is None for s in j.samples[:k])) * \
            (k - sum(s.verdict is None for s in j.samples[k:]))
    assert js[0].samples[:k] == js[1].samples[:k]  # the shared video's paths, scored once
