"""`dualipo plan`: what one round of a configured run costs on N GPUs, before anything is loaded.

Per stage (sampling, judging, critic refinement, generator training, evaluation): the counted parameters, the
peak memory per GPU, the throughput and the wall time, from the models built on the `meta` device
(`plan_models`) and the formulas of `plan_math` (written out in docs/full_scale.md). Time = FLOPs / (peak x MFU),
and for the critic's decoding at least the bytes read per generated token / memory bandwidth.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, replace

import torch

from dualipo import plan_math as pm
from dualipo.config import RunConfig, _Section, opt
from dualipo.plan_models import CriticArch, GenArch, critic_arch, gen_arch

BYTES = {"float32": 4, "bfloat16": 2, "float16": 2}


@dataclass(frozen=True)
class PlanConfig(_Section):
    """The hardware and the assumptions of a plan (`dualipo plan` flags)."""
    gpus: int = opt(1, ge=1)
    gpu_mem: float = opt(80.0, gt=0, doc="memory per GPU, GiB")
    mfu: float = opt(0.4, gt=0, le=1, doc="assumed model FLOPs utilisation")
    peak_tflops: float = opt(989.0, gt=0, doc="dense bf16 peak per GPU, TFLOP/s (H100 / H200 SXM: 989)")
    hbm_gbps: float = opt(3350.0, gt=0, doc="memory bandwidth per GPU, GB/s (H100 SXM 3350, H200 4800)")
    prompt_tokens: int = opt(300, ge=1, doc="text tokens of a critic prompt (template + the user's prompt)")
    published_generator: str = opt("", doc="published architecture for a generator.path that does not exist")
    published_critic: str = opt("", doc="published architecture for a critic.path that does not exist")


def _sec(flops: float, p: PlanConfig) -> float:
    return flops / (p.peak_tflops * 1e12 * p.mfu)


def _act_bytes(dtype: str, mixed_precision: str = "no") -> int:
    return 2 if dtype != "float32" or mixed_precision != "no" else 4


def _stage(name: str, params: dict, peak: int, parts: dict, rate: float, unit: str, work: int, what: str,
           hours: float, gpus: int) -> dict:
    return {"stage": name, "params": params, "peak_gib": peak / pm.GiB,
            "memory_gib": {k: v / pm.GiB for k, v in parts.items()}, "throughput": rate,
            "throughput_unit": unit, "work": work, "work_unit": what, "hours": hours, "gpus": gpus}


# ------------------------------------------------------------------------------------------ generator
def vae_flops(vae: torch.nn.Module, a: GenArch, frames: int, height: int, width: int, mode: str) -> int:
    """The VAE's decode (or encode) of one video, counted by torch's FlopCounterMode on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    t, h, w = pm.latent_frames(a, frames), height // a.vae_spatial, width // a.vae_spatial
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        if mode == "decode":
            vae.decode(torch.zeros(1, a.channels, t, h, w, device="meta"))
        else:
            vae.encode(torch.zeros(1, 3, frames, height, width, device="meta"))
    return counter.get_total_flops()


@dataclass(frozen=True)
class GenCost:
    s_v: int
    per_video: int
    weights: int
    sample_act: int


def generator_cost(cfg: RunConfig, a: GenArch, mods: dict) -> GenCost:
    w, g = cfg.world, cfg.generator
    s_v, text = pm.video_tokens(a, w.num_frames, w.height, w.width), g.text_max_len
    guided = 2 if g.guidance_scale > 1 else 1
    fwd = sum(pm.transformer_flops(a, s_v, text).values())
    per_video = (g.num_inference_steps * guided * fwd + vae_flops(mods["vae"], a, w.num_frames, w.height, w.width,
                                                                   "decode") + 2 * a.params["text_encoder"] * text * guided)
    weights = (a.params["transformer"] + a.params["vae"] + a.params["text_encoder"]) * BYTES[g.dtype]
    b, batch = _act_bytes(g.dtype), cfg.sampling.batch_size
    seqs = batch * (guided if a.backend == "cogvideox" else 1)  # CogVideoX batches the unconditional pass
    act = max(pm.infer_activation_bytes(a, s_v, text, seqs, b),
              pm.vae_decode_bytes(a, a.vae_c0, w.height, w.width, batch, b))
    return GenCost(s_v, per_video, weights, act)


def sampling_stage(cfg: RunConfig, p: PlanConfig, a: GenArch, gc: GenCost, name: str, prompts: int,
                   per_prompt: int) -> dict:
    sec = _sec(gc.per_video, p)
    hours = math.ceil(prompts / p.gpus) * per_prompt * sec / 3600
    return _stage(name, _gen_params(a), gc.weights + gc.sample_act, {"weights": gc.weights,
                  "activations": gc.sample_act}, 3600 / sec, "videos / GPU-hour", prompts * per_prompt, "videos",
                  hours, p.gpus)


def _gen_params(a: GenArch) -> dict:
    return {k: v for k, v in a.params.items() if k != "lora"}


def training_stage(cfg: RunConfig, p: PlanConfig, a: GenArch, gc: GenCost, mods: dict) -> dict:
    t, w = cfg.train, cfg.world
    if t.batch_size % p.gpus:
        raise ValueError(f"train.batch_size={t.batch_size} must be divisible by --gpus {p.gpus} (each process "
                         f"takes an equal share of a step's examples)")
    videos = 2 if t.loss == "dpo" else 1
    example = pm.dpo_step_flops(a, gc.s_v, cfg.generator.text_max_len, videos, t.loss != "sft",
                                t.gradient_checkpointing)
    step = t.batch_size * t.grad_accum * example["total"]
    examples = cfg.sampling.prompts_per_round * (1 if cfg.pairs.strategy == "best_vs_worst" else
                                                 math.comb(cfg.sampling.videos_per_prompt, 2))
    encode = examples * videos * vae_flops(mods["vae"], a, w.num_frames, w.height, w.width, "encode")
    b = _act_bytes(cfg.generator.dtype, t.mixed_precision)
    act = pm.train_activation_bytes(a, gc.s_v, cfg.generator.text_max_len, videos * t.batch_size // p.gpus, b,
                                    t.gradient_checkpointing)
    optim = 16 * a.params["lora"]  # the adapter in float32 (`Generator.add_lora`), its gradient, two AdamW moments
    hours = (t.num_steps * _sec(step, p) + _sec(encode, p)) / p.gpus / 3600
    # train.frozen_on_cpu: the latents and prompt embeddings are cached first, only the transformer is on the GPU
    weights = a.params["transformer"] * BYTES[cfg.generator.dtype] if t.frozen_on_cpu else gc.weights
    return _stage("generator training", {**_gen_params(a), "lora (trained)": a.params["lora"]},
                  weights + optim + act, {"weights": weights, "adapter + optimizer": optim, "activations": act},
                  3600 / _sec(step, p), "optimizer steps / GPU-hour", t.num_steps, "steps", hours, p.gpus)


# ------------------------------------------------------------------------------------------ critic
def critic_video(cfg: RunConfig, c: CriticArch) -> tuple[int, int]:
    """(patches, LLM tokens) of one video as the critic sees it: `vision_inputs.patchify` run on blank frames."""
    from dualipo.critics.vision_inputs import VisionSpec, patchify

    spec = VisionSpec(c.patch, c.temporal_patch, c.merge, cfg.critic.num_frames, cfg.critic.image_size)
    frames = torch.zeros(cfg.critic.num_frames, cfg.world.height, cfg.world.width, 3, dtype=torch.uint8)
    patches = patchify(frames, spec)[0].shape[0]
    return patches, patches // c.merge ** 2


@dataclass(frozen=True)
class JudgeUnit:
    """One batched `generate` call: `rows` chat texts of `videos` videos each, K answers per row."""
    rows: int
    videos: int
    judgments: float
    caption_videos: float = 0  # two-step judging: videos described first (K descriptions each)


def judge_cost(cfg: RunConfig, p: PlanConfig, c: CriticArch, unit: JudgeUnit) -> tuple[float, int, dict]:
    """(seconds, peak bytes, memory parts) of one unit: prefill at FLOPs / (peak x MFU); decoding at the larger
    of its FLOPs time and the bytes read per generated token (weights + KV cache) / bandwidth. With
    `judging.batch_rows` = R below the unit's rows, the unit is rows / R calls of R rows: the peak is one call's,
    the time rows / R times one call's (the weights are read again by each call's decoding)."""
    if 0 < cfg.judging.batch_rows < unit.rows:
        share = cfg.judging.batch_rows / unit.rows
        whole = replace(cfg, judging=replace(cfg.judging, batch_rows=0))
        sec, peak, parts = judge_cost(whole, p, c, JudgeUnit(cfg.judging.batch_rows, unit.videos,
                                                             unit.judgments * share, unit.caption_videos * share))
        return sec / share, peak, parts
    k, new, b = cfg.judging.num_votes, cfg.critic.max_new_tokens, BYTES[cfg.critic.dtype]
    patches, tokens = critic_video(cfg, c)
    seqs, prompt = unit.rows * k, p.prompt_tokens + unit.videos * tokens
    vision = (unit.rows * unit.videos + unit.caption_videos) * pm.vision_flops(c, patches)
    prefill = seqs * pm.llm_forward_flops(c, prompt, 0) + vision
    decode = seqs * (pm.llm_forward_flops(c, prompt + new, new) - pm.llm_forward_flops(c, prompt, 0))
    caption = unit.caption_videos * k * pm.llm_forward_flops(c, p.prompt_tokens + tokens + new, new)
    weights, kvt = c.params["total"] * b, pm.kv_bytes_per_token(c, b)
    read = new * (weights + seqs * (prompt + new / 2) * kvt)
    sec = _sec(prefill + caption, p) + max(_sec(decode, p), read / (p.hbm_gbps * 1e9))
    act = max(seqs * prompt * kvt + pm.llm_prefill_bytes(c, seqs, prompt, b), seqs * (prompt + new) * kvt,
              unit.rows * unit.videos * patches * (2 * c.v_inter + 4 * c.v_hidden) * b)
    return sec, weights + act, {"weights": weights, "KV cache + activations": act}


def judging_unit(cfg: RunConfig) -> JudgeUnit:
    """The judgments of one prompt's videos, as `loop.judging` and `QwenVLCritic.judge_many` batch them."""
    j, n = cfg.judging, cfg.sampling.videos_per_prompt
    dims = len(j.dimensions)
    judgments = math.comb(n, 2) * dims if j.mode == "pairwise" else n * dims
    caption = n if j.describe_first and j.chain_of_thought else 0
    if j.mode == "pairwise" and j.pairs_from == "comparison":
        return JudgeUnit(math.comb(n, 2) * dims * (2 if j.both_orders else 1), 2, judgments, caption)
    return JudgeUnit(n * dims, 1, judgments, caption)  # pointwise scores of each video


def judging_stage(cfg: RunConfig, p: PlanConfig, c: CriticArch, name: str, unit: JudgeUnit, units: int) -> dict:
    sec, peak, parts = judge_cost(cfg, p, c, unit)
    return _stage(name, _critic_params(c), peak, parts, 3600 * unit.judgments / sec, "judgments / GPU-hour",
                  units * unit.judgments, "judgments", math.ceil(units / p.gpus) * sec / 3600, p.gpus)


def _critic_params(c: CriticArch) -> dict:
    return {"critic": c.params["total"], "vision": c.params["vision"]}


def refine_stage(cfg: RunConfig, p: PlanConfig, c: CriticArch) -> dict:
    """Critic refinement on the main process (one GPU): SFT or sequence DPO, full or LoRA fine-tuning."""
    ct = cfg.critic_refine
    b = 4 if ct.finetune == "full" else BYTES[cfg.critic.dtype]  # full fine-tuning trains in float32
    patches, tokens = critic_video(cfg, c)
    seqs, full = ct.batch_size * (2 if ct.method == "dpo" else 1), ct.finetune == "full"
    length = p.prompt_tokens + 2 * tokens + cfg.critic.max_new_tokens  # a pair and its rationale
    fwd, vis = pm.llm_forward_flops(c, length, length), 2 * pm.vision_flops(c, patches)
    step = seqs * (fwd * (3 if full else 2) + vis * (3 if full else 1))  # backward: 2x full, 1x (activations) LoRA
    step += seqs * (fwd + vis) if ct.method == "dpo" else 0  # (critic training does not checkpoint activations)
    weights = c.params["total"] * b
    optim = c.params["total"] * 3 * b if full else 16 * c.params["lora"]  # grads + 2 AdamW moments / fp32 adapter
    act = pm.llm_train_bytes(c, seqs, length, b, False)
    trained = c.params["total"] if full else c.params["lora"]
    sec = _sec(step, p)
    return _stage("critic refinement", {**_critic_params(c), f"{ct.finetune} (trained)": trained},
                  weights + optim + act, {"weights": weights, "optimizer": optim, "activations": act}, 3600 / sec,
                  "optimizer steps / GPU-hour", ct.steps, "steps (main process only)",
                  ct.steps * sec / 3600, 1)


# ------------------------------------------------------------------------------------------ the plan
def evaluation_stage(cfg: RunConfig, p: PlanConfig, a: GenArch, gc: GenCost, c: CriticArch | None,
                     win_rate: bool) -> dict:
    e = cfg.eval
    st = sampling_stage(cfg, p, a, gc, "evaluation" if win_rate else "evaluation (round 0)", e.num_prompts,
                        len(e.seeds))
    if win_rate and c is not None and e.critic_win_rate:  # rounds k > 0: round k vs round 0, same prompt and seed
        dims = len(cfg.judging.dimensions)
        unit = JudgeUnit(len(e.seeds) * dims * (2 if cfg.judging.both_orders else 1), 2, len(e.seeds) * dims)
        judge = judging_stage(cfg, p, c, "win rate", unit, e.num_prompts)
        st["hours"] += judge["hours"]
        st["peak_gib"] = max(st["peak_gib"], judge["peak_gib"])
        st["params"] = {**st["params"], **judge["params"]}
        st["work_unit"] += f" + {judge['work']} win-rate judgments"
    return st


def make_plan(cfg: RunConfig, p: PlanConfig) -> dict:
    """The plan as a JSON-ready dict: models and their sources, stages, round time, warnings."""
    a, mods = gen_arch(cfg, p.published_generator)
    c = critic_arch(cfg, p.published_critic) if cfg.critic.backend != "oracle" else None
    gc = generator_cost(cfg, a, mods)
    s = cfg.sampling
    stages = [sampling_stage(cfg, p, a, gc, "sampling", s.prompts_per_round, s.videos_per_prompt)]
    if c is not None:
        stages.append(judging_stage(cfg, p, c, "judging", judging_unit(cfg), s.prompts_per_round))
        if cfg.critic_refine.refine:
            stages.append(refine_stage(cfg, p, c))
    stages.append(training_stage(cfg, p, a, gc, mods))
    stages.append(evaluation_stage(cfg, p, a, gc, c, True))
    base = evaluation_stage(cfg, p, a, gc, c, False)
    warnings = [f"{st['stage']} needs {st['peak_gib']:.1f} GiB per GPU, more than --gpu-mem {p.gpu_mem:g} GiB"
                for st in stages + [base] if st["peak_gib"] > p.gpu_mem]
    together = (gc.weights + (c.params["total"] * BYTES[cfg.critic.dtype] if c else 0)) / pm.GiB
    if c is not None and together > p.gpu_mem and not cfg.rounds.offload_models:
        warnings.append(f"the generator's and the critic's weights together need {together:.1f} GiB: they cannot "
                        f"be resident on one GPU at the same time (set rounds.offload_models=true)")
    if cfg.critic.backend == "vllm":
        warnings.append(f"critic.backend=vllm: judging is planned as the transformers backend's; vLLM batches "
                        f"requests itself and reserves critic.vllm_gpu_memory={cfg.critic.vllm_gpu_memory:g} of "
                        f"each GPU it uses")
    round_h = sum(st["hours"] for st in stages)
    return {"plan": asdict(p), "generator": {"backend": a.backend, "source": a.source, "params": a.params,
                                             "video_tokens": gc.s_v, "flops_per_video": gc.per_video},
            "critic": None if c is None else {"source": c.source, "params": c.params},
            "stages": stages, "round_0": base, "round_hours": round_h,
            "run_hours": base["hours"] + cfg.rounds.num_rounds * round_h, "weights_together_gib": together,
            "gradient_checkpointing": cfg.train.gradient_checkpointing, "offload_models": cfg.rounds.offload_models,
            "warnings": warnings}


def _count(n: float) -> str:
    for unit, div in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= div:
            return f"{n / div:.2f} {unit}"
    return f"{n:g}"


def format_plan(plan: dict) -> str:
    p = plan["plan"]
    lines = [f"generator ({plan['generator']['backend']}): {plan['generator']['source']}",
             f"critic: {plan['critic']['source'] if plan['critic'] else 'oracle (no model)'}",
             f"{p['gpus']} GPU(s) x {p['gpu_mem']:g} GiB, peak {p['peak_tflops']:g} TFLOP/s at MFU {p['mfu']:g}, "
             f"{p['hbm_gbps']:g} GB/s; generator training with gradient checkpointing "
             f"{'on' if plan['gradient_checkpointing'] else 'off'}; models offloaded between stages "
             f"{'on' if plan['offload_models'] else 'off'}", ""]
    rows = [("stage", "parameters", "peak GiB/GPU", "throughput", "work", "hours")]
    rows += [(st["stage"], ", ".join(f"{k} {_count(v)}" for k, v in st["params"].items()), f"{st['peak_gib']:.2f}",
              f"{st['throughput']:.4g} {st['throughput_unit']}", f"{st['work']:g} {st['work_unit']}",
              f"{st['hours']:.3g}") for st in plan["stages"] + [plan["round_0"]]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    right = (2, 5)  # numbers
    lines += ["  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
              for r in rows]
    lines += ["", f"one round: {plan['round_hours']:.3g} h wall on {p['gpus']} GPU(s); the whole run (round 0 + "
              f"rounds): {plan['run_hours']:.3g} h"]
    lines += [f"WARNING: {w}" for w in plan["warnings"]]
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace, load) -> None:
    p = PlanConfig(gpus=args.gpus, gpu_mem=args.gpu_mem, mfu=args.mfu, peak_tflops=args.peak_tflops,
                   hbm_gbps=args.hbm_gbps,
                   prompt_tokens=args.prompt_tokens, published_generator=args.published_generator,
                   published_critic=args.published_critic)
    plan = make_plan(load(args), p)
    print(json.dumps(plan, indent=2) if args.json else format_plan(plan))


def add_plan_command(sub, config_args, load) -> None:
    """Register `dualipo plan` (called once from cli.build_parser)."""
    p = sub.add_parser("plan", help="estimate a run's cost per stage on N GPUs (parameters, peak memory, "
                       "throughput, wall time) from the configured models, without loading weights")
    config_args(p)
    d = PlanConfig()
    p.add_argument("--gpus", type=int, default=d.gpus, help="GPUs (processes) of the run")
    p.add_argument("--gpu-mem", type=float, default=d.gpu_mem, help="memory per GPU, GiB (default 80)")
    p.add_argument("--mfu", type=float, default=d.mfu, help="assumed model FLOPs utilisation (default 0.4)")
    p.add_argument("--peak-tflops", type=float, default=d.peak_tflops,
                   help="dense bf16 peak per GPU, TFLOP/s (default 989: H100 / H200 SXM)")
    p.add_argument("--hbm-gbps", type=float, default=d.hbm_gbps,
                   help="memory bandwidth per GPU, GB/s (default 3350: H100 SXM; H200: 4800)")
    p.add_argument("--prompt-tokens", type=int, default=d.prompt_tokens, help="text tokens of a critic prompt")
    p.add_argument("--published-generator", default="", help="published architecture for a generator.path that "
                   "does not exist here (cogvideox-2b, cogvideox-5b, wan2.1-t2v-1.3b)")
    p.add_argument("--published-critic", default="", help="published architecture for a critic.path that does "
                   "not exist here (qwen2.5-vl-7b-instruct)")
    p.add_argument("--json", action="store_true", help="print the plan as JSON")
    p.set_defaults(func=lambda args: cmd_plan(args, load))
