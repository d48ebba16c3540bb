"""Write shapes-world samples to disk so a person can look at them: mp4s, PNG strips, prompts.jsonl."""

from __future__ import annotations

from pathlib import Path

from tqdm import tqdm

from dualipo.config import WorldConfig
from dualipo.jsonl import write_jsonl
from dualipo.toy.oracle import score
from dualipo.toy.world import prompt_pools, render_prompt
from dualipo.video import write_png_strip, write_video


def sample_world(cfg: WorldConfig, out: str | Path, n: int, split: str = "train", seed: int = 0) -> Path:
    """Render `n` prompts (cycling through the split's pool) with seeds seed, seed+1, ...

    Writes `videos/NNNN.mp4`, `thumbs/NNNN.png` and one JSON line per video to `prompts.jsonl`
    (id, prompt, seed, path, oracle scores); returns the JSONL path. The JSONL is written last, atomically.
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    train, held_out = prompt_pools(cfg)
    pool = {"train": train, "eval": held_out}[split]
    out = Path(out)
    records = []
    for i in tqdm(range(n), desc=f"rendering {split} prompts", unit="video"):
        prompt, vid_seed = pool[i % len(pool)], seed + i
        video = render_prompt(prompt, vid_seed, cfg)
        path = write_video(out / "videos" / f"{i:04d}.mp4", video)
        write_png_strip(out / "thumbs" / f"{i:04d}.png", video)
        s = score(prompt, video)
        records.append({"id": f"{i:04d}", "prompt": prompt, "seed": vid_seed,
                        "path": str(path.relative_to(out)), "oracle": {"overall": s.overall, **s.dims}})
    return write_jsonl(out / "prompts.jsonl", records)
