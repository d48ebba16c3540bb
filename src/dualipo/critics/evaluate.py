"""Critic evaluation on a labelled pair set: accuracy, tie rate, abstention rate, position bias, per dimension."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from tqdm import tqdm

from dualipo.critics.seed import SeedRecord
from dualipo.critics.voting import majority, position_flip, tally


def evaluate_pairs(critic, records: list[SeedRecord], num_votes: int = 1, chain_of_thought: bool = True,
                   batch_size: int = 16, progress: bool = False) -> dict:
    """Both presentation orders, K votes each, batched. Accuracy = majority verdict == label.

    Also: `accuracy_ab` / `accuracy_ba` (single-order majorities), `tie_rate` (share of tie verdicts),
    `undecided_rate` (no majority), `abstention_rate` (share of unparseable samples), `position_bias`
    (share of pairs whose A/B-order and B/A-order majorities name the same letter, among pairs where both
    name a letter) and `per_dimension` accuracy.
    """
    pairs = [r for r in records if r.mode == "pairwise"]
    if not pairs:
        raise ValueError("evaluation set holds no pairwise records")
    judgments = []
    for i in tqdm(range(0, len(pairs), batch_size), desc="judging", disable=not progress):
        chunk = pairs[i:i + batch_size]
        judgments += critic.judge_many([(r.prompt, r.videos[0], r.videos[1], r.dimension) for r in chunk],
                                       num_votes=num_votes, chain_of_thought=chain_of_thought, both_orders=True)
    hits, per_dim, flips, order_hits = [], defaultdict(list), [], defaultdict(list)
    samples = abstained = 0
    for r, j in zip(pairs, judgments):
        hits.append(j.verdict == r.label)
        per_dim[r.dimension].append(hits[-1])
        for order in ("AB", "BA"):
            v, _ = majority(tally([s.verdict for s in j.samples if s.order == order])[0])
            order_hits[order].append(v == r.label)
        f = position_flip(j.samples)
        if f is not None:
            flips.append(f)
        samples += len(j.samples)
        abstained += j.abstentions
    verdicts = [j.verdict for j in judgments]
    return {
        "n": len(pairs), "num_votes": num_votes, "chain_of_thought": chain_of_thought,
        "accuracy": float(np.mean(hits)),
        "accuracy_ab": float(np.mean(order_hits["AB"])), "accuracy_ba": float(np.mean(order_hits["BA"])),
        "tie_rate": float(np.mean([v == "tie" for v in verdicts])),
        "undecided_rate": float(np.mean([v is None for v in verdicts])),
        "abstention_rate": abstained / max(samples, 1),
        "position_bias": float(np.mean(flips)) if flips else 0.0,
        "mean_certainty": float(np.mean([j.certainty for j in judgments])),
        "per_dimension": {d: round(float(np.mean(h)), 4) for d, h in sorted(per_dim.items())},
        "label_counts": {k: int(v) for k, v in zip(*np.unique([r.label for r in pairs], return_counts=True))},
    }
