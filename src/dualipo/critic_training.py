"""Critic training by supervised fine-tuning (full or LoRA), with progress, checkpoints and exact resume:
- captioning pretraining (`caption_pretrain`): describe videos, no preference labels;
- the cold start (`cold_start`): seed rationales + verdicts. `sft_loss` / `sft_examples` are reused by SRPO.

One loop state unit per checkpoint (`ckpt/step_N/`, written by `dualipo.checkpoint`): trainable weights, AdamW
state, torch RNG, step and losses. The data order is a pure function of (seed, epoch), so a resumed run sees the
same batches and gives the same losses as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dualipo.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from dualipo.config import RunConfig, save_config
from dualipo.critics import prompts
from dualipo.critics.seed import SeedRecord

log = logging.getLogger(__name__)


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


def sft_loss(critic, examples: list[Example]) -> torch.Tensor:
    """Mean token cross-entropy of the targets (the loss covers the answer tokens only)."""
    batch = critic.inputs([e.text for e in examples], [[critic.visual(v) for v in e.videos] for e in examples],
                          [e.target for e in examples])
    return critic.model(**batch).loss


def learning_rate(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10 % of `base`."""
    if step < warmup:
        return base * (step + 1) / warmup
    frac = (step - warmup) / max(total - warmup, 1)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(frac, 1.0))))


def batch_indices(step: int, n: int, batch_size: int, seed: int) -> list[int]:
    """Indices of batch `step`: consecutive slices of per-epoch permutations (pure in seed and step)."""
    out, pos = [], step * batch_size
    while len(out) < batch_size:
        epoch, off = divmod(pos, n)
        perm = np.random.default_rng([seed, epoch]).permutation(n)
        take = perm[off:off + batch_size - len(out)]
        out += take.tolist()
        pos += len(take)
    return out


def mixed_batch(step: int, main: list, aux: Sequence[tuple[list, float]], batch_size: int, seed: int) -> list:
    """Batch `step`: round(share * batch_size) items from each (items, share) of `aux`, the rest from `main`
    (each list in its own pure epoch order)."""
    takes = [(items, round(share * batch_size)) for items, share in aux if items and share > 0]
    picked = [main[i] for i in batch_indices(step, len(main), batch_size - sum(n for _, n in takes), seed)]
    for j, (items, n) in enumerate(takes):
        picked += [items[i] for i in batch_indices(step, len(items), n, seed + 1 + j)]
    return picked


LORA_TARGETS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj)"  # the critic's LoRA: attention of the LM


def _apply_lora(model, cfg: RunConfig):
    from peft import LoraConfig, get_peft_model

    ct = cfg.critic_train
    lc = LoraConfig(r=ct.lora_rank, lora_alpha=ct.lora_alpha, init_lora_weights="gaussian",
                    target_modules=LORA_TARGETS)
    return get_peft_model(model, lc)


def caption_examples(dirs: list[str | Path], limit: int | None = None,
                     cache: Path | None = None) -> list[Example]:
    """Captioning pretraining data: every video (or the first `limit`) of the `prompts.jsonl` directories with
    its true description (what the shapes-world oracle sees, the form the seed rationales use); no prompt, no
    preference labels. With `cache` (a JSONL in the run directory), a resumed run reuses the descriptions of
    unchanged videos (same paths, sizes and modification times) instead of describing them again."""
    from dualipo.critics.seed import read_pool
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


def sequence_logprobs(critic, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
    """(sum of the target tokens' log-probs, number of target tokens) per example, shape (B,) each: the
    rationale's log-likelihood under the critic (prompt and video tokens masked; the EOS counts)."""
    batch = critic.inputs([e.text for e in examples], [[critic.visual(v) for v in e.videos] for e in examples],
                          [e.target for e in examples])
    labels = batch.pop("labels")[:, 1:]
    logits = critic.model(**batch).logits[:, :-1].float()
    mask = labels != -100
    lp = torch.log_softmax(logits, -1).gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (lp * mask).sum(1), mask.sum(1)


class CriticDiverged(RuntimeError):
    """A non-finite critic loss: training stops; the last checkpoint is intact."""


def load_trainable(cfg: RunConfig):
    """(model, tokenizer, critic) for training, from `critic.path`: all weights in float32 when
    `critic_train.finetune=full`; with `lora`, the base stays in `critic.dtype` (a 7B critic in bf16 is half the
    memory) and the adapter on the language model is float32 (peft's default upcast)."""
    from dualipo.critics.qwen_vl import QwenVLCritic, load_model

    model, tok = load_model(cfg.critic)
    if cfg.critic_train.finetune == "lora":
        model = _apply_lora(model, cfg)
    else:
        model = model.float()
    return model, tok, QwenVLCritic(model, tok, cfg.critic, cfg.judging)


def train_loop(cfg: RunConfig, trainable, out: Path, loss_fn, evaluate, resume: bool, desc: str,
               num_steps: int | None = None, guard=None, eval_every: int | None = None) -> Path:
    """The explicit critic training loop: AdamW, warm-up + cosine, clipping, checkpoints with exact resume,
    a NaN guard, a row in OUT/metrics.jsonl every `critic_train.log_every` steps with the means since the last
    row of the loss and of the metrics `loss_fn` returns, and `evaluate(critic) -> dict` added to the rows every
    `eval_every` steps (default `critic_train.eval_every`) and at the end.

    `loss_fn(critic, step) -> (loss, metrics)`. `guard(row) -> str | None`: checked at every evaluation; a
    reason stops training and restores the last checkpoint (written at the previous evaluation that passed).
    Returns OUT/final (a transformers directory, LoRA merged)."""
    from dualipo.critics.qwen_vl import save_model

    ct = cfg.critic_train
    total = num_steps or ct.num_steps
    if ct.num_threads:
        torch.set_num_threads(ct.num_threads)
    save_config(cfg, out / "config.json")
    model, tok, critic = trainable
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=ct.learning_rate, weight_decay=ct.weight_decay)
    step, losses = 0, []
    ckpt_root = out / "ckpt"
    ckpt = latest_checkpoint(ckpt_root) if resume else None
    if ckpt is not None:
        step, extra = load_checkpoint(ckpt, model, optim)
        losses = extra["losses"]
        log.info("resumed from %s at step %d", ckpt, step)
    metrics = out / "metrics.jsonl"
    eval_every = eval_every or ct.eval_every
    every = eval_every if guard is not None else ct.checkpoint_every
    extras: list[dict] = []
    last_row = step  # the step of the last metrics row: each row averages the steps since
    bar = tqdm(total=total, initial=step, desc=desc, unit="step")
    while step < total:
        model.train()
        lr = learning_rate(step, ct.learning_rate, ct.warmup_steps, total)
        for g in optim.param_groups:
            g["lr"] = lr
        loss, extra_metrics = loss_fn(critic, step)
        if not torch.isfinite(loss):
            raise CriticDiverged(f"{desc}: non-finite loss {float(loss)} at step {step}; last good checkpoint: "
                                 f"{latest_checkpoint(ckpt_root)}")
        optim.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, ct.max_grad_norm)
        optim.step()
        step += 1
        losses.append(float(loss.detach()))
        extras.append({k: float(v) for k, v in extra_metrics.items()})
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.1e}")
        due = evaluate is not None and (step % eval_every == 0 or step == total)
        if due or step % ct.log_every == 0:
            window = extras[last_row - step:]
            keys = sorted({k for e in window for k in e})
            means = {k: float(np.mean([e[k] for e in window if k in e])) for k in keys}
            row = {"step": step, "loss": float(np.mean(losses[last_row - step:])), **means}
            last_row = step
            if due:
                model.eval()
                row.update(evaluate(critic))
            stop = guard(row) if guard is not None and due else None
            if stop:
                row["stopped"] = stop
            with metrics.open("a") as f:
                f.write(json.dumps(row) + "\n")
            if due:
                log.info("step %d: %s", step, {k: v for k, v in row.items() if isinstance(v, float)})
            if stop:
                last = latest_checkpoint(ckpt_root)
                log.warning("%s stopped at step %d: %s; restoring %s", desc, step, stop, last or "the start")
                if last is None:
                    model, tok, critic = trainable = load_trainable(cfg)
                else:
                    load_checkpoint(last, model, optim)
                break
        if step % every == 0 or step == total:
            save_checkpoint(ckpt_root, step, model, optim, extra={"losses": losses})
    bar.close()
    model.eval()
    final = model.merge_and_unload() if ct.finetune == "lora" else model
    return save_model(final, tok, out / "final", dtype="float16")


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
    from dualipo.critics.evaluate import evaluate_pairs
    from dualipo.critics.seed import load_seed

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


def comparison_examples(dirs: list[str | Path], captions: list[Example], n: int, dimensions: tuple[str, ...],
                        seed: int = 0, sample_share: float = 0.0) -> list[Example]:
    """`n` text-only comparison examples (`dualipo.toy.reasoning`) built from the true descriptions that
    `captions` (the `caption_examples` of the same directories) hold: of the clean renders of `dirs`, and with
    `sample_share` of the generator samples among them."""
    from dualipo.jsonl import read_jsonl
    from dualipo.toy.reasoning import comparisons, rationale_steps

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
                    f"{rationale_steps(p, dim, [a, b])} {prompts.CLAIMS[v]} on {dim}.\nAnswer: {v}")
            for p, a, b, dim, v in comparisons(refs, n, dimensions, seed, samples=samples, sample_share=sample_share)]


def caption_pretrain(cfg: RunConfig, dirs: list[str | Path], out: str | Path,
                     heldout_dirs: list[str | Path] | None = None, resume: bool = True) -> Path:
    """Captioning pretraining (the analog of a real VLM's pretraining): learn to describe videos before the
    cold start learns to judge them. Start the cold start from OUT/final with `critic.path=OUT/final`."""
    from dualipo.critics.evaluate import evaluate_captions

    ct = cfg.critic_train
    examples = caption_examples(dirs, cache=Path(out) / "caption_examples.jsonl")
    heldout = caption_examples(heldout_dirs, ct.eval_pairs) if heldout_dirs and ct.eval_pairs else []
    evaluate = (lambda critic: evaluate_captions(critic, heldout)) if heldout else None
    return _train_sft(cfg, examples, Path(out), evaluate, resume, "critic captioning")
