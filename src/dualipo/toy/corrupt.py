"""Deliberate defects for the shapes world: one wrong attribute in the scene, broken pixels, or web captions.

Scene and pixel corruptions make seed sets with known losers and test that the oracle lowers exactly the right
dimension. `web_caption` makes the web-like corpus: a true render captioned with attributes named wrong at the
rates of `WorldConfig.web` (see `WebCaptionConfig` for why).
"""

from __future__ import annotations

import numpy as np

from dualipo.config import BACKGROUNDS, COLOURS, SHAPES, WorldConfig
from dualipo.toy.world import DIRECTIONS, RELATIONS, SPEEDS, Obj, Scene, parse_prompt, with_changes
from dualipo.video import Video

SCENE_CORRUPTIONS = ("colour", "shape", "motion", "count", "relation", "background")
PIXEL_CORRUPTIONS = ("flicker", "noise")
OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up", "static": "left",
            "growing": "shrinking", "shrinking": "growing",
            "to the left of": "to the right of", "to the right of": "to the left of",
            "above": "below", "below": "above"}


def _other(options: tuple[str, ...], current: str, rng: np.random.Generator) -> str:
    choices = [o for o in options if o != current]
    return choices[int(rng.integers(len(choices)))]


def applicable(scene: Scene) -> tuple[str, ...]:
    """Scene corruptions that make sense for `scene` (relation needs two objects, count needs one kind)."""
    return tuple(k for k in SCENE_CORRUPTIONS
                 if not (k == "relation" and scene.other is None) and not (k == "count" and scene.other))


def corrupt_scene(scene: Scene, kind: str, rng: np.random.Generator) -> Scene:
    """`scene` with exactly one attribute made wrong."""
    if kind not in applicable(scene):
        raise ValueError(f"corruption {kind!r} does not apply to {scene.prompt!r}; options: {applicable(scene)}")
    if kind == "colour":
        taken = {scene.other.colour} if scene.other else set()
        colour = _other(tuple(c for c in COLOURS if c not in taken), scene.obj.colour, rng)
        return with_changes(scene, obj=Obj(scene.obj.shape, colour))
    if kind == "shape":
        return with_changes(scene, obj=Obj(_other(SHAPES, scene.obj.shape, rng), scene.obj.colour))
    if kind == "motion":
        speed = scene.speed if OPPOSITE[scene.motion] in DIRECTIONS else None
        return with_changes(scene, motion=OPPOSITE[scene.motion], speed=speed)
    if kind == "count":
        return with_changes(scene, count=3 - scene.count)
    if kind == "relation":
        return with_changes(scene, relation=OPPOSITE[scene.relation])
    return with_changes(scene, background=_other(BACKGROUNDS, scene.background, rng))


def web_caption(scene: Scene, world: WorldConfig, rng: np.random.Generator) -> Scene:
    """What a web caption of a video of `scene` says: each attribute named wrong with its rate in `world.web`,
    independently, a wrong value drawn uniformly from the world's vocabulary (an attribute with one value in
    the world, or that the scene lacks, stays right). Every attribute has its own fixed draws from `rng`, so
    changing one attribute's rate does not change what the others draw."""
    w = world.web
    flips = {k: rng.random() < getattr(w, k) for k in ("colour", "shape", "count", "relation", "motion", "speed",
                                                        "background")}
    flip_other, picks = rng.random() < w.colour, rng.random(6)

    def other(options, current, u):
        choices = [o for o in options if o != current]
        return choices[int(u * len(choices))] if choices else current

    obj, second = scene.obj, scene.other
    if flips["colour"]:
        obj = Obj(obj.shape, other([c for c in world.colours if second is None or c != second.colour], obj.colour,
                                   picks[0]))
    if second is not None and flip_other:
        second = Obj(second.shape, other([c for c in world.colours if c != obj.colour], second.colour, picks[1]))
    if flips["shape"]:
        obj = Obj(other(world.shapes, obj.shape, picks[2]), obj.colour)
    motion, speed = scene.motion, scene.speed
    if flips["motion"]:
        motion = other(world.motions, motion, picks[3])
        speed = speed if motion in DIRECTIONS else None
    if flips["speed"] and motion in DIRECTIONS:
        speed = other((None, *SPEEDS), speed, picks[4])
    count = 3 - scene.count if flips["count"] and second is None else scene.count
    relation = OPPOSITE[scene.relation] if flips["relation"] and second is not None else scene.relation
    background = other(world.backgrounds, scene.background, picks[5]) if flips["background"] else scene.background
    return Scene(obj, motion, background, count=count, speed=speed, other=second, relation=relation)


def web_captions(prompts: list[str], world: WorldConfig, stream: int) -> list[str]:
    """Web captions of renders of `prompts` (item i's from its own generator seeded by (world.web.seed, stream,
    i)): the same call gives the same captions; another `stream` gives fresh draws."""
    if world.web.clean:
        return list(prompts)
    return [web_caption(parse_prompt(p), world, np.random.default_rng([world.web.seed, stream, i])).prompt
            for i, p in enumerate(prompts)]


def add_flicker(video: Video, rng: np.random.Generator, strength: float = 0.6) -> Video:
    """Per-frame brightness jumps: about half the frames dimmed by up to `strength`."""
    gains = np.where(rng.random(video.num_frames) < 0.5, 1 - strength * rng.uniform(0.6, 1, video.num_frames), 1.0)
    gains[int(rng.integers(video.num_frames))] = 1 - strength  # at least one strong jump
    frames = video.frames.astype(np.float32) * gains[:, None, None, None]
    return Video(np.clip(np.rint(frames), 0, 255).astype(np.uint8), video.fps)


def noise_video(cfg: WorldConfig, rng: np.random.Generator) -> Video:
    """Uniform RGB noise of the world's size: the worst possible sample."""
    frames = rng.integers(0, 256, (cfg.num_frames, cfg.height, cfg.width, 3), dtype=np.uint8)
    return Video(frames, cfg.fps)


__all__ = ["SCENE_CORRUPTIONS", "PIXEL_CORRUPTIONS", "RELATIONS", "applicable", "corrupt_scene",
           "add_flicker", "noise_video", "web_caption", "web_captions"]
