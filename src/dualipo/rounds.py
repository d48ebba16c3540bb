"""The Dual-IPO loop (`dualipo run`): R rounds of

    sample -> judge (K paths, both orders) -> certainty filter -> pairs / KTO points -> train the generator
    -> refine the critic (SRPO, on the round's own judgments) -> evaluate on held-out prompts

with the order of training and refinement from `rounds.order` (critic_first: refine before training) and the
reference policy from `rounds.reference`. Round 0 evaluates the base generator. Everything is recorded in the
run ledger (`dualipo.ledger`); `resume=True` continues from exactly what it says is done, and refuses a changed
config, prompt pool or base generator. Under `accelerate launch` every process runs this function; sampling
and judging are sharded by prompt, training is data-parallel, and only the main process writes the ledger.

`critic.backend=oracle` runs the same loop with the shapes-world oracle as a perfect critic: the upper bound,
flagged in the log, the ledger and the table. With any other critic the oracle is consulted only to evaluate.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from pathlib import Path

from dualipo.config import RunConfig, from_dict, to_dict
from dualipo.ledger import LEDGER, Ledger, atomic_write_text, config_differences
from dualipo.loop import evaluation, judging, placement, sampling, training
from dualipo.loop.context import RunContext, base_generator_id, from_main, load_prompt_pool, pool_hash
from dualipo.loop.summary import format_table
from dualipo.loop.tracking import Metrics, check_tracker

log = logging.getLogger(__name__)
STAGES = {
    "critic_first": ("sample", "judge", "refine", "pairs", "train", "evaluate"),
    "generator_first": ("sample", "judge", "pairs", "train", "refine", "evaluate"),
}
UPPER_BOUND = ("critic.backend=oracle: the shapes-world oracle judges the videos. This is the UPPER BOUND (a perfect "
               "critic), not the method")


def stage_function(name: str):
    """The stage functions, looked up at call time (module attributes, so tests can wrap them)."""
    return {"sample": sampling.sample_stage, "judge": judging.judge_stage, "pairs": judging.preference_stage,
            "train": training.train_stage, "refine": training.refine_stage,
            "evaluate": evaluation.evaluate_stage}[name]


def check_run_config(cfg: RunConfig, num_processes: int) -> None:
    """What the loop needs beyond the per-field checks; fails before anything is written."""
    ct = cfg.critic_train
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


def recorded_config(run_dir: str | Path) -> RunConfig:
    """The config a run was started with (for `dualipo run --out DIR --resume` without config arguments)."""
    ledger = Ledger.open(Path(run_dir))
    try:
        return from_dict(RunConfig, ledger.config())
    finally:
        ledger.close()


def _open_run(run_dir: Path, cfg: RunConfig, pool: list, base_id: str, resume: bool) -> Ledger:
    config = json.loads(json.dumps(to_dict(cfg)))  # as stored: tuples become lists
    if resume:
        ledger = Ledger.open(run_dir)
        meta = ledger.meta()
        diffs = config_differences(ledger.config(), config)
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
    else:
        if run_dir.exists() and not run_dir.is_dir():
            raise ValueError(f"--out {run_dir} is a file, not a directory; choose a new --out")
        if run_dir.exists() and any(run_dir.iterdir()):
            hint = "pass --resume to continue it" if (run_dir / LEDGER).is_file() else "choose a new --out"
            raise ValueError(f"run directory {run_dir} already exists and is not empty; {hint}")
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            meta = {"prompts_sha256": pool_hash(pool), "generator_base": base_id,
                    "critic_refinement": (f"{cfg.critic_train.method}, certainty {cfg.critic_train.certainty}, "
                                          f"consistency {cfg.critic_train.consistency}"
                                          if cfg.critic_train.refine else "off (IPO)"),
                    "upper_bound": "1" if cfg.critic.backend == "oracle" else "0"}
            ledger = Ledger.create(run_dir, config, pool, meta)
        except (OSError, sqlite3.Error) as e:
            raise ValueError(f"cannot create the run directory {run_dir}: {e}") from None
    atomic_write_text(run_dir / "config.json", json.dumps(config, indent=2) + "\n")
    return ledger


def _run_stage(ctx: RunContext, k: int, name: str) -> None:
    def status():
        row = ctx.ledger.stage(k, name)
        return None if row is None else row["status"]

    if from_main(ctx, status) in ("done", "skipped"):
        log.info("round %d %s: already recorded, skipped", k, name)
        return
    if ctx.main:
        log.info("round %d/%d: %s", k, ctx.cfg.rounds.num_rounds, name)
        ctx.ledger.start_stage(k, name)
    t0, c0 = time.time(), time.process_time()
    placement.before_stage(ctx, name)
    result, note = stage_function(name)(ctx, k)
    placement.after_stage(ctx)
    ctx.acc.wait_for_everyone()
    if ctx.main:
        cpu = time.process_time() - c0
        ctx.ledger.finish_stage(k, name, result, note, cpu_s=cpu)
        log.info("round %d %s %s in %.1f s (CPU %.1f s)%s", k, name, result, time.time() - t0, cpu,
                 f": {note}" if note else "")


def run_rounds(cfg: RunConfig, out: str | Path, resume: bool = False) -> str:
    """Run (or resume) the loop in `out`; returns the per-round table on the main process ('' elsewhere)."""
    import torch
    from accelerate import Accelerator

    from dualipo.critics import build_critic
    from dualipo.generators import generator_dir

    run_dir = Path(out)
    # without CUDA, processes started by `accelerate launch --multi_gpu` (torchrun) join a gloo CPU group
    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.train.mixed_precision)
    check_run_config(cfg, acc.num_processes)
    if cfg.rounds.threads:
        torch.set_num_threads(cfg.rounds.threads)
    pool = load_prompt_pool(cfg)  # a bad prompt file fails first
    ct = cfg.critic_train
    if ct.refine and cfg.critic.backend != "oracle" and ct.method == "sft" and ct.seed_mix > 0 and \
            cfg.rounds.prompt_file and not ct.seed_file:
        raise ValueError(f"critic_train.seed_mix={ct.seed_mix} mixes the human seed set into critic refinement: "
                         "with rounds.prompt_file set, give it as critic_train.seed_file (the shapes world's own "
                         "seed set is made only for its default prompt pool), or set critic_train.seed_mix=0")
    if cfg.sampling.prompts_per_round > len(pool):
        raise ValueError(f"sampling.prompts_per_round={cfg.sampling.prompts_per_round} but the prompt pool holds "
                         f"only {len(pool)} prompts")
    generator_dir(cfg)  # a missing or incomplete generator / critic directory fails here, before anything is written
    ctx = RunContext(cfg, run_dir, acc, pool, base_generator_id(cfg), critic=build_critic(cfg),
                     upper_bound=cfg.critic.backend == "oracle")
    if ctx.upper_bound and ctx.main:
        log.warning(UPPER_BOUND)

    def prepare() -> None:
        ctx.ledger = _open_run(run_dir, cfg, pool, ctx.base_id, resume)
        ctx.metrics = Metrics(run_dir, ctx.ledger, cfg.rounds.tracker, to_dict(cfg))

    try:
        from_main(ctx, prepare)
        if from_main(ctx, lambda: bool(training.critic_paths(ctx, cfg.rounds.num_rounds))):
            training.reload_critic(ctx, cfg.rounds.num_rounds)  # resumed after a refinement
        _run_stage(ctx, 0, "evaluate")
        for k in range(1, cfg.rounds.num_rounds + 1):
            for name in STAGES[cfg.rounds.order]:
                _run_stage(ctx, k, name)
        if not ctx.main:
            return ""
        ctx.ledger.set_meta("finished", str(time.time()))
        return format_table(ctx.ledger, run_dir)
    except (OSError, sqlite3.OperationalError) as e:
        raise ValueError(f"writing the run in {run_dir} failed: {e}. Everything the ledger recorded is complete: "
                         f"fix the cause and continue with `dualipo run --out {run_dir} --resume`") from e
    finally:
        if ctx.metrics is not None:
            ctx.metrics.close()
        if ctx.ledger is not None:
            ctx.ledger.close()
