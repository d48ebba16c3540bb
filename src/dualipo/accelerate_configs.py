"""The accelerate config files shipped with dualipo (`src/dualipo/assets/accelerate/NAME.yaml`), one per engine:

    accelerate launch --config_file $(dualipo accelerate-config fsdp) --num_processes 8 -m dualipo run ...

ddp: data parallel; fsdp: FSDP2 (`fully_shard`); zero2 / zero3: DeepSpeed ZeRO-2 / ZeRO-3 (`pip install deepspeed`).
Each sets bf16 and a placeholder `num_processes: 8` that `--num_processes` overrides. No heavy imports here: the
CLI prints a path instantly.
"""

from __future__ import annotations

from pathlib import Path

CONFIGS = ("ddp", "fsdp", "zero2", "zero3")
CONFIG_DIR = Path(__file__).parent / "assets" / "accelerate"


def accelerate_config(name: str) -> Path:
    """Path of the shipped accelerate config file `name` (one of `CONFIGS`)."""
    if name not in CONFIGS:
        raise ValueError(f"unknown accelerate config {name!r}; shipped: {', '.join(CONFIGS)}")
    return CONFIG_DIR / f"{name}.yaml"
