"""Refinement data from a round's judgments (pure bookkeeping, no model).

Per pairwise judgment (K sampled paths per order, both orders):
1. consistency filter (`critics.consistency`): only paths whose verdict agrees with their own reasoning vote;
   the judgment is re-voted over them, in terms of which video wins;
2. candidates: a majority verdict A or B, and with `learn_ties` a majority 'tie' too (even splits and
   all-abstained judgments get no label);
3. certainty (`certainty`) and the threshold pick the confident candidates;
4. SFT: per presentation order, the most frequent rationale among the majority's paths in that order (or the
   other order's, with Video A / B swapped, when that order has none): two examples per judgment;
5. DPO: per order, (that majority rationale, the most frequent minority rationale), weighted by the certainty;
   unanimous judgments have no minority and make no DPO pair.
A pair judged from pointwise scores (`judging.pairs_from=scores`) is filtered path by path on its claim,
re-aggregated, and a confident one teaches each of its two videos its own majority pointwise rationale (DPO:
against its minority one).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field

from dualipo.critic_training.loop import Example
from dualipo.critics import prompts
from dualipo.critics.consistency import filter_judgment
from dualipo.critics.voting import SCORED, Judgment, Sample, from_scores, majority, tally

ORDERS = ("AB", "BA")


@dataclass(frozen=True)
class Candidate:
    judgment: Judgment  # consistency-filtered
    chosen: dict[str, Example]  # order -> the majority rationale as a training example in that order
    rejected: dict[str, Example]  # order -> the minority rationale (absent when unanimous)


@dataclass
class RefineStats:
    judgments: int = 0
    paths: int = 0
    paths_abstained: int = 0
    paths_filtered: int = 0  # parseable but inconsistent with their own reasoning
    no_label: dict[str, int] = field(default_factory=lambda: {"no_majority": 0, "tie": 0, "pointwise": 0})
    candidates: int = 0
    confident: int = 0
    sft_examples: int = 0
    dpo_pairs: int = 0
    mean_certainty_kept: float = 0.0

    def to_dict(self) -> dict:
        return asdict(self)


def example(j: Judgment, order: str, target: str) -> Example:
    """The training example of `target` in presentation `order`; an answer-only target gets the answer-only
    instruction (as the critic was asked when it wrote it)."""
    a, b = j.videos
    return Example(prompts.pair_prompt(j.prompt, j.dimension, _reasoned(target)), (a, b) if order == "AB" else (b, a),
                   target)


def _reasoned(target: str) -> bool:
    """Whether a target holds a rationale before its answer line (else it was an answer-only reply)."""
    return len([ln for ln in target.splitlines() if ln.strip()]) > 1


def in_order(sample: Sample, order: str) -> str:
    """The path's text as it would read in presentation `order` (A / B swapped when it was given in the other)."""
    if sample.order == order:
        return sample.text.strip()
    reason = "\n".join(ln for ln in sample.text.strip().splitlines()[:-1])  # drop the answer line
    return prompts.target_text(prompts.swap_reason(reason), prompts.swap_verdict(sample.raw_verdict))


def most_frequent(samples: list[Sample], order: str) -> str | None:
    """The most frequent text among the samples given in `order`, else among the others (swapped); None if
    there are none. Ties go to the text seen first."""
    for pool in ([s for s in samples if s.order == order], [s for s in samples if s.order != order]):
        if pool:
            counts = Counter(in_order(s, order) for s in pool)
            return max(counts, key=lambda t: counts[t])  # max keeps the first of equal counts
    return None


def _scored_examples(f: Judgment, pick: str) -> dict[str, Example]:
    """Per video of a confident pair judged from pointwise scores: its most frequent rationale among its paths
    that agree with its own majority score (`pick='major'`) or disagree with it ('minor'), as a pointwise
    example."""
    out = {}
    for video, side in zip(f.videos, SCORED):
        paths = [s for s in f.samples if s.order == side and s.verdict is not None]
        own, _ = majority(tally([s.verdict for s in paths])[0])
        pool = [s.text.strip() for s in paths if (s.verdict == own) == (pick == "major")]
        if own is not None and pool:
            counts = Counter(pool)
            text = max(counts, key=lambda t: counts[t])
            out[side] = Example(prompts.point_prompt(f.prompt, f.dimension, _reasoned(text)), (video,), text)
    return out


def candidate(j: Judgment, check: str, stats: RefineStats, learn_ties: bool = False) -> Candidate | None:
    """The filtered judgment with its majority and minority rationales, or None (counted in `stats`). A pair
    judged from pointwise scores gives each video's majority (and minority) pointwise rationale instead, keyed
    'A' / 'B'."""
    stats.judgments += 1
    stats.paths += len(j.samples)
    stats.paths_abstained += sum(s.raw_verdict is None for s in j.samples)
    if j.mode != "pairwise":
        stats.no_label["pointwise"] += 1
        return None
    f, filtered = filter_judgment(j, check)
    stats.paths_filtered += filtered
    if f.verdict is None:
        stats.no_label["no_majority"] += 1
        return None
    if f.verdict == "tie" and not learn_ties:
        stats.no_label["tie"] += 1
        return None
    if from_scores(j):
        chosen = _scored_examples(f, "major")
        if not chosen:
            stats.no_label["no_majority"] += 1
            return None
        stats.candidates += 1
        return Candidate(f, chosen, _scored_examples(f, "minor"))
    stats.candidates += 1
    major = [s for s in f.samples if s.verdict == f.verdict]
    minor = [s for s in f.samples if s.verdict is not None and s.verdict != f.verdict]
    chosen = {o: example(f, o, t) for o in ORDERS if (t := most_frequent(major, o)) is not None}
    rejected = {o: example(f, o, t) for o in ORDERS if (t := most_frequent(minor, o)) is not None}
    return Candidate(f, chosen, rejected)


def candidates(judgments: list[Judgment], check: str,
               learn_ties: bool = False) -> tuple[list[Candidate], RefineStats]:
    stats = RefineStats()
    out = [c for j in judgments if (c := candidate(j, check, stats, learn_ties)) is not None]
    return out, stats


def training_items(kept: list[tuple[Candidate, float]], stats: RefineStats):
    """(SFT examples, DPO pairs as (chosen example, rejected example, certainty)) of the confident candidates."""
    sft = [e for c, _ in kept for e in c.chosen.values()]
    dpo = [(c.chosen[o], c.rejected[o], w) for c, w in kept for o in c.chosen if o in c.rejected]
    stats.confident = len(kept)
    stats.sft_examples, stats.dpo_pairs = len(sft), len(dpo)
    stats.mean_certainty_kept = sum(w for _, w in kept) / len(kept) if kept else 0.0
    return sft, dpo
