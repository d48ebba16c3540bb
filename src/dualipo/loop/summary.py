"""The end-of-run table, read from the ledger: per round the held-out oracle score (overall and per dimension),
the critic's accuracy against the oracle on that round's judgments, judgments kept / dropped, pairs, and wall
time; then where the videos, the ledger and the metrics are."""

from __future__ import annotations

from pathlib import Path

from dualipo.ledger import LEDGER, Ledger
from dualipo.loop.tracking import METRICS

DIMS = ("colour", "shape", "count", "relation", "motion", "consistency")


def _fmt(v, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def round_rows(ledger: Ledger) -> list[dict]:
    """One dict per round (0 = the base generator) with the table's figures."""
    metrics: dict[int, dict[str, float | None]] = {}
    for r in ledger.metrics():
        metrics.setdefault(r["round"], {})[f"{r['stage']}.{r['name']}"] = r["value"]
    wall: dict[int, float] = {}
    for s in ledger.stages():
        wall[s["round"]] = wall.get(s["round"], 0.0) + s["wall_s"]
    rows = []
    for rnd in sorted(set(metrics) | set(wall)):
        m = metrics.get(rnd, {})
        rows.append({"round": rnd, "oracle": m.get("evaluate.oracle_overall"),
                     **{d: m.get(f"evaluate.oracle_{d}") for d in DIMS},
                     "critic_acc": m.get("evaluate.critic_accuracy"),
                     "kept_acc": m.get("evaluate.critic_kept_accuracy"),
                     "pair_acc": m.get("evaluate.critic_pair_accuracy"),
                     "kept": m.get("pairs.kept"), "dropped": m.get("pairs.dropped"), "pairs": m.get("pairs.items"),
                     "trained_items": m.get("train.items"),
                     "wall_s": wall.get(rnd, 0.0)})
    return rows


def stage_times(ledger: Ledger, column: str = "wall_s") -> dict[str, list[float]]:
    """Seconds per stage name (`wall_s` or the main process's `cpu_s`), one entry per round that ran it."""
    out: dict[str, list[float]] = {}
    for s in ledger.stages():
        out.setdefault(s["stage"], []).append(round(s[column], 1))
    return out


def format_table(ledger: Ledger, run_dir: Path) -> str:
    meta = ledger.meta()
    cfg = ledger.config()
    critic = cfg["critic"]
    if critic["backend"] == "oracle":
        who = "ORACLE as the critic: the UPPER BOUND (a perfect critic), not the method"
    else:
        who = f"{critic['backend']} critic ({critic['path'] or 'random init'})"
    head = (f"Dual-IPO run {run_dir}: {cfg['rounds']['num_rounds']} round(s), {who}; reference "
            f"{cfg['rounds']['reference']}, order {cfg['rounds']['order']}, {cfg['train']['loss']} training")
    cols = ["round", "oracle", *DIMS, "critic acc", "kept acc", "pair acc", "kept/dropped", "pairs", "wall s"]
    lines = [head, "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in round_rows(ledger):
        kd = "-" if r["kept"] is None else f"{int(r['kept'])}/{int(r['dropped'])}"
        cells = ["base" if r["round"] == 0 else str(r["round"]), _fmt(r["oracle"]), *(_fmt(r[d]) for d in DIMS),
                 _fmt(r["critic_acc"]), _fmt(r["kept_acc"]), _fmt(r["pair_acc"]), kd,
                 "-" if r["pairs"] is None else str(int(r["pairs"])), f"{r['wall_s']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "oracle: held-out oracle score (evaluation only; the loop never sees it). critic acc: the critic's "
              "majority verdicts vs the oracle on the round's judgments; kept acc: on the confident ones; pair acc: "
              "share of the round's pairs whose chosen video the oracle scores higher.",
              "stage wall time (s, per round): " + ", ".join(f"{k} {v}" for k, v in stage_times(ledger).items()),
              "stage CPU time (s, main process): " + ", ".join(f"{k} {v}" for k, v in
                                                              stage_times(ledger, "cpu_s").items())]
    notes = [f"round {s['round']} {s['stage']}: {s['note']}" for s in ledger.stages()
             if s["status"] == "skipped" and s["stage"] == "train"]
    refine = [s["note"] for s in ledger.stages() if s["stage"] == "refine"]
    if refine:
        notes.append(f"refine: {refine[-1]}")
    lines += notes
    lines += [f"videos: {run_dir}/round_NN/videos (samples), {run_dir}/round_NN/eval (held-out)",
              f"ledger: {run_dir / LEDGER}   metrics: {run_dir / METRICS}   config: {run_dir / 'config.json'}",
              f"export: dualipo export {run_dir} --format jsonl --out {run_dir}/preferences.jsonl"]
    if meta.get("finished"):
        lines.append(f"finished: all {cfg['rounds']['num_rounds']} round(s) recorded")
    return "\n".join(lines)
