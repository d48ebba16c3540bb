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
