"""Training checkpoints as one unit: trainable weights, optimizer state, LR scheduler, torch RNG, step.

Tensors go to safetensors, everything else to JSON (no pickles). A checkpoint directory is written under a
temporary name and renamed when complete, so an interruption never leaves a half-written `step_N`.

The same format serves one process, data parallelism and FSDP: sharded (DTensor) weights and optimizer state are
gathered into full tensors before saving (`dualipo.engines`) and re-sharded like the live parameters on loading,
so a checkpoint resumes under any of them. DeepSpeed writes its own state into the same `step_N` unit
(`state.json` with `"engine": "deepspeed"`, see `commit_checkpoint`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

PREFIX = "step_"
RNG_KEY = "torch_rng_state"


def truncate_metrics(path: Path, step: int, stage: str | None = None) -> None:
    """Drop the rows of a metrics JSONL written after the checkpoint a training resumes from at `step` (they are
    recomputed); with `stage`, only that stage's rows (a file shared by several trainings, keyed by `stage`)."""
    if not path.exists():
        return
    rows = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= step or r.get("stage", stage) != stage))


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


def temporary_dir(root: str | Path, step: int) -> Path:
    """Where checkpoint `step` is written before `commit_checkpoint` renames it."""
    return Path(root) / f".tmp_{PREFIX}{step:06d}"


def save_checkpoint(root: str | Path, step: int, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler=None, extra: dict | None = None, keep: int = 2, *,
                    weights: dict[str, torch.Tensor] | None = None, optimizer_state: dict | None = None) -> Path:
    """Write `root/step_{step:06d}/` atomically (trainable weights, optimizer, scheduler, torch RNG, `extra`),
    then delete all but the newest `keep` checkpoints. Returns the new directory. `weights` / `optimizer_state`
    replace `module`'s trainable parameters / `optimizer.state_dict()` (full tensors gathered from shards)."""
    tmp = temporary_dir(root, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(trainable_state(module) if weights is None else weights, str(tmp / "trainable.safetensors"))
    opt_tensors, opt_meta = _flatten_optimizer(optimizer.state_dict() if optimizer_state is None else optimizer_state)
    save_file({**opt_tensors, RNG_KEY: torch.get_rng_state()}, str(tmp / "optimizer.safetensors"))
    meta = {"step": step, "optimizer": opt_meta, "scheduler": None if scheduler is None else scheduler.state_dict(),
            "extra": extra or {}}
    return commit_checkpoint(root, step, meta, keep)


def commit_checkpoint(root: str | Path, step: int, meta: dict, keep: int = 2) -> Path:
    """Write `meta` as state.json into the complete `temporary_dir(root, step)`, rename it to `step_N` and delete
    all but the newest `keep` checkpoints."""
    root = Path(root)
    final, tmp = root / f"{PREFIX}{step:06d}", temporary_dir(root, step)
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


def _like(value: torch.Tensor, param: torch.Tensor) -> torch.Tensor:
    """`value` (a full tensor) on `param`'s device, sharded like it when `param` is a DTensor (FSDP2). Every
    process reads the same file, so each keeps its own shard without communication."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    value = value.to(param.device)
    if isinstance(param, DTensor):
        return distribute_tensor(value, param.device_mesh, param.placements, src_data_rank=None)
    return value


def load_checkpoint(path: str | Path, module: torch.nn.Module, optimizer: torch.optim.Optimizer,
                    scheduler=None) -> tuple[int, dict]:
    """Restore weights, optimizer, scheduler and the torch RNG in place; returns (step, extra)."""
    path = Path(path)
    meta = json.loads((path / "state.json").read_text())
    if meta.get("engine") == "deepspeed":
        raise ValueError(f"checkpoint {path} was written under DeepSpeed; resume it under `accelerate launch` with "
                         f"the same DeepSpeed config (or delete it to restart this training stage)")
    weights = load_file(str(path / "trainable.safetensors"))
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if set(weights) != set(params):
        raise ValueError(f"checkpoint {path} does not match the model's trainable parameters "
                         f"(written with another adapter or model config?)")
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(_like(value.to(params[name].dtype), params[name]))
    tensors = load_file(str(path / "optimizer.safetensors"))
    torch.set_rng_state(tensors.pop(RNG_KEY))
    state = _unflatten_optimizer(tensors, meta["optimizer"])
    order = [p for group in optimizer.param_groups for p in group["params"]]
    for i, s in state["state"].items():  # sharded parameters get their moments sharded the same way
        state["state"][i] = {k: _like(v, order[i]) if v.shape == order[i].shape else v for k, v in s.items()}
    optimizer.load_state_dict(state)
    if scheduler is not None:
        scheduler.load_state_dict(meta["scheduler"])
    return int(meta["step"]), meta["extra"]
