"""Grow a small Qwen2-VL critic deeper without changing what it computes (block expansion, as in LLaMA Pro): after
each text layer (and each vision block) insert a copy whose output projections are zero, so the new block adds
nothing until training moves it. The first step of the shipped critic's recipe (`scripts/critic_small.sh` grows
the previous critic, then cold-starts it; docs/critic.md measures what the depth buys).

    python scripts/critic_grow.py SRC OUT [--text-every 1] [--vision-every 1]
"""

from __future__ import annotations

import argparse
import copy
import shutil
from pathlib import Path

import torch
from transformers import Qwen2VLForConditionalGeneration


def expand(blocks: torch.nn.ModuleList, every: int, zero: tuple[str, ...]) -> torch.nn.ModuleList:
    out = []
    for i, block in enumerate(blocks):
        out.append(block)
        if every and (i + 1) % every == 0:
            new = copy.deepcopy(block)
            for name in zero:
                torch.nn.init.zeros_(new.get_submodule(name).weight)
                if new.get_submodule(name).bias is not None:
                    torch.nn.init.zeros_(new.get_submodule(name).bias)
            out.append(new)
    return torch.nn.ModuleList(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--text-every", type=int, default=1, help="insert a zero block after every N text layers")
    ap.add_argument("--vision-every", type=int, default=1, help="same for vision blocks (0 = none)")
    args = ap.parse_args()
    model = Qwen2VLForConditionalGeneration.from_pretrained(args.src, dtype=torch.float32)
    lm, vis = model.model.language_model, model.model.visual
    lm.layers = expand(lm.layers, args.text_every, ("self_attn.o_proj", "mlp.down_proj"))
    for i, layer in enumerate(lm.layers):
        layer.self_attn.layer_idx = i
    vis.blocks = expand(vis.blocks, args.vision_every, ("attn.proj", "mlp.fc2"))
    tc = model.config.text_config
    tc.num_hidden_layers = len(lm.layers)
    tc.layer_types = [tc.layer_types[0]] * len(lm.layers)
    model.config.vision_config.depth = len(vis.blocks)
    model.save_pretrained(args.out)
    for f in Path(args.src).glob("*"):
        if f.name.startswith("tokenizer") or f.name == "generation_config.json":
            shutil.copy(f, Path(args.out) / f.name)
    n = sum(p.numel() for p in model.parameters())
    print(f"{len(lm.layers)} text layers, {len(vis.blocks)} vision blocks, {n / 1e6:.2f} M parameters -> {args.out}")


if __name__ == "__main__":
    main()
