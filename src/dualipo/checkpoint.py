"""Training checkpoints as one unit: trainable (adapter) weights, optimizer state, LR scheduler, step.

Tensors go to safetensors, everything else to JSON (no pickles). A checkpoint directory is written under a
temporary name and renamed when complete, so an interruption never leaves a half-written `step_N`.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step_"


def trainable_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().cpu().contiguous() for n, p in module.named_parameters() if p.requires_grad}


def _flatten_optimizer(state: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors = {f"{i}.{k}": v.detach().cpu().contiguous()
               for i, s in state["state"].items() for k, v in s.items() if torch.is_tensor(v)}
    return tensors, {"param_groups": state["param_groups"]}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, v in tensors.items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(root: str | Path, step: int, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler, extra: dict | None = None) -> Path:
    """Write `root/step_{step:06d}/` atomically and return it."""
    root = Path(root)
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f".tmp_{PREFIX}{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(module), str(tmp / "trainable.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
    meta = {"step": step, "optimizer": opt_meta, "scheduler": scheduler.state_dict(), "extra": extra or {}}
    (tmp / "state.json").write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    return final


def latest_checkpoint(root: str | Path) -> Path | None:
    root = Path(root)
    done = sorted(p for p in root.glob(f"{PREFIX}*") if (p / "state.json").is_file()) if root.is_dir() else []
    return done[-1] if done else None


def load_checkpoint(path: str | Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler) -> int:
    """Restore weights, optimizer and scheduler in place; returns the step the checkpoint was taken at."""
    path = Path(path)
    meta = json.loads((path / "state.json").read_text())
    weights = load_file(str(path / "trainable.safetensors"))
    params = dict(module.named_parameters())
    missing = set(weights) - set(params)
    if missing:
        raise ValueError(f"checkpoint {path} has weights the model lacks: {sorted(missing)[:3]}...")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name]))
    optimizer.load_state_dict(_unflatten_optimizer(load_file(str(path / "optimizer.safetensors")),
                                                   meta["optimizer"]))
    scheduler.load_state_dict(meta["scheduler"])
    return int(meta["step"])
