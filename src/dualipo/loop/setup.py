"""Before a run's first stage: the checks that need more than one config field, and the run directory with its
ledger, created or reopened for `--resume` (which refuses a changed config, prompt pool or base generator)."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

from dualipo.config import RunConfig, from_dict, to_dict
from dualipo.ledger import LEDGER, Ledger, atomic_write_text, config_differences
from dualipo.loop.prompts import pool_hash
from dualipo.loop.tracking import check_tracker

log = logging.getLogger(__name__)


def check_run_config(cfg: RunConfig, num_processes: int) -> None:
    """What the loop needs beyond the per-field checks; fails before anything is written."""
    ct = cfg.critic_refine
    if ct.refine and cfg.critic.backend != "oracle" and ct.certainty == "pce":
        from dualipo.critic_training.certainty import check_reference

        check_reference(cfg.critic.path, ct.pce_reference)  # round 1's reference (later: the previous critic)
    if cfg.judging.mode == "pointwise" and cfg.train.loss != "kto":
        raise ValueError(f"judging.mode=pointwise with train.loss={cfg.train.loss}: pointwise Good / Bad labels train "
                         f"with train.loss=kto (pairwise judgments train with dpo, kto or sft on the chosen videos)")
    if cfg.train.data != "preferences" and cfg.rounds.prompt_file:
        raise ValueError(f"train.data={cfg.train.data} renders the shapes world's prompts; it cannot render "
                         f"rounds.prompt_file={cfg.rounds.prompt_file!r}")
    if cfg.train.batch_size % num_processes:
        raise ValueError(f"train.batch_size={cfg.train.batch_size} must be divisible by the {num_processes} processes")
    if cfg.critic.backend == "vllm" and num_processes > 1:
        raise ValueError(f"critic.backend=vllm under {num_processes} processes: each would start its own vLLM engine "
                         "on the first GPU it sees. Judge with one process (critic.vllm_tensor_parallel=N spreads the "
                         "critic over N GPUs) or use critic.backend=qwen_vl for a multi-process run")
    check_tracker(cfg.rounds.tracker)


def check_pool(cfg: RunConfig, pool: list[tuple[str, str]]) -> None:
    """What the prompt pool must hold for this config."""
    ct = cfg.critic_refine
    if ct.refine and cfg.critic.backend != "oracle" and ct.method == "sft" and ct.seed_mix > 0 and \
            cfg.rounds.prompt_file and not ct.seed_file:
        raise ValueError(f"critic_refine.seed_mix={ct.seed_mix} mixes the human seed set into critic refinement: "
                         "with rounds.prompt_file set, give it as critic_refine.seed_file (the shapes world's own "
                         "seed set is made only for its default prompt pool), or set critic_refine.seed_mix=0")
    if cfg.sampling.prompts_per_round > len(pool):
        raise ValueError(f"sampling.prompts_per_round={cfg.sampling.prompts_per_round} but the prompt pool holds "
                         f"only {len(pool)} prompts")


def round_dir(run_dir: str | Path, k: int) -> Path:
    """Where round k's files live (videos, eval, pairs, train, adapters)."""
    return Path(run_dir) / f"round_{k:02d}"


def recorded_config(run_dir: str | Path) -> RunConfig:
    """The config a run was started with (for `dualipo run --out DIR --resume` without config arguments)."""
    ledger = Ledger.open(Path(run_dir))
    try:
        return from_dict(RunConfig, _recorded(ledger, run_dir))
    finally:
        ledger.close()


def _recorded(ledger: Ledger, run_dir: str | Path) -> dict:
    """The ledger's config; a ValueError (the ledger closed) for one recorded before issue 28's restructure."""
    if "critic_train" not in (config := ledger.config()):
        return config
    ledger.close()
    raise ValueError(f"cannot resume {run_dir}: its recorded config is from an older layout (critic_train, before "
                     "critic_cold / critic_refine and generator.arch); start the run again with a new --out")


def open_run(run_dir: Path, cfg: RunConfig, pool: list, base_id: str, resume: bool) -> Ledger:
    """The run's ledger: created in a new (or empty) directory, or reopened to resume after checking that the config
    (without `pretrain`: only `dualipo pretrain` reads it), the prompt pool and the base generator are as recorded."""
    config = json.loads(json.dumps({k: v for k, v in to_dict(cfg).items() if k != "pretrain"}))  # tuples: lists
    ledger = _reopen(run_dir, cfg, config, pool, base_id) if resume else _create(run_dir, cfg, config, pool, base_id)
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    return ledger


def _reopen(run_dir: Path, cfg: RunConfig, config: dict, pool: list, base_id: str) -> Ledger:
    ledger = Ledger.open(run_dir)
    meta = ledger.meta()
    diffs = config_differences(_recorded(ledger, run_dir), config)
    problem = None
    if diffs:
        problem = (f"its config differs in {len(diffs)} key(s): {'; '.join(diffs)}. Resume with the same "
                   f"preset, config file and overrides (or `dualipo run --out {run_dir} --resume` alone), or "
                   f"use a new --out")
    elif meta["prompts_sha256"] != pool_hash(pool):
        problem = f"its prompt pool changed (rounds.prompt_file={cfg.rounds.prompt_file!r} was edited)"
    elif meta["generator_base"] != base_id:
        problem = f"the base generator's weights changed (generator.path={cfg.generator.path!r})"
    if problem:
        ledger.close()
        raise ValueError(f"refusing to resume {run_dir}: {problem}")
    stale = [p for p in run_dir.rglob(".*.tmp*") if p.is_file()]
    for p in stale:  # temporary files of writes a crash interrupted; never recorded
        p.unlink()
    log.info("resuming %s%s", run_dir, f" (removed {len(stale)} unfinished temporary files)" if stale else "")
    return ledger


def _create(run_dir: Path, cfg: RunConfig, config: dict, pool: list, base_id: str) -> Ledger:
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"--out {run_dir} is a file, not a directory; choose a new --out")
    if run_dir.exists() and any(run_dir.iterdir()):
        hint = "pass --resume to continue it" if (run_dir / LEDGER).is_file() else "choose a new --out"
        raise ValueError(f"run directory {run_dir} already exists and is not empty; {hint}")
    ct = cfg.critic_refine
    meta = {"prompts_sha256": pool_hash(pool), "generator_base": base_id,
            "critic_refinement": (f"{ct.method}, certainty {ct.certainty}, consistency {ct.consistency}"
                                  if ct.refine else "off (IPO)"),
            "upper_bound": "1" if cfg.critic.backend == "oracle" else "0"}
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        return Ledger.create(run_dir, config, pool, meta)
    except (OSError, sqlite3.Error) as e:
        raise ValueError(f"cannot create the run directory {run_dir}: {e}") from None
