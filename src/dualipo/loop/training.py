"""Steps 5-6 of a round: train the generator on the round's preference data, and refine the critic.

Generator training is `trainer.train_generator` (Diffusion-DPO or -KTO + the lambda1 / lambda2 NLL terms,
data-parallel under accelerate) on the generator at the end of the previous round; it resumes from its own
checkpoints in `round_k/train/checkpoints`. The finished adapter is copied atomically to
`round_k/generator_lora.safetensors` and recorded with its hash; later rounds rebuild the generator from it.

Critic refinement (SRPO, `critic_training`) learns from the round's own judgments (consistency filter, certainty,
SFT mixed with the seed set or certainty-weighted DPO) on the main process, in `round_k/critic/` (it resumes from
its checkpoints there). The refined critic is recorded in the ledger (kind `critic`) and judges from the next
round on; a resumed run rebuilds the latest recorded critic. With `critic_train.refine=false` the critic stays
frozen (the paper's IPO).
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace

from dualipo.devices import release_memory
from dualipo.ledger import atomic_path, sha256_file, weights_sha256
from dualipo.loop.context import ADAPTER_KIND, RunContext, from_main, generator_after
from dualipo.preferences import preference_kind

log = logging.getLogger(__name__)
CRITIC_KIND = "critic"


def _training_data(ctx: RunContext, k: int):
    kind = preference_kind(ctx.cfg.train.loss)
    rows = from_main(ctx, lambda: [dict(r) for r in ctx.ledger.preferences(kind, k)])
    prompts = dict(ctx.pool)
    return rows, [prompts[r["prompt_id"]] for r in rows], kind == "pairs"


WEB_STREAM = 1_000  # caption streams of the loop's web control: 1000 + 1000 x seed + round (pretraining: its seed)


def _render_cache(ctx: RunContext, k: int, gen):
    """`train.data=web|curated`: the world's render of each of the round's sampled items (same prompt, the item's
    seed for the layout) as SFT data, captioned like the web corpus (fresh caption draws each round and seed) or
    with the true prompt: continued plain pretraining in place of preference data. What it trains on is written
    to round_k/train_data.jsonl (true prompt, caption, seed)."""
    from dualipo.jsonl import write_jsonl
    from dualipo.loop.sampling import train_items
    from dualipo.toy.corrupt import web_captions
    from dualipo.toy.world import render_prompt
    from dualipo.trainer import build_cache

    cfg = ctx.cfg
    items = train_items(ctx, k)
    captions = [it.prompt for it in items]
    if cfg.train.data == "web":
        captions = web_captions(captions, cfg.world, stream=WEB_STREAM * (1 + cfg.seed) + k)
    if ctx.main:
        write_jsonl(ctx.round_dir(k) / "train_data.jsonl", [{"prompt": it.prompt, "caption": c, "seed": it.seed}
                                                            for it, c in zip(items, captions)])
    return build_cache(gen, captions, [render_prompt(it.prompt, it.seed, cfg.world) for it in items])


def train_stage(ctx: RunContext, k: int) -> tuple[str, str]:
    from dualipo.loop.sampling import train_items
    from dualipo.preferences import real_videos_from_world
    from dualipo.trainer import build_cache
    from dualipo.video import read_video

    cfg = ctx.cfg
    if cfg.train.data != "preferences":
        gen, _ = generator_after(ctx, k - 1)
        n = len(train_items(ctx, k))
        return _train(ctx, k, gen, _on_disk(ctx, k, lambda: _render_cache(ctx, k, gen)), n)
    rows, prompts, pairwise = _training_data(ctx, k)
    if not rows:
        log.warning("round %d: no confident preference data, so no generator training (the next round samples "
                    "from the same generator)", k)
        return "skipped", "no confident pairs: nothing to train on"
    gen, _ = generator_after(ctx, k - 1)

    def build():
        real = real_videos_from_world(cfg.world, len(rows), cfg.train.real_set_size) if cfg.train.lambda_real else None
        if pairwise:  # train.loss=sft learns from the chosen videos only
            rejected = [read_video(ctx.abs(r["rejected"])) for r in rows] if cfg.train.loss == "dpo" else None
            return build_cache(gen, prompts, [read_video(ctx.abs(r["chosen"])) for r in rows], rejected, real=real)
        return build_cache(gen, prompts, [read_video(ctx.abs(r["video"])) for r in rows],
                           desirable=[bool(r["desirable"]) for r in rows], real=real)

    return _train(ctx, k, gen, _on_disk(ctx, k, build), len(rows))


def _on_disk(ctx: RunContext, k: int, build):
    """Round k's latent cache (latents and prompt embeddings), encoded once before training, by the main process,
    and written to round_k/train/latents.safetensors, which every process then reads (the others wait; a resumed
    training stage reads it instead of encoding again). The training loop reads only this cache, so the VAE and
    text encoder can leave the GPU (`train.frozen_on_cpu`)."""
    from dualipo.trainer import LatentCache

    path = ctx.round_dir(k) / "train" / "latents.safetensors"

    def encode() -> None:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            build().save(path)

    from_main(ctx, encode)
    return LatentCache.load(path)


def _train(ctx: RunContext, k: int, gen, cache, n_items: int) -> tuple[str, str]:
    """Train round k's adapter on `cache` and record it."""
    from dualipo.trainer import train_generator

    cfg = ctx.cfg
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
    ctx.metrics.log(k, "train", _train_summary(out / "metrics.jsonl", n_items))
    return "done", f"{train_cfg.num_steps} steps on {n_items} items; adapter {ctx.rel(final)}"


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
        status, note = from_main(ctx, lambda: _refine(ctx, k))
        if status == "done":
            reload_critic(ctx, k)
        return status, note
    if ctx.main:
        log.info("round %d refine: %s", k, note)
    return "skipped", note


def _refine(ctx: RunContext, k: int) -> tuple[str, str]:
    """Main process: refine the current critic on round k's judgments and record it."""
    from dualipo.loop.judging import judgment_from_row
    from dualipo.critic_training.refine import NothingToLearn, refine_critic

    cfg = ctx.cfg
    ct = cfg.critic_train
    previous = critic_paths(ctx, k - 1)
    current = str(ctx.abs(previous[-1]).parent) if previous else cfg.critic.path
    reference = str(ctx.abs(previous[-2]).parent) if len(previous) > 1 else (cfg.critic.path if previous else
                                                                             ct.pce_reference)
    run_cfg = replace(cfg, critic=replace(cfg.critic, path=current),
                      critic_train=replace(ct, pce_reference=reference, seed=ct.seed + k))
    js = [judgment_from_row(r, dict(ctx.pool)) for r in ctx.ledger.judgments(k)]
    js = [replace(j, videos=tuple(str(ctx.abs(v)) for v in j.videos)) for j in js]
    out = ctx.round_dir(k) / "critic"
    try:
        final, counts = refine_critic(run_cfg, js, out, seed_set(ctx), resume=True)
    except NothingToLearn as e:
        log.warning("round %d refine: %s; the critic stays as it is", k, e)
        ctx.metrics.log(k, "refine", _counts(json.loads((out / "data.json").read_text())))
        return "skipped", str(e)
    weights = final / "model.safetensors"
    ctx.ledger.add_checkpoint(k, CRITIC_KIND, ctx.rel(weights), sha256_file(weights), weights_sha256(weights),
                              ct.refine_steps)
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x.strip()]
    ctx.metrics.log(k, "refine", {**_counts(counts), "final_loss": rows[-1]["loss"] if rows else None,
                                  "final_abstention_rate": rows[-1].get("abstention_rate") if rows else None})
    return "done", (f"{ct.method} on {counts['confident']} confident judgments of {counts['judgments']} "
                    f"({counts['paths_filtered']} paths filtered); critic {ctx.rel(final)}")


def _counts(counts: dict) -> dict:
    flat = {f"no_label_{r}": n for r, n in counts.pop("no_label").items()}
    return {**{key: v for key, v in counts.items() if isinstance(v, (int, float))}, **flat}


def _critic_rows(ctx: RunContext, k: int) -> list:
    """Ledger rows of the critics refined in rounds 1..k, in order (main process)."""
    return [r for r in ctx.ledger.checkpoints(CRITIC_KIND) if r["round"] <= k]


def critic_paths(ctx: RunContext, k: int) -> list[str]:
    """Run-relative weight files (DIR/model.safetensors) of the critics refined in rounds 1..k, in order (main
    process: the ledger)."""
    return [r["path"] for r in _critic_rows(ctx, k)]


def reload_critic(ctx: RunContext, k: int) -> None:
    """`ctx.critic` becomes the critic at the end of round k (`critic_after`); the old one is closed and dropped
    and its memory given back first, so a large critic (or a vLLM engine) is never held twice."""
    if ctx.critic is not None:
        ctx.critic.close()
    ctx.critic = None
    release_memory()
    ctx.critic = critic_after(ctx, k)


def critic_after(ctx: RunContext, k: int):
    """The critic at the end of round k: the latest refined one recorded (checked against its hash), or the
    configured critic when none was."""
    from dualipo.critics import build_critic

    def latest():
        rows = _critic_rows(ctx, k)
        return (rows[-1]["path"], rows[-1]["sha256"]) if rows else None

    found = from_main(ctx, latest)
    if found is None:
        return build_critic(ctx.cfg)
    rel, sha = found
    weights = ctx.abs(rel)
    if not weights.is_file() or sha256_file(weights) != sha:
        raise ValueError(f"refined critic {weights} is missing or differs from the one the ledger recorded "
                         f"(sha256 {sha[:12]}); the run directory was changed outside dualipo")
    return build_critic(replace(ctx.cfg, critic=replace(ctx.cfg.critic, path=str(weights.parent))))


def seed_set(ctx: RunContext) -> str | None:
    """The seed set mixed into refinement: `critic_train.seed_file`, or in the shapes world (the default prompt
    pool) made once in RUN/seed/ and labelled by the oracle (it makes seed labels, as human annotators would; it
    never judges the loop's videos): pairs of renders and corruptions, or, for a critic that judges pairs from
    pointwise scores, the base generator's own samples labelled pointwise (`critic_train.seed_pairs` of them). None when refinement mixes in no seed data."""
    ct = ctx.cfg.critic_train
    if ct.seed_mix == 0 or ct.method != "sft":
        return None
    if ct.seed_file:
        return ct.seed_file
    assert not ctx.cfg.rounds.prompt_file, "rounds.run_rounds refuses this before the run starts"
    from dualipo.critic_training.toy_seed import rendered_seed_set, sampled_seed_set

    if ctx.cfg.judging.pairs_from == "scores":
        return str(sampled_seed_set(ctx.cfg, ctx.run_dir / "seed", ct.seed_pairs, ct.seed_noise, ct.seed))
    return str(rendered_seed_set(ctx.cfg.world, ctx.run_dir / "seed", ct.seed_pairs, ct.seed_noise, ct.seed))
