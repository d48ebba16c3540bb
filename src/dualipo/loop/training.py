"""Steps 5-6 of a round: train the generator on the round's preference data, and refine the critic.

Generator training is `trainer.train_generator` (Diffusion-DPO or -KTO + the lambda1 / lambda2 NLL terms,
data-parallel under accelerate) on the generator at the end of the previous round; it resumes from its own
checkpoints in `round_k/train/checkpoints`. The finished adapter is copied atomically to
`round_k/generator_lora.safetensors` and recorded with its hash; later rounds rebuild the generator from it.

Critic refinement (SRPO) is a later issue: the stage is recorded as skipped with a note that says why, and
the critic stays frozen (which is the paper's IPO).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace

from dualipo.ledger import atomic_path, sha256_file, weights_sha256
from dualipo.loop.context import ADAPTER_KIND, RunContext, from_main, generator_after

log = logging.getLogger(__name__)
REFINE_NOT_IMPLEMENTED = ("critic refinement (SRPO) is not implemented yet: no-op, the critic stays frozen this "
                          "round (= IPO)")


def _training_data(ctx: RunContext, k: int):
    pairwise = ctx.cfg.judging.mode == "pairwise"
    rows = from_main(ctx, lambda: [dict(r) for r in ctx.ledger.preferences("pairs" if pairwise else "points", k)])
    prompts = dict(ctx.pool)
    return rows, [prompts[r["prompt_id"]] for r in rows], pairwise


def train_stage(ctx: RunContext, k: int) -> tuple[str, str]:
    from dualipo.preferences import real_videos_from_world
    from dualipo.trainer import build_cache, train_generator
    from dualipo.video import read_video

    rows, prompts, pairwise = _training_data(ctx, k)
    if not rows:
        log.warning("round %d: no confident preference data, so no generator training (the next round samples "
                    "from the same generator)", k)
        return "skipped", "no confident pairs: nothing to train on"
    cfg = ctx.cfg
    gen, _ = generator_after(ctx, k - 1)
    real = real_videos_from_world(cfg.world, len(rows), seed=cfg.seed + k) if cfg.train.lambda_real > 0 else None
    if pairwise:  # train.loss=sft learns from the chosen videos only
        rejected = [read_video(ctx.abs(r["rejected"])) for r in rows] if cfg.train.loss == "dpo" else None
        cache = build_cache(gen, prompts, [read_video(ctx.abs(r["chosen"])) for r in rows], rejected, real=real)
    else:
        cache = build_cache(gen, prompts, [read_video(ctx.abs(r["video"])) for r in rows],
                            desirable=[bool(r["desirable"]) for r in rows], real=real)
    train_cfg = replace(cfg.train, seed=cfg.train.seed + 1000 * (k - 1))  # fresh draws (and LoRA init) per round
    out = ctx.round_dir(k) / "train"
    train_generator(gen, cache, train_cfg, out, accelerator=ctx.acc)
    if not ctx.main:
        return "done", ""
    final = ctx.round_dir(k) / "generator_lora.safetensors"
    with atomic_path(final) as tmp:
        shutil.copyfile(out / "generator_lora.safetensors", tmp)
    ctx.ledger.add_checkpoint(k, ADAPTER_KIND, ctx.rel(final), sha256_file(final), weights_sha256(final),
                             train_cfg.num_steps)
    ctx.metrics.log(k, "train", _train_summary(out / "metrics.jsonl", len(rows)))
    return "done", f"{train_cfg.num_steps} steps on {len(rows)} items; adapter {ctx.rel(final)}"


def _train_summary(path, items: int) -> dict:
    """Mean of the last tenth of the steps (at least one) of the trainer's metrics, plus the first loss."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    tail = lines[-max(1, len(lines) // 10):]
    keys = sorted({key for r in tail for key in r if key != "step"})
    out = {"items": items, "steps": lines[-1]["step"], "first_loss": lines[0]["loss"]}
    out.update({f"final_{key}": sum(r[key] for r in tail if key in r) / sum(key in r for r in tail) for key in keys})
    return out


def refine_stage(ctx: RunContext, k: int) -> tuple[str, str]:
    if ctx.cfg.critic.backend == "oracle":
        note = "the oracle critic (upper bound) is not trained"
    elif not ctx.cfg.critic_train.refine:
        note = "critic_train.refine=false: frozen critic (IPO)"
    else:
        note = REFINE_NOT_IMPLEMENTED
    if ctx.main:
        log.info("round %d refine: %s", k, note)
    return "skipped", note
