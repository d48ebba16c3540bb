import numpy as np
import pytest

from dualipo.config import WorldConfig
from dualipo.toy.corrupt import add_flicker, applicable, corrupt_scene, noise_video
from dualipo.toy.oracle import RunScores, oracle_prefers, score, score_scene, verdict
from dualipo.toy.seed_labels import label_pair, label_single, level_index, point_level
from dualipo.toy.world import parse_prompt, render, sample_scene
from dualipo.video import read_video, write_video

CFG = WorldConfig()


def _scenes(n, seed=0):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, CFG) for _ in range(n)]


def test_rendered_videos_score_near_one_on_every_dimension():
    scores = [score_scene(s, render(s, i, CFG)) for i, s in enumerate(_scenes(60))]
    for dim in ("colour", "shape", "count", "motion", "consistency"):
        assert np.mean([s.dims[dim] for s in scores]) > 0.97, dim
    assert np.mean([s.dims["relation"] for s in scores if "relation" in s.dims]) > 0.97
    assert np.mean([s.overall for s in scores]) > 0.98


def test_score_survives_mp4_round_trip(tmp_path):
    prompt = "a red square to the left of a blue circle, moving down, on a gray background"
    video = read_video(write_video(tmp_path / "v.mp4", render(parse_prompt(prompt), 1, CFG)))
    assert score(prompt, video).overall > 0.9


@pytest.mark.parametrize("kind", ["colour", "shape", "motion", "count", "relation", "background"])
def test_each_corruption_lowers_exactly_its_dimension(kind):
    target = "colour" if kind == "background" else kind
    rng = np.random.default_rng(1)
    drops = {}
    scenes = [s for s in _scenes(150, seed=2) if kind in applicable(s)][:25]
    for i, scene in enumerate(scenes):
        good = score_scene(scene, render(scene, i, CFG))
        bad = score_scene(scene, render(corrupt_scene(scene, kind, rng), i, CFG))
        for d in good.dims:
            drops.setdefault(d, []).append(good.dims[d] - bad.dims[d])
    mean = {d: float(np.mean(v)) for d, v in drops.items()}
    assert mean[target] > 0.4, mean
    assert all(v < 0.05 for d, v in mean.items() if d != target), mean


def test_flicker_lowers_consistency_and_noise_lowers_everything():
    rng = np.random.default_rng(3)
    for i, scene in enumerate(_scenes(20, seed=4)):
        video = render(scene, i, CFG)
        good, flick = score_scene(scene, video), score_scene(scene, add_flicker(video, rng))
        assert good.dims["consistency"] - flick.dims["consistency"] > 0.4
        assert all(abs(good.dims[d] - flick.dims[d]) < 0.35 for d in ("shape", "count", "motion"))
        noise = score_scene(scene, noise_video(CFG, rng))
        assert noise.overall < 0.5 and noise.dims["consistency"] == 0.0 and noise.dims["colour"] < 0.2
        assert noise.dims["count"] < 0.5


def test_oracle_prefers_the_right_video():
    prompt = "two green triangles moving up slowly on a black background"
    scene = parse_prompt(prompt)
    good = render(scene, 0, CFG)
    wrong = render(corrupt_scene(scene, "motion", np.random.default_rng(0)), 0, CFG)
    assert oracle_prefers(prompt, good, wrong) == "A"
    assert oracle_prefers(prompt, wrong, good, dimension="motion") == "B"
    assert oracle_prefers(prompt, good, good) == "tie"
    assert oracle_prefers(prompt, good, wrong, dimension="colour") == "tie"


def test_verdict_from_two_scores():
    assert verdict(0.9, 0.7, 0.15) == "A"
    assert verdict(0.5, 0.8, 0.15) == "B"
    assert verdict(0.6, 0.5, 0.15) == "tie"
    assert verdict(0.6, 0.45, 0.15) == "tie"  # at the margin: a tie
    assert verdict(0.6, 0.44, 0.15) == "A"


def test_run_scores_read_each_video_once(tmp_path):
    prompt = "a red square moving right on a gray background"
    video = render(parse_prompt(prompt), 0, CFG)
    write_video(tmp_path / "videos" / "v.mp4", video)
    scores = RunScores(tmp_path)
    first = scores(prompt, "videos/v.mp4")
    assert first.overall == score(prompt, read_video(tmp_path / "videos" / "v.mp4")).overall
    (tmp_path / "videos" / "v.mp4").unlink()
    assert scores(prompt, "videos/v.mp4") is first  # cached: not read again


def test_seed_labels_honour_the_noise_rate():
    prompt = "a yellow circle growing on a navy background"
    scene = parse_prompt(prompt)
    good, bad = render(scene, 0, CFG), render(corrupt_scene(scene, "shape", np.random.default_rng(0)), 0, CFG)
    rng = np.random.default_rng(0)
    n, rate = 400, 0.2
    labels = [label_pair(prompt, good, bad, "alignment", rng, noise_rate=rate) for _ in range(n)]
    assert {lab.clean_label for lab in labels} == {"A"}
    flipped = sum(lab.noisy for lab in labels) / n
    assert abs(flipped - rate) < 3 * np.sqrt(rate * (1 - rate) / n)
    assert all(lab.reason.endswith(f"on alignment.") for lab in labels)
    assert "Video A is better" in next(lab.reason for lab in labels if lab.label == "A")
    assert all(label_pair(prompt, good, bad, "overall", rng, noise_rate=0).label == "A" for _ in range(5))
    reversed_ = render(parse_prompt("a yellow circle shrinking on a navy background"), 0, CFG)
    motion = label_pair(prompt, good, reversed_, "motion", rng, noise_rate=0)  # the steps between the descriptions
    assert motion.reason.endswith(". The prompt asks for growing. Video A is growing: good. Video B is shrinking: "
                                  "no. Video A is better on motion.") and motion.label == "A"


def test_pointwise_labels():
    prompt = "a blue square moving left on a black background"
    scene = parse_prompt(prompt)
    rng = np.random.default_rng(0)
    assert label_single(prompt, render(scene, 0, CFG), "overall", rng, noise_rate=0).label == "Good"
    noise = noise_video(CFG, rng)
    lab = label_single(prompt, noise, "overall", rng, noise_rate=0)
    assert lab.label == "Bad" and lab.reason.startswith("The video shows")
    assert lab.reason.endswith("flickering. Bad on overall.")  # no steps outside motion
    with pytest.raises(ValueError, match="noise_rate"):
        label_single(prompt, noise, "overall", rng, noise_rate=1.5)


def test_point_levels_at_the_seed_cuts():
    # Bad below 0.5, Normal from 0.5, Good from 0.85; level_index counts the cuts a score reaches
    assert [point_level(v) for v in (0.0, 0.49, 0.5, 0.84, 0.85, 1.0)] == \
        ["Bad", "Bad", "Normal", "Normal", "Good", "Good"]
    assert [level_index(v, (0.25, 0.5, 0.75, 0.9)) for v in (0.1, 0.25, 0.6, 0.8, 0.95)] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(("prompt", "layout"), [
    ("a red circle to the left of a blue square, staying still, on a black background", "a red circle to the left of a blue square"),
    ("a red circle to the right of a blue square, staying still, on a black background", "a blue square to the left of a red circle"),
    ("a red circle below a blue square, staying still, on a gray background", "a blue square above a red circle"),
])
def test_description_places_two_objects_and_rates_steadiness(prompt, layout):
    from dualipo.toy.corrupt import add_flicker
    from dualipo.toy.seed_labels import describe

    video = render(parse_prompt(prompt), 0, CFG)
    assert describe(score(prompt, video)) == f"{layout} staying still on a {prompt.split()[-2]} background, steady"
    flicker = describe(score(prompt, add_flicker(video, np.random.default_rng(0))))
    assert flicker.endswith(("unsteady", "flickering"))
