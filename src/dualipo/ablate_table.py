"""The table of `dualipo ablate` (`ablate.py`), read back from the finished runs' ledgers under OUT: rows, paired
differences, gains over the base and their shares, written as OUT/ablation.json, .md and .html."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualipo.ledger import LEDGER, Ledger, atomic_write_text
from dualipo.loop.summary import DIMS, round_rows


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    overrides: tuple[str, ...]
    every_round: bool = False  # a table row after every round (arms of an arms file), else after 1 and R / R


MAIN_ARMS = ("ipo", "dual_ipo", "oracle", "control_web", "curated")  # rows after 1 and after R rounds


def finished_rows(run_dir: Path) -> list[dict] | None:
    """The per-round rows of a finished run (`loop.summary.round_rows`), None when it has not finished."""
    if not (run_dir / LEDGER).is_file():
        return None
    ledger = Ledger.open(run_dir)
    try:
        return round_rows(ledger) if ledger.meta().get("finished") else None
    finally:
        ledger.close()


def _mean_std(values: list[float]) -> tuple[float | None, float | None]:
    vals = [v for v in values if v is not None]
    if not vals:
        return None, None
    return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else None


def _label(arm: Arm, k: int) -> str:
    return f"{arm.label}, {k} round{'s' if k > 1 else ''}"


def _wanted(table: dict[str, Arm], runs: dict, num_rounds: int) -> list[tuple[str, str, int]]:
    """(label, arm, round) of every row: the base (round 0 of Dual-IPO's runs, or of the first arm run), the main
    arms after 1 and R rounds, the arms of an arms file after every round, every other arm after R."""
    ran = [n for n in table if any(name == n for name, _ in runs)]
    wanted = [("base generator (round 0)", ran[0] if ran else "dual_ipo", 0)]
    for name in MAIN_ARMS:
        wanted += [(_label(table[name], k), name, k) for k in sorted({1, num_rounds})]
    for a in table.values():
        if a.name not in MAIN_ARMS:
            wanted += [(_label(a, k), a.name, k) for k in (range(1, num_rounds + 1) if a.every_round else [num_rounds])]
    return wanted


def collect(out: Path, table: dict[str, Arm], seeds: list[int], num_rounds: int,
            references: list[str] = ()) -> list[dict]:
    """The table's rows from the finished runs under OUT (arms or seeds not run yet are left out)."""
    found = {(n, s): finished_rows(out / n / f"seed{s}") for n in table for s in seeds}
    runs = {key: rows for key, rows in found.items() if rows is not None}
    rows = []
    for label, name, k in _wanted(table, runs, num_rounds):
        per_seed = {s: runs[(name, s)] for s in seeds if (name, s) in runs and len(runs[(name, s)]) > k}
        if per_seed:
            rows.append(_row(label, table[name], k, per_seed, runs, references))
    return rows


def _row(label: str, arm: Arm, k: int, per_seed: dict, runs: dict, references: list[str]) -> dict:
    """One row: `arm` after round `k`, over the seeds in `per_seed` (seed -> the run's per-round rows)."""
    name = arm.name
    at = {s: rr[k] for s, rr in per_seed.items()}
    row = {"label": label, "arm": name, "round": k, "seeds": sorted(at), "overrides": list(arm.overrides) if k else []}
    for key in ("oracle", *DIMS, "critic_acc"):
        row[key], row[f"{key}_std"] = _mean_std([r[key] for r in at.values()])
    row["per_seed_oracle"] = {str(s): r["oracle"] for s, r in at.items()}
    row["pairs"] = _mean_std([sum(r["trained_items"] or 0 for r in rr[1:k + 1])
                              for rr in per_seed.values()])[0] if k else None
    row["wall_min"] = _mean_std([sum(r["wall_s"] for r in rr[:k + 1]) / 60 for rr in per_seed.values()])[0]
    row["delta"], row["delta_se"] = _paired(at, runs, "dual_ipo", name, k)
    row["delta_control"], row["delta_control_se"] = _paired(at, runs, "control_web", name, k)
    row["gain"], row["gain_std"] = _mean_std(_gains(per_seed, k)) if k else (None, None)
    if references:
        row["vs"] = {ref: _versus(per_seed, runs, ref, name, k) for ref in references}
    return row


def _gains(per_seed: dict, k: int) -> list[float | None]:
    """Per seed: the held-out oracle score after round k minus the same run's round 0 (the base)."""
    return [None if rr[k]["oracle"] is None or rr[0]["oracle"] is None else rr[k]["oracle"] - rr[0]["oracle"]
            for rr in per_seed.values()]


def _versus(per_seed: dict, runs: dict, ref: str, name: str, k: int) -> dict:
    """Against the reference arm after the same round: the paired difference (mean, standard error) and the share
    of its gain over the base (the mean gains over the seeds both ran)."""
    at = {s: rr[k] for s, rr in per_seed.items()}
    delta, se = _paired(at, runs, ref, name, k)
    both = [s for s in per_seed if (ref, s) in runs and len(runs[(ref, s)]) > k]
    share = None
    if k and both and name != ref:
        mine = _mean_std(_gains({s: per_seed[s] for s in both}, k))[0]
        theirs = _mean_std(_gains({s: runs[(ref, s)] for s in both}, k))[0]
        share = None if mine is None or not theirs else mine / theirs
    return {"delta": delta, "delta_se": se, "share": share}


def _paired(at: dict, runs: dict, reference: str, name: str, k: int) -> tuple[float | None, float | None]:
    """Mean oracle difference to `reference` after the same round, paired by seed, and its standard error."""
    if k == 0 or name == reference:
        return None, None
    diffs = [r["oracle"] - runs[(reference, s)][k]["oracle"] for s, r in at.items()
             if (reference, s) in runs and len(runs[(reference, s)]) > k and r["oracle"] is not None]
    mean, sd = _mean_std(diffs)
    return mean, None if sd is None else sd / np.sqrt(len(diffs))


def _cell(v, sd=None, digits: int = 3, sign: bool = False) -> str:
    if v is None:
        return "-"
    text = f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"
    return text + (f" ± {sd:.{digits}f}" if sd is not None else "")


def table_cells(row: dict, references: list[str] = ()) -> list[str]:
    extra = [_cell(row["gain"], row["gain_std"], sign=True)] if references else []
    for ref in references:
        vs = row["vs"][ref]
        extra += [_cell(vs["delta"], vs["delta_se"], sign=True), _cell(vs["share"], digits=2)]
    return [row["label"], _cell(row["oracle"], row["oracle_std"]), *(_cell(row[d]) for d in DIMS),
            _cell(row["delta"], row["delta_se"], sign=True),
            _cell(row["delta_control"], row["delta_control_se"], sign=True), *extra, _cell(row["critic_acc"]),
            "-" if row["pairs"] is None else f"{row['pairs']:.0f}", f"{row['wall_min']:.1f}",
            " ".join(map(str, row["seeds"]))]


HEADER = ["arm", "oracle", *DIMS, "vs Dual-IPO", "vs web control", "critic acc", "pairs used", "wall min", "seeds"]


def header(references: list[str] = ()) -> list[str]:
    extra = ["gain"] if references else []
    for ref in references:
        extra += [f"vs {ref}", f"share of {ref}'s gain"]
    cut = HEADER.index("vs web control") + 1
    return [*HEADER[:cut], *extra, *HEADER[cut:]]


def note(seeds: list[int], references: list[str] = ()) -> str:
    text = NOTE.format(seeds=", ".join(map(str, seeds)))
    return text + (REFERENCE_NOTE if references else "")


def markdown(rows: list[dict], seeds: list[int], command: str, references: list[str] = ()) -> str:
    head = header(references)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(table_cells(r, references)) + " |" for r in rows]
    return "\n".join([f"Made by: `{command}`", "", *lines, "", note(seeds, references), ""])


NOTE = ("oracle: held-out oracle score, mean ± standard deviation over the row's seeds (of {seeds}); vs Dual-IPO / vs "
        "web control: oracle difference to Dual-IPO / to the web control after the same number of rounds, paired by "
        "seed, ± its standard error; critic acc: "
        "the critic's majority verdicts on the last round's judgments against the noise-free oracle; pairs used: "
        "what the generator trained on over all rounds: preference pairs (KTO: labelled videos; continued "
        "pretraining: renders); wall min: wall time of all rounds (machine load included).")
REFERENCE_NOTE = (" gain: oracle score minus the same run's base (round 0), mean ± standard deviation over seeds; "
                  "vs ARM: oracle difference to that arm after the same number of rounds, paired by seed, ± its "
                  "standard error; share of ARM's gain: the row's mean gain over that arm's, on the seeds both ran.")


def write_tables(out: Path, table: dict[str, Arm], seeds: list[int], num_rounds: int,
                 command: str = "", references: list[str] = ()) -> Path:
    """OUT/ablation.json, OUT/ablation.md and OUT/ablation.html (self-contained, autoescaped)."""
    from jinja2 import Environment, PackageLoader, StrictUndefined

    references = list(references)
    rows = collect(out, table, seeds, num_rounds, references)
    if not rows:
        raise ValueError(f"no finished ablation run under {out}")
    data = {"command": command, "seeds": seeds, "rounds": num_rounds, **({"references": references} if references
                                                                          else {}), "rows": rows}
    atomic_write_text(out / "ablation.json", json.dumps(data, indent=1) + "\n")
    md = out / "ablation.md"
    atomic_write_text(md, markdown(rows, seeds, command, references))
    env = Environment(loader=PackageLoader("dualipo", "templates"), autoescape=True, undefined=StrictUndefined)
    html = env.get_template("ablation.html.j2").render(
        header=header(references), command=command, note=note(seeds, references),
        rows=[{"cells": table_cells(r, references), "overrides": " ".join(r["overrides"])} for r in rows])
    atomic_write_text(out / "ablation.html", html)
    return md
