"""`dualipo ablate`: the paper's comparison in miniature. Every arm is a real `dualipo run` (the same loop, one
config switch apart) in OUT/ARM/seedS/, run or resumed in turn; the table is read back from their ledgers.

Arms (`ARMS`): Dual-IPO (the config as given); IPO (frozen critic); Dual-IPO without chain of thought, without
voting (K = 1), without certainty filtering (thresholds 0: every decisive majority is used), without the
rationale-verdict consistency filter, and with Diffusion-KTO instead of DPO (on the same pairwise judgments: a
video that won more of its confident comparisons than it lost is desirable, one that lost more undesirable); and two
equal-compute controls: `control_web` spends the generator's training on continued plain pretraining on the web
corpus the base learned from (SFT on fresh renders of the round's prompts with web captions, twice the batch: the
DPO step's latent passes) instead of preference data: what a user without a critic would do; `control_seed`
spends the critic's refinement steps on its seed set alone (`critic_refine.seed_mix=1`). Two references that no
real user has: `oracle`, the same loop with the oracle as a perfect critic (the upper bound of the labels), and
`curated`, continued pretraining on renders with their true prompts (clean, curated data).

Every arm also gets `COMMON` (the critic win rate is not in the table, so it is not computed) and its seed:
`seed`, `sampling.seed`, `train.seed` and `critic_refine.seed` = S. The held-out evaluation (prompts and
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

import logging
import re
from pathlib import Path

from dualipo.config import RunConfig, build_config
from dualipo.ablate_table import MAIN_ARMS, Arm, collect, finished_rows, write_tables  # noqa: F401 (the table)
from dualipo.ledger import LEDGER

log = logging.getLogger(__name__)
COMMON = ("eval.critic_win_rate=false",)


def arms(cfg: RunConfig) -> dict[str, Arm]:
    """The arms, from the base config (the pretraining control doubles its batch size)."""
    table = (
        Arm("dual_ipo", "Dual-IPO", ()),
        Arm("ipo", "IPO (frozen critic)", ("critic_refine.refine=false",)),
        Arm("no_cot", "Dual-IPO without CoT", ("judging.chain_of_thought=false", "judging.describe_first=false")),
        Arm("k1", "Dual-IPO without voting (K = 1)", ("judging.num_votes=1",)),
        Arm("no_certainty", "Dual-IPO without certainty filtering",
            ("judging.certainty_threshold=0", "critic_refine.certainty_threshold=0", "critic_refine.pce_threshold=0")),
        Arm("no_consistency", "Dual-IPO without the consistency filter", ("critic_refine.consistency=off",)),
        Arm("kto", "Dual-IPO with Diffusion-KTO instead of DPO", ("train.loss=kto",)),
        Arm("control_web", "control: continued pretraining on the web corpus instead of preference rounds",
            _pretrain("web", cfg)),
        Arm("control_seed", "control: critic refinement compute on seed training", ("critic_refine.seed_mix=1",)),
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
            "critic_refine.refine=false", "judging.num_votes=1")


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


SEED_KEYS = ("seed", "sampling.seed", "train.seed", "critic_refine.seed")  # set per run from --seeds


def arm_config(preset: str, config_file: str | None, overrides: list[str], arm: Arm, seed: int) -> RunConfig:
    seeds = [f"{key}={seed}" for key in SEED_KEYS]
    return build_config(preset, config_file, [*overrides, *COMMON, *arm.overrides, *seeds])


def run_arms(preset: str, config_file: str | None, overrides: list[str], out: str | Path, names: list[str] | None,
             seeds: list[int], command: str = "", table_only: bool = False,
             arms_file: str | None = None, references: list[str] = ()) -> Path:
    """Run or resume every arm x seed (a finished run is only checked: the loop refuses one made with another
    config, and has nothing left to do otherwise), then write the tables; returns the Markdown path. With
    `table_only`, run nothing: tabulate the finished runs under OUT as they are. `names` None: every arm of the
    arms file, or every built-in arm without one."""
    from dualipo.rounds import run_rounds

    clash = [o for o in overrides if o.partition("=")[0] in SEED_KEYS]
    if clash:
        raise ValueError(f"{' '.join(clash)}: dualipo ablate sets {', '.join(SEED_KEYS)} of each run from --seeds; "
                         "give the seeds as --seeds S ...")
    out = Path(out)
    base = build_config(preset, config_file, overrides)
    table = arms(base)
    custom = file_arms(arms_file, table) if arms_file else {}
    table.update(custom)
    names = names or list(custom or ARM_NAMES)
    unknown = [n for n in [*names, *references] if n not in table]
    if unknown:
        raise ValueError(f"unknown arm(s) {unknown}; choose from {list(table)}")
    configs = {(n, s): arm_config(preset, config_file, overrides, table[n], s) for n in names
               for s in seeds}  # every arm's config is checked before the first run starts
    for (name, seed), cfg in ([] if table_only else configs.items()):
        run_dir = out / name / f"seed{seed}"
        if finished_rows(run_dir) is not None:
            log.info("ablation %s seed %d: finished earlier, reused", name, seed)
        else:
            log.info("ablation %s seed %d: %s", name, seed,
                     " ".join(table[name].overrides) or "(the config as given)")
        run_rounds(cfg, run_dir, resume=(run_dir / LEDGER).is_file())
    return write_tables(out, table, seeds, base.rounds.num_rounds, command, references)
