"""The shapes-world oracle: scores any video against a prompt from its pixels only.

Pipeline per video: estimate the background from the border pixels, mark pixels that differ from it as
foreground, give each foreground pixel the palette colour whose direction from the background is closest
(cosine), split each colour into connected components, and read the attributes off them:

- colour: the background is the one asked for, each asked colour is present, little stray foreground;
- count: the number of objects of each asked colour matches, per frame;
- shape: fill ratio of each object's bounding box (square ~1.0, circle ~0.79, triangle ~0.5);
- motion: least-squares trend of the objects' centroid (direction, travel) and log-area (growing / shrinking);
- relation: centroid order of the two asked objects, per frame (two-object prompts only);
- consistency: residual between consecutive frames after the best integer shift (flicker, noise, popping).

Each dimension is in [0, 1]; `overall` is the mean of the applicable ones. The oracle is the ground truth of
the toy world: it makes seed labels and measures progress, and the training loop never calls it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dualipo.toy.world import BACKGROUND_RGB, COLOUR_RGB, DIRECTIONS, TRAVEL, Scene, parse_prompt
from dualipo.video import Video, read_video

FG_THRESHOLD = 0.2  # RGB distance (0-1 units) from the background that counts as foreground
MIN_AREA_FRAC = 0.004  # smallest component (fraction of the frame) that counts as an object
MIN_SOLIDITY = 0.8
SHAPE_FILL = {"triangle": 0.5, "circle": math.pi / 4, "square": 1.0}
STATIC_TRAVEL = 0.08  # total centroid travel (fraction of the frame side) below which nothing moves
SIZE_RATIO = 1.6  # last/first area ratio above which an object grows (below 1/x: shrinks)
SPEED_EDGES = ((TRAVEL["slowly"] + TRAVEL[None]) / 2, (TRAVEL[None] + TRAVEL["quickly"]) / 2)
RESIDUAL_OK, RESIDUAL_BAD = 0.35, 0.9  # worst shift-compensated change / contrast: consistent .. broken
ALIGNMENT_DIMS = ("colour", "shape", "count", "relation")


@dataclass(frozen=True)
class Blob:
    colour: str
    area: int
    centroid: tuple[float, float]  # (x, y) in pixels
    fill: float  # area / bounding-box area
    solidity: float  # area / convex-hull area: about 1 or more for the world's convex shapes, low for noise


@dataclass(frozen=True)
class OracleScore:
    dims: dict[str, float]  # applicable dimension -> score in [0, 1]
    overall: float
    seen: dict[str, object] = field(default_factory=dict)  # what was detected, for reasons and debugging

    def get(self, dimension: str) -> float:
        """Score of a dimension or a group: 'overall', 'alignment' (colour/shape/count/relation) or one dim."""
        if dimension == "overall":
            return self.overall
        if dimension == "alignment":
            return float(np.mean([self.dims[d] for d in ALIGNMENT_DIMS if d in self.dims]))
        if dimension == "relation" and dimension not in self.dims:
            return 1.0  # no relation asked: nothing can be wrong
        if dimension not in self.dims:
            raise ValueError(f"unknown oracle dimension {dimension!r}; expected overall, alignment or "
                             f"one of {sorted(self.dims)}")
        return self.dims[dimension]


def _background(f: np.ndarray) -> np.ndarray:
    border = np.concatenate([f[:, 0], f[:, -1], f[:, :, 0], f[:, :, -1]], axis=1).reshape(-1, 3)
    return np.median(border, axis=0)


def _nearest(table: dict[str, tuple[int, int, int]], rgb: np.ndarray) -> str:
    names = list(table)
    d = [np.linalg.norm(np.array(table[n]) / 255.0 - rgb) for n in names]
    return names[int(np.argmin(d))]


def _colour_labels(f: np.ndarray, bg: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Per-pixel palette index (-1 = background) by cosine between (pixel - bg) and (colour - bg)."""
    names = list(COLOUR_RGB)
    diff = f - bg
    dirs = np.array([COLOUR_RGB[n] for n in names], dtype=np.float32) / 255.0 - bg
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True) + 1e-6
    norm = np.linalg.norm(diff, axis=-1)
    labels = np.argmax((diff / (norm[..., None] + 1e-6)) @ dirs.T, axis=-1)
    labels[norm < FG_THRESHOLD] = -1
    return labels, names


def _blobs(labels: np.ndarray, names: list[str], min_area: int) -> tuple[list[Blob], int]:
    """Objects of one frame, and the number of foreground pixels not in any object (stray)."""
    blobs, stray = [], int((labels >= 0).sum())
    for k, name in enumerate(names):
        mask = (labels == k).astype(np.uint8)
        if not mask.any():
            continue
        n, cc, stats, cents = cv2.connectedComponentsWithStats(mask, connectivity=8)
        for i in range(1, n):
            x, y, w, h, area = stats[i]
            if area >= min_area:
                patch = (cc[y:y + h, x:x + w] == i).astype(np.uint8)
                contours, _ = cv2.findContours(patch, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                hull = cv2.contourArea(cv2.convexHull(np.concatenate(contours)))
                blobs.append(Blob(name, int(area), (float(cents[i][0]), float(cents[i][1])),
                                  area / float(w * h), area / max(hull, 1.0)))
                stray -= int(area)
    return blobs, stray


def _shape_of(b: Blob) -> str:
    """Nearest fill ratio; 'blob' for a non-convex component (noise, merged or torn objects)."""
    if b.solidity < MIN_SOLIDITY:
        return "blob"
    return min(SHAPE_FILL, key=lambda s: abs(SHAPE_FILL[s] - b.fill))


def _trend(values: np.ndarray) -> float:
    """Least-squares change of `values` from the first to the last valid frame (NaN = missing)."""
    t = np.arange(len(values), dtype=float)
    ok = ~np.isnan(values)
    if ok.sum() < 2:
        return float("nan")
    slope = np.polyfit(t[ok], values[ok], 1)[0]
    return float(slope * (len(values) - 1))


def _motion(blob_frames: list[list[Blob]], side: int) -> tuple[str, str | None]:
    xs, ys, areas = [], [], []
    for own in blob_frames:
        a = sum(b.area for b in own)
        xs.append(sum(b.centroid[0] * b.area for b in own) / a if a else np.nan)
        ys.append(sum(b.centroid[1] * b.area for b in own) / a if a else np.nan)
        areas.append(np.log(a) if a else np.nan)
    if np.isnan(areas).sum() > len(areas) / 2:
        return "none", None
    ratio = math.exp(_trend(np.array(areas)))
    if ratio > SIZE_RATIO:
        return "growing", None
    if ratio < 1 / SIZE_RATIO:
        return "shrinking", None
    dx, dy = _trend(np.array(xs)) / side, _trend(np.array(ys)) / side
    travel = math.hypot(dx, dy)
    if travel < STATIC_TRAVEL:
        return "static", None
    direction = ("right" if dx > 0 else "left") if abs(dx) >= abs(dy) else ("down" if dy > 0 else "up")
    speed = "slowly" if travel < SPEED_EDGES[0] else ("quickly" if travel >= SPEED_EDGES[1] else "normal")
    return direction, speed


def _consistency(f: np.ndarray, bg: np.ndarray) -> float:
    """Worst consecutive-frame change left after the best integer shift, relative to the frames' contrast.

    Motion (a shift) and slow size change leave small residuals; brightness jumps, popping objects and noise
    leave residuals comparable to the content itself.
    """
    T, H, W, _ = f.shape
    s = max(2, math.ceil(0.6 * max(H, W) * TRAVEL["quickly"] / max(T - 1, 1)))
    core = (slice(s, H - s), slice(s, W - s))
    energy = np.abs(f - bg).mean(axis=(1, 2, 3))
    worst = 0.0
    for t in range(T - 1):
        target = f[t + 1][core]
        best = min(np.abs(f[t][s + dy:H - s + dy, s + dx:W - s + dx] - target).mean()
                   for dy in range(-s, s + 1) for dx in range(-s, s + 1))
        worst = max(worst, best / (0.5 * (energy[t] + energy[t + 1]) + 1e-3))
    return float(np.clip(1 - (worst - RESIDUAL_OK) / (RESIDUAL_BAD - RESIDUAL_OK), 0, 1))


def _assign(blobs: list[Blob], asked: list[str]) -> dict[str, list[Blob]]:
    """Blobs of each asked colour; an asked colour with none takes the blobs of colours nobody asked for,
    so a wrong colour is charged to the colour dimension only, not to shape, count or motion too."""
    out = {c: [b for b in blobs if b.colour == c] for c in asked}
    leftovers = [b for b in blobs if b.colour not in asked]
    for c in asked:
        if not out[c]:
            out[c] = leftovers
    return out


def score_scene(scene: Scene, video: Video) -> OracleScore:
    f = video.frames.astype(np.float32) / 255.0
    T, H, W, _ = f.shape
    min_area = max(4, int(MIN_AREA_FRAC * H * W))
    want = {o.colour: o.shape for o in scene.objects}
    want_count = {c: sum(o.colour == c for o in scene.objects) for c in want}
    frames, assigned, stray, fg = [], [], 0, 0
    for t in range(T):
        labels, names = _colour_labels(f[t], _background(f[t:t + 1]))
        blobs, s = _blobs(labels, names, min_area)
        frames.append(blobs)
        assigned.append(_assign(blobs, list(want)))
        stray += s + sum(b.area for b in blobs if b.colour not in want)
        fg += int((labels >= 0).sum())

    bg = _background(f)
    bg_seen = _nearest(BACKGROUND_RGB, bg)
    present = [np.mean([any(b.colour == c for b in bl) for bl in frames]) for c in want]
    dims = {"colour": float(np.mean([bg_seen == scene.background, *present]) * (1 - stray / max(fg, 1)))}
    dims["count"] = float(np.mean([all(len(a[c]) == n for c, n in want_count.items()) for a in assigned]))
    shape_hits = [_shape_of(b) == want[c] for a in assigned for c, bl in a.items() for b in bl]
    dims["shape"] = float(np.mean(shape_hits)) if shape_hits else 0.0
    motion, speed = _motion([sum(a.values(), []) for a in assigned], min(H, W))
    if motion != scene.motion:
        dims["motion"] = 0.0
    else:
        dims["motion"] = 1.0 if scene.speed is None or speed == scene.speed else 0.5
    if scene.other is not None:
        dims["relation"] = float(np.mean([_relation_holds(scene, a, (W, H)) for a in assigned]))
    dims["consistency"] = _consistency(f, bg)
    seen = {"background": bg_seen, "motion": motion, "speed": speed,
            "objects": _describe_frame(frames[T // 2]), "layout": _layout(frames[T // 2])}
    return OracleScore(dims, float(np.mean(list(dims.values()))), seen)


def _relation_holds(scene: Scene, assigned: dict[str, list[Blob]], size: tuple[int, int]) -> bool:
    a, b = assigned[scene.obj.colour], assigned[scene.other.colour]
    if len(a) != 1 or len(b) != 1:
        return False
    (ax, ay), (bx, by) = a[0].centroid, b[0].centroid
    mx, my = 0.1 * size[0], 0.1 * size[1]
    return {"to the left of": bx - ax > mx, "to the right of": ax - bx > mx,
            "above": by - ay > my, "below": ay - by > my}[scene.relation]


def _describe_frame(blobs: list[Blob]) -> list[str]:
    return [f"{b.colour} {_shape_of(b)}" for b in sorted(blobs, key=lambda b: b.centroid)]


def _layout(blobs: list[Blob]) -> str | None:
    """'red circle to the left of a blue square' / '... above ...' for exactly two objects (dominant axis)."""
    if len(blobs) != 2:
        return None
    a, b = blobs
    dx, dy = b.centroid[0] - a.centroid[0], b.centroid[1] - a.centroid[1]
    if abs(dx) >= abs(dy):
        first, second = (a, b) if dx >= 0 else (b, a)
        rel = "to the left of"
    else:
        first, second = (a, b) if dy >= 0 else (b, a)
        rel = "above"
    return f"{first.colour} {_shape_of(first)} {rel} a {second.colour} {_shape_of(second)}"


def score(prompt: str, video: Video) -> OracleScore:
    """Score `video` against a shapes-world `prompt` from its pixels."""
    return score_scene(parse_prompt(prompt), video)


def score_dict(prompt: str, video: Video) -> dict[str, float] | None:
    """The overall and per-dimension scores (4 decimals) as a dict, or None when `prompt` is not in the
    shapes-world grammar."""
    try:
        s = score(prompt, video)
    except ValueError:  # not a shapes-world prompt: nothing to score
        return None
    return {"overall": round(s.overall, 4), **{k: round(v, 4) for k, v in s.dims.items()}}


def verdict(sa: float, sb: float, tie_margin: float) -> str:
    """'A', 'B' or 'tie' from two scores of one dimension: a tie when they are within `tie_margin`."""
    if abs(sa - sb) <= tie_margin:
        return "tie"
    return "A" if sa > sb else "B"


def oracle_prefers(prompt: str, a: Video, b: Video, dimension: str = "overall", tie_margin: float = 0.02) -> str:
    """'A', 'B' or 'tie': which video the oracle prefers on `dimension`."""
    return verdict(score(prompt, a).get(dimension), score(prompt, b).get(dimension), tie_margin)


class RunScores:
    """The oracle's scores of the videos under `root` (paths relative to it), each video read and scored once."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self._cache: dict[str, OracleScore] = {}

    def __call__(self, prompt: str, rel: str) -> OracleScore:
        if rel not in self._cache:
            self._cache[rel] = score(prompt, read_video(self.root / rel))
        return self._cache[rel]
