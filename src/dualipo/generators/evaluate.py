"""Evaluating a generator: oracle scores on the world's held-out prompts (toy world only; never used in
training), sample files with scores (`dualipo sample`), and the weight-free video metrics plus oracle scores on
any prompt file with fixed seeds (`dualipo evaluate`)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from dualipo.config import RunConfig
from dualipo.metrics import mean_by_key, summarize_video_metrics, video_metrics
from dualipo.toy.oracle import score, score_dict
from dualipo.toy.world import prompt_pools
from dualipo.video import Video


def measure(prompt: str, video: Video, digits: int | None = None) -> dict:
    """The figures every evaluation reports for one video (the loop's held-out videos, `dualipo evaluate`): the
    weight-free metrics of `dualipo.metrics` and the oracle's scores, overall and per dimension (rounded to `digits`
    when given; None when `prompt` is not in the shapes-world grammar)."""
    try:
        s = score(prompt, video)
        scores = {"overall": s.overall, **s.dims}
    except ValueError:  # not a shapes-world prompt: nothing to score
        scores = None
    if scores is not None and digits is not None:
        scores = {k: round(v, digits) for k, v in scores.items()}
    return {"metrics": video_metrics(video.frames, video.fps), "oracle": scores}


def summarize(records: Sequence[dict]) -> dict:
    """Means of `measure`'s records: the video metrics (`summarize_video_metrics`), `oracle_<key>` over the scored
    videos and `oracle_videos`."""
    mean = summarize_video_metrics([r["metrics"] for r in records])
    scored = [r["oracle"] for r in records if r["oracle"] is not None]
    mean.update({f"oracle_{k}": v for k, v in mean_by_key(scored).items()})
    mean["oracle_videos"] = len(scored)
    return mean


def evaluate_generator(gen, cfg: RunConfig, num_prompts: int, seeds: tuple[int, ...] = (0, 1),
                       return_videos: bool = False):
    """Mean oracle score per dimension (and 'overall') over `num_prompts` held-out prompts x `seeds`."""
    from dualipo.generators import sample_videos

    prompts = prompt_pools(cfg.world)[1][:num_prompts]
    items = [(p, s) for p in prompts for s in seeds]
    videos = sample_videos(gen, cfg, [p for p, _ in items], [s for _, s in items])
    scores = [score(p, v) for (p, _), v in zip(items, videos)]
    out = {d: round(v, 4) for d, v in mean_by_key([s.dims for s in scores]).items()}
    out["overall"] = round(float(np.mean([s.overall for s in scores])), 4)
    out["num_videos"] = len(videos)
    return (out, items, videos, scores) if return_videos else out


def write_samples(cfg: RunConfig, out, prompts: list[str], seeds: list[int]) -> Path:
    """Sample every prompt with every seed; write mp4 + PNG strip per video and samples.jsonl (with oracle
    scores when the prompt is in the shapes-world grammar)."""
    from dualipo.generators import build_generator, sample_videos
    from dualipo.jsonl import write_jsonl
    from dualipo.video import write_png_strip, write_video

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = [(p, s) for p in prompts for s in seeds]
    videos = sample_videos(build_generator(cfg), cfg, [p for p, _ in items], [s for _, s in items])
    rows = []
    for i, ((prompt, seed), video) in enumerate(zip(items, videos)):
        name = f"{i:04d}_seed{seed}"
        write_video(out / f"{name}.mp4", video)
        write_png_strip(out / f"{name}.png", video, num_frames=cfg.world.num_frames)
        rows.append({"file": f"{name}.mp4", "prompt": prompt, "seed": seed, "oracle": score_dict(prompt, video)})
    return write_jsonl(out / "samples.jsonl", rows)


def evaluate_prompts(cfg: RunConfig, prompts: Sequence[tuple[str, str]], seeds: Sequence[int],
                     loras: Sequence[str | Path] = ()) -> dict:
    """Sample every (prompt id, prompt) with every seed from `cfg.generator` (plus `loras`, each loaded and merged
    in order, as the round loop rebuilds round k's generator) and measure each video: the weight-free metrics of
    `dualipo.metrics` and, for shapes-world prompts, the oracle's scores. Returns the JSON document of
    `dualipo evaluate`: per video and the means (`summarize_video_metrics`; `oracle_*` over the scored videos)."""
    from tqdm.auto import tqdm

    from dualipo.generators import build_generator, sample_videos

    if not seeds:
        raise ValueError("eval.seeds: give at least one seed")
    gen = build_generator(cfg)
    for path in loras:
        gen.load_lora(path)
        gen.merge_lora()
    items = [(pid, prompt, seed) for pid, prompt in prompts for seed in seeds]
    videos = sample_videos(gen, cfg, [p for _, p, _ in items], [s for *_, s in items])
    rows = []
    for (pid, prompt, seed), video in tqdm(list(zip(items, videos)), desc="metrics", unit="video"):
        rows.append({"prompt_id": pid, "prompt": prompt, "seed": seed, **measure(prompt, video, digits=4)})
    return {"generator": cfg.generator.path, "loras": [str(p) for p in loras], "seeds": list(seeds),
            "num_videos": len(rows), "mean": summarize(rows), "videos": rows}
