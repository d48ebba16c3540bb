"""The Dual-IPO loop (`dualipo run`), read top to bottom: R rounds of

    sample -> judge (K paths, both orders) -> [refine] -> certainty filter -> pairs / KTO points -> train the
    generator -> [refine] -> evaluate on held-out prompts

with critic refinement (SRPO, on the round's own judgments) before training (`rounds.order=critic_first`) or
after it (`generator_first`), and the reference policy from `rounds.reference`. Round 0 evaluates the base
generator. Each stage is a plain function of its inputs (`dualipo.loop.*`: the generator, the critic, the videos,
the judgments, the config); this file alone talks to the run ledger (`dualipo.ledger`), decides what a resumed run
skips, and deals work across processes. `resume=True` continues from exactly what the ledger says is done, and
refuses a changed config, prompt pool or base generator. Under `accelerate launch` every process runs this
function; sampling and judging are sharded by prompt, training is data-parallel, and only the main process writes
the ledger.

`critic.backend=oracle` runs the same loop with the shapes-world oracle as a perfect critic: the upper bound,
flagged in the log, the ledger and the table. With any other critic the oracle is consulted only to evaluate.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Callable

from dualipo.config import RunConfig, to_dict
from dualipo.critics.voting import Judgment, judgment_from_row
from dualipo.ledger import Ledger, sha256_file, weights_sha256
from dualipo.loop import evaluation, judging, placement, sampling, training
from dualipo.loop.processes import Processes
from dualipo.loop.prompts import eval_prompts, load_prompt_pool, round_prompts
from dualipo.loop.setup import check_pool, check_run_config, open_run, round_dir
from dualipo.loop.summary import format_table
from dualipo.loop.tracking import Metrics
from dualipo.preferences import preference_kind

log = logging.getLogger(__name__)
ADAPTER, CRITIC = "generator_lora", "critic"  # the ledger's checkpoint kinds
UPPER_BOUND = ("critic.backend=oracle: the shapes-world oracle judges the videos. This is the UPPER BOUND (a perfect "
               "critic), not the method")
Outcome = tuple[str, str]  # a stage's status ("done" / "skipped") and note


@dataclass(frozen=True)
class Run:
    cfg: RunConfig
    dir: Path
    procs: Processes
    pool: list[tuple[str, str]]  # (prompt id, prompt): the prompt pool the rounds draw from
    base_id: str  # identity of the base generator weights (provenance)
    ledger: Ledger | None  # main process only
    metrics: Metrics | None  # main process only

    @cached_property
    def prompts(self) -> dict[str, str]:
        """Prompt id -> prompt."""
        return dict(self.pool)

    def rel(self, path: Path) -> str:
        return str(Path(path).relative_to(self.dir))

    def round_dir(self, k: int) -> Path:
        return round_dir(self.dir, k)

    def checkpoints(self, kind: str, k: int) -> list[training.Recorded]:
        """The weights of `kind` the ledger recorded for rounds 1..k, in order (main process)."""
        return [training.Recorded(r["round"], r["path"], r["sha256"], r["weights_sha256"])
                for r in self.ledger.checkpoints(kind) if r["round"] <= k]

    def recorded(self, kind: str, k: int) -> list[training.Recorded]:
        """`checkpoints`, on every process."""
        return self.procs.from_main(lambda: self.checkpoints(kind, k))

    def judgments(self, k: int) -> list[Judgment]:
        return [judgment_from_row(r, self.prompts) for r in self.ledger.judgments(k)]

    def generator(self, k: int):
        """The generator at the end of round k and its identity."""
        return training.round_generator(self.cfg, self.dir, self.base_id, self.recorded(ADAPTER, k))

    def critic(self, k: int):
        """The critic at the end of round k: the latest refined one recorded, or the configured one."""
        from dualipo.critics import build_critic

        refined = self.recorded(CRITIC, k)
        if not refined:
            return build_critic(self.cfg)
        return build_critic(self.cfg, str(training.checked(self.dir, refined[-1], "refined critic").parent))


def run_rounds(cfg: RunConfig, out: str | Path, resume: bool = False) -> str:
    """Run (or resume) the loop in `out`; returns the per-round table on the main process ('' elsewhere)."""
    import torch

    from dualipo.critics import build_critic
    from dualipo.generators import generator_dir

    procs = Processes(cfg.train.mixed_precision)
    check_run_config(cfg, procs.count)
    if cfg.rounds.threads:
        torch.set_num_threads(cfg.rounds.threads)
    pool = load_prompt_pool(cfg)  # a bad prompt file fails first
    check_pool(cfg, pool)
    generator_dir(cfg)  # a missing or incomplete generator / critic directory fails here, before anything is written
    critic = build_critic(cfg)
    if cfg.critic.backend == "oracle" and procs.main:
        log.warning(UPPER_BOUND)
    run_dir, base_id = Path(out), training.base_generator_id(cfg)
    opened: list = [None, None]

    def prepare() -> None:
        opened[0] = open_run(run_dir, cfg, pool, base_id, resume)
        opened[1] = Metrics(run_dir, opened[0], cfg.rounds.tracker, to_dict(cfg))

    try:
        procs.from_main(prepare)
        run = Run(cfg, run_dir, procs, pool, base_id, *opened)
        if run.recorded(CRITIC, cfg.rounds.num_rounds):  # resumed after a refinement
            critic = _replace(critic, lambda: run.critic(cfg.rounds.num_rounds))
        _stage(run, 0, "evaluate", critic, lambda: _evaluate(run, 0, critic))
        for k in range(1, cfg.rounds.num_rounds + 1):
            critic = _round(run, k, critic)
        if not procs.main:
            return ""
        run.ledger.set_meta("finished", str(time.time()))
        return format_table(run.ledger, run_dir)
    except (OSError, sqlite3.OperationalError) as e:
        raise ValueError(f"writing the run in {run_dir} failed: {e}. Everything the ledger recorded is complete: "
                         f"fix the cause and continue with `dualipo run --out {run_dir} --resume`") from e
    finally:
        for thing in reversed(opened):
            if thing is not None:
                thing.close()


def _round(run: Run, k: int, critic):
    """One round, its stages in order; returns the critic that judges the next round."""
    _stage(run, k, "sample", critic, lambda: _sample(run, k))
    _stage(run, k, "judge", critic, lambda: _judge(run, k, critic))
    if run.cfg.rounds.order == "critic_first":
        critic = _refine_stage(run, k, critic)
    _stage(run, k, "pairs", critic, lambda: _pairs(run, k))
    _stage(run, k, "train", critic, lambda: _train(run, k))
    if run.cfg.rounds.order == "generator_first":
        critic = _refine_stage(run, k, critic)
    _stage(run, k, "evaluate", critic, lambda: _evaluate(run, k, critic))
    return critic


def _stage(run: Run, k: int, name: str, critic, body: Callable[[], Outcome]) -> bool:
    """Run one stage unless the ledger has it done; record its outcome. Returns whether it ran and was done."""
    def status():
        row = run.ledger.stage(k, name)
        return None if row is None else row["status"]

    if run.procs.from_main(status) in ("done", "skipped"):
        log.info("round %d %s: already recorded, skipped", k, name)
        return False
    if run.procs.main:
        log.info("round %d/%d: %s", k, run.cfg.rounds.num_rounds, name)
        run.ledger.start_stage(k, name)
    t0, c0 = time.time(), time.process_time()
    offload = run.cfg.rounds.offload_models
    placement.before_stage(offload, critic, name)
    result, note = body()
    placement.after_stage(offload)
    run.procs.wait()
    if run.procs.main:
        cpu = time.process_time() - c0
        run.ledger.finish_stage(k, name, result, note, cpu_s=cpu)
        log.info("round %d %s %s in %.1f s (CPU %.1f s)%s", k, name, result, time.time() - t0, cpu,
                 f": {note}" if note else "")
    return result == "done"


def _replace(critic, build):
    """Close the critic and give its memory back before its successor loads (never two large critics at once)."""
    from dualipo.devices import release_memory

    critic.close()
    del critic
    release_memory()
    return build()


# ------------------------------------------------------------------------------------------ the stages

def _train_items(run: Run, k: int) -> list[sampling.Item]:
    """Round k's sampled items: N videos per prompt of its slice of the pool."""
    prompts = round_prompts(run.pool, run.cfg.sampling.prompts_per_round, k)
    return sampling.train_items(run.cfg, prompts, k, run.rel(run.round_dir(k)))


def _sample(run: Run, k: int) -> Outcome:
    """N videos per prompt of round k from the generator at the end of round k-1."""
    cfg = run.cfg
    items = _train_items(run, k)
    recorded = run.procs.from_main(lambda: {(r["prompt_id"], r["seed"]) for r in run.ledger.videos(k, "train")})
    gen, gen_id = run.generator(k - 1)

    def commit(rec: dict) -> None:
        run.ledger.add_video(k, "train", rec["prompt_id"], rec["seed"], rec["index"], rec["path"], rec["sha256"],
                             gen_id)

    done = {it.index for it in items if (it.prompt_id, it.seed) in recorded}
    sampling.sample_items(gen, items, done, run.dir, cfg, run.procs, f"round {k} sampling", commit)
    if run.procs.main:
        run.metrics.log(k, "sample", {"videos": len(items), "prompts": len(items) // cfg.sampling.videos_per_prompt})
    return "done", f"{len(items)} videos in {run.rel(run.round_dir(k) / 'videos')}"


def _videos(run: Run, k: int) -> list[tuple[str, str]]:
    """(prompt id, path) of round k's recorded training videos, each file checked against its recorded hash."""
    rows = run.ledger.videos(k, "train")
    for r in rows:
        training.checked(run.dir, training.Recorded(k, r["path"], r["sha256"], ""), "video")
    return [(r["prompt_id"], r["path"]) for r in rows]


def _judge(run: Run, k: int, critic) -> Outcome:
    def plan():
        units = judging.judging_units(run.cfg, _videos(run, k), run.prompts)
        have = {(r["prompt_id"], r["dimension"], r["video_a"], r["video_b"]) for r in run.ledger.judgments(k)}
        return [u for u in units if any((u.prompt_id, *w) not in have for w in u.wanted)], len(units)

    todo, total = run.procs.from_main(plan)
    if len(todo) < total:
        log.info("round %d judging: %d of %d prompts already judged", k, total - len(todo), total)
    run.procs.shard(todo, lambda unit: judging.judge_unit(critic, run.cfg, k, unit, run.dir),
                    lambda res: run.ledger.add_judgment(k, *res), f"round {k} judging", "prompt")
    if not run.procs.main:
        return "done", ""
    values, note = judging.judging_summary(run.judgments(k))
    run.metrics.log(k, "judge", values)
    return "done", note


def _pairs(run: Run, k: int) -> Outcome:
    """Confident judgments -> the round's training data (recorded in one transaction, written beside its videos)."""
    if not run.procs.main:
        return "done", ""
    cfg, thr = run.cfg, run.cfg.judging.certainty_threshold
    generators = {r["path"]: r["generator"] for r in run.ledger.videos(k, "train")}
    table, rows, stats = judging.preference_rows(cfg, k, run.judgments(k), {t: p for p, t in run.pool}, generators,
                                                 run.round_dir(k), run.rel(run.round_dir(k)))
    run.ledger.replace_preferences(k, table, rows)
    d = stats.dropped
    run.metrics.log(k, "pairs", {"judgments": stats.judgments, "kept": stats.kept, "dropped": sum(d.values()),
                                 **{f"dropped_{r}": n for r, n in d.items()}, "items": stats.items,
                                 "prompts_without_item": stats.prompts_without_pair})
    what = "pairs" if table == "pairs" else "labelled videos"
    if stats.items == 0:
        log.warning("round %d: no confident %s: of %d judgments, %d had no majority (abstained or split), %d were "
                    "ties, %d were below judging.certainty_threshold=%s; the %d kept rank no video of any prompt "
                    "above another. The generator is not trained this round.",
                    k, what, stats.judgments, d["no_verdict"], d["tie"], d["uncertain"], thr, stats.kept)
        return "done", f"no confident {what} ({stats.kept} of {stats.judgments} judgments kept, no pair ranked)"
    return "done", f"{stats.items} {what} from {stats.kept} of {stats.judgments} judgments kept"


def _train(run: Run, k: int) -> Outcome:
    """Round k's adapter on the generator at the end of round k-1, from its preference data (or, for the
    continued-pretraining controls, renders of the round's items)."""
    cfg, latents = run.cfg, run.round_dir(k) / "train" / "latents.safetensors"
    if cfg.train.data != "preferences":
        items = _train_items(run, k)
        gen, _ = run.generator(k - 1)
        data_file = run.round_dir(k) / "train_data.jsonl" if run.procs.main else None
        build = lambda: training.render_cache(cfg, k, items, gen, data_file)  # noqa: E731
        return _train_on(run, k, gen, training.cache_on_disk(run.procs, latents, build), len(items))
    kind = preference_kind(cfg.train.loss)
    rows = run.procs.from_main(lambda: [dict(r) for r in run.ledger.preferences(kind, k)])
    if not rows:
        log.warning("round %d: no confident preference data, so no generator training (the next round samples "
                    "from the same generator)", k)
        return "skipped", "no confident pairs: nothing to train on"
    gen, _ = run.generator(k - 1)
    prompts = [run.prompts[r["prompt_id"]] for r in rows]
    build = lambda: training.preference_cache(cfg, gen, rows, prompts, run.dir)  # noqa: E731
    return _train_on(run, k, gen, training.cache_on_disk(run.procs, latents, build), len(rows))


def _train_on(run: Run, k: int, gen, cache, n_items: int) -> Outcome:
    out = run.round_dir(k) / "train"
    final, steps = training.train_adapter(run.cfg, k, gen, cache, out, run.procs)
    if not run.procs.main:
        return "done", ""
    run.ledger.add_checkpoint(k, ADAPTER, run.rel(final), sha256_file(final), weights_sha256(final), steps)
    run.metrics.log(k, "train", training.train_summary(out / "metrics.jsonl", n_items))
    return "done", f"{steps} steps on {n_items} items; adapter {run.rel(final)}"


def _refine_stage(run: Run, k: int, critic):
    """Refine the critic on round k's judgments; returns the critic that judges from now on."""
    if _stage(run, k, "refine", critic, lambda: run.procs.from_main(lambda: _refine(run, k))):
        return _replace(critic, lambda: run.critic(k))
    return critic


def _refine(run: Run, k: int) -> Outcome:
    """Main process: refine the current critic on round k's judgments and record it (not the oracle, nor a frozen
    critic: IPO)."""
    if run.cfg.critic.backend == "oracle" or not run.cfg.critic_refine.refine:
        note = ("the oracle critic (upper bound) is not trained" if run.cfg.critic.backend == "oracle" else
                "critic_refine.refine=false: frozen critic (IPO)")
        log.info("round %d refine: %s", k, note)
        return "skipped", note
    critics = [str((run.dir / r.path).parent) for r in run.checkpoints(CRITIC, k - 1)]
    js = [j.under(run.dir) for j in run.judgments(k)]
    out = run.round_dir(k) / "critic"
    final, counts, note = training.refine(run.cfg, k, js, critics, out, training.seed_set(run.cfg, run.dir))
    if final is None:
        run.metrics.log(k, "refine", training.refine_summary(counts, None))
        return "skipped", note
    weights = final / "model.safetensors"
    run.ledger.add_checkpoint(k, CRITIC, run.rel(weights), sha256_file(weights), weights_sha256(weights),
                              run.cfg.critic_refine.steps)
    run.metrics.log(k, "refine", training.refine_summary(counts, out / "metrics.jsonl"))
    return "done", f"{note}; critic {run.rel(final)}"


def _evaluate(run: Run, k: int, critic) -> Outcome:
    """The generator at the end of round k on the held-out prompts: oracle scores, video metrics, and the critic's
    win rate against round 0 and its accuracy on the round's judgments."""
    cfg = run.cfg
    gen, gen_id = run.generator(k)
    prompts = eval_prompts(cfg)
    items = sampling.eval_items(cfg.eval.seeds, prompts, run.rel(run.round_dir(k)))
    recs: list[dict] = []
    sampling.sample_items(gen, items, set(), run.dir, cfg, run.procs, f"round {k} evaluation", recs.append,
                          evaluation.measure)
    wins = {}
    if k > 0 and cfg.eval.critic_win_rate:
        placement.release_generator(cfg.rounds.offload_models, gen)
        placement.use_critic(cfg.rounds.offload_models, critic)
        base = sampling.eval_items(cfg.eval.seeds, prompts, run.rel(run.round_dir(0)))
        wins = evaluation.critic_win_rate(critic, cfg, k, items, base, run.dir, run.procs)
    if not run.procs.main:
        return "done", ""
    for r in recs:
        run.ledger.add_video(k, "eval", r["prompt_id"], r["seed"], r["index"], r["path"], r["sha256"], gen_id)
    values = evaluation.held_out_scores(recs)
    if k > 0:
        pairs = None
        if preference_kind(cfg.train.loss) == "pairs":
            pairs = [(run.prompts[r["prompt_id"]], r["chosen"], r["rejected"])
                     for r in run.ledger.preferences("pairs", k)]
        values.update(evaluation.critic_accuracy(cfg, run.judgments(k), pairs, run.dir))
    values.update(wins)
    run.metrics.log(k, "evaluate", values)
    return "done", f"held-out oracle score {values['oracle_overall']:.4f} on {len(recs)} videos"
