"""Two critics on the same labelled pairs, paired pair by pair: `dualipo critic eval --judgments` of each.

    python scripts/critic_compare.py BASELINE.jsonl CANDIDATE.jsonl [--threshold 0.5] [--resamples 300]

Prints JSON: per figure (decisive accuracy, kept share, kept accuracy, kept reversed at the certainty threshold,
as `critic eval` computes them) the baseline's value, the candidate's, the difference candidate - baseline and
its bootstrap standard error over pairs (both critics resampled with the same pairs, so the pairs' own
difficulty cancels). Both files must hold the same pairs in the same order (the same `--pairs`).
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from dualipo.critic_training.evaluate import kept_figures
from dualipo.critics.voting import Judgment
from dualipo.jsonl import read_jsonl

FIGURES = ("decisive_accuracy", "kept_share", "kept_accuracy", "kept_reversed")


def load(path: str) -> tuple[list[Judgment], list[str]]:
    rows = [r for _, r in read_jsonl(path, "judgment file")]
    return [Judgment.from_dict(r) for r in rows], [r["label"] for r in rows]


def figures(js: list[Judgment], labels: list[str], idx: np.ndarray, threshold: float) -> np.ndarray:
    sub_j, sub_l = [js[i] for i in idx], [labels[i] for i in idx]
    kept = kept_figures(sub_j, sub_l, threshold)
    decisive = [j.verdict == lab for j, lab in zip(sub_j, sub_l) if lab != "tie"]
    return np.array([np.mean(decisive) if decisive else np.nan, kept["kept_share"],
                     np.nan if kept["kept_accuracy"] is None else kept["kept_accuracy"],
                     np.nan if kept["kept_reversed"] is None else kept["kept_reversed"]])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("baseline")
    p.add_argument("candidate")
    p.add_argument("--threshold", type=float, default=0.5, help="certainty threshold of the kept figures")
    p.add_argument("--resamples", type=int, default=300)
    args = p.parse_args()
    (ja, la), (jb, lb) = load(args.baseline), load(args.candidate)
    if la != lb:
        raise SystemExit("the two files do not hold the same labelled pairs in the same order")
    n = len(la)
    everything = np.arange(n)
    a, b = figures(ja, la, everything, args.threshold), figures(jb, lb, everything, args.threshold)
    rng = np.random.default_rng(0)
    diffs = []
    for _ in range(args.resamples):
        idx = rng.integers(0, n, n)
        diffs.append(figures(jb, lb, idx, args.threshold) - figures(ja, la, idx, args.threshold))
    se = np.nanstd(np.array(diffs), axis=0)
    print(json.dumps({f: {"baseline": round(float(x), 4), "candidate": round(float(y), 4),
                          "difference": round(float(y - x), 4), "se": round(float(s), 4)}
                      for f, x, y, s in zip(FIGURES, a, b, se)}, indent=1))


if __name__ == "__main__":
    main()
