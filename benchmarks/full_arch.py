"""One DPO step and one sampling pass of each full generator architecture, random weights, on one device.

For CogVideoX-2B, CogVideoX-5B and Wan2.1-T2V-1.3B (the published configs in `dualipo.published`, nothing
downloaded): the transformer in bf16 with the project's LoRA (`DiffusersGenerator.add_lora`, rank and targets of
the `full` preset), then
- a DPO step exactly as `trainer._batch_loss` runs it: policy forward + backward on chosen and rejected (same
  noise and timestep), reference forward under `reference_mode()` (adapters disabled), `diffusion_dpo_loss`,
  AdamW on the adapter;
- a sampling pass: `--steps` denoising forwards at the preset's resolution with classifier-free guidance (2
  videos a forward), reported per step and extrapolated to the preset's 50 steps (VAE decode not included).
Time and peak memory per stage, and the model FLOPs utilisation: FLOPs from the planner's formulas
(`plan_math.dpo_step_flops`, `transformer_flops`) / time / `--peak-tflops`. The planner's predicted peak
memory of the DPO step (transformer only; the benchmark keeps no VAE or text encoder resident) is printed
beside the measured one. Prints JSON (and writes it to `--out`).

    python benchmarks/full_arch.py [--archs cogvideox-2b cogvideox-5b wan2.1-t2v-1.3b] [--out FILE]
    python benchmarks/full_arch.py --device cpu --tiny   # the miniature: tiny preset sizes, to prove it runs
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from dualipo import plan_math as pm
from dualipo import published
from dualipo.config import build_config
from dualipo.generators import build_generator
from dualipo.losses import diffusion_dpo_loss
from dualipo.plan_models import build_component, gen_arch

SIZES = {"cogvideox": (49, 480, 720), "wan": (81, 480, 832)}  # the paper's frames x height x width


def setup(name: str, args):
    """(generator with the full-size transformer and LoRA, its GenArch, frames, height, width, text tokens)."""
    backend = published.GENERATORS[name]["backend"] if not args.tiny else name
    tiny = build_config("tiny", overrides=[f"generator.backend={backend}"])
    if args.tiny:
        cfg, (frames, height, width) = tiny, (tiny.world.num_frames, tiny.world.height, tiny.world.width)
        arch, _ = gen_arch(cfg)
    else:
        frames, height, width = SIZES[backend]
        cfg = build_config("full", overrides=[f"generator.backend={backend}", f"generator.path=published/{name}"])
        arch, _ = gen_arch(cfg, name)
    gen = build_generator(tiny)  # the small VAE / text encoder / scheduler; the transformer is replaced
    if not args.tiny:
        torch.manual_seed(0)
        gen.pipe.transformer = build_component(*published.GENERATORS[name]["transformer"], device=args.device)
        gen = type(gen)(gen.pipe, cfg.generator, cfg.world.fps)
    gen.pipe.to(args.device, torch.bfloat16 if args.dtype == "bfloat16" else torch.float32)
    if args.gradient_checkpointing:
        gen.transformer.enable_gradient_checkpointing()
    gen.add_lora(seed=0)
    return gen, arch, frames, height, width, cfg.generator.text_max_len


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _timed(fn, args) -> tuple[float | None, float]:
    """(median seconds over --repeats after one warm-up, peak GiB allocated; 0 on CPU); (None, peak) when the
    device runs out of memory (recorded, not raised: the planner's prediction is printed beside it)."""
    try:
        return _measure(fn, args)
    except torch.cuda.OutOfMemoryError:
        peak = torch.cuda.max_memory_allocated() / pm.GiB
        torch.cuda.empty_cache()
        return None, peak


def _measure(fn, args) -> tuple[float, float]:
    fn()
    if args.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.repeats):
        _sync(args.device)
        start = time.perf_counter()
        fn()
        _sync(args.device)
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / pm.GiB if args.device.startswith("cuda") else 0.0
    return sorted(times)[len(times) // 2], peak


def run_arch(name: str, args) -> dict:
    gen, arch, frames, height, width, text = setup(name, args)
    dtype = next(gen.transformer.parameters()).dtype
    t, h, w = pm.latent_frames(arch, frames), height // arch.vae_spatial, width // arch.vae_spatial
    g = torch.Generator().manual_seed(0)
    chosen, rejected = (torch.randn(1, arch.channels, t, h, w, generator=g).to(args.device, dtype) for _ in "ab")
    embeds = torch.randn(1, text, arch.text_dim, generator=g).to(args.device, dtype)
    noise, steps = gen.draw_noise_and_timesteps(chosen.cpu().float(), g)
    inputs = (torch.cat([chosen, rejected]), torch.cat([embeds, embeds]), torch.cat([steps, steps]).to(args.device),
              torch.cat([noise, noise]).to(args.device, dtype))
    optimizer = torch.optim.AdamW(gen.lora_parameters(), lr=1e-5)

    def dpo_step():
        err = gen.denoising_errors(*inputs)
        with torch.no_grad(), gen.reference_mode():
            ref = gen.denoising_errors(*inputs)
        loss, _ = diffusion_dpo_loss(err[:1], err[1:], ref[:1], ref[1:], 5000.0)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

    @torch.no_grad()
    def sampling_steps():
        for _ in range(args.steps):  # guided: a conditional and an unconditional video per forward
            gen.predict(inputs[0], inputs[1], inputs[2], inputs[3])

    s_v = pm.video_tokens(arch, frames, height, width)
    dpo_s, dpo_peak = _timed(dpo_step, args)  # seconds None = out of memory
    flops = pm.dpo_step_flops(arch, s_v, text, checkpointing=False)["total"]  # model FLOPs: no recompute
    sample_s, sample_peak = _timed(sampling_steps, args)
    fwd = sum(pm.transformer_flops(arch, s_v, text).values())
    b = 2 if dtype != torch.float32 else 4
    planned = (arch.params["transformer"] * b + 16 * arch.params["lora"]  # as `dualipo plan`: fp32 adapter + AdamW
               + pm.train_activation_bytes(arch, s_v, text, 2, b, args.gradient_checkpointing)) / pm.GiB
    peak = args.peak_tflops * 1e12
    return {"arch": name, "frames_hw": [frames, height, width], "video_tokens": s_v, "text_tokens": text,
            "params": arch.params, "gradient_checkpointing": args.gradient_checkpointing,
            "dpo_step": {"seconds": dpo_s, "peak_gib": dpo_peak, "planned_peak_gib": planned,
                         "model_flops": flops, "mfu": flops / dpo_s / peak if dpo_s else None},
            "sampling": {"seconds_per_step": sample_s / args.steps if sample_s else None, "peak_gib": sample_peak,
                         "seconds_per_video_50_steps": 50 * sample_s / args.steps if sample_s else None,
                         "mfu": args.steps * 2 * fwd / sample_s / peak if sample_s else None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--archs", nargs="+", default=None, help="published names (default: all three); with --tiny: "
                    "backends (wan cogvideox)")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", choices=("bfloat16", "float32"), default=None, help="default: bf16 on CUDA, fp32 on CPU")
    ap.add_argument("--tiny", action="store_true", help="the tiny preset's architectures and sizes (a CPU check)")
    ap.add_argument("--gradient-checkpointing", action="store_true")
    ap.add_argument("--steps", type=int, default=2, help="denoising steps timed in the sampling pass")
    ap.add_argument("--repeats", type=int, default=2, help="timed repeats after one warm-up (median)")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="peak FLOP/s of the device for the MFU "
                    "(989: H100 / H200 bf16 dense)")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    args.dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    archs = args.archs or (["wan", "cogvideox"] if args.tiny else list(published.GENERATORS))
    device_name = torch.cuda.get_device_name() if args.device.startswith("cuda") else "cpu"
    result = {"device": device_name, "torch": torch.__version__, "dtype": args.dtype,
              "peak_tflops": args.peak_tflops, "results": []}
    for name in archs:
        result["results"].append(run_arch(name, args))
        if args.device.startswith("cuda"):
            torch.cuda.empty_cache()
    text = json.dumps(result, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
