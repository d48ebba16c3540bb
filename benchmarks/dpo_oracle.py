"""Diffusion-DPO on shapes-world pairs labelled by the oracle: does the generator's oracle score rise?

The oracle stands in for a perfect critic (the round loop never uses it). Per training prompt the generator
samples N videos; the oracle's best vs worst become a DPO pair; the LoRA policy trains on them, resuming the
same run in chunks so the held-out oracle score is measured along the way. Prints JSON: the loss / implicit
accuracy curve and the held-out oracle scores (overall and per dimension) before and after each chunk.

    python benchmarks/dpo_oracle.py --out runs/dpo_oracle [--prompts 48] [--n 4] [--chunks 50 100 200]
        [KEY=VALUE overrides, e.g. train.beta=500]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from dualipo.config import build_config
from dualipo.generators import build_generator
from dualipo.generators.evaluate import evaluate_generator
from dualipo.toy.oracle import score
from dualipo.toy.world import prompt_pools
from dualipo.trainer import build_cache, train_generator


def oracle_pairs(gen, cfg, num_prompts: int, n: int):
    w = cfg.world
    prompts = prompt_pools(w)[0][:num_prompts]
    items = [(p, 1000 + k) for p in prompts for k in range(n)]
    videos = gen.sample([p for p, _ in items], [s for _, s in items], num_frames=w.num_frames, height=w.height,
                        width=w.width, batch_size=cfg.sampling.batch_size)
    chosen, rejected, kept, gaps = [], [], [], []
    for i, p in enumerate(prompts):
        group = videos[i * n:(i + 1) * n]
        scores = [score(p, v).overall for v in group]
        best, worst = int(np.argmax(scores)), int(np.argmin(scores))
        if scores[best] - scores[worst] > 0.02:
            kept.append(p)
            chosen.append(group[best])
            rejected.append(group[worst])
            gaps.append(scores[best] - scores[worst])
    return kept, chosen, rejected, float(np.mean(gaps)) if gaps else 0.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", type=int, default=48)
    ap.add_argument("--n", type=int, default=4, help="videos per prompt")
    ap.add_argument("--chunks", type=int, nargs="+", default=[50, 100, 200], help="steps at which to evaluate")
    ap.add_argument("--eval-prompts", type=int, default=32)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("overrides", nargs="*")
    a = ap.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = build_config(a.preset, overrides=a.overrides)
    gen = build_generator(cfg)
    t0 = time.time()
    before = evaluate_generator(gen, cfg, a.eval_prompts)
    prompts, chosen, rejected, gap = oracle_pairs(gen, cfg, a.prompts, a.n)
    cache = build_cache(gen, prompts, chosen, rejected)
    evals = [{"step": 0, **before}]
    for steps in a.chunks:
        train_generator(gen, cache, replace(cfg.train, num_steps=steps), a.out)
        evals.append({"step": steps, **evaluate_generator(gen, cfg, a.eval_prompts)})
    log = [json.loads(line) for line in (Path(a.out) / "metrics.jsonl").read_text().splitlines()]
    every = max(1, len(log) // 20)
    curve = [{k: round(r[k], 4) for k in ("step", "loss", "implicit_acc", "margin")} for r in log[::every]]
    train = {"beta": cfg.train.beta, "lr": cfg.train.learning_rate, "batch_size": cfg.train.batch_size,
             "lambda_winner": cfg.train.lambda_winner, "lora_rank": cfg.generator.lora_rank}
    print(json.dumps({"pairs": len(prompts), "mean_oracle_gap_in_pairs": round(gap, 4), "train": train,
                      "curve": curve, "held_out_oracle": evals, "wall_s": round(time.time() - t0, 1)}, indent=1))


if __name__ == "__main__":
    main()
