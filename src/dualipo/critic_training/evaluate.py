"""Critic evaluation: on a labelled pair set (accuracy, tie rate, abstention rate, position bias, per dimension),
and of captioning pretraining (per-attribute accuracy of greedy descriptions)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dualipo.critic_training.seed import SeedRecord
from dualipo.critics.voting import majority, position_flip, tally
from dualipo.jsonl import write_jsonl
from dualipo.preferences import drop_reason
from dualipo.toy.reasoning import Described


def evaluate_pairs(critic, records: list[SeedRecord], num_votes: int = 1, chain_of_thought: bool = True,
                   batch_size: int = 16, progress: bool = False, judgments_out: str | Path | None = None,
                   certainty_threshold: float = 0.5) -> dict:
    """Both presentation orders, K votes each, batched. Accuracy = majority verdict == label. With
    `judgments_out`, every judgment (rationales, votes, verdict) is written there as JSONL beside its label.

    Also: `accuracy_decisive` (on pairs labelled A or B), `majority_baseline` (accuracy of always answering the
    most common label), `accuracy_ab` / `accuracy_ba` (single-order majorities), `tie_rate` (share of tie
    verdicts), `undecided_rate` (no majority), `abstention_rate` (share of unparseable samples), `position_bias`
    (share of pairs whose A/B-order and B/A-order majorities name the same letter, among pairs where both
    name a letter; it and the single-order accuracies are None for pairs judged from pointwise scores),
    `per_dimension` accuracy and `calibration` (`calibration_table`).

    And what the round loop would learn from (`dualipo.preferences`: a verdict A or B with certainty at least
    `certainty_threshold`): `kept_share` (share of pairs kept), `kept_accuracy` (share of the kept whose verdict is
    the label) and `kept_reversed` (share of the kept whose label is the other video: a preference the wrong way).
    """
    pairs = [r for r in records if r.mode == "pairwise"]
    if not pairs:
        raise ValueError("evaluation set holds no pairwise records")
    judgments = _judge(critic, pairs, num_votes, chain_of_thought, batch_size, progress)
    if judgments_out is not None:
        write_jsonl(judgments_out, ({"label": r.label, **j.to_dict()} for r, j in zip(pairs, judgments)))
    hits, per_dim, flips, order_hits = [], defaultdict(list), [], defaultdict(list)
    samples = abstained = 0
    for r, j in zip(pairs, judgments):
        hits.append(j.verdict == r.label)
        per_dim[r.dimension].append(hits[-1])
        for order in ("AB", "BA"):
            if any(s.order == order for s in j.samples):  # none when judged from pointwise scores
                v, _ = majority(tally([s.verdict for s in j.samples if s.order == order])[0])
                order_hits[order].append(v == r.label)
        f = position_flip(j.samples)
        if f is not None:
            flips.append(f)
        samples += len(j.samples)
        abstained += j.abstentions
    verdicts = [j.verdict for j in judgments]
    labels = [r.label for r in pairs]
    kept = kept_figures(judgments, labels, certainty_threshold)
    return {
        "n": len(pairs), "num_votes": num_votes, "chain_of_thought": chain_of_thought,
        "accuracy": float(np.mean(hits)),
        "accuracy_decisive": float(np.mean([h for h, r in zip(hits, pairs) if r.label != "tie"] or [0.0])),
        "majority_baseline": float(max(np.mean([r.label == v for r in pairs]) for v in ("A", "B", "tie"))),
        "accuracy_ab": float(np.mean(order_hits["AB"])) if order_hits["AB"] else None,
        "accuracy_ba": float(np.mean(order_hits["BA"])) if order_hits["BA"] else None,
        "tie_rate": float(np.mean([v == "tie" for v in verdicts])),
        "undecided_rate": float(np.mean([v is None for v in verdicts])),
        "abstention_rate": abstained / max(samples, 1),
        "position_bias": float(np.mean(flips)) if flips else (0.0 if order_hits["AB"] else None),
        "mean_certainty": float(np.mean([j.certainty for j in judgments])),
        "kept_share": kept["kept_share"],
        "kept_accuracy": kept["kept_accuracy"] or 0.0,
        "kept_reversed": kept["kept_reversed"] or 0.0,
        "per_dimension": {d: round(float(np.mean(h)), 4) for d, h in sorted(per_dim.items())},
        "calibration": calibration_table(judgments, labels),
        "label_counts": {k: int(v) for k, v in zip(*np.unique([r.label for r in pairs], return_counts=True))},
    }


def _judge(critic, pairs: list[SeedRecord], num_votes: int, chain_of_thought: bool, batch_size: int, progress: bool):
    """The critic's judgments of the pairs in both presentation orders, `batch_size` pairs per call."""
    chunks = [pairs[i:i + batch_size] for i in range(0, len(pairs), batch_size)]
    return [j for chunk in tqdm(chunks, desc="judging", disable=not progress)
            for j in critic.judge_many([(r.prompt, r.videos[0], r.videos[1], r.dimension) for r in chunk],
                                       num_votes=num_votes, chain_of_thought=chain_of_thought, both_orders=True)]


THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


def kept_figures(judgments, labels: list[str], threshold: float) -> dict:
    """What the loop would keep at a certainty threshold (`preferences.drop_reason`): how many pairs and their
    share, the kept accuracy (verdict == label) and the kept reversed (the label names the other video); the
    last two None when nothing is kept."""
    kept = [(j.verdict, label) for j, label in zip(judgments, labels) if drop_reason(j, threshold) is None]
    return {"kept": len(kept), "kept_share": len(kept) / max(len(labels), 1),
            "kept_accuracy": float(np.mean([v == lab for v, lab in kept])) if kept else None,
            "kept_reversed": float(np.mean([lab not in (v, "tie") for v, lab in kept])) if kept else None}


def calibration_table(judgments, labels: list[str], thresholds=THRESHOLDS) -> list[dict]:
    """`kept_figures` per certainty threshold (rounded to 4 places). A calibrated critic's kept accuracy rises
    with the threshold."""
    return [{"threshold": t, **{k: v if v is None or k == "kept" else round(v, 4)
                                for k, v in kept_figures(judgments, labels, t).items()}} for t in thresholds]


CAPTION_FIELDS = ("objects", "motion", "background", "steadiness")
_CAPTION_PREFIX = "The video shows "


def parse_description(text: str) -> dict[str, str] | None:
    """Fields of a 'The video shows ... on a X background, steady.' caption, or None if malformed."""
    t = text.strip()
    d = Described.parse(t[len(_CAPTION_PREFIX):]) if t.startswith(_CAPTION_PREFIX) and t.endswith(".") else None
    return None if d is None else {k: getattr(d, k) for k in CAPTION_FIELDS}


def evaluate_captions(critic, examples, batch_size: int = 32) -> dict:
    """Greedy captions of held-out videos vs their true descriptions: exact-match rate and per-field accuracy
    (objects = colours, shapes, count and layout; motion; background; steadiness)."""
    outs = []
    for i in range(0, len(examples), batch_size):
        chunk = examples[i:i + batch_size]
        outs += [g[0] for g in critic.generate([e.text for e in chunk],
                                               [[critic.visual(v) for v in e.videos] for e in chunk], 1)]
    got = [parse_description(o) for o in outs]
    want = [parse_description(e.target) for e in examples]
    res = {"n": len(examples), "exact": float(np.mean([o.strip() == e.target for o, e in zip(outs, examples)])),
           "malformed": float(np.mean([g is None for g in got]))}
    for k in CAPTION_FIELDS:
        res[f"{k}_accuracy"] = float(np.mean([g is not None and g[k] == w[k] for g, w in zip(got, want)]))
    return res
