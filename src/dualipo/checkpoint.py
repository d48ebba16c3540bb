"""Training checkpoints as one unit: trainable weights, optimizer state, LR scheduler, torch RNG, step.

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
RNG_KEY = "torch_rng_state"


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
                    scheduler=None, extra: dict | None = None, keep: int = 2) -> Path:
    """Write `root/step_{step:06d}/` atomically (trainable weights, optimizer, scheduler, torch RNG, `extra`),
    then delete all but the newest `keep` checkpoints. Returns the new directory."""
    root = Path(root)
    final = root / f"{PREFIX}{step:06d}"
    tmp = root / f".tmp_{PREFIX}{step:06d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(module), str(tmp / "trainable.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file({**opt_tensors, RNG_KEY: torch.get_rng_state()}, str(tmp / "optimizer.safetensors"))
    meta = {"step": step, "optimizer": opt_meta, "scheduler": None if scheduler is None else scheduler.state_dict(),
            "extra": extra or {}}
    (tmp / "state.json").write_text(json.dumps(meta))
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in _complete(root)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _complete(root: Path) -> list[Path]:
    return sorted(p for p in root.glob(f"{PREFIX}*") if (p / "state.json").is_file()) if root.is_dir() else []


def latest_checkpoint(root: str | Path) -> Path | None:
    done = _complete(Path(root))
    return done[-1] if done else None


def load_checkpoint(path: str | Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler=None) -> tuple[int, dict]:
    """Restore weights, optimizer, scheduler and the torch RNG in place; returns (step, extra)."""
    path = Path(path)
    meta = json.loads((path / "state.json").read_text())
    weights = load_file(str(path / "trainable.safetensors"))
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if set(weights) != set(params):
        raise ValueError(f"checkpoint {path} does not match the model's trainable parameters "
                         f"(written with another adapter or model config?)")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value.to(params[name]))
    tensors = load_file(str(path / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop(RNG_KEY))
    optimizer.load_state_dict(_unflatten_optimizer(tensors, meta["optimizer"]))
    if scheduler is not None:
        scheduler.load_state_dict(meta["scheduler"])
    return int(meta["step"]), meta["extra"]
