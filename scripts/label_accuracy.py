"""How often the labels a run learned from were right: each round's judgments with a verdict A or B, at several
certainty thresholds, graded afterwards against the shapes world's noise-free oracle (the loop never sees it).

    python scripts/label_accuracy.py RUN_DIR [RUN_DIR ...] [--from-round 2] [--thresholds 0.5 0.75 0.9]
    python scripts/label_accuracy.py RUN_DIR ... --refinement [--critic DIR] [--pce-reference DIR]

A judgment is right when the oracle's score of its dimension is higher for the video it chose, reversed when
lower, an oracle tie when the two scores are within the seed labels' tie margin (0.15). Prints one JSON line per
run and round, then one per arm (the run directory's parent, e.g. an ablation's `dual_ipo`) pooled over its runs
and the rounds from --from-round on: judgments kept, oracle ties, and the reversed share of the decisive ones.
Answers what `docs/critic.md` section 6 asks: does refinement make the critic's confident labels better or worse?

With --refinement the graded judgments are each round's refinement data instead: the consistency-filtered
candidates that the run's refinement settings keep (`critic_training.refine.select`), under the vote share
(`vote`) and, with --pce-reference, under PCE against that reference critic (`pce`), the current critic being
--critic (default: the run's `critic.path`; right for a frozen critic's runs, IPO).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

from dualipo.config import load_config
from dualipo.critics.voting import judgment_from_row
from dualipo.ledger import Ledger
from dualipo.toy import oracle
from dualipo.toy.seed_labels import TIE_MARGIN


def graded(run: Path, thresholds: list[float], refinement: bool = False, critic: str = "",
           pce_reference: str = "") -> list[dict]:
    """Per round of `run`: per threshold (or, with `refinement`, per certainty estimator), [right, reversed,
    oracle tie] among the A / B verdicts kept."""
    ledger = Ledger.open(run, readonly=True)
    try:
        prompts = dict(ledger.prompts())
        rounds = [r["round"] for r in ledger.rows("SELECT DISTINCT round FROM judgments ORDER BY round")]
        js = {k: [judgment_from_row(r, prompts) for r in ledger.judgments(k)] for k in rounds}
    finally:
        ledger.close()
    score = oracle.RunScores(run)
    out = []
    for k, judgments in js.items():
        if refinement:
            kept = refinement_kept(run, judgments, critic, pce_reference)
        else:
            pairs = [j for j in judgments if j.mode == "pairwise"]
            kept = {f"{t:g}": [j for j in pairs if j.certainty >= t] for t in thresholds}
        counts = {}
        for key, group in kept.items():
            c = counts[key] = [0, 0, 0]
            for j in group:
                if j.verdict not in ("A", "B"):  # a learned tie (critic_refine.learn_ties) is not graded
                    continue
                truth = oracle.verdict(*(score(j.prompt, v).get(j.dimension) for v in j.videos), TIE_MARGIN)
                c[2 if truth == "tie" else int(truth != j.verdict)] += 1
        out.append({"run": str(run), "round": k, **counts})
    return out


def refinement_kept(run: Path, judgments: list, critic: str, pce_reference: str) -> dict[str, list]:
    """Per certainty estimator, the (consistency-filtered) judgments a refinement on `judgments` would learn."""
    from dualipo.critic_training.refine import select

    cfg = load_config(run / "config.json")
    cfg = replace(cfg, critic=replace(cfg.critic, path=critic or cfg.critic.path))
    absolute = [j.under(run) for j in judgments]  # the critics read the videos
    out = {}
    for estimator in ("vote", "pce") if pce_reference else ("vote",):
        c = replace(cfg, critic_refine=replace(cfg.critic_refine, certainty=estimator, pce_reference=pce_reference))
        out[estimator] = [cand.judgment for cand, _ in select(c, absolute)[0]]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--from-round", type=int, default=2, help="pool the rounds from this one on")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.5, 0.75, 0.9])
    p.add_argument("--refinement", action="store_true", help="grade each round's refinement data (the candidates "
                   "the run's critic_refine settings keep) instead of the judgments at --thresholds")
    p.add_argument("--critic", default="", help="--refinement: the critic that judged the rounds (default: the "
                   "run's critic.path)")
    p.add_argument("--pce-reference", default="", help="--refinement: also grade what PCE against this reference "
                   "critic keeps")
    args = p.parse_args()
    if (args.critic or args.pce_reference) and not args.refinement:
        p.error("--critic and --pce-reference go with --refinement")
    pooled: dict[str, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0, 0]))
    for run in args.runs:
        for row in graded(run, args.thresholds, args.refinement, args.critic, args.pce_reference):
            print(json.dumps(row), flush=True)
            if row["round"] >= args.from_round:
                for t, c in row.items():
                    if isinstance(c, list):
                        pooled[str(run.parent)][t] = [x + y for x, y in zip(pooled[str(run.parent)][t], c)]
    for arm, by_t in pooled.items():
        print(json.dumps({"arm": arm, "rounds_from": args.from_round, **{
            t: {"kept": sum(c), "oracle_ties": c[2], "reversed_of_decisive": round(c[1] / max(1, c[0] + c[1]), 4)}
            for t, c in by_t.items()}}))


if __name__ == "__main__":
    main()
