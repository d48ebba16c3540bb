"""Generator benchmark: prints JSON for the tiny and small presets at the world's default size: seconds per video
at the preset's sampling batch size and at batch 1 (with the largest uint8 difference between the two: the cost
and the effect of batch-invariant sampling), peak RSS, and pretraining steps per second (VAE and transformer).

    python benchmarks/generator.py [--threads 1] [--videos 8] [--steps 5]

Each preset runs in its own subprocess so its peak memory is its own. `small` loads the shipped generator
when it exists (else a random init of the same architecture; the JSON says which).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np


def _rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(preset: str, threads: int, n_videos: int, n_steps: int) -> dict:
    import torch

    from dualipo.config import build_config
    from dualipo.generators import build_generator, shipped_path
    from dualipo.pretrain import _vae_loss
    from dualipo.toy.world import prompt_pools, render_prompt

    torch.set_num_threads(threads)
    cfg = build_config(preset)
    shipped = cfg.generator.path == "shipped" and (shipped_path() / "model_index.json").is_file()
    if cfg.generator.path == "shipped" and not shipped:
        cfg = build_config(preset, overrides=["generator.path="])
    gen = build_generator(cfg)
    w, g = cfg.world, cfg.generator
    prompts = prompt_pools(w)[1][:n_videos]
    kw = dict(num_frames=w.num_frames, height=w.height, width=w.width, progress=False)
    gen.sample(prompts[:1], [0], **kw)  # warm-up
    seeds = list(range(len(prompts)))
    t0 = time.perf_counter()
    batched = gen.sample(prompts, seeds, batch_size=cfg.sampling.batch_size, **kw)
    per_video = (time.perf_counter() - t0) / len(prompts)
    rss_sampling = _rss_mb()
    # the cost of batch-invariant bit-identity (one video per forward pass) and the rounding it would remove
    t0 = time.perf_counter()
    alone = gen.sample(prompts, seeds, batch_size=1, **kw)
    per_video_alone = (time.perf_counter() - t0) / len(prompts)
    max_diff = max(int(np.abs(a.frames.astype(int) - b.frames.astype(int)).max()) for a, b in zip(batched, alone))

    p, rng = cfg.pretrain, torch.Generator().manual_seed(0)
    crop = p.vae_crop or w.height
    x = torch.rand(p.vae_batch_size, 3, w.num_frames, crop, crop) * 2 - 1
    gen.vae.requires_grad_(True)
    opt = torch.optim.AdamW(gen.vae.parameters(), lr=1e-4)
    vae_s = _time_steps(lambda: _vae_loss(gen, x, rng, p.vae_fg_weight, p.vae_kl_weight)[0], opt, n_steps)
    gen.vae.requires_grad_(False)
    videos = [render_prompt(pr, i, w) for i, pr in enumerate(prompt_pools(w)[0][:p.batch_size])]
    lat = gen.encode_videos(videos)
    emb = gen.encode_prompts(prompt_pools(w)[0][:p.batch_size])
    gen.transformer.requires_grad_(True)
    opt = torch.optim.AdamW(gen.transformer.parameters(), lr=1e-4)

    def tr_loss():
        noise, t = gen.draw_noise_and_timesteps(lat, rng)
        return gen.denoising_errors(lat, emb, t, noise).mean()

    tr_s = _time_steps(tr_loss, opt, n_steps)
    return {"preset": preset, "backend": g.backend, "weights": "shipped" if shipped else "random init",
            "size": f"{w.num_frames}x{w.height}x{w.width}", "inference_steps": g.num_inference_steps,
            "guidance_scale": g.guidance_scale, "threads": threads,
            "transformer_params_M": round(sum(q.numel() for q in gen.transformer.parameters()) / 1e6, 3),
            "vae_params_M": round(sum(q.numel() for q in gen.vae.parameters()) / 1e6, 3),
            "seconds_per_video": round(per_video, 4), "sampling_batch_size": cfg.sampling.batch_size,
            "seconds_per_video_batch_1": round(per_video_alone, 4),
            "max_uint8_diff_batch_1_vs_batched": max_diff, "peak_rss_mb_sampling": rss_sampling,
            "pretrain_vae_steps_per_s": round(1 / vae_s, 3), "vae_batch": p.vae_batch_size, "vae_crop": crop,
            "pretrain_transformer_steps_per_s": round(1 / tr_s, 3), "transformer_batch": p.batch_size,
            "peak_rss_mb": _rss_mb()}


def _time_steps(loss_fn, opt, n: int) -> float:
    times = []
    for _ in range(n + 1):
        t0 = time.perf_counter()
        loss = loss_fn()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t0)
    return sorted(times[1:])[len(times[1:]) // 2]  # median after one warm-up step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--videos", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(args.one, args.threads, args.videos, args.steps)))
        return
    results = []
    for preset in ("tiny", "small"):
        cmd = [sys.executable, __file__, "--one", preset, "--threads", str(args.threads), "--videos",
               str(args.videos), "--steps", str(args.steps)]
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        results.append(json.loads(out.strip().splitlines()[-1]))
    print(json.dumps({"generator": results}, indent=2))


if __name__ == "__main__":
    main()
