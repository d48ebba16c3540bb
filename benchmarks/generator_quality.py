"""Oracle scores on held-out prompts (`prompt_pools(world)[1]`): a random-weight model vs the shipped base
generator (or any pipeline directory), per dimension. Prints JSON.

    python benchmarks/generator_quality.py [--prompts 64] [--seeds 0 1] [--path DIR] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import time


def main() -> None:
    import torch

    from dualipo.config import build_config
    from dualipo.generators import build_generator
    from dualipo.generators.evaluate import evaluate_generator

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--prompts", type=int, default=64, help="held-out prompts (the pool has world.num_eval_prompts)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--path", default="shipped", help="generator.path of the trained model")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    out = {}
    for name, path in (("random_init", ""), ("base", args.path)):
        cfg = build_config("small", overrides=[f"generator.path={path}"])
        t0 = time.perf_counter()
        out[name] = evaluate_generator(build_generator(cfg), cfg, args.prompts, tuple(args.seeds))
        out[name]["seconds"] = round(time.perf_counter() - t0, 1)
    out["sampler"] = {"num_inference_steps": cfg.generator.num_inference_steps,
                      "guidance_scale": cfg.generator.guidance_scale}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
