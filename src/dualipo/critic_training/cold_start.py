"""The critic's supervised stages on `loop.train_loop`: captioning pretraining (`caption_pretrain`: describe
videos, no preference labels) and the cold start (`cold_start`: seed rationales + verdicts)."""

from __future__ import annotations

from pathlib import Path

from dualipo.config import RunConfig
from dualipo.critic_training.evaluate import evaluate_captions, evaluate_pairs
from dualipo.critic_training.examples import Example, caption_examples, comparison_examples, sft_examples
from dualipo.critic_training.loop import load_trainable, mixed_batch, sft_loss, train_loop
from dualipo.critic_training.seed import load_seed


def _train_sft(cfg: RunConfig, examples: list[Example], out: Path, evaluate, resume: bool, desc: str,
               aux: list[tuple[list[Example], float]] = ()) -> Path:
    """SFT shared by captioning pretraining and the cold start (`train_loop`). Each (examples, share) of `aux`
    makes up that share of every batch (`mixed_batch`)."""
    ct = cfg.critic_train

    def loss_fn(critic, step):
        return sft_loss(critic, mixed_batch(step, examples, aux, ct.batch_size, ct.seed)), {}

    return train_loop(cfg, load_trainable(cfg), out, loss_fn, evaluate, resume, desc)


def cold_start(cfg: RunConfig, seed_path: str | Path, out: str | Path, heldout_path: str | Path | None = None,
               resume: bool = True, caption_dirs: list[str | Path] | None = None) -> Path:
    """Fine-tune the critic on a seed set; writes `out/ckpt/`, `out/metrics.jsonl` and `out/final/`. With
    `caption_dirs` (shapes world), `critic_train.caption_mix` of every batch is captioning examples of them and
    `critic_train.reasoning_mix` text-only comparison examples built from their true descriptions."""
    ct = cfg.critic_train
    mixes = ct.caption_mix + ct.reasoning_mix
    if bool(caption_dirs) != (mixes > 0):
        raise ValueError("captioning or comparison examples in the cold start need both --caption-videos and "
                         f"critic_train.caption_mix or reasoning_mix > 0 (got {caption_dirs or 'no videos'}, "
                         f"{ct.caption_mix}, {ct.reasoning_mix})")
    if mixes > 0.9:
        raise ValueError(f"critic_train.caption_mix + reasoning_mix = {mixes:g} leaves no room for the seed set "
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
    ct = cfg.critic_train
    examples = caption_examples(dirs, cache=Path(out) / "caption_examples.jsonl")
    heldout = caption_examples(heldout_dirs, ct.eval_pairs) if heldout_dirs and ct.eval_pairs else []
    evaluate = (lambda critic: evaluate_captions(critic, heldout)) if heldout else None
    return _train_sft(cfg, examples, Path(out), evaluate, resume, "critic captioning")
