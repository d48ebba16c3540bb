"""Step 1 of a round (and the held-out videos of step 7): videos from a generator, with recorded seeds.

Items (prompt, seed) are sampled in the fixed item-index chunks of `generators.base.fixed_batches`, the unit of
the sampling reproducibility contract: a chunk is skipped on resume only if every one of its videos is recorded,
otherwise the whole chunk is sampled again (its recorded videos keep their files), so a resumed run gets
bit-identical videos to an uninterrupted one. Chunks are dealt across processes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

from dualipo import seeds
from dualipo.config import RunConfig
from dualipo.generators.base import fixed_batches
from dualipo.ledger import atomic_path, sha256_file
from dualipo.loop.processes import Processes
from dualipo.loop.prompts import eval_prompt_id
from dualipo.video import Video, write_video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    index: int  # position in the stage's item list (fixes the chunks)
    prompt_id: str
    prompt: str
    seed: int
    path: str  # run-relative mp4 path


def train_items(cfg: RunConfig, prompts: list[tuple[str, str]], k: int, round_rel: str) -> list[Item]:
    """N videos per prompt of round k (`sampling.videos_per_prompt`), in round_k/videos/."""
    n = cfg.sampling.videos_per_prompt
    items = []
    for pos, (pid, prompt) in enumerate(prompts):
        for j in range(n):
            seed = seeds.video(cfg.sampling.seed, k, pos, n, j)
            items.append(Item(len(items), pid, prompt, seed, str(Path(round_rel) / "videos" / f"{pid}_s{seed}.mp4")))
    return items


def eval_items(eval_seeds, prompts: list[str], round_rel: str) -> list[Item]:
    """Every held-out prompt with every evaluation seed, in round_k/eval/."""
    items = []
    for pos, prompt in enumerate(prompts):
        for seed in eval_seeds:
            pid = eval_prompt_id(pos)
            items.append(Item(len(items), pid, prompt, seed, str(Path(round_rel) / "eval" / f"{pid}_s{seed}.mp4")))
    return items


def sample_items(gen, items: list[Item], done: set[int], run_dir: Path, cfg: RunConfig, procs: Processes, desc: str,
                 commit: Callable[[dict], None], extra: Callable[[Item, Video], dict] | None = None) -> None:
    """Sample every chunk of `items` that has an item not in `done` (item indices). Each new video is written
    atomically to RUN/item.path, then `commit` gets {item fields, sha256, **extra(item, video)} on the main
    process, chunk by chunk (an interruption loses at most the chunks in flight)."""
    from dualipo.generators import sample_videos

    chunks = [list(c) for c in fixed_batches(len(items), cfg.sampling.batch_size)]
    todo = [c for c in chunks if any(i not in done for i in c)]

    def work(chunk: list[int]) -> list[dict]:
        batch = [items[i] for i in chunk]
        videos = sample_videos(gen, cfg, [it.prompt for it in batch], [it.seed for it in batch], progress=False)
        out = []
        for it, video in zip(batch, videos):
            if it.index in done:
                continue  # recorded with its file: keep it
            path = run_dir / it.path
            with atomic_path(path) as tmp:
                write_video(tmp, video)
            out.append({**asdict(it), "sha256": sha256_file(path), **(extra(it, video) if extra else {})})
        return out

    if len(todo) < len(chunks):
        log.info("%s: %d of %d chunks already recorded", desc, len(chunks) - len(todo), len(chunks))
    procs.shard(todo, work, commit, desc, "batch")
