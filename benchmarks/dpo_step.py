"""One Diffusion-DPO step: reference = disabled LoRA adapters (dualipo) vs a separate frozen copy of the model.

The separate copy is what the diffusers Diffusion-DPO example and many research scripts do. Both variants run
the same step (LoRA policy forward + backward on winner and loser, reference forward under no_grad, same noise
and timestep, AdamW on the adapter) in their own subprocess, so each peak RSS is its own.

Architectures: `small` (the small preset's Wan transformer) and `wan1.3b` (Wan2.1-T2V-1.3B's published
transformer config, random weights, nothing downloaded) at 9 frames of 64x64 (latents 16 x 3 x 8 x 8) with
gradient checkpointing. Prints JSON; `memory_ratio` and `time_ratio` are adapter / copy for wan1.3b.

The variants run in alternating order (adapter, copy, copy, adapter, ... for `--repeats`), so a drift of the
machine's speed during the run (the first process of a run is often the slower) falls on both alike; each
variant's time is the median over all its timed steps.

Model FLOPs utilisation (`mfu`): the FLOPs of one step counted exactly by `torch.utils.flop_counter` with
gradient checkpointing off (model FLOPs: policy forward, its backward, reference forward; the recomputation
that checkpointing adds is not counted), divided by the step's time and by this machine's measured fp32 matmul
peak at the same thread count (`peak_gflops`: the best of a few 2048^3 `torch.mm`).

    python benchmarks/dpo_step.py [--archs small wan1.3b] [--steps 3] [--pairs 2] [--repeats 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time
from statistics import median

def build(arch: str):
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    if arch == "wan1.3b":
        from dualipo.published import WAN_1_3B

        model = WanTransformer3DModel(**WAN_1_3B["transformer"][2])
        model.enable_gradient_checkpointing()
        return model, (16, 3, 8, 8), (16, 4096)
    from dualipo.config import build_config
    from dualipo.generators import build_generator

    cfg = build_config("small", overrides=["generator.path="])
    gen = build_generator(cfg)
    w, g = cfg.world, cfg.generator
    f = (w.num_frames - 1) // 4 + 1
    s = 2 ** (len(g.vae_channels) - 1)
    return gen.transformer, (g.latent_channels, f, w.height // s, w.width // s), (g.text_max_len, g.text_dim)


def child(arch: str, variant: str, steps: int, pairs: int) -> dict:
    import torch
    from peft import LoraConfig

    from dualipo.generators.base import adapters_disabled, lora_layers
    from dualipo.losses import diffusion_dpo_loss, per_sample_mse

    model, latent_shape, text_shape = build(arch)
    model.requires_grad_(False)
    reference = copy.deepcopy(model).eval() if variant == "copy" else None
    model.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for n, p in model.named_parameters() if "lora_" in n]
    layers = lora_layers(model)
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.AdamW(params, lr=1e-4)
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(2 * pairs, *latent_shape, generator=g)
    emb = torch.randn(2 * pairs, *text_shape, generator=g)
    noise = torch.randn(pairs, *latent_shape, generator=g).repeat(2, 1, 1, 1, 1)
    t = (torch.rand(pairs, generator=g) * 1000).repeat(2)
    s = (t / 1000).view(-1, 1, 1, 1, 1)
    noisy, target = (1 - s) * x0 + s * noise, noise - x0

    def errors(m):
        return per_sample_mse(m(hidden_states=noisy, encoder_hidden_states=emb, timestep=t, return_dict=False)[0],
                              target)

    def step() -> tuple[float, float, float]:
        t0 = time.perf_counter()
        err = errors(model)
        t1 = time.perf_counter()
        with torch.no_grad():
            if reference is None:
                with adapters_disabled(layers):  # what DiffusersGenerator.reference_mode() does
                    ref = errors(model)
            else:
                ref = errors(reference)
        t2 = time.perf_counter()
        loss, _ = diffusion_dpo_loss(err[:pairs], err[pairs:], ref[:pairs], ref[pairs:], beta=5000.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return t1 - t0, t2 - t1, time.perf_counter() - t2

    phases = {"policy_forward": [], "reference_forward": [], "backward_and_step": []}
    for i in range(steps + 1):  # the first step warms up
        for k, v in zip(phases, step()):
            if i:
                phases[k].append(v)
    per_step = [sum(v) for v in zip(*phases.values())]
    flops = _model_flops(model, step)
    seconds = median(per_step)
    peak = _matmul_peak_gflops()
    return {"seconds_per_step": seconds, "seconds_per_phase": {k: median(v) for k, v in phases.items()},
            "seconds_per_timed_step": per_step, "model_gflops_per_step": flops / 1e9, "peak_gflops": peak,
            "mfu": flops / seconds / (peak * 1e9), "threads": torch.get_num_threads(),
            "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "params": sum(p.numel() for p in model.parameters())}


def _model_flops(model, step) -> float:
    """FLOPs of one step with gradient checkpointing off (no recomputation counted), by torch's flop counter."""
    from torch.utils.flop_counter import FlopCounterMode

    checkpointing = model.is_gradient_checkpointing
    model.disable_gradient_checkpointing()
    try:
        with FlopCounterMode(display=False) as counter:
            step()
    finally:
        if checkpointing:
            model.enable_gradient_checkpointing()
    return float(counter.get_total_flops())


def _matmul_peak_gflops(n: int = 2048, tries: int = 5) -> float:
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    best = float("inf")
    for _ in range(tries):
        t0 = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def _combine(runs: list[dict]) -> dict:
    """One variant's processes: medians over all timed steps and phases; the largest peak RSS."""
    steps = [x for r in runs for x in r["seconds_per_timed_step"]]
    phases = {k: median(r["seconds_per_phase"][k] for r in runs) for k in runs[0]["seconds_per_phase"]}
    seconds = median(steps)
    flops, peak = runs[0]["model_gflops_per_step"], max(r["peak_gflops"] for r in runs)
    return {"seconds_per_step": seconds, "seconds_per_phase": phases, "seconds_per_process":
            [r["seconds_per_step"] for r in runs], "model_gflops_per_step": flops, "peak_gflops": peak,
            "mfu": flops / seconds / peak, "threads": runs[0]["threads"],
            "peak_rss_gb": max(r["peak_rss_gb"] for r in runs), "params": runs[0]["params"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", nargs="+", default=["small", "wan1.3b"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2, help="processes per variant, in alternating order")
    ap.add_argument("--child", nargs=2, metavar=("ARCH", "VARIANT"))
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child, a.steps, a.pairs)))
        return
    out = {"steps": a.steps, "pairs": a.pairs, "repeats": a.repeats, "frames": 9,
           "baseline": "separate frozen copy as reference"}
    for arch in a.archs:
        runs = {"adapter": [], "copy": []}
        for r in range(a.repeats):
            for variant in ("adapter", "copy") if r % 2 == 0 else ("copy", "adapter"):
                cmd = [sys.executable, __file__, "--child", arch, variant, "--steps", str(a.steps),
                       "--pairs", str(a.pairs)]
                runs[variant].append(json.loads(subprocess.run(cmd, check=True, capture_output=True,
                                                                text=True).stdout))
        res = {variant: _combine(rs) for variant, rs in runs.items()}
        res["memory_ratio"] = res["adapter"]["peak_rss_gb"] / res["copy"]["peak_rss_gb"]
        res["time_ratio"] = res["adapter"]["seconds_per_step"] / res["copy"]["seconds_per_step"]
        out[arch] = res
    if "wan1.3b" in out:
        out["memory_ratio"], out["time_ratio"] = out["wan1.3b"]["memory_ratio"], out["wan1.3b"]["time_ratio"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
