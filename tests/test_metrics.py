"""The weight-free video metrics on videos built to have known properties, and the agreement metrics."""

import cv2
import numpy as np
import pytest

from dualipo import metrics as M

cv2.setNumThreads(1)
T, S = 9, 48


def disc_video(xs, ys, r=6, bg=20, colour=(220, 40, 40), size=S):
    """A disc at (xs[t], ys[t]) on a flat background, one frame per position."""
    yy, xx = np.mgrid[0:size, 0:size]
    frames = np.full((len(xs), size, size, 3), bg, np.uint8)
    for t, (cx, cy) in enumerate(zip(xs, ys)):
        frames[t][(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = colour
    return frames


def static():
    return disc_video([24] * T, [24] * T)


def translation(step=2.0):
    return disc_video(10 + step * np.arange(T), [24] * T)


def flickering():
    f = static().astype(np.int16)
    f[1::2] += 120  # every other frame much brighter
    return np.clip(f, 0, 255).astype(np.uint8)


def jerky(seed=0):
    rng = np.random.default_rng(seed)
    return disc_video(24 + rng.uniform(-10, 10, T), 24 + rng.uniform(-10, 10, T))


def noise(seed=0):
    return np.random.default_rng(seed).integers(0, 256, (T, S, S, 3), dtype=np.uint8)


def test_static_video_scores_perfectly_and_is_not_dynamic():
    v = static()
    assert M.mean_abs_frame_difference(v) == 0.0
    assert M.temporal_flickering(v) == 1.0
    assert M.is_static(v) and not M.dynamic_degree(v, fps=8)
    assert M.motion_smoothness(v) == pytest.approx(1.0)
    assert M.frame_consistency(v) == pytest.approx(1.0)


def test_flickering_video_has_high_flicker():
    v = flickering()
    assert M.mean_abs_frame_difference(v) > 100  # every pixel changes by about 120 levels at every step
    assert M.temporal_flickering(v) < 0.6 < M.temporal_flickering(translation())
    # consistency measures content (a correlation): a global brightness flicker keeps it, a blinking object not
    assert M.frame_consistency(v) > 0.99
    blinking = static()
    blinking[1::2] = 20
    assert M.frame_consistency(blinking) < 0.6


def test_steady_translation_moves_smoothly():
    v = translation(step=2.0)
    assert M.dynamic_degree(v, fps=8) and not M.is_static(v)
    assert M.motion_smoothness(v) > 0.995
    assert M.motion_smoothness(v) > M.motion_smoothness(jerky()) + 0.01
    assert M.motion_smoothness(noise()) < 0.8


def test_flow_measures_the_translation():
    v = translation(step=2.0)
    flow = M.optical_flow(v[0], v[1])
    on_disc = v[0].sum(-1) > 3 * 20
    assert flow[..., 0][on_disc].mean() == pytest.approx(2.0, abs=0.1)
    assert abs(flow[..., 1][on_disc].mean()) < 0.1
    assert M.top_fraction_mean(flow, 0.05) == pytest.approx(2.0, abs=0.15)


def test_dynamic_degree_thresholds_follow_vbench():
    # thres = 6 * 48 / 256 = 1.125 px: a 0.5 px/frame drift is static for dynamic degree, 2 px/frame is dynamic
    assert not M.dynamic_degree(translation(step=0.5), fps=8)
    assert M.dynamic_degree(translation(step=2.0), fps=8)
    # fps 24 keeps every 3rd frame (round(24 / 8)): 3 sampled frames, count_num = round(0.75) = 1, 6 px / step
    assert M.dynamic_degree(translation(step=2.0), fps=24)


def test_frame_consistency_orders_videos():
    assert M.frame_consistency(static()) > M.frame_consistency(translation()) > M.frame_consistency(noise())
    assert M.frame_consistency(noise()) < 0.1
    assert M.frame_correlation(np.zeros((4, 4, 3)), np.zeros((4, 4, 3))) == 1.0
    assert M.frame_correlation(np.zeros((4, 4, 3)), np.full((4, 4, 3), 9)) == 0.0


def test_interpolated_middle_of_a_translation_is_the_true_middle():
    v = translation(step=2.0)
    middle = M.interpolate_middle(v[0], v[2])
    assert np.abs(middle - v[1]).mean() < 1.0


def test_video_metrics_and_summary():
    per = [M.video_metrics(static(), 8), M.video_metrics(translation(), 8)]
    s = M.summarize_video_metrics(per)
    assert s["dynamic_degree"] == 0.5 and s["static_fraction"] == 0.5
    assert s["temporal_flickering"] == 1.0  # the static video only, as VBench
    assert s["temporal_flickering_all"] < 1.0
    assert M.summarize_video_metrics([per[1]])["temporal_flickering"] is None
    with pytest.raises(ValueError, match="at least 3 frames"):
        M.video_metrics(static()[:2], 8)
    with pytest.raises(ValueError, match="uint8"):
        M.temporal_flickering(static().astype(np.float32))


def test_win_rate_accuracy_and_means():
    assert M.win_rate(["A", "A", "B", "tie", None]) == (0.625, 4)
    assert M.win_rate([None]) == (None, 0)
    with pytest.raises(ValueError, match="win_rate"):
        M.win_rate(["Good"])
    assert M.accuracy(["A", "B", "tie"], ["A", "A", "tie"]) == pytest.approx(2 / 3)
    assert M.accuracy([], []) is None
    assert M.mean_by_key([{"colour": 1.0, "shape": 0.0}, {"colour": 0.5}]) == {"colour": 0.75, "shape": 0.0}
