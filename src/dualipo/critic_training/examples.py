"""Critic training examples: seed records -> SFT examples (`sft_examples`, reused by self-refinement), and the
shapes world's captioning (`caption_examples`) and text-only comparison (`comparison_examples`) examples."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from dualipo.critic_training.seed import SeedRecord, read_pool
from dualipo.critics import prompts


@dataclass(frozen=True)
class Example:
    text: str  # chat prompt with video slots
    videos: tuple[str, ...]  # in slot order
    target: str  # rationale + answer line, or the answer line only


def sft_examples(records: list[SeedRecord], both_orders: bool, no_cot_fraction: float,
                 seed: int = 0) -> list[Example]:
    """Seed records -> training examples; pairs also in the swapped order (reason and label swapped)."""
    rng = np.random.default_rng([seed, 3])
    out = []
    for r in records:
        views = [(r.videos, r.reason, r.label)]
        if r.mode == "pairwise" and both_orders:
            views.append((r.videos[::-1], prompts.swap_reason(r.reason), prompts.swap_verdict(r.label)))
        for vids, reason, label in views:
            cot = bool(rng.random() >= no_cot_fraction)
            text = (prompts.pair_prompt(r.prompt, r.dimension, cot) if r.mode == "pairwise"
                    else prompts.point_prompt(r.prompt, r.dimension, cot))
            out.append(Example(text, tuple(vids), prompts.target_text(reason, label, cot)))
    return out


def caption_examples(dirs: list[str | Path], limit: int | None = None,
                     cache: Path | None = None) -> list[Example]:
    """Captioning pretraining data: every video (or the first `limit`) of the `prompts.jsonl` directories with
    its true description (what the shapes-world oracle sees, the form the seed rationales use); no prompt, no
    preference labels. With `cache` (a JSONL in the run directory), a resumed run reuses the descriptions of
    unchanged videos (same paths, sizes and modification times) instead of describing them again."""
    from dualipo.jsonl import read_jsonl, write_jsonl
    from dualipo.toy.oracle import score
    from dualipo.toy.seed_labels import describe
    from dualipo.video import read_video

    items = [(p, v) for d in dirs for p, vids in read_pool(Path(d)).items() for v in vids][:limit]
    stats = [Path(v).stat() for _, v in items]
    stamps = [[str(v), st.st_size, st.st_mtime_ns] for (_, v), st in zip(items, stats)]
    if cache is not None and cache.is_file():
        rows = [r for _, r in read_jsonl(cache, "caption cache")]
        if [r["stamp"] for r in rows] == stamps:
            return [Example(prompts.caption_prompt(), (v,), r["target"]) for (_, v), r in zip(items, rows)]
    out = [Example(prompts.caption_prompt(), (v,), prompts.caption_target(describe(score(p, read_video(v)))))
           for p, v in tqdm(items, desc="describing videos", unit="video")]
    if cache is not None:
        write_jsonl(cache, ({"stamp": st, "target": e.target} for st, e in zip(stamps, out)))
    return out


def comparison_examples(dirs: list[str | Path], captions: list[Example], n: int, dimensions: tuple[str, ...],
                        seed: int = 0, sample_share: float = 0.0) -> list[Example]:
    """`n` text-only comparison examples (`dualipo.toy.reasoning`) built from the true descriptions that
    `captions` (the `caption_examples` of the same directories) hold: of the clean renders of `dirs`, and with
    `sample_share` of the generator samples among them."""
    from dualipo.jsonl import read_jsonl
    from dualipo.toy.reasoning import CLAIMS, comparisons, rationale_steps

    described = {e.videos[0]: prompts.caption_description(e.target) for e in captions}
    refs, samples = [], {}
    for d in dirs:
        for _, r in read_jsonl(Path(d) / "prompts.jsonl"):
            text = described[str(Path(d) / r["path"])]
            if r.get("variant") == "clean":
                refs.append((r["prompt"], text))
            elif r.get("variant") == "generator":
                samples.setdefault(r["prompt"], []).append(text)
    return [Example(prompts.pair_prompt(p, dim, videos=False) + prompts.described([a, b]), (),
                    f"{rationale_steps(p, dim, [a, b])} {CLAIMS[v]} on {dim}.\nAnswer: {v}")
            for p, a, b, dim, v in comparisons(refs, n, dimensions, seed, samples=samples, sample_share=sample_share)]
