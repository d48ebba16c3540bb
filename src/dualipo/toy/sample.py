"""Write shapes-world samples to disk so a person can look at them: mp4s, PNG strips, prompts.jsonl, index.html."""

from __future__ import annotations

import html
from pathlib import Path

from tqdm import tqdm

from dualipo import seeds
from dualipo.config import WorldConfig
from dualipo.jsonl import write_jsonl
from dualipo.ledger import atomic_write_text
from dualipo.toy.corrupt import web_captions
from dualipo.toy.oracle import score
from dualipo.toy.world import prompt_pools, render_prompt
from dualipo.video import write_png_strip, write_video



def sample_world(cfg: WorldConfig, out: str | Path, n: int, split: str = "train", seed: int = 0) -> Path:
    """Render `n` prompts (cycling through the split's pool) with seeds seed, seed+1, ...

    Writes `videos/NNNN.mp4`, `thumbs/NNNN.png`, one JSON line per video to `prompts.jsonl` (id, prompt, the web
    caption the world's corpus would give the render (`world.web`), seed, path, the oracle's scores against the
    true prompt) and `index.html`: each render's frames beside its web caption and its true prompt. Returns the
    JSONL path; it is written last, atomically.
    """
    if n < 1:
        raise ValueError(f"--n must be >= 1, got {n}")
    train, held_out = prompt_pools(cfg)
    pool = {"train": train, "eval": held_out}[split]
    prompts = [pool[i % len(pool)] for i in range(n)]
    captions = web_captions(prompts, cfg, stream=seeds.world_sample_captions(seed))
    out = Path(out)
    records = []
    for i in tqdm(range(n), desc=f"rendering {split} prompts", unit="video"):
        prompt, vid_seed = prompts[i], seed + i
        video = render_prompt(prompt, vid_seed, cfg)
        path = write_video(out / "videos" / f"{i:04d}.mp4", video)
        write_png_strip(out / "thumbs" / f"{i:04d}.png", video)
        s = score(prompt, video)
        records.append({"id": f"{i:04d}", "prompt": prompt, "web_caption": captions[i], "seed": vid_seed,
                        "path": str(path.relative_to(out)), "oracle": {"overall": s.overall, **s.dims}})
    atomic_write_text(out / "index.html", _index(records))
    return write_jsonl(out / "prompts.jsonl", records)


def caption_table(records: list[dict]) -> str:
    """Plain-text rows: id, true prompt, web caption (marked * where it names something wrong)."""
    width = max(len(r["prompt"]) for r in records)
    return "\n".join(f"{r['id']}  {r['prompt']:<{width}}  {'*' if r['web_caption'] != r['prompt'] else ' '} "
                     f"{r['web_caption']}" for r in records)


def _index(records: list[dict]) -> str:
    rows = "".join(
        f"<tr><td><img src='thumbs/{r['id']}.png'></td><td{' class=bad' * (r['web_caption'] != r['prompt'])}>"
        f"{html.escape(r['web_caption'])}</td><td>{html.escape(r['prompt'])}</td>"
        f"<td>{r['oracle']['overall']:.2f}</td></tr>" for r in records)
    return ("<!doctype html><meta charset=utf-8><title>shapes world</title><style>td{padding:4px;font:14px sans-serif}"
            "img{image-rendering:pixelated;height:64px}.bad{color:#b00}</style><table><tr><th>render</th>"
            "<th>web caption (red: names something wrong)</th><th>true prompt</th><th>oracle</th></tr>"
            f"{rows}</table>\n")
