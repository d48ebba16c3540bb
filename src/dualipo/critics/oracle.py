"""The shapes-world oracle behind the `Critic` protocol (tests and reference point only, never the loop's
default). With `noise` > 0 each verdict is replaced by a different one with that probability."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dualipo.critics.prompts import target_text
from dualipo.critics.voting import Judgment, judgment, make_sample
from dualipo.video import Video, read_video


def _video(v: Video | str | Path) -> Video:
    return v if isinstance(v, Video) else read_video(v)


def _name(v: Video | str | Path) -> str:
    return str(v) if not isinstance(v, Video) else f"<video {v.num_frames}x{v.height}x{v.width}>"


class OracleCritic:
    def __init__(self, noise: float = 0.0, seed: int = 0):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"critic.oracle_noise must be in [0, 1], got {noise}")
        self.noise = noise
        self.rng = np.random.default_rng(seed)

    def judge(self, prompt: str, video_a, video_b, dimension: str) -> Judgment:
        from dualipo.toy.seed_labels import label_pair

        lab = label_pair(prompt, _video(video_a), _video(video_b), dimension, self.rng, self.noise)
        s = make_sample("AB", target_text(lab.reason, lab.label), lab.label)
        return judgment(prompt, (_name(video_a), _name(video_b)), dimension, "pairwise", [s])

    def score(self, prompt: str, video, dimension: str) -> Judgment:
        from dualipo.toy.seed_labels import label_single

        lab = label_single(prompt, _video(video), dimension, self.rng, self.noise)
        s = make_sample("", target_text(lab.reason, lab.label), lab.label)
        return judgment(prompt, (_name(video),), dimension, "pointwise", [s])
