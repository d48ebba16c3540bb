"""Oracle scores of a generator on the world's held-out prompts (toy world only; never used in training)."""

from __future__ import annotations

import numpy as np

from dualipo.config import RunConfig
from dualipo.toy.oracle import score
from dualipo.toy.world import prompt_pools


def evaluate_generator(gen, cfg: RunConfig, num_prompts: int, seeds: tuple[int, ...] = (0, 1),
                       return_videos: bool = False):
    """Mean oracle score per dimension (and 'overall') over `num_prompts` held-out prompts x `seeds`."""
    prompts = prompt_pools(cfg.world)[1][:num_prompts]
    items = [(p, s) for p in prompts for s in seeds]
    w = cfg.world
    videos = gen.sample([p for p, _ in items], [s for _, s in items], num_frames=w.num_frames, height=w.height,
                        width=w.width, batch_size=cfg.sampling.batch_size)
    scores = [score(p, v) for (p, _), v in zip(items, videos)]
    dims = sorted({d for s in scores for d in s.dims})
    out = {d: round(float(np.mean([s.dims[d] for s in scores if d in s.dims])), 4) for d in dims}
    out["overall"] = round(float(np.mean([s.overall for s in scores])), 4)
    out["num_videos"] = len(videos)
    return (out, items, videos, scores) if return_videos else out


def write_samples(cfg: RunConfig, out, prompts: list[str], seeds: list[int]) -> "Path":
    """Sample every prompt with every seed; write mp4 + PNG strip per video and samples.jsonl (with oracle
    scores when the prompt is in the shapes-world grammar)."""
    from pathlib import Path

    from dualipo.generators import build_generator
    from dualipo.jsonl import write_jsonl
    from dualipo.video import write_png_strip, write_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    gen = build_generator(cfg)
    w = cfg.world
    items = [(p, s) for p in prompts for s in seeds]
    videos = gen.sample([p for p, _ in items], [s for _, s in items], num_frames=w.num_frames, height=w.height,
                        width=w.width, batch_size=cfg.sampling.batch_size)
    rows = []
    for i, ((prompt, seed), video) in enumerate(zip(items, videos)):
        name = f"{i:04d}_seed{seed}"
        write_video(out / f"{name}.mp4", video)
        write_png_strip(out / f"{name}.png", video, num_frames=w.num_frames)
        try:
            s = score(prompt, video)
            oracle = {"overall": round(s.overall, 4), **{k: round(v, 4) for k, v in s.dims.items()}}
        except ValueError:  # not a shapes-world prompt: nothing to score
            oracle = None
        rows.append({"file": f"{name}.mp4", "prompt": prompt, "seed": seed, "oracle": oracle})
    return write_jsonl(out / "samples.jsonl", rows)
