"""Train the tiny generator on a fixed tiny pair set; run directly or under `accelerate launch`.

    train_tiny.py OUT [--steps N] [--crash-at STEP] [--force-fsdp-on-cpu]

Writes OUT/metrics.jsonl (through the trainer), OUT/num_processes and OUT/distributed_type (what accelerate
chose from the launch; the trainer logs the engine it used). `--crash-at STEP` stops every process just before
optimizer step STEP (1-based) with exit code 3, as an interruption would; running again resumes from the last
checkpoint.

`--force-fsdp-on-cpu`: accelerate 1.15 selects FSDP only on accelerator devices (`AcceleratorState` turns a CPU
launch with an FSDP config into MULTI_CPU), while torch's FSDP2 `fully_shard` itself runs on a gloo CPU mesh.
With this flag, a launch with an FSDP config sets the distributed type to FSDP after the Accelerator is built, so
that accelerate's own FSDP2 preparation (`accelerator.prepare` -> `fully_shard`) and the trainer's FSDP engine run
on CPU exactly as they do on GPUs.
"""

import argparse
import logging
import os
import sys
from pathlib import Path

import torch

from dualipo import trainer
from dualipo.config import build_config
from dualipo.generators import build_generator
from dualipo.toy.world import render_prompt

PROMPTS = ["a red circle moving left on a black background", "a blue square growing on a gray background"]


class Crash(Exception):
    pass


def _accelerator(force_fsdp: bool):
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    acc = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision="no")
    chosen = str(acc.distributed_type)
    if force_fsdp and os.environ.get("ACCELERATE_USE_FSDP") == "true" and acc.distributed_type != DistributedType.FSDP:
        from accelerate import PartialState

        acc.state.fsdp_plugin = FullyShardedDataParallelPlugin()  # from the launch's FSDP_* environment
        # AcceleratorState() copies PartialState's fields each time it is built: set both
        acc.state.distributed_type = PartialState().distributed_type = DistributedType.FSDP
    return acc, chosen


def _crash_at(step: int) -> None:
    real = trainer._batch_loss

    def batch_loss(gen, cache, cfg, s, *args):
        if s + 1 == step:
            raise Crash(f"interrupted before step {step}")
        return real(gen, cache, cfg, s, *args)
    trainer._batch_loss = batch_loss


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--checkpoint-every", type=int, default=3)
    ap.add_argument("--crash-at", type=int, default=0)
    ap.add_argument("--force-fsdp-on-cpu", action="store_true")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
    cfg = build_config("tiny", overrides=[f"train.num_steps={args.steps}", "train.batch_size=2",
                                          "train.learning_rate=5e-3", "train.beta=50",
                                          f"train.checkpoint_every={args.checkpoint_every}"])
    acc, chosen = _accelerator(args.force_fsdp_on_cpu)
    torch.manual_seed(0)
    gen = build_generator(cfg)
    w = cfg.world
    chosen_videos = [render_prompt(p, i, w) for i, p in enumerate(PROMPTS)]
    rejected = [render_prompt(p.replace("left", "right").replace("growing", "shrinking"), i, w)
                for i, p in enumerate(PROMPTS)]
    if args.crash_at:
        _crash_at(args.crash_at)
    out = Path(args.out)
    try:
        trainer.train_generator(gen, trainer.build_cache(gen, PROMPTS, chosen_videos, rejected), cfg.train, out,
                                accelerator=acc)
    except Crash as e:
        print(e, file=sys.stderr)
        return 3
    if acc.is_main_process:
        (out / "num_processes").write_text(str(acc.num_processes))
        (out / "distributed_type").write_text(chosen)  # what accelerate chose from the launch
    return 0


if __name__ == "__main__":
    sys.exit(main())
