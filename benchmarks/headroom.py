"""Where the headroom is: the oracle's scores of one round's samples of a `dualipo run` / `dualipo ablate` run, per
dimension: the mean sample, the best of a prompt's N on that dimension alone, and the sample that is best overall
(what a policy that always made its own best sample would score on the train prompts). Round 1's samples are the
base generator's: every arm with the same seed samples the same ones.

    python benchmarks/headroom.py runs/pg/dpo_oracle_3r/seed0 [--round 1] > headroom.json

Reads the run's ledger and videos only (library functions: `Ledger`, `read_video`, `toy.oracle.score`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from dualipo.ledger import Ledger
from dualipo.toy.oracle import score
from dualipo.video import read_video


def headroom(run_dir: str | Path, rnd: int = 1) -> dict:
    run_dir = Path(run_dir)
    ledger = Ledger.open(run_dir, readonly=True)
    try:
        prompts = dict(ledger.prompts())
        videos = ledger.videos(rnd, "train")
    finally:
        ledger.close()
    if not videos:
        raise ValueError(f"{run_dir}: no train videos of round {rnd} in its ledger")
    groups: dict[str, list] = {}
    for v in videos:
        groups.setdefault(v["prompt_id"], []).append(score(prompts[v["prompt_id"]], read_video(run_dir / v["path"])))
    groups_list = list(groups.values())
    best = [max(range(len(g)), key=lambda k: g[k].overall) for g in groups_list]
    dims = {}
    for dim in ("overall", *sorted({d for g in groups_list for s in g for d in s.dims})):
        vals = [[s.overall if dim == "overall" else s.dims.get(dim) for s in g] for g in groups_list]
        vals = [(v, b) for v, b in zip(vals, best) if None not in v]  # prompts where the dimension applies
        dims[dim] = {"mean": round(float(np.mean([np.mean(v) for v, _ in vals])), 4),
                     "best_of_n": round(float(np.mean([max(v) for v, _ in vals])), 4),
                     "at_best_overall": round(float(np.mean([v[b] for v, b in vals])), 4), "prompts": len(vals)}
    return {"run": str(run_dir), "round": rnd, "prompts": len(groups_list),
            "n": sorted({len(g) for g in groups_list}), "dims": dims}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run_dir")
    ap.add_argument("--round", type=int, default=1)
    a = ap.parse_args()
    print(json.dumps(headroom(a.run_dir, a.round), indent=1))


if __name__ == "__main__":
    main()
