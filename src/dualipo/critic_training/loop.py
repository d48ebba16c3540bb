"""The critic's training loop (`train_loop`), shared by the cold start, captioning pretraining and self-refinement:
its examples, batching, sequence losses and trainable model (full or LoRA).

One loop state unit per checkpoint (`ckpt/step_N/`, written by `dualipo.checkpoint`): trainable weights, AdamW
state, torch RNG, step and losses. The data order is a pure function of (seed, epoch), so a resumed run sees the
same batches and gives the same losses as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from dualipo.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from dualipo.config import CriticOptimConfig, RunConfig, save_config
from dualipo.optim import clipped_step, warmup_cosine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Example:
    text: str  # chat prompt with video slots
    videos: tuple[str, ...]  # in slot order
    target: str  # rationale + answer line, or the answer line only


def sft_loss(critic, examples: list[Example]) -> torch.Tensor:
    """Mean token cross-entropy of the targets (the loss covers the answer tokens only)."""
    batch = critic.inputs([e.text for e in examples], [[critic.visual(v) for v in e.videos] for e in examples],
                          [e.target for e in examples])
    return critic.model(**batch).loss


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


def _apply_lora(model, ct: CriticOptimConfig):
    from peft import LoraConfig, get_peft_model

    lc = LoraConfig(r=ct.lora_rank, lora_alpha=ct.lora_alpha, init_lora_weights="gaussian",
                    target_modules=LORA_TARGETS)
    return get_peft_model(model, lc)


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


def load_trainable(cfg: RunConfig, ct: CriticOptimConfig):
    """(model, tokenizer, critic) for training, from `critic.path`: all weights in float32 when `ct.finetune=full`
    (`ct`: `critic_cold` or `critic_refine`); with `lora`, the base stays in `critic.dtype` (a 7B critic in bf16 is
    half the memory) and the adapter on the language model is float32 (peft's default upcast)."""
    from dualipo.critics.qwen_vl import QwenVLCritic, load_model

    model, tok = load_model(cfg.critic)
    if ct.finetune == "lora":
        model = _apply_lora(model, ct)
    else:
        model = model.float()
    return model, tok, QwenVLCritic(model, tok, cfg.critic, cfg.judging)


def train_loop(cfg: RunConfig, ct: CriticOptimConfig, trainable, out: Path, loss_fn, evaluate, resume: bool,
               desc: str, total: int, guard=None, eval_every: int | None = None) -> Path:
    """The explicit critic training loop, `total` steps with the settings of `ct` (`critic_cold` or `critic_refine`):
    AdamW, warm-up + cosine, clipping, checkpoints with exact resume, a NaN guard, a row in OUT/metrics.jsonl every
    `ct.log_every` steps with the means since the last row of the loss and of the metrics `loss_fn` returns, and
    `evaluate(critic) -> dict` added to the rows every `eval_every` steps (default `ct.eval_every`) and at the end.

    `loss_fn(critic, step) -> (loss, metrics)`. `guard(row) -> str | None`: checked at every evaluation; a
    reason stops training and restores the last checkpoint (written at the previous evaluation that passed).
    Returns OUT/final (a transformers directory, LoRA merged)."""
    from dualipo.critics.qwen_vl import save_model

    if ct.num_threads:
        torch.set_num_threads(ct.num_threads)
    save_config(cfg, out / "config.json")
    model, tok, critic = trainable
    params = [p for p in model.parameters() if p.requires_grad]
    optim = torch.optim.AdamW(params, lr=ct.learning_rate, weight_decay=ct.weight_decay)
    ckpt_root = out / "ckpt"
    step, losses = _resume(ckpt_root, model, optim) if resume else (0, [])
    eval_every = eval_every or ct.eval_every
    every = eval_every if guard is not None else ct.checkpoint_every
    extras: list[dict] = []
    last_row = step  # the step of the last metrics row: each row averages the steps since
    bar = tqdm(total=total, initial=step, desc=desc, unit="step")
    while step < total:
        model.train()
        lr = warmup_cosine(step, ct.learning_rate, ct.warmup_steps, total, 0.1)
        loss, extra_metrics = loss_fn(critic, step)
        if not torch.isfinite(loss):
            raise CriticDiverged(f"{desc}: non-finite loss {float(loss)} at step {step}; last good checkpoint: "
                                 f"{latest_checkpoint(ckpt_root)}")
        clipped_step(optim, params, loss, lr, ct.max_grad_norm)
        step += 1
        losses.append(float(loss.detach()))
        extras.append({k: float(v) for k, v in extra_metrics.items()})
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr:.1e}")
        due = evaluate is not None and (step % eval_every == 0 or step == total)
        if due or step % ct.log_every == 0:
            stop = _write_row(out / "metrics.jsonl", step, losses[last_row - step:], extras[last_row - step:], model,
                              critic, evaluate if due else None, guard)
            last_row = step
            if stop:
                last = latest_checkpoint(ckpt_root)
                log.warning("%s stopped at step %d: %s; restoring %s", desc, step, stop, last or "the start")
                if last is None:
                    model, tok, critic = load_trainable(cfg, ct)
                else:
                    load_checkpoint(last, model, optim)
                break
        if step % every == 0 or step == total:
            save_checkpoint(ckpt_root, step, model, optim, extra={"losses": losses})
    bar.close()
    model.eval()
    final = model.merge_and_unload() if ct.finetune == "lora" else model
    return save_model(final, tok, out / "final", dtype="float16")


def _resume(ckpt_root: Path, model, optim) -> tuple[int, list[float]]:
    """(step, losses) of the last checkpoint, its weights and AdamW state loaded; (0, []) when there is none."""
    ckpt = latest_checkpoint(ckpt_root)
    if ckpt is None:
        return 0, []
    step, extra = load_checkpoint(ckpt, model, optim)
    log.info("resumed from %s at step %d", ckpt, step)
    return step, extra["losses"]


def _write_row(metrics: Path, step: int, losses: list[float], extras: list[dict], model, critic, evaluate,
               guard) -> str | None:
    """A row appended to `metrics`: the means of the loss and metrics over the steps since the last row, and with
    `evaluate` (an evaluation is due) the critic's evaluation, `guard` checked on it. Returns the guard's reason."""
    means = {k: float(np.mean([e[k] for e in extras if k in e])) for k in sorted({k for e in extras for k in e})}
    row = {"step": step, "loss": float(np.mean(losses)), **means}
    if evaluate is not None:
        model.eval()
        row.update(evaluate(critic))
    stop = guard(row) if guard is not None and evaluate is not None else None
    if stop:
        row["stopped"] = stop
    with metrics.open("a") as f:
        f.write(json.dumps(row) + "\n")
    if evaluate is not None:
        log.info("step %d: %s", step, {k: v for k, v in row.items() if isinstance(v, float)})
    return stop
