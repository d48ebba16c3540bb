"""Training engines under `accelerate launch`: data parallelism, FSDP2 and DeepSpeed ZeRO-2 / ZeRO-3.

`make_engine(accelerator)` reads the engine from `accelerator.distributed_type`, which `accelerate launch
--config_file` sets from the config file (`dualipo accelerate-config NAME` prints the path of a shipped one,
`dualipo.accelerate_configs`).

- `DataParallel` (one process, `MULTI_GPU`, `MULTI_CPU`): every process holds the whole transformer; LoRA gradients
  are averaged across processes before the optimizer step (what DDP does, without wrapping the model).
- `FSDP` (`fsdp_version: 2`): `accelerator.prepare(transformer, optimizer)` shards the transformer's blocks with
  `fully_shard`; parameters become DTensors, and accelerate's FSDP2 hooks gather them for each forward.
- `DeepSpeed` (ZeRO-2 / ZeRO-3): `accelerator.prepare` wraps the transformer in a DeepSpeed engine, which runs
  backward (loss scaling, gradient reduction) and the optimizer step (clipping); ZeRO-3 partitions the weights.

In every engine the transformer stays the object the generator calls (FSDP2 shards it in place; DeepSpeed installs
its hooks on it), so the reference pass keeps being the same transformer with its adapters disabled
(`Generator.reference_mode()`), and only the LoRA parameters train. Checkpoints: data parallelism and FSDP write
the single-process format (`dualipo.checkpoint`; FSDP gathers the small LoRA weights and their optimizer moments
first), so those resume under each other; DeepSpeed writes its own engine state into the same `step_N` unit. The
final adapter is always the single-process `generator_lora.safetensors`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

import torch

from dualipo.checkpoint import commit_checkpoint, latest_checkpoint, load_checkpoint, save_checkpoint, temporary_dir

log = logging.getLogger(__name__)


def make_engine(acc):
    """The training engine `acc` was launched with."""
    from accelerate.utils import DistributedType

    if acc.distributed_type == DistributedType.FSDP:
        if acc.state.fsdp_plugin.fsdp_version != 2:
            raise ValueError("FSDP1 is not supported: set fsdp_version: 2 in the accelerate config (as the shipped "
                             "`dualipo accelerate-config fsdp` does)")
        return FSDP(acc)
    if acc.distributed_type == DistributedType.DEEPSPEED:
        return DeepSpeed(acc)
    for var, name in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(var, "false").lower() == "true":
            log.warning("the accelerate config asks for %s, but accelerate runs this job as %s (accelerate 1.15 "
                        "enables %s only on GPUs / accelerators): training is plain data-parallel", name,
                        acc.distributed_type, name)
    return DataParallel(acc)


class DataParallel:
    """Explicit data parallelism (also one process): the default, and the single-process checkpoint format."""
    name = "ddp"

    def __init__(self, acc) -> None:
        self.acc = acc

    def prepare(self, gen, optimizer: torch.optim.Optimizer, cfg) -> torch.optim.Optimizer:
        return optimizer

    def autocast(self):
        return self.acc.autocast()

    def backward(self, loss: torch.Tensor, micro: int, n_micro: int) -> None:
        (loss / n_micro).backward()

    def clip(self, params: list, max_norm: float) -> float:
        """Average the gradients across processes and clip them; returns the gradient norm before clipping."""
        if self.acc.num_processes > 1:
            for grad in [p.grad for p in params if p.grad is not None]:
                grad.copy_(self.acc.reduce(grad, reduction="mean"))
        return float(torch.nn.utils.clip_grad_norm_(params, max_norm))

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    def save(self, root: Path, step: int, gen, optimizer, scheduler) -> None:
        if self.acc.is_main_process:
            save_checkpoint(root, step, gen.transformer, optimizer, scheduler)

    def load(self, root: Path, gen, optimizer, scheduler) -> int:
        """Restore the latest checkpoint under `root` if there is one; returns the step to continue from."""
        ckpt = latest_checkpoint(root)
        if ckpt is None:
            return 0
        step, _ = load_checkpoint(ckpt, gen.transformer, optimizer, scheduler)
        log.info("resumed from %s at step %d", ckpt, step)
        return step

    def save_adapter(self, gen, out: Path) -> Path:
        return gen.save_lora(out) if self.acc.is_main_process else out

    def finish(self) -> None:
        """Release what `prepare` registered with the accelerator (the loop prepares a new model every round)."""


def _full(t):
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


class FSDP(DataParallel):
    """FSDP2 through accelerate: the transformer's blocks are sharded; gradients arrive reduce-scattered."""
    name = "fsdp"

    def prepare(self, gen, optimizer, cfg):
        _, prepared = self.acc.prepare(gen.transformer, optimizer)  # in place: gen.transformer is now sharded
        return prepared.optimizer

    def clip(self, params, max_norm):
        return float(_full(torch.nn.utils.clip_grad_norm_(params, max_norm)))

    def save(self, root, step, gen, optimizer, scheduler):
        # gathering is collective: every process gathers, the main process writes
        weights = {n: _full(p.detach()).cpu() for n, p in gen.transformer.named_parameters() if p.requires_grad}
        state = optimizer.state_dict()
        state = {**state, "state": {i: {k: _full(v) for k, v in s.items()} for i, s in state["state"].items()}}
        if self.acc.is_main_process:
            save_checkpoint(root, step, gen.transformer, optimizer, scheduler, weights=weights, optimizer_state=state)

    def save_adapter(self, gen, out):
        weights = {n: _full(p.detach()).cpu() for n, p in gen.transformer.named_parameters() if "lora_" in n}
        return save_lora_state(gen, weights, out) if self.acc.is_main_process else out

    def finish(self):
        self.acc.free_memory()


class DeepSpeed(DataParallel):
    """DeepSpeed ZeRO through accelerate; the engine owns backward, clipping and the optimizer step."""
    name = "deepspeed"
    SUBDIR, TAG = "deepspeed", "state"

    def prepare(self, gen, optimizer, cfg):
        plugin = self.acc.state.deepspeed_plugin
        world = self.acc.num_processes
        plugin.deepspeed_config.update(train_micro_batch_size_per_gpu=cfg.batch_size // world,
                                       gradient_accumulation_steps=cfg.grad_accum,
                                       train_batch_size=cfg.batch_size * cfg.grad_accum,
                                       gradient_clipping=cfg.max_grad_norm)
        self.acc.gradient_accumulation_steps = cfg.grad_accum
        self.stage = int(plugin.zero_stage)
        self.engine, _ = self.acc.prepare(gen.transformer, optimizer)  # the engine's module is gen.transformer
        return optimizer  # the scheduler drives the learning rate of the param groups the engine steps

    def autocast(self):  # accelerate leaves mixed precision to DeepSpeed, which casts only the weights
        bf16 = self.acc.mixed_precision == "bf16"
        return torch.autocast(self.acc.device.type, dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()

    def backward(self, loss, micro, n_micro):
        self.engine.set_gradient_accumulation_boundary(micro == n_micro - 1)
        self.engine.backward(loss)  # DeepSpeed divides by gradient_accumulation_steps itself

    def clip(self, params, max_norm):
        """DeepSpeed reduces, clips and steps in one call; the norm it reports is checked after the step (DeepSpeed
        skips a step whose gradients overflowed). No norm reported (some ZeRO stages): 0, not a divergence."""
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return float(norm) if norm is not None else 0.0

    def step(self, optimizer):
        pass  # done in `clip`

    def save(self, root, step, gen, optimizer, scheduler):
        tmp = temporary_dir(root, step)
        if self.acc.is_main_process:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
        self.acc.wait_for_everyone()
        self.engine.save_checkpoint(str(tmp / self.SUBDIR), tag=self.TAG, exclude_frozen_parameters=True)
        self.acc.wait_for_everyone()
        if self.acc.is_main_process:
            commit_checkpoint(root, step, {"step": step, "engine": "deepspeed", "zero_stage": self.stage,
                                           "scheduler": scheduler.state_dict(), "extra": {}})

    def load(self, root, gen, optimizer, scheduler):
        import json

        ckpt = latest_checkpoint(root)
        if ckpt is None:
            return 0
        meta = json.loads((ckpt / "state.json").read_text())
        if meta.get("engine") != "deepspeed":
            raise ValueError(f"checkpoint {ckpt} was not written under DeepSpeed; resume it without DeepSpeed (one "
                             f"process, ddp or fsdp), or delete it to restart this training stage")
        self.engine.load_checkpoint(str(ckpt / self.SUBDIR), tag=self.TAG, load_module_strict=False,
                                    load_lr_scheduler_states=False)
        scheduler.load_state_dict(meta["scheduler"])
        for group, lr in zip(optimizer.param_groups, scheduler.get_last_lr()):
            group["lr"] = lr  # load_state_dict does not set it: the first resumed step would use the warm-up's
        log.info("resumed from %s at step %d", ckpt, meta["step"])
        return int(meta["step"])

    def save_adapter(self, gen, out):
        lora = [(n, p) for n, p in gen.transformer.named_parameters() if "lora_" in n]
        gather = contextlib.nullcontext()
        if self.stage == 3:
            import deepspeed

            gather = deepspeed.zero.GatheredParameters([p for _, p in lora], modifier_rank=None)
        with gather:
            weights = {n: p.detach().float().cpu().clone() for n, p in lora}
        return save_lora_state(gen, weights, out) if self.acc.is_main_process else out

    def finish(self):
        self.acc.free_memory()


def save_lora_state(gen, weights: dict[str, torch.Tensor], directory: Path) -> Path:
    """Write `weights` (the transformer's LoRA parameters by name, full tensors) as the same file as
    `Generator.save_lora` (peft keys, diffusers metadata): the adapter of a sharded transformer."""
    import json

    from diffusers.loaders.lora_base import LORA_ADAPTER_METADATA_KEY
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from dualipo.generators.base import LORA_FILE

    layers = get_peft_model_state_dict(gen.transformer, state_dict=weights, adapter_name="default")
    config = gen.transformer.peft_config["default"].to_dict()
    meta = {k: list(v) if isinstance(v, set) else v for k, v in config.items()}
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in layers.items()}, str(directory / LORA_FILE),
              metadata={"format": "pt", LORA_ADAPTER_METADATA_KEY: json.dumps(meta, indent=2, sort_keys=True)})
    return directory / LORA_FILE
