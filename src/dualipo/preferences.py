"""Preference data from the critic's judgments (step 4 of a round), its TRL-style export, and real videos.

- DPO pairs: per prompt, each confident pairwise judgment is a win for one video and a loss for the other.
  `best_vs_worst`: videos are ranked by win rate and the best vs the worst becomes the pair (the paper's top-1
  vs bottom-1). `all_confident`: every confident judgment is a pair (winner vs loser), several per prompt:
  more data from the same samples (measured in docs/preference_gain.md).
- KTO points: confident pointwise judgments; Good = desirable, Bad = undesirable, Normal is dropped.
- Dropped: judgments without a verdict (abstained or split), ties, and certainty below the threshold. Every
  count is reported in `PreferenceStats`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

from dualipo.critics.voting import Judgment
from dualipo.jsonl import read_jsonl, write_jsonl


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str  # video path
    rejected: str
    certainty: float  # mean certainty of the judgments that ranked them
    margin: float  # win-rate gap between chosen and rejected


@dataclass(frozen=True)
class Point:
    prompt: str
    video: str
    desirable: bool
    certainty: float


@dataclass
class PreferenceStats:
    judgments: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: {"no_verdict": 0, "tie": 0, "uncertain": 0,
                                                              "normal": 0})
    prompts: int = 0
    prompts_without_pair: int = 0
    items: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def preference_kind(loss: str) -> str:
    """What a generator loss trains on, as the ledger names it: "points" (labelled videos) for Diffusion-KTO,
    "pairs" (winner, loser) for DPO and for SFT on the winners."""
    return "points" if loss == "kto" else "pairs"


def drop_reason(j: Judgment, threshold: float) -> str | None:
    """Why a judgment makes no preference data ("no_verdict", "tie", "uncertain"), or None if it is kept."""
    if j.verdict is None:
        return "no_verdict"
    if j.verdict == "tie":
        return "tie"
    return "uncertain" if j.certainty < threshold else None


def _confident(judgments: Iterable[Judgment], threshold: float, stats: PreferenceStats) -> list[Judgment]:
    out = []
    for j in judgments:
        stats.judgments += 1
        reason = drop_reason(j, threshold)
        if reason is None:
            out.append(j)
        else:
            stats.dropped[reason] += 1
    stats.kept = len(out)
    return out


def pairs_from_judgments(judgments: Sequence[Judgment], threshold: float, min_margin: float = 0.0,
                         strategy: str = "best_vs_worst") -> tuple[list[Pair], PreferenceStats]:
    """DPO pairs from confident pairwise judgments: best vs worst per prompt, or every confident judgment."""
    if strategy not in ("best_vs_worst", "all_confident"):
        raise ValueError(f"pairs.strategy: expected best_vs_worst or all_confident, got {strategy!r}")
    stats = PreferenceStats()
    by_prompt: dict[str, list[Judgment]] = defaultdict(list)
    for j in _confident((j for j in judgments if j.mode == "pairwise"), threshold, stats):
        by_prompt[j.prompt].append(j)
    stats.prompts = len({j.prompt for j in judgments})
    pairs = []
    for prompt, js in by_prompt.items():
        if strategy == "all_confident":
            for j in js:
                a, b = j.videos
                winner, loser = (a, b) if j.verdict == "A" else (b, a)
                pairs.append(Pair(prompt, winner, loser, j.certainty, 1.0))
            continue
        wins: dict[str, int] = defaultdict(int)
        games: dict[str, int] = defaultdict(int)
        certainty: dict[str, list[float]] = defaultdict(list)
        for j in js:
            a, b = j.videos
            winner = a if j.verdict == "A" else b
            wins[winner] += 1
            for v in (a, b):
                games[v] += 1
                certainty[v].append(j.certainty)
        rate = {v: wins[v] / games[v] for v in games}
        ranked = sorted(rate, key=lambda v: (-rate[v], v))
        best, worst = ranked[0], ranked[-1]
        margin = rate[best] - rate[worst]
        if margin <= min_margin or best == worst:
            continue
        c = certainty[best] + certainty[worst]
        pairs.append(Pair(prompt, best, worst, sum(c) / len(c), margin))
    stats.items = len(pairs)
    stats.prompts_without_pair = stats.prompts - len({p.prompt for p in pairs})
    return pairs, stats


def points_from_judgments(judgments: Sequence[Judgment], threshold: float) -> tuple[list[Point], PreferenceStats]:
    """KTO desirable / undesirable examples from confident pointwise judgments (Normal is dropped)."""
    stats = PreferenceStats()
    points = []
    for j in _confident((j for j in judgments if j.mode == "pointwise"), threshold, stats):
        if j.verdict == "Normal":
            stats.dropped["normal"] += 1
            continue
        points.append(Point(j.prompt, j.videos[0], j.verdict == "Good", j.certainty))
    stats.prompts = len({j.prompt for j in judgments})
    stats.items = len(points)
    return points, stats


def points_from_pairwise(judgments: Sequence[Judgment], threshold: float
                         ) -> tuple[list[Point], list[tuple[int, int]], PreferenceStats]:
    """KTO examples from confident pairwise judgments (Diffusion-KTO with a pairwise critic): a video that won
    more of its confident comparisons than it lost is desirable, one that lost more is undesirable, one with as
    many wins as losses gives no example. Returns the points, each point's (wins, losses), and the stats;
    a point's certainty is the mean certainty of its judgments."""
    stats = PreferenceStats()
    record: dict[tuple[str, str], list] = {}  # (prompt, video) -> [wins, losses, certainties]
    for j in _confident((j for j in judgments if j.mode == "pairwise"), threshold, stats):
        for video, won in zip(j.videos, (j.verdict == "A", j.verdict == "B")):
            r = record.setdefault((j.prompt, video), [0, 0, []])
            r[0 if won else 1] += 1
            r[2].append(j.certainty)
    points, tallies = [], []
    for (prompt, video), (wins, losses, certainty) in record.items():
        if wins != losses:
            points.append(Point(prompt, video, wins > losses, sum(certainty) / len(certainty)))
            tallies.append((wins, losses))
    stats.prompts = len({j.prompt for j in judgments})
    stats.items = len(points)
    stats.prompts_without_pair = stats.prompts - len({p.prompt for p in points})
    return points, tallies, stats


# ------------------------------------------------------------------------------------------ TRL-style files

def write_pairs_jsonl(path: str | Path, pairs: Sequence[Pair], **provenance) -> Path:
    """One JSON object per line: prompt, chosen, rejected (video paths) + certainty, margin and provenance."""
    return write_jsonl(path, ({**asdict(p), **provenance} for p in pairs))


def read_pairs_jsonl(path: str | Path) -> list[Pair]:
    """Read TRL-style pairs; relative video paths are resolved against the file's folder."""
    path = Path(path)
    pairs = []
    for n, rec in read_jsonl(path, "pair file"):
        missing = [k for k in ("prompt", "chosen", "rejected") if not isinstance(rec.get(k), str)]
        if missing:
            raise ValueError(f"{path}:{n}: missing or non-string field(s) {missing}; "
                             f"expected prompt, chosen, rejected")
        resolve = lambda p: str(p if Path(p).is_absolute() else path.parent / p)  # noqa: E731
        pairs.append(Pair(rec["prompt"], resolve(rec["chosen"]), resolve(rec["rejected"]),
                          float(rec.get("certainty", 1.0)), float(rec.get("margin", 1.0))))
    if not pairs:
        raise ValueError(f"pair file {path} has no pairs")
    return pairs


# ------------------------------------------------------------------------------------------ real videos

def real_videos_from_world(world, n: int, set_size: int) -> list[tuple[str, object]]:
    """The toy world's 'real videos' (lambda2): a small curated set, renders of the first `set_size` training
    prompts with their true captions (fixed seeds, the same set every round), cycled to `n` items."""
    from dualipo.toy.world import prompt_pools, render_prompt

    train, _ = prompt_pools(world)
    curated = [(train[j % len(train)], render_prompt(train[j % len(train)], j, world))
               for j in range(min(n, set_size))]
    return [curated[i % len(curated)] for i in range(n)]


def real_videos_from_folder(folder: str | Path) -> list[tuple[str, object]]:
    """Real videos for real models: `folder/captions.jsonl` lines {"video": "clip.mp4", "caption": "..."}."""
    from dualipo.video import read_video

    folder = Path(folder)
    index = folder / "captions.jsonl"
    if not index.is_file():
        raise ValueError(f"real-video folder {folder} has no captions.jsonl (lines of {{'video', 'caption'}})")
    out = []
    for n, rec in read_jsonl(index):
        if not isinstance(rec.get("video"), str) or not isinstance(rec.get("caption"), str):
            raise ValueError(f"{index}:{n}: expected string fields 'video' and 'caption'")
        out.append((rec["caption"], read_video(folder / rec["video"])))
    return out
