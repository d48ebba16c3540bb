"""The shapes-world oracle behind the `Critic` protocol (tests and the loop's upper bound only, never the loop's
default). With `noise` > 0 each verdict is replaced by a different one with that probability. The noise is drawn
from torch's global RNG, like the VLM critic's sampled reasoning paths, so seeding torch before a call makes it
reproducible (the round loop seeds every prompt's judgments)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from dualipo.critics.prompts import target_text
from dualipo.critics.voting import Judgment, judgment, make_sample, pair_from_points
from dualipo.video import Video, read_video, video_key, video_name


def _video(v: Video | str | Path) -> Video:
    return v if isinstance(v, Video) else read_video(v)


def _rng() -> np.random.Generator:
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))


class OracleCritic:
    """`pairs_from='scores'`: a pair is judged from the oracle's two pointwise labels (`voting.pair_from_points`),
    the same pair selection as a critic judging that way (`judging.pairs_from`)."""

    def __init__(self, noise: float = 0.0, pairs_from: str = "comparison"):
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"critic.oracle_noise must be in [0, 1], got {noise}")
        self.noise, self.pairs_from = noise, pairs_from

    def to_host(self) -> None:
        """Pixel analysis on the CPU: nothing to move (the `Critic` protocol)."""

    def to_device(self) -> None:
        """See `to_host`."""

    def close(self) -> None:
        """See `to_host`."""

    def judge(self, prompt: str, video_a, video_b, dimension: str) -> Judgment:
        return self.judge_many([(prompt, video_a, video_b, dimension)])[0]

    def score(self, prompt: str, video, dimension: str) -> Judgment:
        return self.score_many([(prompt, video, dimension)])[0]

    def judge_many(self, items: Sequence[tuple], num_votes: int | None = None, chain_of_thought: bool | None = None,
                   both_orders: bool | None = None) -> list[Judgment]:
        """One verdict per (prompt, a, b, dimension): the oracle does not sample, so K and the orders do not
        apply (accepted for the `Critic` protocol)."""
        from dualipo.toy.seed_labels import label_pair

        if self.pairs_from == "scores":
            distinct = {(p, video_key(v), d): (p, v, d) for p, a, b, d in items for v in (a, b)}
            scored = dict(zip(distinct, self.score_many(list(distinct.values()))))
            return [pair_from_points(p, (video_name(a), video_name(b)), d, scored[p, video_key(a), d].samples,
                                     scored[p, video_key(b), d].samples) for p, a, b, d in items]
        rng, out = _rng(), []
        for prompt, a, b, dimension in items:
            lab = label_pair(prompt, _video(a), _video(b), dimension, rng, self.noise)
            s = make_sample("AB", target_text(lab.reason, lab.label), lab.label)
            out.append(judgment(prompt, (video_name(a), video_name(b)), dimension, "pairwise", [s]))
        return out

    def score_many(self, items: Sequence[tuple], num_votes: int | None = None,
                   chain_of_thought: bool | None = None) -> list[Judgment]:
        from dualipo.toy.seed_labels import label_single

        rng, out = _rng(), []
        for prompt, video, dimension in items:
            lab = label_single(prompt, _video(video), dimension, rng, self.noise)
            s = make_sample("", target_text(lab.reason, lab.label), lab.label)
            out.append(judgment(prompt, (video_name(video),), dimension, "pointwise", [s]))
        return out
