"""Step 1 of a round: N videos per prompt from the current generator, with recorded seeds.

Items (prompt, seed) are sampled in the fixed item-index chunks of `generators.base.fixed_batches`, the unit of
the sampling reproducibility contract: a chunk is skipped on resume only if every one of its videos is recorded,
otherwise the whole chunk is sampled again (its recorded videos keep their files), so a resumed run gets
bit-identical videos to an uninterrupted one. Chunks are dealt across processes.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass
from typing import Callable

from dualipo.generators.base import fixed_batches
from dualipo.ledger import atomic_path, sha256_file
from dualipo.loop.context import (RunContext, eval_prompt_id, from_main, generator_after, round_prompts, run_sharded,
                                  video_seed)
from dualipo.video import Video, write_video

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Item:
    index: int  # position in the stage's item list (fixes the chunks)
    prompt_id: str
    prompt: str
    seed: int
    path: str  # run-relative mp4 path


def write_item_video(ctx: RunContext, item: Item, video: Video) -> str:
    """Write the mp4 atomically (temp name, fsync, rename); returns its sha256."""
    path = ctx.abs(item.path)
    with atomic_path(path) as tmp:
        write_video(tmp, video)
    return sha256_file(path)


def sample_chunks(ctx: RunContext, gen, items: list[Item], done: set[int], desc: str,
                  extra: Callable[[Item, Video], dict] | None, commit: Callable[[dict], None]) -> None:
    """Sample every chunk of `items` that has an item not in `done` (item indices). Each new video is written,
    then `commit` gets {item fields, sha256, **extra(item, video)} on the main process."""
    w = ctx.cfg.world
    chunks = [list(c) for c in fixed_batches(len(items), ctx.cfg.sampling.batch_size)]
    todo = [c for c in chunks if any(i not in done for i in c)]

    def work(chunk: list[int]) -> list[dict]:
        batch = [items[i] for i in chunk]
        videos = gen.sample([it.prompt for it in batch], [it.seed for it in batch], num_frames=w.num_frames,
                            height=w.height, width=w.width, batch_size=ctx.cfg.sampling.batch_size, progress=False)
        out = []
        for it, video in zip(batch, videos):
            if it.index in done:
                continue  # recorded with its file: keep it
            rec = {**asdict(it), "sha256": write_item_video(ctx, it, video)}
            out.append({**rec, **(extra(it, video) if extra else {})})
        return out

    if len(todo) < len(chunks):
        log.info("%s: %d of %d chunks already recorded", desc, len(chunks) - len(todo), len(chunks))
    run_sharded(ctx, todo, work, commit, desc, "batch")


def train_items(ctx: RunContext, k: int) -> list[Item]:
    n = ctx.cfg.sampling.videos_per_prompt
    items = []
    for pos, (pid, prompt) in enumerate(round_prompts(ctx, k)):
        for j in range(n):
            seed = video_seed(ctx.cfg, k, pos, j)
            path = ctx.rel(ctx.round_dir(k) / "videos" / f"{pid}_s{seed}.mp4")
            items.append(Item(len(items), pid, prompt, seed, path))
    return items


def sample_stage(ctx: RunContext, k: int) -> tuple[str, str]:
    """Sample N videos per prompt of round k from the generator at the end of round k-1."""
    items = train_items(ctx, k)
    recorded = from_main(ctx, lambda: {(r["prompt_id"], r["seed"]) for r in ctx.ledger.videos(k, "train")})
    done = {it.index for it in items if (it.prompt_id, it.seed) in recorded}
    gen, gen_id = generator_after(ctx, k - 1)

    def commit(rec: dict) -> None:
        ctx.ledger.add_video(k, "train", rec["prompt_id"], rec["seed"], rec["index"], rec["path"], rec["sha256"],
                             gen_id)

    sample_chunks(ctx, gen, items, done, f"round {k} sampling", None, commit)
    n = len(items)
    if ctx.main:
        ctx.metrics.log(k, "sample", {"videos": n, "prompts": n // ctx.cfg.sampling.videos_per_prompt})
    return "done", f"{n} videos in {ctx.rel(ctx.round_dir(k) / 'videos')}"


def verified_videos(ctx: RunContext, k: int) -> list:
    """The recorded training videos of round k, each file checked against its recorded hash."""
    rows = ctx.ledger.videos(k, "train")
    for r in rows:
        path = ctx.abs(r["path"])
        if not path.is_file() or sha256_file(path) != r["sha256"]:
            raise ValueError(f"video {path} is missing or differs from the one the ledger recorded; the run "
                             f"directory was changed outside dualipo")
    return rows


def eval_items(ctx: RunContext, k: int, prompts: list[str]) -> list[Item]:
    items = []
    for pos, prompt in enumerate(prompts):
        for seed in ctx.cfg.eval.seeds:
            pid = eval_prompt_id(pos)
            items.append(Item(len(items), pid, prompt, seed, ctx.rel(ctx.round_dir(k) / "eval" / f"{pid}_s{seed}.mp4")))
    return items
