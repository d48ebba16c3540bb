"""Shapes-world videos for critic seed sets: renders, one-attribute corruptions and pixel defects, written in
the `prompts.jsonl` layout of `dualipo world sample` (several videos per prompt, so pairs form within a prompt).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from dualipo.config import WorldConfig
from dualipo.jsonl import write_jsonl
from dualipo.toy.corrupt import add_flicker, applicable, corrupt_scene, noise_video
from dualipo.toy.world import parse_prompt, prompt_pools, render
from dualipo.video import write_video

KINDS = ("clean", "scene", "flicker", "noise")
KIND_P = (0.15, 0.65, 0.17, 0.03)


def write_variants(cfg: WorldConfig, out: str | Path, n_prompts: int, per_prompt: int = 4,
                   split: str = "train", seed: int = 0) -> Path:
    """For each of `n_prompts` prompts: one clean render plus `per_prompt - 1` variants (another clean render,
    a one-attribute corruption, flicker on a render, or noise). Returns the prompts.jsonl path."""
    train, held = prompt_pools(cfg)
    pool = {"train": train, "eval": held}[split]
    rng = np.random.default_rng([seed, 11])
    out = Path(out)
    recs = []
    for i in tqdm(range(n_prompts), desc=f"rendering {split} variants", unit="prompt"):
        prompt = pool[i % len(pool)]
        scene = parse_prompt(prompt)
        for j in range(per_prompt):
            vs = int(rng.integers(1 << 30))
            kind = "clean" if j == 0 else KINDS[int(rng.choice(len(KINDS), p=KIND_P))]
            detail = kind
            if kind == "scene":
                detail = str(rng.choice(applicable(scene)))
                video = render(corrupt_scene(scene, detail, rng), vs, cfg)
            elif kind == "noise":
                video = noise_video(cfg, rng)
            else:
                video = render(scene, vs, cfg)
                if kind == "flicker":
                    video = add_flicker(video, rng)
            rel = f"videos/{i:04d}_{j}.mp4"
            write_video(out / rel, video)
            recs.append({"id": f"{i:04d}_{j}", "prompt": prompt, "seed": vs, "path": rel, "variant": detail})
    return write_jsonl(out / "prompts.jsonl", recs)


def write_generator_samples(cfg, out: str | Path, n_prompts: int, per_prompt: int = 4, split: str = "train",
                            seed: int = 0) -> Path:
    """`per_prompt` samples per prompt of the configured generator (e.g. the shipped base generator), in the
    prompts.jsonl layout, so seed pairs can be made from the distribution the critic will judge."""
    from dualipo.generators import build_generator

    train, held = prompt_pools(cfg.world)
    pool = {"train": train, "eval": held}[split]
    prompts = [pool[i % len(pool)] for i in range(n_prompts) for _ in range(per_prompt)]
    seeds = [seed * 100_003 + i for i in range(len(prompts))]
    videos = build_generator(cfg).sample(prompts, seeds, num_frames=cfg.world.num_frames, height=cfg.world.height,
                                         width=cfg.world.width, batch_size=cfg.sampling.batch_size)
    out = Path(out)
    recs = []
    for i, (p, s, v) in enumerate(zip(prompts, seeds, videos)):
        rel = f"videos/{i // per_prompt:04d}_{i % per_prompt}.mp4"
        write_video(out / rel, v)
        recs.append({"id": Path(rel).stem, "prompt": p, "seed": s, "path": rel, "variant": "generator"})
    return write_jsonl(out / "prompts.jsonl", recs)
