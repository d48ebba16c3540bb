"""Judgments per second of the transformers critic (`critic.backend=qwen_vl`) and the vLLM critic
(`critic.backend=vllm`) at equal K, on the same pairs (both orders, K sampled paths each), plus each arm's
abstention share and mean answer length as a sanity check that both answer alike. The vLLM arm is skipped, with the
reason, where vLLM or CUDA is missing. Prints one JSON object.

    python benchmarks/critic_backends.py [--preset small] [--pairs 32] [--k 8] [--repeats 2] [KEY=VALUE ...]

e.g. a real critic: `critic.path=/models/Qwen2.5-VL-7B-Instruct critic.arch=qwen2_5_vl critic.dtype=bfloat16
critic.image_size=0 critic.max_new_tokens=256` (the transformers arm then runs on `critic.device`).
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import statistics
import time
from dataclasses import replace

import torch

from dualipo.config import build_config
from dualipo.critics import build_critic
from dualipo.toy.world import prompt_pools, render_prompt


def pairs(cfg, n: int) -> list[tuple]:
    """n (prompt, a, b, dimension) from the world's train prompts, two seeds each (the same for both arms)."""
    pool = prompt_pools(cfg.world)[0]
    out = []
    for i in range(n):
        p = pool[i % len(pool)]
        out.append((p, render_prompt(p, 2 * i, cfg.world), render_prompt(p, 2 * i + 1, cfg.world), "alignment"))
    return out


def run_arm(cfg, items, k: int, repeats: int) -> dict:
    """Build the backend's critic, warm it up, time `judge_many` over all pairs (median of repeats)."""
    t0 = time.perf_counter()
    critic = build_critic(cfg)
    load_s = time.perf_counter() - t0
    critic.judge_many(items[:2], num_votes=k)  # warm-up (kernels, CUDA graphs, caches)
    times, judgments = [], []
    for r in range(repeats):
        torch.manual_seed(r)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        judgments = critic.judge_many(items, num_votes=k)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    samples = [s for j in judgments for s in j.samples]
    s = statistics.median(times)
    out = {"load_s": round(load_s, 2), "s_all_pairs": round(s, 3), "judgments_per_s": round(len(items) / s, 3),
           "paths_per_s": round(len(samples) / s, 2),
           "abstention_share": round(sum(x.verdict is None for x in samples) / len(samples), 3),
           "mean_answer_chars": round(sum(len(x.text) for x in samples) / len(samples), 1)}
    if hasattr(critic, "close"):
        critic.close()
    del critic
    gc.collect()
    if torch.cuda.is_available():
        out["peak_cuda_mb"] = round(torch.cuda.max_memory_allocated() / 2 ** 20)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    return out


def vllm_skip_reason() -> str | None:
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install 'dualipo[vllm]')"
    if not torch.cuda.is_available():
        return "no CUDA device (vLLM's GPU engine needs one)"
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--pairs", type=int, default=32)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    cfg = build_config(args.preset, overrides=args.overrides)
    items = pairs(cfg, args.pairs)
    res = {"preset": args.preset, "critic_path": cfg.critic.path or "random", "k": args.k, "pairs": args.pairs,
           "both_orders": cfg.judging.both_orders, "two_step": cfg.judging.describe_first,
           "pairs_from": cfg.judging.pairs_from, "max_new_tokens": cfg.critic.max_new_tokens,
           "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    res["transformers"] = run_arm(replace(cfg, critic=replace(cfg.critic, backend="qwen_vl")), items, args.k,
                                  args.repeats)
    reason = vllm_skip_reason()
    if reason:
        res["vllm"] = {"skipped": reason}
    else:
        res["vllm"] = run_arm(replace(cfg, critic=replace(cfg.critic, backend="vllm")), items, args.k, args.repeats)
        res["vllm_over_transformers_speedup"] = round(
            res["vllm"]["judgments_per_s"] / res["transformers"]["judgments_per_s"], 2)
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
