"""One Diffusion-DPO step: reference = disabled LoRA adapters (dualipo) vs a separate frozen copy of the model.

The separate copy is what the diffusers Diffusion-DPO example and many research scripts do. Both variants run
the same step (LoRA policy forward + backward on winner and loser, reference forward under no_grad, same noise
and timestep, AdamW on the adapter) in their own subprocess, so each peak RSS is its own.

Architectures: `small` (the small preset's Wan transformer) and `wan1.3b` (Wan2.1-T2V-1.3B's published
transformer config, random weights, nothing downloaded) at 9 frames of 64x64 (latents 16 x 3 x 8 x 8) with
gradient checkpointing. Prints JSON; `memory_ratio` and `time_ratio` are adapter / copy for wan1.3b.

    python benchmarks/dpo_step.py [--archs small wan1.3b] [--steps 3] [--pairs 2]
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import subprocess
import sys
import time

WAN_1_3B = dict(patch_size=(1, 2, 2), num_attention_heads=12, attention_head_dim=128, in_channels=16,
                out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=8960, num_layers=30, cross_attn_norm=True,
                qk_norm="rms_norm_across_heads", eps=1e-6, rope_max_seq_len=1024)


def build(arch: str):
    import torch
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    if arch == "wan1.3b":
        model = WanTransformer3DModel(**WAN_1_3B)
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

    from dualipo.losses import diffusion_dpo_loss, per_sample_mse

    model, latent_shape, text_shape = build(arch)
    model.requires_grad_(False)
    reference = copy.deepcopy(model).eval() if variant == "copy" else None
    model.add_adapter(LoraConfig(r=8, lora_alpha=8, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    params = [p for n, p in model.named_parameters() if "lora_" in n]
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

    phases = {"policy_forward": [], "reference_forward": [], "backward_and_step": [], "step": []}
    for _ in range(steps + 1):  # the first step warms up
        t0 = time.perf_counter()
        err = errors(model)
        t1 = time.perf_counter()
        with torch.no_grad():
            if reference is None:
                model.disable_adapters()
                try:
                    ref = errors(model)
                finally:
                    model.enable_adapters()
            else:
                ref = errors(reference)
        t2 = time.perf_counter()
        loss, _ = diffusion_dpo_loss(err[:pairs], err[pairs:], ref[:pairs], ref[pairs:], beta=5000.0)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        t3 = time.perf_counter()
        for k, v in zip(phases, (t1 - t0, t2 - t1, t3 - t2, t3 - t0)):
            phases[k].append(v)
    median = {k: sorted(v[1:])[len(v[1:]) // 2] for k, v in phases.items()}
    n_params = sum(p.numel() for p in model.parameters())
    return {"seconds_per_step": median.pop("step"), "seconds_per_phase": median, "peak_rss_gb":
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, "params": n_params}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--archs", nargs="+", default=["small", "wan1.3b"])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=2)
    ap.add_argument("--child", nargs=2, metavar=("ARCH", "VARIANT"))
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(*a.child, a.steps, a.pairs)))
        return
    out = {"steps": a.steps, "pairs": a.pairs, "frames": 9, "baseline": "separate frozen copy as reference"}
    for arch in a.archs:
        res = {}
        for variant in ("adapter", "copy"):
            cmd = [sys.executable, __file__, "--child", arch, variant, "--steps", str(a.steps),
                   "--pairs", str(a.pairs)]
            res[variant] = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        res["memory_ratio"] = res["adapter"]["peak_rss_gb"] / res["copy"]["peak_rss_gb"]
        res["time_ratio"] = res["adapter"]["seconds_per_step"] / res["copy"]["seconds_per_step"]
        out[arch] = res
    if "wan1.3b" in out:
        out["memory_ratio"], out["time_ratio"] = out["wan1.3b"]["memory_ratio"], out["wan1.3b"]["time_ratio"]
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
