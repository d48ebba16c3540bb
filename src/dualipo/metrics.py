"""Weight-free video metrics in the spirit of VBench, and the loop's agreement metrics (pure functions).

Frames are uint8 RGB `frames_THWC` (T x H x W x 3), as in `dualipo.video.Video`. VBench's statistics, thresholds
and frame bookkeeping are kept exactly (shared/notes/vbench_formulas.md, VBench v0.1.5); its learned models are
replaced, so absolute values differ from VBench's:

- RAFT optical flow (dynamic degree, static filter) -> OpenCV Farneback flow on the grayscale frames
  (`FARNEBACK`), without RAFT's padding to a multiple of 8 (the top-k statistics use the unpadded H x W);
- AMT-S frame interpolation (motion smoothness) -> flow-based interpolation: the Farneback flow F from frame
  a to frame b, and the middle frame m(x) = (a(x - F(x)/2) + b(x + F(x)/2)) / 2 (bilinear, border replicated);
- DINO features (subject consistency) -> the frames' own pixels: Pearson correlation of frames area-downsampled
  to at most 32 px on the short side (`frame_consistency`).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import cv2
import numpy as np

#: cv2.calcOpticalFlowFarneback(prev, next, None, *FARNEBACK): pyr_scale, levels, winsize, iterations, poly_n,
#: poly_sigma, flags (OpenCV's documented example values).
FARNEBACK = (0.5, 3, 15, 3, 5, 1.2, 0)
CONSISTENCY_SIDE = 32


def _check(frames_THWC: np.ndarray, min_frames: int, what: str) -> np.ndarray:
    f = np.asarray(frames_THWC)
    if f.dtype != np.uint8 or f.ndim != 4 or f.shape[-1] != 3:
        raise ValueError(f"{what}: expected uint8 frames of shape (T, H, W, 3), got {f.dtype} {f.shape}")
    if f.shape[0] < min_frames:
        raise ValueError(f"{what} needs at least {min_frames} frames, got {f.shape[0]}")
    return f


# ------------------------------------------------------------------------------------------ building blocks

def optical_flow(a_HWC: np.ndarray, b_HWC: np.ndarray) -> np.ndarray:
    """Dense flow (H x W x 2, pixels; [..., 0] = x) from frame a to frame b: Farneback on grayscale."""
    ga, gb = (cv2.cvtColor(np.ascontiguousarray(x), cv2.COLOR_RGB2GRAY) for x in (a_HWC, b_HWC))
    return cv2.calcOpticalFlowFarneback(ga, gb, None, *FARNEBACK)


def top_fraction_mean(flow_HW2: np.ndarray, fraction: float) -> float:
    """Mean of the `int(H*W*fraction)` largest flow magnitudes sqrt(u^2 + v^2) (VBench `get_score`; at least 1)."""
    mag = np.hypot(flow_HW2[..., 0], flow_HW2[..., 1]).ravel()
    k = max(1, int(mag.size * fraction))
    return float(np.partition(mag, mag.size - k)[mag.size - k:].mean())


def mean_abs_frame_difference(frames_THWC: np.ndarray) -> float:
    """MAD = mean_i mean_{h,w,c} |f_{i+1} - f_i| over the T-1 consecutive pairs, in uint8 levels (0..255)."""
    f = _check(frames_THWC, 2, "mean_abs_frame_difference").astype(np.float32)
    return float(np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3)).mean())


def interpolate_middle(a_HWC: np.ndarray, b_HWC: np.ndarray) -> np.ndarray:
    """The frame halfway between a and b (float32): m(x) = (a(x - F(x)/2) + b(x + F(x)/2)) / 2, F = flow a -> b."""
    flow = optical_flow(a_HWC, b_HWC)
    h, w = flow.shape[:2]
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    half_x, half_y = flow[..., 0] / 2, flow[..., 1] / 2
    warp = lambda img, sx, sy: cv2.remap(img.astype(np.float32), xs + sx, ys + sy, cv2.INTER_LINEAR,  # noqa: E731
                                         borderMode=cv2.BORDER_REPLICATE)
    return (warp(a_HWC, -half_x, -half_y) + warp(b_HWC, half_x, half_y)) / 2


def frame_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two frames' pixels; two constant frames: 1 if equal (within half a level) else 0."""
    x, y = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    x, y = x - x.mean(), y - y.mean()
    nx, ny = np.linalg.norm(x), np.linalg.norm(y)
    if nx < 1e-9 or ny < 1e-9:
        return float(nx < 1e-9 and ny < 1e-9 and abs(a.astype(np.float64).mean() - b.astype(np.float64).mean()) <= 0.5)
    return float(x @ y / (nx * ny))


# ------------------------------------------------------------------------------------------ per-video metrics

def temporal_flickering(frames_THWC: np.ndarray) -> float:
    """VBench temporal flickering: (255 - MAD) / 255 with MAD = `mean_abs_frame_difference`. 1.0 for a static
    video, lower the more pixels change between frames. VBench scores only static videos with it (`is_static`)."""
    return (255.0 - mean_abs_frame_difference(frames_THWC)) / 255.0


def dynamic_degree(frames_THWC: np.ndarray, fps: float) -> bool:
    """VBench dynamic degree of one video (True = dynamic). Frames are subsampled to about 8 fps
    (`interval = max(1, round(fps / 8))`, Python rounding); per consecutive sampled pair the statistic is the
    mean of the top 5 % flow magnitudes; with `thres = 6 * min(H, W) / 256` and
    `count_num = round(4 * n_sampled_frames / 16)`, the video is dynamic as soon as `count_num` pair statistics
    are `> thres` (strict). The dimension score is the fraction of dynamic videos."""
    f = _check(frames_THWC, 2, "dynamic_degree")[::max(1, round(fps / 8))]
    thres = 6.0 * min(f.shape[1], f.shape[2]) / 256
    count_num = round(4 * len(f) / 16)
    count = 0
    for a, b in zip(f[:-1], f[1:]):
        count += top_fraction_mean(optical_flow(a, b), 0.05) > thres
        if count >= count_num:
            return True
    return False


def is_static(frames_THWC: np.ndarray) -> bool:
    """VBench static filter (the videos temporal flickering is meant for). All frames, no subsampling; statistic:
    mean of the top 2 % flow magnitudes, on the consecutive pairs and the two wrap-around pairs (first, last)
    and (last, first); `thres = 3 * min(H, W) / 256`, `count_num = round(2 * T / 16)`. Not static if more than
    `count_num` consecutive statistics are `> thres`, or either wrap-around statistic is
    `> thres * count_num * 2`."""
    f = _check(frames_THWC, 2, "is_static")
    thres = 3.0 * min(f.shape[1], f.shape[2]) / 256
    count_num = round(2 * len(f) / 16)
    moving = sum(top_fraction_mean(optical_flow(a, b), 0.02) > thres for a, b in zip(f[:-1], f[1:]))
    if moving > count_num:
        return False
    wrap = (top_fraction_mean(optical_flow(f[0], f[-1]), 0.02), top_fraction_mean(optical_flow(f[-1], f[0]), 0.02))
    return not any(s > thres * count_num * 2 for s in wrap)


def motion_smoothness(frames_THWC: np.ndarray) -> float:
    """VBench motion smoothness: keep the even frames f_0, f_2, ...; predict each odd frame f_{2i+1} from its
    neighbours with `interpolate_middle`; VFI = mean_i mean |f_{2i+1} - m_i| (uint8 levels, the prediction
    truncated to uint8 as VBench's `tensor2img` does); score = (255 - VFI) / 255. 1.0 for a static video or a
    steady translation, lower for jerky motion. With an even T the last odd frame is not compared."""
    f = _check(frames_THWC, 3, "motion_smoothness")
    kept, odd = f[0::2], f[1::2]
    errors = [np.abs(odd[i].astype(np.float32) - np.clip(interpolate_middle(kept[i], kept[i + 1]), 0, 255)
                     .astype(np.uint8)).mean() for i in range(len(kept) - 1)]
    return (255.0 - float(np.mean(errors))) / 255.0


def frame_consistency(frames_THWC: np.ndarray) -> float:
    """Frame-to-frame consistency, VBench subject consistency's formula with pixels for DINO features:
    score = 1/(T-1) * sum_{i=1}^{T-1} (max(0, rho(f_{i-1}, f_i)) + max(0, rho(f_0, f_i))) / 2, rho =
    `frame_correlation` of the frames area-downsampled to at most `CONSISTENCY_SIDE` px on the short side.
    1.0 for a static video; lower when content changes (flicker, objects appearing or jumping)."""
    f = _check(frames_THWC, 2, "frame_consistency")
    scale = min(1.0, CONSISTENCY_SIDE / min(f.shape[1], f.shape[2]))
    size = (max(1, round(f.shape[2] * scale)), max(1, round(f.shape[1] * scale)))
    small = [cv2.resize(x, size, interpolation=cv2.INTER_AREA) if scale < 1 else x for x in f]
    sims = [(max(0.0, frame_correlation(small[i - 1], small[i])) + max(0.0, frame_correlation(small[0], small[i])))
            / 2 for i in range(1, len(small))]
    return float(np.mean(sims))


def video_metrics(frames_THWC: np.ndarray, fps: float) -> dict:
    """Every weight-free metric of one video (at least 3 frames)."""
    f = _check(frames_THWC, 3, "video_metrics")
    return {"temporal_flickering": temporal_flickering(f), "static": is_static(f),
            "dynamic": dynamic_degree(f, fps), "motion_smoothness": motion_smoothness(f),
            "frame_consistency": frame_consistency(f)}


def summarize_video_metrics(per_video: Sequence[Mapping]) -> dict:
    """Dimension scores over videos (VBench: the mean over videos). `temporal_flickering` averages the static
    videos only (None when none is static), `temporal_flickering_all` every video; `dynamic_degree` and
    `static_fraction` are fractions of videos."""
    if not per_video:
        raise ValueError("summarize_video_metrics: no videos")
    static = [m["temporal_flickering"] for m in per_video if m["static"]]
    mean = lambda key: float(np.mean([m[key] for m in per_video]))  # noqa: E731
    return {"temporal_flickering": float(np.mean(static)) if static else None,
            "temporal_flickering_all": mean("temporal_flickering"), "static_fraction": mean("static"),
            "dynamic_degree": mean("dynamic"), "motion_smoothness": mean("motion_smoothness"),
            "frame_consistency": mean("frame_consistency")}


# ------------------------------------------------------------------------------------------ agreement metrics

def win_rate(verdicts: Iterable[str | None]) -> tuple[float | None, int]:
    """Critic win rate of video A (round k) over video B (round 0, same prompt and seed):
    (wins + ties / 2) / (wins + losses + ties), over verdicts 'A' / 'B' / 'tie'; None (no majority) is left out.
    Returns (rate or None when nothing was decided, number of decided judgments)."""
    v = [x for x in verdicts if x is not None]
    unknown = set(v) - {"A", "B", "tie"}
    if unknown:
        raise ValueError(f"win_rate: verdicts must be 'A', 'B', 'tie' or None, got {sorted(unknown)}")
    if not v:
        return None, 0
    return (v.count("A") + 0.5 * v.count("tie")) / len(v), len(v)


def accuracy(predicted: Sequence, truth: Sequence) -> float | None:
    """Share of positions where predicted == truth (e.g. critic vs oracle verdicts); None for no items."""
    if len(predicted) != len(truth):
        raise ValueError(f"accuracy: {len(predicted)} predictions for {len(truth)} labels")
    return float(np.mean([p == t for p, t in zip(predicted, truth)])) if truth else None


def mean_by_key(records: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per key, the mean over the records that have it (e.g. oracle scores per dimension over videos)."""
    keys = sorted({k for r in records for k in r})
    return {k: float(np.mean([r[k] for r in records if k in r])) for k in keys}
