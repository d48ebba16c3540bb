"""Re-evaluate an ablation's round-K generators on more noise seeds, and compare the arms paired by seed.

    python scripts/reevaluate.py ABLATE_DIR --eval-seeds 4 5 6 7 8 9 10 11 12 13 14 15 [--round 3]
        [--arms dual_ipo ipo ...] [--reference ipo control_web] [--out DIR]

The loop evaluates each round on `eval.num_prompts` held-out prompts x `eval.seeds` (the small preset's ablation:
64 x 4 = 256 videos); a difference between arms of 0.02 is within that set's noise. This samples every finished
run ABLATE_DIR/ARM/seedS again at round K (the run's own config, its base generator and the generator LoRAs its
ledger recorded for rounds 1..K, merged in order as the loop rebuilds them) on the same held-out prompts with the
extra noise seeds, scores every video with the oracle, and pools each run's new videos with the loop's own
(weighted by video count; give seeds the run did not use). The base (round 0) is evaluated once, from the first
run whose ledger has it (none: the summary's base is null). Each evaluation is written to OUT/ARM_seedS.json
(default OUT: ABLATE_DIR/reevaluate_rK) and reused when the script is run again. Prints one JSON line per run,
then a summary: per arm the pooled oracle score (mean and standard deviation over seeds), and per --reference arm
the difference paired by seed with its standard error.
The oracle only measures here, as in the loop's evaluation stage.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

from dualipo.config import load_config
from dualipo.generators.evaluate import evaluate_prompts
from dualipo.ledger import Ledger, atomic_write_text
from dualipo.loop.prompts import eval_prompt_id, eval_prompts
from dualipo.rounds import ADAPTER


def loop_figure(run: Path, k: int) -> tuple[float, int, list[Path]] | None:
    """The loop's own round-k held-out oracle score and video count, and the generator LoRAs of rounds 1..k; None
    if round k was not evaluated."""
    ledger = Ledger.open(run, readonly=True)
    try:
        values = {r["name"]: r["value"] for r in ledger.metrics() if r["round"] == k and r["stage"] == "evaluate"}
        loras = [run / r["path"] for r in ledger.checkpoints(ADAPTER) if r["round"] <= k]
    finally:
        ledger.close()
    if values.get("oracle_overall") is None:
        return None
    return values["oracle_overall"], int(values["eval_videos"]), loras


def evaluate(run: Path, seeds: list[int], out: Path, loras: list[Path]) -> dict:
    """The run's generator (its base plus `loras`) on its held-out prompts x `seeds` (cached in `out`)."""
    if out.exists():
        cached = json.loads(out.read_text())
        if cached["seeds"] != seeds:
            raise SystemExit(f"{out} holds seeds {cached['seeds']}, not {seeds}: give another --out")
        return cached
    cfg = load_config(run / "config.json")
    clash = set(seeds) & set(cfg.eval.seeds)
    if clash:
        raise SystemExit(f"{run}: the loop already evaluated seeds {sorted(clash)}; give other --eval-seeds")
    prompts = [(eval_prompt_id(i), p) for i, p in enumerate(eval_prompts(cfg))]
    result = evaluate_prompts(cfg, prompts, seeds, loras)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result) + "\n")
    return result


def pooled(loop: tuple[float, int], result: dict) -> float:
    """The loop's videos and the new ones as one set."""
    (score, n), m = loop, result["num_videos"]
    return (score * n + result["mean"]["oracle_overall"] * m) / (n + m)


def summary(values: dict[str, dict[int, float]], references: list[str]) -> dict:
    """Per arm: mean and sd over seeds; per reference: mean difference paired by seed, its standard error."""
    out = {}
    for arm, per_seed in values.items():
        xs = list(per_seed.values())
        row = {"seeds": sorted(per_seed), "oracle": round(statistics.mean(xs), 4),
               "sd": round(statistics.stdev(xs), 4) if len(xs) > 1 else None}
        for ref in references:
            common = sorted(set(per_seed) & set(values.get(ref, {})))
            if ref == arm or len(common) < 2:
                continue
            d = [per_seed[s] - values[ref][s] for s in common]
            row[f"vs_{ref}"] = {"difference": round(statistics.mean(d), 4),
                                "se": round(statistics.stdev(d) / len(d) ** 0.5, 4),
                                "per_seed": [round(x, 4) for x in d]}
        out[arm] = row
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ablation", type=Path, help="an `dualipo ablate --out` directory (ARM/seedS/ runs)")
    p.add_argument("--eval-seeds", type=int, nargs="+", required=True, help="noise seeds the loop did not use")
    p.add_argument("--round", type=int, default=3, help="the round whose generators to evaluate (0: the base)")
    p.add_argument("--arms", nargs="+", help="default: every arm directory with finished runs")
    p.add_argument("--reference", nargs="*", default=[], help="arms the others are compared with, paired by seed")
    p.add_argument("--out", type=Path, help="default: ABLATION/reevaluate_rK")
    args = p.parse_args()
    out = args.out or args.ablation / f"reevaluate_r{args.round}"
    arms = args.arms or sorted(d.name for d in args.ablation.iterdir() if any(d.glob("seed*/ledger.sqlite")))
    values: dict[str, dict[int, float]] = {}
    base = None  # (run, pooled score)
    for arm in arms:
        for run in sorted((args.ablation / arm).glob("seed*/ledger.sqlite")):
            run, seed = run.parent, int(run.parent.name[4:])
            figure = loop_figure(run, args.round)
            if figure is None:
                continue
            *loop, loras = figure
            result = evaluate(run, args.eval_seeds, out / f"{arm}_seed{seed}.json", loras)
            values.setdefault(arm, {})[seed] = pooled(loop, result)
            print(json.dumps({"arm": arm, "seed": seed, "loop": round(loop[0], 4), "loop_videos": loop[1],
                              "new": round(result["mean"]["oracle_overall"], 4), "new_videos": result["num_videos"],
                              "pooled": round(values[arm][seed], 4)}), flush=True)
            if base is None and args.round > 0 and (base_figure := loop_figure(run, 0)) is not None:
                base_new = evaluate(run, args.eval_seeds, out / "base.json", [])
                base = (f"{arm}/{run.name}", pooled(base_figure[:2], base_new))
    if not values:
        raise SystemExit(f"{args.ablation}: no run of {arms} finished round {args.round}")
    if base is None and args.round > 0:
        print(f"{args.ablation}: no run evaluated round 0 (the base), so the base is not re-evaluated",
              file=sys.stderr)
    print(json.dumps({"round": args.round, "eval_seeds": args.eval_seeds,
                      "base": {"run": base[0], "oracle": round(base[1], 4)} if base else None,
                      "arms": summary(values, args.reference)}))


if __name__ == "__main__":
    main()
