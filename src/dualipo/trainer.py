"""Generator preference training: one explicit loop (Diffusion-DPO or Diffusion-KTO + NLL regularizers).

- Policy = the transformer with a LoRA adapter; reference = the same transformer inside `reference_mode()`
  (adapters disabled), never a second copy.
- Latents and prompt embeddings are encoded once (`LatentCache`) and saved beside the checkpoints.
- Each optimizer step draws its samples, noise and timesteps from an RNG seeded by (seed, step, sample), so a
  resumed run, and any split of the same global batch into micro-batches (gradient accumulation) or processes,
  sees exactly the same data: resume reproduces the uninterrupted run.
- `accelerate` provides the device, mixed precision, the process group and the engine (`dualipo.engines`): each
  process takes its slice of the step's samples; under plain data parallelism LoRA gradients are averaged across
  processes before the optimizer step (what DDP does, without wrapping the model, so `reference_mode()` keeps
  working); under FSDP2 or DeepSpeed ZeRO `accelerator.prepare` shards the transformer in place.
- Checkpoints (adapter, optimizer, scheduler, step) are written as one unit, atomically; a non-finite loss
  stops training with `TrainingDiverged` and leaves the last good checkpoint in place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from accelerate import Accelerator
from diffusers.optimization import get_scheduler
from tqdm.auto import tqdm

from dualipo import seeds
from dualipo.checkpoint import latest_checkpoint, truncate_metrics
from dualipo.config import TrainConfig, save_config
from dualipo.engines import make_engine
from dualipo.devices import release_memory
from dualipo.generators import Generator
from dualipo.losses import denoising_loss, diffusion_dpo_loss, diffusion_kto_loss

log = logging.getLogger(__name__)


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN / inf; the last good checkpoint is kept."""


@dataclass
class LatentCache:
    """Everything the loop reads, encoded once. Row i of each tensor belongs to item i.

    DPO: `latents_a` = chosen, `latents_b` = rejected. KTO: `latents_a` = the sample, `desirable` its label.
    `real_*` hold real videos for the lambda2 regularizer (optional).
    """
    embeds: torch.Tensor
    latents_a: torch.Tensor
    latents_b: torch.Tensor | None = None
    desirable: torch.Tensor | None = None
    real_embeds: torch.Tensor | None = None
    real_latents: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.latents_a.shape[0]

    def save(self, path: Path) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.contiguous() for k, v in vars(self).items() if v is not None}
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # atomic, and safe when every rank saves
        save_file(tensors, str(tmp))
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path) -> "LatentCache":
        from safetensors.torch import load_file

        return cls(**load_file(str(path)))


def build_cache(gen: Generator, prompts: list[str], videos_a: list, videos_b: list | None = None,
                desirable: list[bool] | None = None, real: list[tuple[str, object]] | None = None) -> LatentCache:
    """Encode preference data once: pairs (videos_a = chosen, videos_b = rejected) or KTO points."""
    if not prompts:
        raise ValueError("no training items: the preference set is empty (every judgment dropped?)")
    cache = LatentCache(embeds=_embed_once(gen, prompts), latents_a=gen.encode_videos(videos_a, progress=True))
    if videos_b is not None:
        cache.latents_b = gen.encode_videos(videos_b, progress=True)
    if desirable is not None:
        cache.desirable = torch.tensor(desirable, dtype=torch.bool)
    if real:
        cache.real_embeds = _embed_once(gen, [p for p, _ in real])
        cache.real_latents = gen.encode_videos([v for _, v in real], progress=True)
    return cache


def _embed_once(gen: Generator, prompts: list[str]) -> torch.Tensor:
    """One row per prompt, each distinct prompt encoded once."""
    row = {p: i for i, p in enumerate(dict.fromkeys(prompts))}
    embeds = gen.encode_prompts(list(row))
    return embeds[torch.tensor([row[p] for p in prompts])]


def _step_items(cfg: TrainConfig, step: int, n_items: int, n_real: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Global indices (items, real videos) of optimizer step `step`, the same for any process / accumulation."""
    g = torch.Generator().manual_seed(seeds.training_step(cfg.seed, step))
    total = cfg.batch_size * cfg.grad_accum
    items = torch.randint(n_items, (total,), generator=g)
    real = torch.randint(max(n_real, 1), (total,), generator=g)
    return items, real


def _noise(gen: Generator, latents: torch.Tensor, cfg: TrainConfig, step: int, slots: list[int], stream: int,
           device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and timesteps for a micro-batch, each sample's keyed by (seed, step, slot in the global batch,
    stream), so any split of the global batch over micro-batches or processes draws the same values."""
    noises, times = [], []
    for x, slot in zip(latents, slots):
        g = torch.Generator().manual_seed(seeds.training_noise(cfg.seed, step, slot, stream))
        n, t = gen.draw_noise_and_timesteps(x.unsqueeze(0), g, cfg.noise_range)
        noises.append(n[0])
        times.append(t[0])
    return torch.stack(noises).to(device), torch.stack(times).to(device)


def _batch_loss(gen: Generator, cache: LatentCache, cfg: TrainConfig, step: int, slots: list[int],
                items: torch.Tensor, real: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, dict]:
    idx = items[slots]
    emb = cache.embeds[idx].to(device)
    za = cache.latents_a[idx].to(device)
    noise, t = _noise(gen, za, cfg, step, slots, 0, device)
    if cfg.loss == "dpo":
        zb = cache.latents_b[idx].to(device)
        # winner and loser share the prompt, the timestep and the noise
        inputs = (torch.cat([za, zb]), torch.cat([emb, emb]), torch.cat([t, t]), torch.cat([noise, noise]))
        err = gen.denoising_errors(*inputs)
        with torch.no_grad(), gen.reference_mode():
            ref = gen.denoising_errors(*inputs)
        k = len(slots)
        loss, metrics = diffusion_dpo_loss(err[:k], err[k:], ref[:k], ref[k:], cfg.beta)
        winner_err = err[:k]
    elif cfg.loss == "sft":  # plain denoising on the items (best-of-N winners, or real videos)
        err = gen.denoising_errors(za, emb, t, noise)
        loss, metrics = denoising_loss(err)
        winner_err = err[:0]  # lambda_winner would only repeat the loss
    else:
        err = gen.denoising_errors(za, emb, t, noise)
        with torch.no_grad(), gen.reference_mode():
            ref = gen.denoising_errors(za, emb, t, noise)
        loss, metrics = diffusion_kto_loss(err, ref, cache.desirable[idx].to(device), cfg.kto_beta)
        winner_err = err[cache.desirable[idx].to(device)]
    if cfg.lambda_winner > 0 and winner_err.numel():
        nll, _ = denoising_loss(winner_err)
        loss = loss + cfg.lambda_winner * nll
        metrics["nll_winner"] = float(nll.detach())
    if cfg.lambda_real > 0 and cache.real_latents is not None:
        ridx = real[slots]
        zr = cache.real_latents[ridx].to(device)
        rn, rt = _noise(gen, zr, cfg, step, slots, 1, device)
        nll, _ = denoising_loss(gen.denoising_errors(zr, cache.real_embeds[ridx].to(device), rt, rn))
        loss = loss + cfg.lambda_real * nll
        metrics["nll_real"] = float(nll.detach())
    return loss, metrics


def _average(acc: list[dict]) -> dict:
    keys = {k for m in acc for k in m}
    return {k: sum(m[k] for m in acc if k in m) / sum(k in m for m in acc) for k in sorted(keys)}


def _train_step(gen: Generator, cache: LatentCache, cfg: TrainConfig, step: int, engine, params: list, optimizer,
                n_real: int, ckpt_root: Path) -> dict:
    """One optimizer step on this process's slice of every micro-batch of the global batch; returns its metrics
    record (the global batch's averages). The caller steps the LR scheduler."""
    acc = engine.acc
    rank, per_proc = acc.process_index, cfg.batch_size // acc.num_processes
    items, real = _step_items(cfg, step, len(cache), n_real)
    step_metrics = []
    for micro in range(cfg.grad_accum):
        base = micro * cfg.batch_size + rank * per_proc
        slots = list(range(base, base + per_proc))
        with engine.autocast():
            loss, m = _batch_loss(gen, cache, cfg, step, slots, items, real, acc.device)
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"non-finite loss {loss.item()} at step {step}; last good checkpoint: "
                                   f"{latest_checkpoint(ckpt_root)}")
        engine.backward(loss, micro, cfg.grad_accum)
        m["loss"] = float(loss.detach())
        step_metrics.append(m)
    lr = optimizer.param_groups[0]["lr"]
    grad_norm = engine.clip(params, cfg.max_grad_norm)
    if not math.isfinite(grad_norm):
        raise TrainingDiverged(f"non-finite gradient norm at step {step}; last good checkpoint: "
                               f"{latest_checkpoint(ckpt_root)}")
    engine.step(optimizer)
    averaged = _average(step_metrics)
    if acc.num_processes > 1:  # log the global batch, not this process's share
        keys = sorted(averaged)
        mean = acc.reduce(torch.tensor([averaged[k] for k in keys], device=acc.device), "mean")
        averaged = dict(zip(keys, mean.tolist()))
    return {"step": step + 1, **averaged, "grad_norm": grad_norm, "lr": lr}


def train_generator(gen: Generator, cache: LatentCache, cfg: TrainConfig, out_dir: str | Path,
                    accelerator: Accelerator | None = None) -> Path:
    """Train the LoRA adapter on `cache`; resume from `out_dir/checkpoints` if present. Returns the adapter path.

    Writes `metrics.jsonl` (one line per optimizer step) and checkpoints every `cfg.checkpoint_every` steps.
    """
    if cfg.loss == "dpo" and cache.latents_b is None:
        raise ValueError("train.loss=dpo needs pairs (chosen and rejected videos); got pointwise data")
    if cfg.loss == "kto" and cache.desirable is None:
        raise ValueError("train.loss=kto needs desirable / undesirable labels; got pairs")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # without CUDA, processes started by `accelerate launch --multi_gpu` (torchrun) join a gloo CPU group
    acc = accelerator or Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=cfg.mixed_precision)
    world = acc.num_processes
    if cfg.batch_size % world:
        raise ValueError(f"train.batch_size={cfg.batch_size} must be divisible by the {world} processes")
    place_for_training(gen, cfg, acc.device)
    if not gen.lora_parameters():
        gen.add_lora(seed=cfg.seed)
    engine = make_engine(acc)
    log.info("training engine: %s, %d process(es)", engine.name, world)
    optimizer = engine.prepare(gen, torch.optim.AdamW(gen.lora_parameters(), lr=cfg.learning_rate, weight_decay=0.0),
                               cfg)
    params = gen.lora_parameters()  # after prepare: FSDP2 replaces them with sharded ones
    scheduler = get_scheduler(cfg.lr_schedule, optimizer, num_warmup_steps=cfg.warmup_steps,
                              num_training_steps=cfg.num_steps)
    start = engine.load(out / "checkpoints", gen, optimizer, scheduler)
    metrics_path = out / "metrics.jsonl"
    if acc.is_main_process:
        truncate_metrics(metrics_path, start)
    n_real = 0 if cache.real_latents is None else cache.real_latents.shape[0]
    bar = tqdm(range(start, cfg.num_steps), desc="training generator", unit="step", initial=start,
               total=cfg.num_steps, disable=not acc.is_local_main_process)
    for step in bar:
        record = _train_step(gen, cache, cfg, step, engine, params, optimizer, n_real, out / "checkpoints")
        scheduler.step()
        if acc.is_main_process:
            with metrics_path.open("a") as f:
                f.write(json.dumps(record) + "\n")
            bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record.get('implicit_acc', 0):.2f}")
        if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.num_steps:
            engine.save(out / "checkpoints", step + 1, gen, optimizer, scheduler)
        acc.wait_for_everyone()
    adapter = engine.save_adapter(gen, out)
    acc.wait_for_everyone()
    engine.finish()
    return adapter


def place_for_training(gen: Generator, cfg: TrainConfig, device: torch.device) -> None:
    """The transformer on the training device, with `train.gradient_checkpointing`; with `train.frozen_on_cpu` the
    VAE and text encoder go to CPU (the loop reads only the latent cache), else the whole pipeline follows."""
    if cfg.frozen_on_cpu:
        gen.pipe.vae.to("cpu")
        gen.pipe.text_encoder.to("cpu")
        release_memory()
    if gen.transformer.device != device:
        (gen.transformer if cfg.frozen_on_cpu else gen.pipe).to(device)
    if cfg.gradient_checkpointing:
        gen.transformer.enable_gradient_checkpointing()


def train_from_pair_file(cfg, pairs_path: str | Path, out_dir: str | Path) -> Path:
    """`dualipo train`: train the configured generator on a TRL-style pair file (prompt, chosen, rejected)."""
    from dualipo.generators import build_generator
    from dualipo.preferences import read_pairs_jsonl, real_videos_from_world
    from dualipo.video import read_video

    out = Path(out_dir)
    cache_path = out / "latents.safetensors"
    source = out / "latents.source"
    if not Path(pairs_path).is_file():
        raise ValueError(f"pair file {pairs_path} does not exist")
    digest = hashlib.sha256(Path(pairs_path).read_bytes()).hexdigest()
    if cache_path.is_file() and source.is_file() and source.read_text() != digest:
        raise ValueError(f"{out} holds latents of another pair file; use a new --out or the same {pairs_path}")
    gen = build_generator(cfg)
    if cache_path.is_file():
        cache = LatentCache.load(cache_path)
    else:
        pairs = read_pairs_jsonl(pairs_path)
        real = real_videos_from_world(cfg.world, len(pairs), cfg.train.real_set_size) if cfg.train.lambda_real > 0 else None
        cache = build_cache(gen, [p.prompt for p in pairs], [read_video(p.chosen) for p in pairs],
                            [read_video(p.rejected) for p in pairs], real=real)
        out.mkdir(parents=True, exist_ok=True)
        cache.save(cache_path)
        source.write_text(digest)
    save_config(cfg, out / "config.json")  # only once the pairs' videos are read: a bad input leaves OUT as it was
    return train_generator(gen, cache, cfg.train, out)
