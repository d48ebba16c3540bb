"""`dualipo ablate`: the paper's comparison in miniature. Every arm is a real `dualipo run` (the same loop, one
config switch apart) in OUT/ARM/seedS/, run or resumed in turn; the table is read back from their ledgers.

Arms (`ARMS`): Dual-IPO (the config as given); IPO (frozen critic); Dual-IPO without chain of thought, without
voting (K = 1), without certainty filtering (thresholds 0: every decisive majority is used), without the
rationale-verdict consistency filter, and with Diffusion-KTO instead of DPO (on the same pairwise judgments: a
video that won more of its confident comparisons than it lost is desirable, one that lost more undesirable); and two
equal-compute controls: `control_web` spends the generator's training on continued plain pretraining on the web
corpus the base learned from (SFT on fresh renders of the round's prompts with web captions, twice the batch: the
DPO step's latent passes) instead of preference data: what a user without a critic would do; `control_seed`
spends the critic's refinement steps on its seed set alone (`critic_train.seed_mix=1`). Two references that no
real user has: `oracle`, the same loop with the oracle as a perfect critic (the upper bound of the labels), and
`curated`, continued pretraining on renders with their true prompts (clean, curated data).

Every arm also gets `COMMON` (the critic win rate is not in the table, so it is not computed) and its seed:
`seed`, `sampling.seed`, `train.seed` and `critic_train.seed` = S. The held-out evaluation (prompts and
`eval.seeds`) is the same for every arm and seed, and is the only place the oracle is consulted.

Table rows: the base generator (round 0); IPO, Dual-IPO, the oracle's labels, the web control and the curated
reference after 1 and after R rounds; every other arm after R.
Columns: held-out oracle score (mean and standard deviation over seeds) overall and per dimension; the
differences to Dual-IPO and to the web control after the same number of rounds, paired by seed, with their
standard errors; the critic's accuracy against the noise-free oracle on the last round's judgments (made by
the critic refined through the round before); the items
the generator trained on in all rounds (pairs, KTO points or renders); wall minutes of all rounds including the
base evaluation.

Custom arms come from an arms file (`--arms-file FILE`, TOML): one table per arm, `[NAME]` with `overrides` (a list
of `KEY=VALUE` strings, exactly as on the command line), an optional `label` and an optional `extends` (a built-in
arm whose switches come first, e.g. `extends = "oracle"` for oracle labels, `"control_web"` for the web control at
twice the batch). A file arm is run like a built-in one and has a row after every round. `--reference ARM ...`
adds, per named arm, the paired difference to it and the share of its gain; every row of the JSON also carries its
gain over the base (`gain`, `gain_std`, per seed the run's own round 0).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dualipo.config import RunConfig, build_config
from dualipo.ledger import LEDGER, Ledger, atomic_write_text
from dualipo.loop.summary import DIMS, round_rows

log = logging.getLogger(__name__)
COMMON = ("eval.critic_win_rate=false",)


@dataclass(frozen=True)
class Arm:
    name: str
    label: str
    overrides: tuple[str, ...]
    every_round: bool = False  # a table row after every round (arms of an arms file), else after 1 and R / R


def arms(cfg: RunConfig) -> dict[str, Arm]:
    """The arms, from the base config (the pretraining control doubles its batch size)."""
    table = (
        Arm("dual_ipo", "Dual-IPO", ()),
        Arm("ipo", "IPO (frozen critic)", ("critic_train.refine=false",)),
        Arm("no_cot", "Dual-IPO without CoT", ("judging.chain_of_thought=false", "judging.describe_first=false")),
        Arm("k1", "Dual-IPO without voting (K = 1)", ("judging.num_votes=1",)),
        Arm("no_certainty", "Dual-IPO without certainty filtering",
            ("judging.certainty_threshold=0", "critic_train.certainty_threshold=0", "critic_train.pce_threshold=0")),
        Arm("no_consistency", "Dual-IPO without the consistency filter", ("critic_train.consistency=off",)),
        Arm("kto", "Dual-IPO with Diffusion-KTO instead of DPO", ("train.loss=kto",)),
        Arm("control_web", "control: continued pretraining on the web corpus instead of preference rounds",
            _pretrain("web", cfg)),
        Arm("control_seed", "control: critic refinement compute on seed training", ("critic_train.seed_mix=1",)),
        Arm("oracle", "upper bound: DPO on the oracle's labels", ("critic.backend=oracle",)),
        Arm("curated", "reference: continued pretraining on curated renders (true captions)", _pretrain("curated", cfg)),
    )
    return {a.name: a for a in table}


FILE_KEYS = ("extends", "label", "overrides")


def file_arms(path: str | Path, builtin: dict[str, Arm]) -> dict[str, Arm]:
    """The arms of a TOML arms file (module docstring); every error names the file and the arm."""
    import tomllib

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"arms file {p} does not exist")
    try:
        data = tomllib.loads(p.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"arms file {p}: cannot parse: {e}") from None
    out = {}
    for name, spec in data.items():
        where = f"arms file {p}, arm [{name}]"
        if not isinstance(spec, dict):
            raise ValueError(f"{where}: expected a table [{name}] with keys {list(FILE_KEYS)}")
        if name in builtin or not re.fullmatch(r"[\w.-]+", name) or name.startswith("."):
            raise ValueError(f"{where}: expected a new arm name of letters, digits, '_', '-' and '.' (it names the "
                             f"runs' directory), not a built-in arm's")
        if unknown := sorted(set(spec) - set(FILE_KEYS)):
            raise ValueError(f"{where}: unknown key(s) {unknown}; expected {list(FILE_KEYS)}")
        own = spec.get("overrides", [])
        if not isinstance(own, list) or not all(isinstance(o, str) and "=" in o for o in own):
            raise ValueError(f"{where}: overrides: expected a list of 'KEY=VALUE' strings, got {own!r}")
        extends = spec.get("extends")
        if extends is not None and extends not in builtin:
            raise ValueError(f"{where}: extends {extends!r}: expected a built-in arm, one of {list(builtin)}")
        first = builtin[extends].overrides if extends else ()
        out[name] = Arm(name, str(spec.get("label", name)), (*first, *own), every_round=True)
    return out


def _pretrain(data: str, cfg: RunConfig) -> tuple[str, ...]:
    """Continued pretraining at the preference step's compute (a DPO step encodes a pair: twice the batch); the
    critic is not trained and judges once (its judgments are not used)."""
    return (f"train.data={data}", "train.loss=sft", f"train.batch_size={2 * cfg.train.batch_size}",
            "critic_train.refine=false", "judging.num_votes=1")


ARM_NAMES = tuple(arms(RunConfig()))
EPILOG = """\
KEY=VALUE overrides apply to every arm, e.g.
  dualipo ablate --preset small --out runs/ablate --seeds 0 1 sampling.prompts_per_round=16
A custom arm is a table of an arms file (TOML); its overrides come after the built-in arm it extends:
  [kto_oracle]
  label = "KTO, oracle labels"    # optional (default: the name)
  extends = "oracle"              # optional: a built-in arm
  overrides = ["train.loss=kto"]  # KEY=VALUE, as on the command line
  dualipo ablate --preset small --out runs/pg --arms-file arms.toml --arms kto_oracle --reference oracle
benchmarks/preference_gain.toml holds the arms of docs/preference_gain.md."""
MAIN_ARMS = ("ipo", "dual_ipo", "oracle", "control_web", "curated")  # rows after 1 and after R rounds


def arm_config(preset: str, config_file: str | None, overrides: list[str], arm: Arm, seed: int,
               num_rounds: int | None) -> RunConfig:
    rounds = [f"rounds.num_rounds={num_rounds}"] if num_rounds else []
    seeds = [f"{key}={seed}" for key in ("seed", "sampling.seed", "train.seed", "critic_train.seed")]
    return build_config(preset, config_file, [*overrides, *COMMON, *arm.overrides, *rounds, *seeds])


def run_arms(preset: str, config_file: str | None, overrides: list[str], out: str | Path, names: list[str] | None,
             seeds: list[int], num_rounds: int | None, command: str = "", table_only: bool = False,
             arms_file: str | None = None, references: list[str] = ()) -> Path:
    """Run or resume every arm x seed (a finished run is only checked: the loop refuses one made with another
    config, and has nothing left to do otherwise), then write the tables; returns the Markdown path. With
    `table_only`, run nothing: tabulate the finished runs under OUT as they are. `names` None: every arm of the
    arms file, or every built-in arm without one."""
    from dualipo.rounds import run_rounds

    out = Path(out)
    base = build_config(preset, config_file, overrides)
    table = arms(base)
    custom = file_arms(arms_file, table) if arms_file else {}
    table.update(custom)
    names = names or list(custom or ARM_NAMES)
    unknown = [n for n in [*names, *references] if n not in table]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {list(table)}")
    configs = {(n, s): arm_config(preset, config_file, overrides, table[n], s, num_rounds) for n in names
               for s in seeds}  # every arm's config is checked before the first run starts
    for (name, seed), cfg in ([] if table_only else configs.items()):
        run_dir = out / name / f"seed{seed}"
        if _finished_rows(run_dir) is not None:
            log.info("ablation %s seed %d: finished earlier, reused", name, seed)
        else:
            log.info("ablation %s seed %d: %s", name, seed,
                     " ".join(table[name].overrides) or "(the config as given)")
        run_rounds(cfg, run_dir, resume=(run_dir / LEDGER).is_file())
    return write_tables(out, table, seeds, num_rounds or base.rounds.num_rounds, command, references)


def _finished_rows(run_dir: Path) -> list[dict] | None:
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
    found = {(n, s): _finished_rows(out / n / f"seed{s}") for n in table for s in seeds}
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
