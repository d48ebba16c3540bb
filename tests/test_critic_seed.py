"""Seed-label format: JSONL / CSV import, validation naming the bad line, the oracle seed-set maker."""

import json

import pytest

from dualipo.config import build_config
from dualipo.critic_training.seed import import_seed, load_seed, write_seed
from dualipo.critic_training.toy_seed import oracle_seed_set, write_variants


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("variants")
    write_variants(build_config("tiny").world, d, n_prompts=2, per_prompt=3, seed=0)
    return d


def test_oracle_seed_set_roundtrip(video_dir, tmp_path):
    recs = oracle_seed_set([video_dir], n_pairs=6, dimensions=("alignment", "motion"), noise=0.0, seed=0,
                           pointwise=2)
    assert len(recs) == 8 and {r.mode for r in recs} == {"pairwise", "pointwise"}
    for r in recs:
        assert r.label == r.extra["clean_label"]
        assert r.videos[0] != r.videos[-1] or r.mode == "pointwise"
    path = write_seed(recs, video_dir / "seed_roundtrip.jsonl")
    again = load_seed(path)
    assert [(r.prompt, r.videos, r.label) for r in again] == [(r.prompt, r.videos, r.label) for r in recs]
    assert not json.loads(path.read_text().splitlines()[0])["video_a"].startswith("/")  # stored relative


def test_pointwise_labels_cover_every_video_and_dimension_once(video_dir):
    recs = oracle_seed_set([video_dir], n_pairs=0, dimensions=("alignment", "motion"), noise=0.0, seed=0,
                           pointwise=12)  # 2 prompts x 3 videos x 2 dimensions
    assert all(r.mode == "pointwise" and r.label in ("Good", "Normal", "Bad") for r in recs)
    assert len({(r.videos, r.dimension) for r in recs}) == 12
    assert all(r.reason.startswith("The video shows ") and r.reason.endswith(f"{r.label} on {r.dimension}.")
               for r in recs)


def test_pointwise_labels_against_other_prompts(video_dir):
    from dualipo.critic_training.seed import read_pool

    own = {v: p for p, vids in read_pool(video_dir).items() for v in vids}
    recs = oracle_seed_set([video_dir], 0, ("alignment",), noise=0.0, seed=0, pointwise=6, other_prompt=1.0)
    assert all(r.prompt != own[r.videos[0]] for r in recs)
    assert all(r.prompt == own[r.videos[0]] for r in oracle_seed_set([video_dir], 0, ("alignment",), 0.0,
                                                                      pointwise=6))


def test_noise_changes_labels(video_dir):
    clean = oracle_seed_set([video_dir], 4, ("alignment",), noise=0.0, seed=1)
    noisy = oracle_seed_set([video_dir], 4, ("alignment",), noise=1.0, seed=1)
    assert all(r.label != r.extra["clean_label"] for r in noisy)
    assert all(r.label == r.extra["clean_label"] for r in clean)


def test_validation_names_the_line(video_dir, tmp_path):
    vid = sorted((video_dir / "videos").iterdir())[0]
    good = {"prompt": "p", "video_a": str(vid), "video_b": str(vid), "dimension": "motion", "label": "A",
            "reason": "r"}
    cases = {
        "label 'C'": dict(good, label="C"),
        "missing key 'video_b'": {k: v for k, v in good.items() if k != "video_b"},
        "dimension 'beauty'": dict(good, dimension="beauty"),
        "does not exist": dict(good, video_a="nope.mp4"),
    }
    for needle, bad in cases.items():
        f = tmp_path / "bad.jsonl"
        f.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
        with pytest.raises(ValueError, match=rf"bad.jsonl:2: .*{needle}"):
            load_seed(f)
    f.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(ValueError, match="bad.jsonl:2: not valid JSON"):
        load_seed(f)
    point = {"prompt": "p", "video": str(vid), "dimension": "motion", "label": "Great", "reason": ""}
    f.write_text(json.dumps(point) + "\n")
    with pytest.raises(ValueError, match="Good|Normal|Bad"):
        load_seed(f)


def test_csv_import(video_dir, tmp_path):
    vid = sorted((video_dir / "videos").iterdir())
    csv = tmp_path / "labels.csv"
    csv.write_text("prompt,video_a,video_b,dimension,label,reason\n"
                   f"a red circle,{vid[0]},{vid[1]},alignment,B,\"Video B is better, clearly.\"\n"
                   f"a red circle,{vid[1]},{vid[2]},motion,tie,\n")
    out = import_seed(csv, tmp_path / "out" / "seed.jsonl")
    recs = load_seed(out)
    assert [r.label for r in recs] == ["B", "tie"] and recs[0].reason == "Video B is better, clearly."
    csv.write_text("prompt,video_a,video_b,dimension,label,reason\n"
                   f"a red circle,{vid[0]},{vid[1]},alignment,maybe,\n")
    with pytest.raises(ValueError, match="labels.csv:2: label 'maybe'"):
        import_seed(csv, tmp_path / "x.jsonl")


def test_sampled_seed_set_labels_every_generator_sample_on_every_dimension(tmp_path):
    from dualipo.critic_training.seed import SEED_DIMENSIONS, read_pool
    from dualipo.critic_training.toy_seed import sampled_seed_set

    cfg = build_config("tiny")
    path = sampled_seed_set(cfg, tmp_path, n_videos=8, noise=0.0)  # 2 prompts x 4 samples x 4 dimensions
    recs = load_seed(path)
    assert len(recs) == 32 and all(r.mode == "pointwise" for r in recs)
    assert {(r.videos, r.dimension) for r in recs} == {(r.videos, d) for r in recs for d in SEED_DIMENSIONS}
    samples = read_pool(tmp_path / "videos")
    assert len(samples) == 2 and all(len(v) == 4 for v in samples.values())
    assert json.loads((tmp_path / "videos" / "prompts.jsonl").read_text().splitlines()[0])["variant"] == "generator"
    assert sampled_seed_set(cfg, tmp_path, 8, 0.0) == path  # made once
