"""Evaluating a generator: oracle scores on the world's held-out prompts (toy world only; never used in
training), sample files with scores (`dualipo sample`), and the weight-free video metrics plus oracle scores on
any prompt file with fixed seeds (`dualipo evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dualipo.config import RunConfig
from dualipo.metrics import mean_by_key
from dualipo.toy.oracle import score, score_dict
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
    out = {d: round(v, 4) for d, v in mean_by_key([s.dims for s in scores]).items()}
    out["overall"] = round(float(np.mean([s.overall for s in scores])), 4)
    out["num_videos"] = len(videos)
    return (out, items, videos, scores) if return_videos else out


def write_samples(cfg: RunConfig, out, prompts: list[str], seeds: list[int]) -> Path:
    """Sample every prompt with every seed; write mp4 + PNG strip per video and samples.jsonl (with oracle
    scores when the prompt is in the shapes-world grammar)."""
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
        rows.append({"file": f"{name}.mp4", "prompt": prompt, "seed": seed, "oracle": score_dict(prompt, video)})
    return write_jsonl(out / "samples.jsonl", rows)


def evaluate_prompts(cfg: RunConfig, prompts: Sequence[tuple[str, str]], seeds: Sequence[int],
                     loras: Sequence[str | Path] = ()) -> dict:
    """Sample every (prompt id, prompt) with every seed from `cfg.generator` (plus `loras`, each loaded and merged
    in order, as the round loop rebuilds round k's generator) and measure each video: the weight-free metrics of
    `dualipo.metrics` and, for shapes-world prompts, the oracle's scores. Returns the JSON document of
    `dualipo evaluate`: per video and the means (`summarize_video_metrics`; `oracle_*` over the scored videos)."""
    from tqdm.auto import tqdm

    from dualipo.generators import build_generator
    from dualipo.metrics import summarize_video_metrics, video_metrics

    if not seeds:
        raise ValueError("--seeds: give at least one seed")
    gen = build_generator(cfg)
    for path in loras:
        gen.load_lora(path)
        gen.merge_lora()
    items = [(pid, prompt, seed) for pid, prompt in prompts for seed in seeds]
    w = cfg.world
    videos = gen.sample([p for _, p, _ in items], [s for *_, s in items], num_frames=w.num_frames, height=w.height,
                        width=w.width, batch_size=cfg.sampling.batch_size)
    rows = []
    for (pid, prompt, seed), video in tqdm(list(zip(items, videos)), desc="metrics", unit="video"):
        rows.append({"prompt_id": pid, "prompt": prompt, "seed": seed,
                     "metrics": video_metrics(video.frames, video.fps), "oracle": score_dict(prompt, video)})
    mean = summarize_video_metrics([r["metrics"] for r in rows])
    scored = [r["oracle"] for r in rows if r["oracle"] is not None]
    mean.update({f"oracle_{k}": v for k, v in mean_by_key(scored).items()})
    mean["oracle_videos"] = len(scored)
    return {"generator": cfg.generator.path, "loras": [str(p) for p in loras], "seeds": list(seeds),
            "num_videos": len(rows), "mean": mean, "videos": rows}
