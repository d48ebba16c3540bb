"""`dualipo pretrain`: train a small generator from scratch on rendered shapes-world videos, on CPU.

Stages, each resumable from its own checkpoints in OUT/ckpt_{stage}/ (`dualipo.checkpoint`: weights, optimizer
state, step):
1. data: `num_videos` renders of train-pool prompts (`prompt_pools(world)[0]`) with their captions, cached in
   OUT/data.safetensors; the captions are web captions (`world.web`, attributes named wrong at the configured
   rates: the small preset's base learns from a web-like corpus) or, with every rate 0, the true prompts;
2. vae: the VAE alone (a random VAE is not an autoencoder), foreground-weighted MSE + KL, on random crops
   (or first copied from the pipeline named by `pretrain.vae_from`; with `vae_steps=0` used as is);
   then its latent statistics are written into its config so normalised latents are unit scale;
3. transformer: the model's own denoising loss (`Generator.denoising_errors`) on cached latents, prompt
   dropout for classifier-free guidance, AdamW with warm-up and cosine decay;
4. OUT/generator: the pipeline in fp16 safetensors (what ships in dualipo/assets/generator_small), and
   OUT/eval.json: oracle scores of that saved pipeline on held-out prompts.
Every step draws its randomness from a generator seeded by (seed, stage, step), so a resumed run takes the
same steps as an uninterrupted one. OUT/metrics.jsonl holds the loss curve.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from dualipo import seeds
from dualipo.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint, truncate_metrics
from dualipo.config import RunConfig, save_config, to_dict
from dualipo.generators import Generator, build_generator
from dualipo.optim import clipped_step, warmup_cosine
from dualipo.toy.corrupt import web_captions
from dualipo.toy.world import prompt_pools, render_prompt

log = logging.getLogger(__name__)


def _step_generator(seed: int, stage: str, step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seeds.pretraining_step(seed, stage, step))


def _append_metric(out: Path, row: dict) -> None:
    with open(out / "metrics.jsonl", "a") as f:
        f.write(json.dumps(row) + "\n")


# ------------------------------------------------------------------------------------------- data

def render_dataset(cfg: RunConfig, out: Path) -> tuple[list[str], torch.Tensor]:
    """(captions, videos_NFHWC uint8), cached in OUT/data.safetensors (with the true prompts beside the
    captions)."""
    p, world = cfg.pretrain, cfg.world
    path = out / "data.safetensors"
    if path.exists():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            captions = json.loads(f.metadata()["captions"])
        return captions, load_file(str(path))["videos"]
    train, _ = prompt_pools(world)
    rng = np.random.default_rng([p.seed, 11])
    prompts = [train[int(i)] for i in rng.integers(len(train), size=p.num_videos)]
    videos = np.stack([render_prompt(pr, seeds.pretraining_render(p.seed, i), world).frames
                       for i, pr in enumerate(tqdm(prompts, desc="rendering", unit="video"))])
    captions = web_captions(prompts, world, stream=p.seed)
    tensor = torch.from_numpy(videos)
    save_file({"videos": tensor}, str(path), metadata={"prompts": json.dumps(prompts),
                                                       "captions": json.dumps(captions)})
    wrong = sum(a != b for a, b in zip(prompts, captions))
    log.info("pretraining corpus: %d renders, %d captions (%.1f %%) with an attribute named wrong", len(prompts),
             wrong, 100 * wrong / len(prompts))
    return captions, tensor


def _pixels_BCFHW(videos_NFHWC: torch.Tensor) -> torch.Tensor:
    return videos_NFHWC.permute(0, 4, 1, 2, 3).float() / 127.5 - 1.0


# ------------------------------------------------------------------------------------------- stages

def _vae_loss(gen: Generator, pixels: torch.Tensor, g: torch.Generator, fg_weight: float, kl_weight: float):
    dist = gen.vae.encode(pixels).latent_dist
    recon = gen.vae.decode(dist.sample(g)).sample
    corner = pixels[:, :, :, :1, :1]
    fg = ((pixels - corner).abs().amax(dim=1, keepdim=True) > 0.1).float()
    weight = 1.0 + (fg_weight - 1.0) * fg
    mse = (weight * (recon - pixels).pow(2)).mean()
    kl = 0.5 * (dist.mean.pow(2) + dist.var - 1.0 - dist.logvar).mean()
    return mse + kl_weight * kl, float(mse.detach())


def _run_stage(stage: str, cfg: RunConfig, out: Path, module: torch.nn.Module, params: list, total: int,
               peak_lr: float, warmup: int, loss_fn, budget: list[int]) -> bool:
    """The explicit loop shared by both stages; returns False when interrupted by `budget`."""
    p = cfg.pretrain
    opt = torch.optim.AdamW(params, lr=peak_lr, weight_decay=p.weight_decay if stage == "transformer" else 0.0)
    ckpt = out / f"ckpt_{stage}"
    latest = latest_checkpoint(ckpt)
    step, done = 0, False
    if latest is not None:
        step, extra = load_checkpoint(latest, module, opt)
        done = extra["done"]
    if done:
        return True
    truncate_metrics(out / "metrics.jsonl", step, stage)
    module.train()
    t0, ema = time.time(), None
    bar = tqdm(range(step, total), desc=stage, unit="step", initial=step, total=total)
    for step in bar:
        if budget[0] == 0:
            return False
        lr = warmup_cosine(step, peak_lr, warmup, total, p.min_lr_frac)
        loss = loss_fn(_step_generator(p.seed, stage, step))
        clipped_step(opt, params, loss, lr, p.max_grad_norm)
        budget[0] -= 1
        value = float(loss.detach())
        ema = value if ema is None else 0.98 * ema + 0.02 * value
        bar.set_postfix(loss=f"{ema:.4f}")
        if (step + 1) % p.log_every == 0 or step + 1 == total:
            _append_metric(out, {"stage": stage, "step": step + 1, "loss": value, "loss_ema": ema, "lr": lr,
                                 "seconds": round(time.time() - t0, 2)})
        if (step + 1) % p.checkpoint_every == 0 or step + 1 == total:
            save_checkpoint(ckpt, step + 1, module, opt, extra={"done": step + 1 == total})
    if total == 0:
        save_checkpoint(ckpt, 0, module, opt, extra={"done": True})
    module.eval()
    return True


def _train_vae(gen: Generator, cfg: RunConfig, out: Path, videos: torch.Tensor, budget: list[int]) -> bool:
    p = cfg.pretrain
    H, W = videos.shape[2:4]
    crop = p.vae_crop if 0 < p.vae_crop < min(H, W) else 0

    def loss_fn(g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(videos), (p.vae_batch_size,), generator=g)
        x = _pixels_BCFHW(videos[idx])
        if crop:
            y0 = int(torch.randint(H - crop + 1, (1,), generator=g))
            x0 = int(torch.randint(W - crop + 1, (1,), generator=g))
            x = x[..., y0:y0 + crop, x0:x0 + crop]
        return _vae_loss(gen, x, g, p.vae_fg_weight, p.vae_kl_weight)[0]

    gen.vae.requires_grad_(True)
    try:
        return _run_stage("vae", cfg, out, gen.vae, list(gen.vae.parameters()), p.vae_steps, p.vae_lr,
                          min(50, p.vae_steps // 10), loss_fn, budget)
    finally:
        gen.vae.requires_grad_(False).eval()


def _train_transformer(gen: Generator, cfg: RunConfig, out: Path, prompts: list[str], latents: torch.Tensor,
                       budget: list[int]) -> bool:
    p = cfg.pretrain
    unique = sorted(set(prompts))
    embeds = gen.encode_prompts(unique + [""])  # last row: the unconditional prompt
    prompt_idx = torch.tensor([unique.index(x) for x in prompts])
    params = [q for q in gen.transformer.parameters()]
    gen.transformer.requires_grad_(True)

    def loss_fn(g: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(latents), (p.batch_size,), generator=g)
        drop = torch.rand(p.batch_size, generator=g) < p.prompt_dropout
        emb = embeds[torch.where(drop, len(unique), prompt_idx[idx])]
        lat = latents[idx]
        noise, t = gen.draw_noise_and_timesteps(lat, g)
        return gen.denoising_errors(lat, emb, t, noise).mean()

    return _run_stage("transformer", cfg, out, gen.transformer, params, p.steps, p.lr, p.warmup_steps, loss_fn,
                      budget)


def pretrain(cfg: RunConfig, out: str | Path, interrupt_after: int | None = None) -> Path | None:
    """Run (or resume) every stage; returns OUT/generator, or None if stopped after `interrupt_after` steps."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    p = cfg.pretrain
    if p.threads:
        torch.set_num_threads(p.threads)
    cfg = replace(cfg, generator=replace(cfg.generator, path="", dtype="float32"))
    _check_same_config(cfg, out / "config.json")
    save_config(cfg, out / "config.json")
    prompts, videos = render_dataset(cfg, out)
    gen = build_generator(cfg)
    if p.vae_from:
        _load_vae(gen, cfg)
    budget = [-1 if interrupt_after is None else interrupt_after]
    if not _train_vae(gen, cfg, out, videos, budget):
        return None
    latents = _encode_all(gen, videos, out)
    if not _train_transformer(gen, cfg, out, prompts, latents, budget):
        return None
    target = out / "generator"
    gen.save_pretrained(target, dtype=torch.float16)
    if p.eval_prompts:
        from dualipo.generators.evaluate import evaluate_generator

        shipped = build_generator(replace(cfg, generator=replace(cfg.generator, path=str(target))))
        scores = evaluate_generator(shipped, cfg, num_prompts=p.eval_prompts)
        (out / "eval.json").write_text(json.dumps(scores, indent=2) + "\n")
        log.info("held-out oracle scores: %s", scores)
    return target


def _load_vae(gen: Generator, cfg: RunConfig) -> None:
    """Copy the VAE weights of the `pretrain.vae_from` pipeline into the freshly built generator."""
    src = build_generator(replace(cfg, generator=replace(cfg.generator, path=cfg.pretrain.vae_from)))
    try:
        gen.vae.load_state_dict(src.vae.float().state_dict())
    except RuntimeError as e:
        raise ValueError(f"pretrain.vae_from={cfg.pretrain.vae_from!r}: its VAE does not fit the configured "
                         f"generator.arch.vae_channels / latent_channels ({str(e).splitlines()[0]})") from e


def _check_same_config(cfg: RunConfig, path: Path) -> None:
    """Resuming with other settings would silently mix two runs: refuse, naming the changed keys."""
    from dualipo.ledger import config_differences

    if not path.exists():
        return
    old, new = json.loads(path.read_text()), json.loads(json.dumps(to_dict(cfg)))
    # other sections cannot change what pretraining does; the thread count does not change its result
    changed = [d.split(":")[0] for s in ("generator", "pretrain", "world")
               for d in config_differences(old.get(s, {}), new.get(s, {}), f"{s}.")]
    changed = [k for k in changed if k != "pretrain.threads"]
    if changed:
        raise ValueError(f"{path} was written by a run with other settings ({', '.join(changed)}); "
                         f"resume with the same config or use a new --out directory")


def _encode_all(gen: Generator, videos: torch.Tensor, out: Path) -> torch.Tensor:
    """Set the VAE's latent statistics (from the posterior modes), then cache normalised latents."""
    path = out / "latents.safetensors"
    if path.exists():
        saved = load_file(str(path))
        gen.set_latent_stats(saved["raw_sample"])
        return saved["latents"]
    with torch.no_grad():
        raw = []
        for s in tqdm(range(0, len(videos), 32), desc="encoding", unit="batch"):
            raw.append(gen.vae.encode(_pixels_BCFHW(videos[s:s + 32])).latent_dist.mode())
        raw = torch.cat(raw)
    gen.set_latent_stats(raw[:1024])
    latents = gen.normalize(raw).contiguous()
    assert latest_checkpoint(out / "ckpt_vae") is not None
    save_file({"latents": latents, "raw_sample": raw[:1024].contiguous()}, str(path))
    return latents
