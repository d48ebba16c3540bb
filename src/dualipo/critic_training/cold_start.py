"""The critic's supervised stages on `loop.train_loop`, captioning pretraining (describe videos, no labels) and the
cold start (seed rationales + verdicts, with captions and text-only comparisons), and their examples."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from dualipo.config import RunConfig
from dualipo.critic_training.evaluate import evaluate_captions, evaluate_pairs
from dualipo.critic_training.loop import Example, load_trainable, mixed_batch, sft_loss, train_loop
from dualipo.critic_training.seed import SeedRecord, load_seed, read_pool
from dualipo.critics import prompts
from dualipo.jsonl import read_jsonl, write_jsonl
from dualipo.toy.oracle import score
from dualipo.toy.reasoning import CLAIMS, comparisons, rationale_steps
from dualipo.toy.seed_labels import describe
from dualipo.video import read_video


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


def _train_sft(cfg: RunConfig, examples: list[Example], out: Path, evaluate, resume: bool, desc: str,
               aux: list[tuple[list[Example], float]] = ()) -> Path:
    """SFT shared by captioning pretraining and the cold start (`train_loop`). Each (examples, share) of `aux`
    makes up that share of every batch (`mixed_batch`)."""
    ct = cfg.critic_cold

    def loss_fn(critic, step):
        return sft_loss(critic, mixed_batch(step, examples, aux, ct.batch_size, ct.seed)), {}

    return train_loop(cfg, ct, load_trainable(cfg, ct), out, loss_fn, evaluate, resume, desc, ct.num_steps)


def cold_start(cfg: RunConfig, seed_path: str | Path, out: str | Path, heldout_path: str | Path | None = None,
               resume: bool = True, caption_dirs: list[str | Path] | None = None) -> Path:
    """Fine-tune the critic on a seed set; writes `out/ckpt/`, `out/metrics.jsonl` and `out/final/`. With
    `caption_dirs` (shapes world), `critic_cold.caption_mix` of every batch is captioning examples of them and
    `critic_cold.reasoning_mix` text-only comparison examples built from their true descriptions."""
    ct = cfg.critic_cold
    mixes = ct.caption_mix + ct.reasoning_mix
    if bool(caption_dirs) != (mixes > 0):
        raise ValueError("captioning or comparison examples in the cold start need both critic_cold.caption_videos "
                         f"and critic_cold.caption_mix or reasoning_mix > 0 (got {caption_dirs or 'no videos'}, "
                         f"{ct.caption_mix}, {ct.reasoning_mix})")
    if mixes > 0.9:
        raise ValueError(f"critic_cold.caption_mix + reasoning_mix = {mixes:g} leaves no room for the seed set "
                         "(at most 0.9)")
    records = load_seed(seed_path)
    heldout = load_seed(heldout_path)[:ct.eval_pairs] if heldout_path and ct.eval_pairs else []
    examples = sft_examples(records, ct.both_orders, ct.no_cot_fraction, ct.seed)
    evaluate = (lambda critic: evaluate_pairs(critic, heldout, num_votes=1, chain_of_thought=True)) if heldout \
        else None
    aux = []
    if caption_dirs:
        captions = caption_examples(caption_dirs, cache=Path(out) / "caption_examples.jsonl")
        dims = ct.reasoning_dimensions or tuple(sorted({r.dimension for r in records if r.mode == "pairwise"}))
        aux = [(captions, ct.caption_mix),
               (comparison_examples(caption_dirs, captions, ct.reasoning_examples, dims, ct.seed,
                                    ct.reasoning_sample_share) if ct.reasoning_mix > 0 else [], ct.reasoning_mix)]
    return _train_sft(cfg, examples, Path(out), evaluate, resume, "critic cold start", aux)


def caption_pretrain(cfg: RunConfig, dirs: list[str | Path], out: str | Path,
                     heldout_dirs: list[str | Path] | None = None, resume: bool = True) -> Path:
    """Captioning pretraining (the analog of a real VLM's pretraining): learn to describe videos before the
    cold start learns to judge them. Start the cold start from OUT/final with `critic.path=OUT/final`."""
    ct = cfg.critic_cold
    examples = caption_examples(dirs, cache=Path(out) / "caption_examples.jsonl")
    heldout = caption_examples(heldout_dirs, ct.eval_pairs) if heldout_dirs and ct.eval_pairs else []
    evaluate = (lambda critic: evaluate_captions(critic, heldout)) if heldout else None
    return _train_sft(cfg, examples, Path(out), evaluate, resume, "critic captioning")
