"""The shapes world: a prompt grammar, scenes, and a deterministic anti-aliased renderer.

A scene is one object (or two copies of it, "two red circles"), or two different objects in a spatial
relation ("a red circle above a blue square"), with a motion (left / right / up / down with an optional speed,
static, growing, shrinking) on a coloured background. `render(scene, seed, cfg)` is a pure function of its
arguments: the same scene and seed give the same frames. Geometry lives in `layout()` so the oracle's tests
and the corruptions can reason about the same numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from dualipo.config import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, WorldConfig
from dualipo.video import Video

COLOUR_RGB = {"red": (230, 40, 40), "green": (40, 200, 60), "blue": (60, 90, 255),
              "yellow": (240, 220, 40), "white": (240, 240, 240)}
BACKGROUND_RGB = {"black": (0, 0, 0), "gray": (96, 96, 96), "navy": (16, 16, 72)}
RELATIONS = ("to the left of", "to the right of", "above", "below")
SPEEDS = ("slowly", "quickly")
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
# Travel over the whole clip as a fraction of the frame side, by speed word (None = unspecified).
TRAVEL = {"slowly": 0.17, None: 0.32, "quickly": 0.5}
SIZE_CHANGE = 1.4  # growing: half-size goes from r / SIZE_CHANGE to r * SIZE_CHANGE (area x 3.8)
SUPERSAMPLE = 4


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str

    def __post_init__(self) -> None:
        if self.shape not in SHAPES or self.colour not in COLOURS:
            raise ValueError(f"unknown object {self.colour} {self.shape}; shapes {SHAPES}, colours {COLOURS}")


@dataclass(frozen=True)
class Scene:
    """What a prompt asks for. Rendering randomness (position, size) comes from the seed, not the scene."""
    obj: Obj
    motion: str
    background: str = "black"
    count: int = 1
    speed: str | None = None
    other: Obj | None = None
    relation: str | None = None

    def __post_init__(self) -> None:
        if self.motion not in MOTIONS:
            raise ValueError(f"unknown motion {self.motion!r}; expected one of {MOTIONS}")
        if self.background not in BACKGROUNDS:
            raise ValueError(f"unknown background {self.background!r}; expected one of {BACKGROUNDS}")
        if self.count not in (1, 2):
            raise ValueError(f"count must be 1 or 2, got {self.count}")
        if (self.other is None) != (self.relation is None):
            raise ValueError("a second object needs a relation and vice versa")
        if self.relation is not None and self.relation not in RELATIONS:
            raise ValueError(f"unknown relation {self.relation!r}; expected one of {RELATIONS}")
        if self.other is not None and (self.count != 1 or self.other.colour == self.obj.colour):
            raise ValueError("a two-object scene needs count 1 and two different colours")
        if self.speed is not None and (self.speed not in SPEEDS or self.motion not in DIRECTIONS):
            raise ValueError(f"speed {self.speed!r} needs a direction motion and one of {SPEEDS}")

    @property
    def prompt(self) -> str:
        return scene_to_prompt(self)

    @property
    def objects(self) -> list[Obj]:
        """Every object drawn, in drawing order."""
        return [self.obj] * self.count + ([self.other] if self.other else [])


def _motion_phrase(scene: Scene) -> str:
    if scene.motion in DIRECTIONS:
        return f"moving {scene.motion}" + (f" {scene.speed}" if scene.speed else "")
    return {"static": "staying still", "growing": "growing", "shrinking": "shrinking"}[scene.motion]


def scene_to_prompt(scene: Scene) -> str:
    o, bg = scene.obj, f"on a {scene.background} background"
    if scene.other is not None:
        return (f"a {o.colour} {o.shape} {scene.relation} a {scene.other.colour} {scene.other.shape}, "
                f"{_motion_phrase(scene)}, {bg}")
    noun = f"two {o.colour} {o.shape}s" if scene.count == 2 else f"a {o.colour} {o.shape}"
    return f"{noun} {_motion_phrase(scene)} {bg}"


def _alt(words: tuple[str, ...]) -> str:
    return "|".join(re.escape(w) for w in words)


_OBJ = rf"(?P<c1>{_alt(COLOURS)}) (?P<s1>{_alt(SHAPES)})"
_MOTION = (rf"(?:moving (?P<dir>{_alt(tuple(DIRECTIONS))})(?: (?P<speed>{_alt(SPEEDS)}))?"
           r"|(?P<still>staying still)|(?P<size>growing|shrinking))")
_BG = rf"on a (?P<bg>{_alt(BACKGROUNDS)}) background"
_PROMPT_RE = re.compile(
    rf"^(?P<count>a|two) {_OBJ}s?"
    rf"(?: (?P<rel>{_alt(RELATIONS)}) a (?P<c2>{_alt(COLOURS)}) (?P<s2>{_alt(SHAPES)}),)?"
    rf" {_MOTION},? {_BG}$")


def parse_prompt(prompt: str) -> Scene:
    """Inverse of `scene_to_prompt`. Raises ValueError for text outside the grammar."""
    m = _PROMPT_RE.match(prompt.strip().lower())
    if m is None:
        raise ValueError(f"prompt is not in the shapes-world grammar: {prompt!r} "
                         f"(e.g. 'a red circle moving left on a black background')")
    motion = m["dir"] or ("static" if m["still"] else m["size"])
    other = Obj(m["s2"], m["c2"]) if m["rel"] else None
    scene = Scene(obj=Obj(m["s1"], m["c1"]), motion=motion, background=m["bg"],
                  count=2 if m["count"] == "two" else 1, speed=m["speed"], other=other, relation=m["rel"])
    if scene_to_prompt(scene) != prompt.strip().lower():
        raise ValueError(f"prompt is not in the canonical shapes-world form: {prompt!r}; "
                         f"did you mean {scene_to_prompt(scene)!r}?")
    return scene


def sample_scene(rng: np.random.Generator, cfg: WorldConfig) -> Scene:
    """Draw a scene from the grammar restricted to the config's vocabulary and mixture rates."""
    def pick(options):
        return options[int(rng.integers(len(options)))]

    obj = Obj(pick(cfg.shapes), pick(cfg.colours))
    motion, background = pick(cfg.motions), pick(cfg.backgrounds)
    others = [c for c in cfg.colours if c != obj.colour]
    if others and rng.random() < cfg.p_pair:
        return Scene(obj, motion, background, other=Obj(pick(cfg.shapes), pick(others)),
                     relation=pick(RELATIONS))
    if rng.random() < cfg.p_count_two:
        return Scene(obj, motion, background, count=2)
    speed = pick(SPEEDS) if motion in DIRECTIONS and rng.random() < cfg.p_speed else None
    return Scene(obj, motion, background, speed=speed)


def prompt_pools(cfg: WorldConfig) -> tuple[list[str], list[str]]:
    """Disjoint (train, held-out eval) prompt lists, deterministic in `cfg.seed`.

    The eval pool is drawn first, so growing the train pool never changes the eval prompts.
    """
    rng = np.random.default_rng([cfg.seed, 7])
    seen: dict[str, None] = {}
    target = cfg.num_eval_prompts + cfg.num_train_prompts
    for _ in range(50 * target):
        seen.setdefault(sample_scene(rng, cfg).prompt)
        if len(seen) >= target:
            break
    prompts = list(seen)
    if len(prompts) <= cfg.num_eval_prompts:
        raise ValueError(f"world vocabulary yields only {len(prompts)} distinct prompts; "
                         f"world.num_eval_prompts={cfg.num_eval_prompts} leaves none for training")
    return prompts[cfg.num_eval_prompts:], prompts[:cfg.num_eval_prompts]


@dataclass(frozen=True)
class Placement:
    """One drawn object over time: centre (x, y) in pixels per frame, half-size per frame."""
    obj: Obj
    centres: np.ndarray  # (T, 2)
    radii: np.ndarray  # (T,)


def layout(scene: Scene, seed: int, cfg: WorldConfig) -> list[Placement]:
    """Positions and sizes of every object in every frame, kept inside the frame."""
    rng = np.random.default_rng([seed, 1])
    side = min(cfg.height, cfg.width)
    T = cfg.num_frames
    r0 = rng.uniform(0.11, 0.14) * side * cfg.object_scale
    t = np.linspace(0.0, 1.0, T)
    scale = {"growing": SIZE_CHANGE ** (2 * t - 1), "shrinking": SIZE_CHANGE ** (1 - 2 * t)}.get(
        scene.motion, np.ones(T))
    radii = r0 * scale
    spacing = max(2.0, 0.06 * side)  # free space between two objects
    axis = None
    if scene.other is not None:
        axis = {"to the left of": (-1, 0), "to the right of": (1, 0), "above": (0, -1), "below": (0, 1)}[scene.relation]
    elif scene.count == 2:  # side by side; across the motion when there is one, so that the pair has room to move
        axis = (1, 0) if rng.random() < 0.5 else (0, 1)
        if scene.motion in DIRECTIONS:
            axis = (0, 1) if DIRECTIONS[scene.motion][0] else (1, 0)
    if axis is not None:  # two objects side by side must fit: shrink both if needed
        half = (cfg.width if axis[0] else cfg.height) / 2 - 1 - spacing
        radii = radii * min(1.0, half / (2 * 1.2 * float(radii.max())))
    reach = 1.2 * float(radii.max())  # largest half-extent of any shape (the triangle's half-base)
    gap = reach + spacing / 2  # centre offset of each object from the group centre
    offsets = [np.zeros(2)] if axis is None else [np.array(axis) * gap, -np.array(axis) * gap]
    extent = np.abs(np.stack(offsets)).max(0) + reach + 1.0  # half-extent of the group (x, y)
    size = np.array([cfg.width, cfg.height], dtype=float)
    direction = np.array(DIRECTIONS.get(scene.motion, (0.0, 0.0)))
    room = size - 2 * extent  # free travel per axis
    travel = min(TRAVEL[scene.speed] * side, float(np.abs(direction) @ room)) if direction.any() else 0.0
    path = direction * travel
    lo = extent - np.minimum(path, 0)
    hi = size - extent - np.maximum(path, 0)
    start = lo + rng.random(2) * np.maximum(hi - lo, 0)
    centres = start + t[:, None] * path
    return [Placement(o, centres + off, radii) for o, off in zip(scene.objects, offsets)]


def _shape_mask(shape: str, xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float) -> np.ndarray:
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= 0.88 * r) & (np.abs(dy) <= 0.88 * r)
    # upright triangle: apex at the top, flat base at the bottom
    top, base, half = -1.1 * r, 0.8 * r, 1.2 * r
    frac = (dy - top) / (base - top)
    return (dy >= top) & (dy <= base) & (np.abs(dx) <= half * frac)


def render(scene: Scene, seed: int, cfg: WorldConfig) -> Video:
    """Deterministic anti-aliased rendering (4x supersampling, box filter) of `scene` with `seed`."""
    s = SUPERSAMPLE
    H, W = cfg.height, cfg.width
    yy, xx = np.mgrid[0:H * s, 0:W * s].astype(np.float32)
    xx, yy = (xx + 0.5) / s, (yy + 0.5) / s
    placements = layout(scene, seed, cfg)
    bg = np.array(BACKGROUND_RGB[scene.background], dtype=np.float32)
    frames = np.empty((cfg.num_frames, H, W, 3), dtype=np.uint8)
    for i in range(cfg.num_frames):
        img = np.broadcast_to(bg, (H, W, 3)).copy()
        for p in placements:
            mask = _shape_mask(p.obj.shape, xx, yy, *p.centres[i], p.radii[i])
            alpha = mask.reshape(H, s, W, s).mean(axis=(1, 3))[..., None]
            img = img * (1 - alpha) + np.array(COLOUR_RGB[p.obj.colour], dtype=np.float32) * alpha
        frames[i] = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    return Video(frames, cfg.fps)


def render_prompt(prompt: str, seed: int, cfg: WorldConfig) -> Video:
    return render(parse_prompt(prompt), seed, cfg)


def with_changes(scene: Scene, **changes) -> Scene:
    """A copy of `scene` with some attributes changed (used for corruptions and tests)."""
    return replace(scene, **changes)
