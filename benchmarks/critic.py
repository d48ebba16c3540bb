"""Critic judging cost: K = 8 votes in one batched `generate` call vs 8 separate calls, seconds per judgment
(both orders, K votes), batched judgments, peak memory (and peak CUDA memory on a GPU, `critic.device`). Prints
one JSON object.

    python benchmarks/critic.py [--preset small] [--threads 1] [--repeats 3] [KEY=VALUE ...]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time

import torch

from dualipo.config import build_config
from dualipo.critics import build_critic
from dualipo.critics.prompts import pair_prompt
from dualipo.toy.world import prompt_pools, render_prompt


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    ts = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return statistics.median(ts)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="small")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--k", type=int, default=8)
    ap.add_argument("overrides", nargs="*")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = build_config(args.preset, overrides=args.overrides)
    critic = build_critic(cfg)
    device = next(critic.model.parameters()).device
    prompt = prompt_pools(cfg.world)[1][0]
    a, b = render_prompt(prompt, 0, cfg.world), render_prompt(prompt, 1, cfg.world)
    text, vids = pair_prompt(prompt, "alignment"), [critic.visual(a), critic.visual(b)]
    k = args.k
    torch.manual_seed(0)
    one_call = _time(lambda: critic.generate([text], [vids], k), args.repeats)
    separate = _time(lambda: [critic.generate([text], [vids], 1, do_sample=True) for _ in range(k)], args.repeats)
    greedy = _time(lambda: critic.generate([text], [vids], 1), args.repeats)
    judge = _time(lambda: critic.judge(prompt, a, b, "alignment"), args.repeats)
    items = [(prompt, a, b, "alignment")] * 16
    batched = _time(lambda: critic.judge_many(items, num_votes=k), 1) / len(items)
    lengths = [len(critic.tokenizer(t).input_ids) for t in critic.generate([text], [vids], k)[0]]
    print(json.dumps({
        "preset": args.preset, "critic_path": cfg.critic.path or "random", "threads": args.threads,
        "params": sum(p.numel() for p in critic.model.parameters()), "k": k,
        "two_step": cfg.judging.describe_first,
        "k_votes_one_call_s": round(one_call, 4),
        "k_separate_calls_s": round(separate, 4),
        "one_call_over_separate_ratio": round(one_call / separate, 3),
        "single_greedy_answer_s": round(greedy, 4),
        "s_per_judgment_both_orders_k": round(judge, 4),
        "s_per_judgment_batched_16": round(batched, 4),
        "mean_answer_tokens": round(sum(lengths) / len(lengths), 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "device": str(device),
        **({"peak_cuda_mb": round(torch.cuda.max_memory_allocated(device) / 2**20)} if device.type == "cuda" else {}),
    }))


if __name__ == "__main__":
    main()
