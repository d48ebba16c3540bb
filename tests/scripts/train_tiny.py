"""Train the tiny generator on a fixed tiny pair set; run directly or under `accelerate launch`."""

import sys
from pathlib import Path

import torch

from dualipo.config import build_config
from dualipo.generators import build_generator
from dualipo.toy.world import render_prompt
from dualipo.trainer import build_cache, train_generator

PROMPTS = ["a red circle moving left on a black background", "a blue square growing on a gray background"]


def main(out: str) -> None:
    cfg = build_config("tiny", overrides=["train.num_steps=3", "train.batch_size=2", "train.learning_rate=5e-3",
                                          "train.beta=50", "train.checkpoint_every=3"])
    torch.manual_seed(0)
    gen = build_generator(cfg)
    w = cfg.world
    chosen = [render_prompt(p, i, w) for i, p in enumerate(PROMPTS)]
    rejected = [render_prompt(p.replace("left", "right").replace("growing", "shrinking"), i, w)
                for i, p in enumerate(PROMPTS)]
    train_generator(gen, build_cache(gen, PROMPTS, chosen, rejected), cfg.train, out)
    from accelerate import PartialState

    state = PartialState()
    if state.is_main_process:
        (Path(out) / "num_processes").write_text(str(state.num_processes))


if __name__ == "__main__":
    main(sys.argv[1])
