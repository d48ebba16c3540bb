"""Self-consistency voting over sampled reasoning paths (pure functions) and the Judgment record.

A judgment collects K sampled paths per presentation order; verdicts given for the swapped order (b, a) are
mapped back to (a, b) before voting. Abstentions (unparseable answers) do not vote. The majority verdict wins;
an even split between the top verdicts gives no verdict (None). Certainty = the majority's vote share.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Sequence

from dualipo.critics.prompts import swap_verdict


@dataclass(frozen=True)
class Sample:
    """One sampled reasoning path: the raw text, its parsed verdict in its own order, and mapped to (a, b)."""
    order: str  # "AB" or "BA" (pairwise) / "" (pointwise) / "A" or "B" (a pair scored pointwise)
    text: str
    raw_verdict: str | None
    verdict: str | None  # in the (a, b) frame; None = abstention


@dataclass(frozen=True)
class Judgment:
    prompt: str
    videos: tuple[str, ...]  # paths or names of the judged videos, in (a, b) order
    dimension: str
    mode: str  # "pairwise" | "pointwise"
    samples: tuple[Sample, ...]
    verdict: str | None  # majority verdict; None = no majority (even split or all abstained)
    certainty: float  # vote share of the majority among non-abstaining votes (0 when no verdict)
    votes: dict[str, int] = field(default_factory=dict)
    abstentions: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    def under(self, root: str | os.PathLike[str]) -> "Judgment":
        """The same judgment with its video paths joined to `root` (a run directory's relative paths made usable
        from anywhere; an absolute path stays as it is)."""
        return replace(self, videos=tuple(str(Path(root) / v) for v in self.videos))

    @classmethod
    def from_dict(cls, r: dict) -> "Judgment":
        """The inverse of `to_dict` (extra keys, such as an evaluation label, are ignored)."""
        return cls(r["prompt"], tuple(r["videos"]), r["dimension"], r["mode"],
                   tuple(Sample(**s) for s in r["samples"]), r["verdict"], float(r["certainty"]),
                   dict(r.get("votes", {})), int(r.get("abstentions", 0)))


def judgment_from_row(r, prompts: dict[str, str]) -> Judgment:
    """A Judgment from a run ledger's `judgments` row (`prompts`: prompt id -> prompt)."""
    samples = tuple(Sample(**s) for s in json.loads(r["samples"]))
    videos = (r["video_a"], r["video_b"]) if r["mode"] == "pairwise" else (r["video_a"],)
    return Judgment(prompts[r["prompt_id"]], videos, r["dimension"], r["mode"], samples, r["verdict"],
                    r["certainty"], json.loads(r["votes"]), r["abstentions"])


def make_sample(order: str, text: str, raw_verdict: str | None) -> Sample:
    return Sample(order, text, raw_verdict, swap_verdict(raw_verdict) if order == "BA" else raw_verdict)


def tally(verdicts: Sequence[str | None]) -> tuple[dict[str, int], int]:
    """Vote counts per verdict and the number of abstentions (None)."""
    counts = Counter(v for v in verdicts if v is not None)
    return dict(counts), sum(v is None for v in verdicts)


def majority(votes: dict[str, int]) -> tuple[str | None, float]:
    """(majority verdict, vote share); (None, 0.0) for no votes or an even split between the leaders."""
    total = sum(votes.values())
    if total == 0:
        return None, 0.0
    ranked = sorted(votes.items(), key=lambda kv: -kv[1])
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None, 0.0
    return ranked[0][0], ranked[0][1] / total


def judgment(prompt: str, videos: Sequence[str], dimension: str, mode: str,
             samples: Sequence[Sample]) -> Judgment:
    votes, abstained = tally([s.verdict for s in samples])
    verdict, share = majority(votes)
    return Judgment(prompt, tuple(videos), dimension, mode, tuple(samples), verdict, share, votes, abstained)


POINT_LEVELS = {"Good": 2, "Normal": 1, "Bad": 0}


def compare_points(a: str | None, b: str | None) -> str | None:
    """One comparison of two pointwise verdicts: 'A' if a's level is higher, 'B' if lower, 'tie' if equal;
    None (no vote) if either path abstained."""
    if a is None or b is None:
        return None
    la, lb = POINT_LEVELS[a], POINT_LEVELS[b]
    return "tie" if la == lb else "A" if la > lb else "B"


def pair_from_points(prompt: str, videos: Sequence[str], dimension: str, samples_a: Sequence[Sample],
                     samples_b: Sequence[Sample]) -> Judgment:
    """A pairwise judgment aggregated from two pointwise ones (each video scored on its own with K paths):
    every (path of a, path of b) casts one vote (`compare_points`), K x K votes in all; the majority and its
    share as in `majority`. No position can bias it: neither video is shown beside the other. The samples are
    a's paths (order 'A') then b's (order 'B'); `abstentions` counts the abstaining paths."""
    votes, _ = tally([compare_points(a.verdict, b.verdict) for a in samples_a for b in samples_b])
    verdict, share = majority(votes)
    samples = tuple(replace(s, order="A") for s in samples_a) + tuple(replace(s, order="B") for s in samples_b)
    return Judgment(prompt, tuple(videos), dimension, "pairwise", samples, verdict, share, votes,
                    sum(s.verdict is None for s in samples))


SCORED = ("A", "B")  # the sample orders of a pair judged from pointwise scores: video a's paths, video b's


def from_scores(j: Judgment) -> bool:
    """Whether a pairwise judgment was aggregated from pointwise scores (`pair_from_points`)."""
    return j.mode == "pairwise" and bool(j.samples) and all(s.order in SCORED for s in j.samples)


def position_flip(samples: Sequence[Sample]) -> bool | None:
    """Position bias of one judgment: True if the (a, b) and (b, a) majorities name the same *letter* (the
    verdict did not follow the swap), None if either order has no majority or the verdicts are ties."""
    per = {}
    for order in ("AB", "BA"):
        v, _ = majority(tally([s.raw_verdict for s in samples if s.order == order])[0])
        per[order] = v
    if per["AB"] not in ("A", "B") or per["BA"] not in ("A", "B"):
        return None
    return per["AB"] == per["BA"]
