"""Deliberate defects for the shapes world: one wrong attribute in the scene, or broken pixels.

Used to make seed sets with known losers and to test that the oracle lowers exactly the right dimension.
"""

from __future__ import annotations

import numpy as np

from dualipo.config import BACKGROUNDS, COLOURS, SHAPES, WorldConfig
from dualipo.toy.world import DIRECTIONS, RELATIONS, Obj, Scene, with_changes
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
           "add_flicker", "noise_video"]
