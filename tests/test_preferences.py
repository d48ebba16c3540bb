import json

import pytest

from dualipo.critics.voting import judgment, make_sample
from dualipo.preferences import (pairs_from_judgments, points_from_judgments, points_from_pairwise, read_pairs_jsonl,
                                 real_videos_from_folder, write_pairs_jsonl)
from dualipo.video import Video, write_video

import numpy as np


def J(prompt, a, b, verdicts, mode="pairwise"):
    samples = [make_sample("AB", f"... {v}", v) for v in verdicts]
    return judgment(prompt, (a, b) if mode == "pairwise" else (a,), "alignment", mode, samples)


def test_best_vs_worst_with_drops_counted():
    js = [
        J("p", "v0", "v1", ["A", "A", "A", "B"]),  # v0 beats v1 (0.75)
        J("p", "v0", "v2", ["A", "A", "A", "A"]),  # v0 beats v2
        J("p", "v1", "v2", ["A", "A", "B", None]),  # v1 beats v2 (0.67)
        J("p", "v2", "v3", ["B", "A"]),            # split: no verdict
        J("p", "v1", "v3", ["tie", "tie", "A"]),   # tie majority
        J("p", "v0", "v3", ["A", "B", "B", "A", "B"]),  # v3 wins with 0.6 < threshold 0.65
        J("q", "w0", "w1", ["B", "B"]),
    ]
    pairs, stats = pairs_from_judgments(js, threshold=0.65)
    by = {p.prompt: p for p in pairs}
    assert (by["p"].chosen, by["p"].rejected) == ("v0", "v2")
    assert (by["q"].chosen, by["q"].rejected) == ("w1", "w0")
    assert by["p"].margin == 1.0
    assert stats.judgments == 7 and stats.kept == 4
    assert stats.dropped == {"no_verdict": 1, "tie": 1, "uncertain": 1, "normal": 0}
    assert stats.items == 2 and stats.prompts_without_pair == 0


def test_kto_points_from_pairwise_wins_and_losses():
    js = [
        J("p", "v0", "v1", ["A", "A", "A", "B"]),  # v0 beats v1 (0.75)
        J("p", "v0", "v2", ["A", "A"]),            # v0 beats v2 (1.0)
        J("p", "v1", "v2", ["B", "B", "B"]),       # v2 beats v1 (1.0)
        J("p", "v2", "v3", ["B", "A"]),            # split: dropped, v3 is in no kept judgment
        J("q", "w0", "w1", ["A", "A", "B"]),       # 0.67 < threshold: dropped
    ]
    points, tallies, stats = points_from_pairwise(js, threshold=0.7)
    got = {p.video: (p.desirable, round(p.certainty, 4), t) for p, t in zip(points, tallies)}
    # v0: 2 wins (certainty 0.75, 1.0); v1: 2 losses (0.75, 1.0); v2: 1 win 1 loss -> no example
    assert got == {"v0": (True, 0.875, (2, 0)), "v1": (False, 0.875, (0, 2))}
    assert (stats.judgments, stats.kept, stats.items, stats.prompts, stats.prompts_without_pair) == (5, 3, 2, 2, 1)
    assert stats.dropped["no_verdict"] == 1 and stats.dropped["uncertain"] == 1


def test_all_confident_makes_one_pair_per_confident_judgment():
    js = [
        J("p", "v0", "v1", ["A", "A", "A", "B"]),  # v0 > v1, certainty 0.75
        J("p", "v1", "v2", ["B", "B"]),            # v2 > v1, 1.0
        J("p", "v0", "v2", ["A", "B"]),            # split: dropped
        J("q", "w0", "w1", ["tie", "tie"]),        # tie: dropped
    ]
    pairs, stats = pairs_from_judgments(js, threshold=0.7, strategy="all_confident")
    assert [(p.prompt, p.chosen, p.rejected, p.certainty) for p in pairs] == [
        ("p", "v0", "v1", 0.75), ("p", "v2", "v1", 1.0)]
    assert stats.items == 2 and stats.kept == 2 and stats.prompts == 2 and stats.prompts_without_pair == 1
    with pytest.raises(ValueError, match="pairs.strategy"):
        pairs_from_judgments(js, threshold=0.5, strategy="random")


def test_no_pair_when_all_equal():
    js = [J("p", "a", "b", ["A"]), J("p", "b", "a", ["A"])]  # a and b each win once
    pairs, stats = pairs_from_judgments(js, threshold=0.5)
    assert pairs == [] and stats.prompts_without_pair == 1


def test_kto_points():
    js = [J("p", "v0", None, ["Good", "Good", "Bad"], "pointwise"), J("p", "v1", None, ["Bad"], "pointwise"),
          J("p", "v2", None, ["Normal"], "pointwise"), J("p", "v3", None, ["Good", "Bad"], "pointwise")]
    points, stats = points_from_judgments(js, threshold=0.5)
    assert [(p.video, p.desirable) for p in points] == [("v0", True), ("v1", False)]
    assert stats.dropped["normal"] == 1 and stats.dropped["no_verdict"] == 1


def test_pairs_jsonl_round_trip_and_errors(tmp_path):
    pairs, _ = pairs_from_judgments([J("p", "a.mp4", "b.mp4", ["B"])], threshold=0.5)
    path = write_pairs_jsonl(tmp_path / "pairs.jsonl", pairs, round=1)
    rec = json.loads(path.read_text())
    assert (rec["prompt"], rec["chosen"], rec["rejected"], rec["round"]) == ("p", "b.mp4", "a.mp4", 1)
    back = read_pairs_jsonl(path)
    assert back[0].chosen == str(tmp_path / "b.mp4")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "p", "chosen": "a"}\n')
    with pytest.raises(ValueError, match="bad.jsonl:1.*rejected"):
        read_pairs_jsonl(tmp_path / "bad.jsonl")
    (tmp_path / "bad2.jsonl").write_text('{"prompt": "p", "chosen": "a", "rejected": "b"}\nnot json\n')
    with pytest.raises(ValueError, match="bad2.jsonl:2"):
        read_pairs_jsonl(tmp_path / "bad2.jsonl")


def test_real_video_folder(tmp_path):
    v = Video(np.zeros((3, 16, 16, 3), np.uint8), 8.0)
    write_video(tmp_path / "a.mp4", v)
    (tmp_path / "captions.jsonl").write_text('{"video": "a.mp4", "caption": "a black frame"}\n')
    (caption, video), = real_videos_from_folder(tmp_path)
    assert caption == "a black frame" and video.frames.shape == (3, 16, 16, 3)
    with pytest.raises(ValueError, match="captions.jsonl"):
        real_videos_from_folder(tmp_path / "none")
