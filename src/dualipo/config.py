"""Run configuration: frozen, typed, nested dataclasses, one per stage, under `RunConfig`.

Every field carries its constraints in `field(metadata=...)` (`ge`, `le`, `gt`, `choices`), so one generic
validator checks all of them and names the dotted key on failure. Presets (`PRESETS`) are functions that only fill
values; the library never branches on a preset name. Sources, applied in order: preset -> config file (YAML or
JSON, nested mapping) -> dotted command-line overrides such as ``train.beta=2500``, all checked before any work.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml


class ConfigError(ValueError):
    """A user-facing configuration error; the message names the dotted key and what was expected."""


def opt(default: Any, *, ge: float | None = None, le: float | None = None, gt: float | None = None,
        choices: Sequence[Any] | None = None, doc: str = "") -> Any:
    """A dataclass field with its constraints; `choices` applies to each item of a tuple field."""
    meta = {"ge": ge, "le": le, "gt": gt, "choices": tuple(choices) if choices else None, "doc": doc}
    return field(default=default, metadata=meta)


SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue", "yellow", "white")
BACKGROUNDS = ("black", "gray", "navy")
MOTIONS = ("left", "right", "up", "down", "static", "growing", "shrinking")
DIMENSIONS = ("overall", "alignment", "colour", "shape", "count", "relation", "motion", "consistency")


class _Section:
    """Mixin: validate every field of a frozen config dataclass on construction."""

    def __post_init__(self) -> None:
        for f in fields(self):  # type: ignore[arg-type]
            _check_value(f.name, getattr(self, f.name), f.metadata)


@dataclass(frozen=True)
class WebCaptionConfig(_Section):
    """How the captions of the web-like corpus are wrong (why: docs/preference_gain.md): each attribute of a
    caption is named wrong with its own probability, independently (the video always shows the true prompt), by a
    value drawn uniformly from the world's own vocabulary (captions stay in the grammar); deterministic in (`seed`,
    stream, item index). The small base learned from this corpus; `train.data=web` trains on more of it."""
    colour: float = opt(0.0, ge=0, le=1, doc="an object's colour named wrong (each object independently)")
    shape: float = opt(0.0, ge=0, le=1, doc="the first object's shape named wrong (needs >= 2 world shapes)")
    count: float = opt(0.0, ge=0, le=1, doc="one object called two, or two called one (one-kind scenes)")
    relation: float = opt(0.0, ge=0, le=1, doc="the spatial relation reversed (two-object scenes)")
    motion: float = opt(0.0, ge=0, le=1, doc="another of the world's motions named")
    speed: float = opt(0.0, ge=0, le=1, doc="the speed word wrong or missing (moving scenes)")
    background: float = opt(0.0, ge=0, le=1, doc="the background colour named wrong")
    seed: int = opt(0, ge=0)

    @property
    def clean(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self) if f.name != "seed")


@dataclass(frozen=True)
class WorldConfig(_Section):
    """The procedural shapes world: video size, the prompt grammar's vocabulary, and the web corpus's captions."""
    height: int = opt(48, ge=16, le=2048)
    width: int = opt(48, ge=16, le=2048)
    num_frames: int = opt(9, ge=2, le=257)
    fps: float = opt(8.0, gt=0)
    shapes: tuple[str, ...] = opt(SHAPES, choices=SHAPES)
    colours: tuple[str, ...] = opt(COLOURS, choices=COLOURS)
    backgrounds: tuple[str, ...] = opt(BACKGROUNDS, choices=BACKGROUNDS)
    motions: tuple[str, ...] = opt(MOTIONS, choices=MOTIONS)
    p_pair: float = opt(0.35, ge=0, le=1, doc="fraction of prompts with two objects and a spatial relation")
    p_count_two: float = opt(0.2, ge=0, le=1, doc="fraction of one-object prompts that ask for two copies")
    p_speed: float = opt(0.4, ge=0, le=1, doc="fraction of moving prompts with 'slowly' / 'quickly'")
    object_scale: float = opt(1.0, gt=0, le=2.5, doc="object size relative to the default (half-size 0.11-0.14 of "
                              "the frame side)")
    num_train_prompts: int = opt(512, ge=1)
    num_eval_prompts: int = opt(64, ge=1)
    seed: int = opt(0, ge=0)
    web: WebCaptionConfig = field(default_factory=WebCaptionConfig)


@dataclass(frozen=True)
class GeneratorArchConfig(_Section):
    """The generator's architecture when built from config (`generator.path=''`; a loaded directory's configs win)."""
    num_layers: int = opt(4, ge=1, doc="transformer blocks")
    num_heads: int = opt(4, ge=1)
    head_dim: int = opt(32, ge=2)
    ffn_dim: int = opt(512, ge=1, doc="Wan feed-forward width (CogVideoX uses 4 x inner dim)")
    patch_size: int = opt(2, ge=1, doc="spatial patch of the transformer (temporal patch 1)")
    time_dim: int = opt(64, ge=2, doc="timestep embedding width (Wan freq_dim, CogVideoX time_embed_dim)")
    latent_channels: int = opt(8, ge=1)
    vae_channels: tuple[int, ...] = opt((8, 16, 16), ge=1,
                                        doc="VAE width per level; len-1 = 2x spatial downsamplings (>= 3 levels)")
    vae_norm_groups: int = opt(2, ge=1, doc="CogVideoX VAE group-norm groups")
    text_dim: int = opt(64, ge=2, doc="frozen random T5 width (built-from-config text encoder)")
    text_layers: int = opt(2, ge=1)
    text_heads: int = opt(4, ge=1)
    text_seed: int = opt(0, ge=0)
    flow_shift: float = opt(3.0, gt=0, doc="Wan FlowMatchEuler shift at sampling time")
    prediction_type: str = opt("v_prediction", choices=("v_prediction", "epsilon"), doc="CogVideoX scheduler's")
    init_seed: int = opt(0, ge=0, doc="seed of the random init")


@dataclass(frozen=True)
class GeneratorConfig(_Section):
    """Text-to-video backend. `path` is a local diffusers directory; empty builds from `arch`."""
    backend: str = opt("wan", choices=("wan", "cogvideox"))
    path: str = opt("shipped", doc="local diffusers pipeline directory; 'shipped' = the pretrained small "
                    "generator in dualipo/assets (Wan); empty = random init built from `arch`")
    num_inference_steps: int = opt(20, ge=1, le=1000)
    guidance_scale: float = opt(4.0, ge=0)
    lora_rank: int = opt(8, ge=1)
    lora_alpha: float = opt(8.0, gt=0)
    lora_targets: tuple[str, ...] = opt(("to_q", "to_k", "to_v", "to_out.0"))
    dtype: str = opt("float32", choices=("float32", "bfloat16", "float16"))
    device: str = opt("auto", doc="torch device the pipeline samples and encodes on: 'auto' = cuda when available, "
                      "else cpu (training moves the transformer to the accelerator's device)")
    vae_slicing: bool = opt(False, doc="VAE encodes / decodes a batch one video at a time (`vae.enable_slicing()`)")
    vae_tiling: bool = opt(False, doc="VAE encodes / decodes each video in overlapping spatial tiles "
                           "(`vae.enable_tiling()`): the VAE's activation memory no longer grows with the frame size")
    vae_tile: int = opt(0, ge=0, doc="with vae_tiling: tile side in pixels, tiles overlapping by a quarter; use a "
                        "multiple of 4 x the VAE's spatial factor (0 = the VAE's own tiles: 256 px for Wan, 240 x 360 "
                        "for CogVideoX)")
    text_max_len: int = opt(24, ge=2, doc="max prompt tokens (the shapes-world prompts need <= 20)")
    arch: GeneratorArchConfig = field(default_factory=GeneratorArchConfig)


@dataclass(frozen=True)
class PretrainConfig(_Section):
    """`dualipo pretrain`: VAE, then transformer, from scratch on rendered shapes-world videos."""
    num_videos: int = opt(6000, ge=1, doc="rendered training videos (prompts from the world's train pool)")
    vae_from: str = opt("", doc="start from the VAE of this pipeline directory ('shipped' = the small generator); "
                        "with vae_steps=0 it is used as is and only the transformer trains")
    vae_steps: int = opt(1800, ge=0)
    vae_lr: float = opt(1e-3, gt=0)
    vae_batch_size: int = opt(8, ge=1)
    vae_crop: int = opt(32, ge=0, doc="random square crop for VAE training (0 = full frame); the VAE is conv")
    vae_fg_weight: float = opt(5.0, ge=1, doc="loss weight on pixels that differ from the background")
    vae_kl_weight: float = opt(3e-4, ge=0)
    steps: int = opt(6000, ge=0, doc="transformer steps")
    lr: float = opt(7e-4, gt=0)
    batch_size: int = opt(32, ge=1)
    warmup_steps: int = opt(200, ge=0)
    min_lr_frac: float = opt(0.1, ge=0, le=1, doc="cosine decay floor, as a fraction of the peak lr")
    prompt_dropout: float = opt(0.1, ge=0, le=1, doc="fraction of prompts replaced by '' (for CFG)")
    weight_decay: float = opt(0.01, ge=0)
    max_grad_norm: float = opt(1.0, gt=0)
    checkpoint_every: int = opt(250, ge=1)
    log_every: int = opt(25, ge=1)
    eval_prompts: int = opt(32, ge=0, doc="held-out prompts scored by the oracle at the end (0 = skip)")
    threads: int = opt(1, ge=0, doc="torch threads (0 = torch default)")
    seed: int = opt(0, ge=0)


@dataclass(frozen=True)
class CriticConfig(_Section):
    """VLM critic backend (`qwen_vl`) or the shapes-world oracle as a critic (tests and reference only)."""
    backend: str = opt("qwen_vl", choices=("qwen_vl", "vllm", "oracle"), doc="vllm = the same Qwen-VL critic "
                       "served by vLLM (pip install 'dualipo[vllm]'; CUDA), for judging at scale")
    path: str = opt("shipped", doc="'' = random from the fields below (offline tokenizer), 'shipped' = the "
                               "package's cold-started small critic, else a local transformers directory")
    arch: str = opt("qwen2_vl", choices=("qwen2_vl", "qwen2_5_vl"), doc="model class when built from config")
    num_frames: int = opt(8, ge=1, doc="frames sampled from each video for the critic")
    image_size: int = opt(48, ge=0, doc="square side the frames are resized to (0 = smart_resize of the input)")
    max_new_tokens: int = opt(64, ge=1)
    oracle_noise: float = opt(0.0, ge=0, le=1, doc="label-noise rate of the oracle critic")
    dtype: str = opt("float32", choices=("float32", "bfloat16", "float16"))
    device: str = opt("auto", doc="torch device of the critic: 'auto' = cuda when available, else cpu")
    visual_cache_mb: int = opt(2048, ge=0, doc="host memory for decoded videos the critic keeps by path (least "
                               "recently used dropped first; 0 = none): a video is judged in several pairs and "
                               "trained on every epoch (sizes: docs/full_scale.md)")
    vocab_size: int = opt(600, ge=64, doc="size of the offline byte-level BPE built with a random model")
    hidden_size: int = opt(128, ge=8)
    intermediate_size: int = opt(384, ge=8)
    num_layers: int = opt(4, ge=1)
    num_heads: int = opt(4, ge=1)
    num_kv_heads: int = opt(2, ge=1)
    mrope_section: tuple[int, ...] = opt((4, 6, 6), ge=1, doc="sums to head_dim / 2")
    vision_depth: int = opt(2, ge=1)
    vision_embed_dim: int = opt(96, ge=8)
    vision_heads: int = opt(4, ge=1)
    patch_size: int = opt(8, ge=2)
    temporal_patch_size: int = opt(2, ge=1, doc="frames per vision patch (Qwen2-VL's own value; 2 against 8: "
                                   "assets/critic_small/README.md)")
    spatial_merge_size: int = opt(2, ge=1)
    init_seed: int = opt(0, ge=0)
    vllm_tensor_parallel: int = opt(1, ge=1, doc="backend=vllm: GPUs one vLLM engine shards the critic over")
    vllm_gpu_memory: float = opt(0.9, gt=0, le=1, doc="backend=vllm: share of each GPU's memory the engine takes "
                                 "(weights + KV cache); lower it when the generator shares the GPU")
    vllm_max_model_len: int = opt(0, ge=0, doc="backend=vllm: longest request in tokens (0 = the model's)")


@dataclass(frozen=True)
class SamplingConfig(_Section):
    """Step 1: N videos per prompt with recorded seeds."""
    videos_per_prompt: int = opt(8, ge=2)
    prompts_per_round: int = opt(32, ge=1)
    batch_size: int = opt(8, ge=1)
    seed: int = opt(0, ge=0)


@dataclass(frozen=True)
class JudgingConfig(_Section):
    """Steps 2-3: chain-of-thought judging, self-consistency voting, certainty filtering."""
    mode: str = opt("pairwise", choices=("pairwise", "pointwise"))
    dimensions: tuple[str, ...] = opt(("alignment",), choices=DIMENSIONS)
    num_votes: int = opt(8, ge=1, doc="K sampled reasoning paths per order; 1 = the single-vote ablation")
    both_orders: bool = opt(True, doc="judge (a, b) and (b, a) to cancel position bias")
    chain_of_thought: bool = opt(True, doc="False = answer-only ablation")
    describe_first: bool = opt(False, doc="two-step judging (CoT only): describe each video without the prompt, "
                               "then the rationale starts from those descriptions (against copying the prompt)")
    pairs_from: str = opt("comparison", choices=("comparison", "scores"), doc="a pairwise verdict from one "
                          "comparison of both videos, or from scoring each video on its own (Good / Normal / Bad, K "
                          "paths) and voting over the K x K comparisons of the scores (the oracle critic: its two "
                          "pointwise labels)")
    temperature: float = opt(0.8, ge=0)
    top_p: float = opt(1.0, gt=0, le=1)
    certainty_threshold: float = opt(0.5, ge=0, le=1, doc="keep a judgment for the generator's preference data if "
                                     "its majority's vote share is at least this")
    batch_rows: int = opt(0, ge=0, doc="requests (chat texts, each with its K sampled paths) per `generate` call of "
                          "the transformers critic; 0 = a prompt's whole unit in one call. A 7B critic needs a bound: "
                          "each row holds K sequences of its videos' tokens in the KV cache (`dualipo plan` sizes "
                          "it). Another value draws other sampled paths (the same distribution). vLLM schedules "
                          "its own batches and ignores it")


@dataclass(frozen=True)
class PairsConfig(_Section):
    """Step 4: preference pairs (DPO) and desirable / undesirable sets (KTO) from confident judgments."""
    strategy: str = opt("best_vs_worst", choices=("best_vs_worst", "all_confident"),
                        doc="best_vs_worst: one pair per prompt (the paper's top-1 vs bottom-1); all_confident: "
                        "every confident judgment is a pair (winner vs loser)")
    min_margin: float = opt(0.0, ge=0, doc="minimum win-rate gap between best and worst to keep a pair")


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Step 5: generator preference training (LoRA; reference = adapters disabled)."""
    loss: str = opt("dpo", choices=("dpo", "kto", "sft"), doc="sft = plain denoising on the chosen items only "
                    "(rejection-sampling fine-tuning on best-of-N, or continued pretraining on real videos): the "
                    "equal-compute baseline")
    data: str = opt("preferences", choices=("preferences", "web", "curated"), doc="what the loop's train stage "
                    "learns from: the round's preference data, or (with loss=sft; shapes world only) fresh renders "
                    "of the round's prompts, one per sampled video, captioned like the web corpus the base learned "
                    "from (web: world.web's caption errors; continued pretraining, what a user without a critic "
                    "would do, the fair equal-compute control of `dualipo ablate`) or with their true prompts "
                    "(curated: clean data no real user has, a reference)")
    beta: float = opt(5000.0, gt=0, doc="Diffusion-DPO beta (about 5000 for epsilon models)")
    kto_beta: float = opt(1000.0, gt=0)
    lambda_winner: float = opt(0.0, ge=0, doc="lambda1: NLL on generated winners")
    lambda_real: float = opt(0.0, ge=0, doc="lambda2: NLL on real videos")
    real_set_size: int = opt(64, ge=1, doc="lambda2's real videos in the shapes world: a small curated set of this "
                             "many renders with true captions, the same every round")
    learning_rate: float = opt(1e-4, gt=0)
    lr_schedule: str = opt("constant", choices=("constant", "linear", "cosine"))
    warmup_steps: int = opt(0, ge=0)
    noise_range: tuple[float, ...] = opt((0.0, 1.0), ge=0, le=1, doc="(lo, hi): training timesteps uniform "
                                         "over this fraction of the noise schedule (1 = pure noise)")
    num_steps: int = opt(100, ge=1)
    batch_size: int = opt(2, ge=1)
    grad_accum: int = opt(1, ge=1)
    max_grad_norm: float = opt(1.0, gt=0)
    checkpoint_every: int = opt(50, ge=1)
    mixed_precision: str = opt("no", choices=("no", "fp16", "bf16"))
    gradient_checkpointing: bool = opt(False, doc="recompute the transformer's block activations in the backward "
                                       "pass (diffusers `enable_gradient_checkpointing()`): activation memory of "
                                       "one block instead of all, for about a third more time per step")
    frozen_on_cpu: bool = opt(False, doc="during training only the transformer is on the accelerator: the VAE and the "
                              "text encoder move to CPU (latents and prompt embeddings are encoded before the loop)")
    seed: int = opt(0, ge=0)

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.noise_range) != 2 or self.noise_range[0] >= self.noise_range[1]:
            raise ConfigError(f"noise_range: expected (lo, hi) with 0 <= lo < hi <= 1, got {self.noise_range!r}")
        if self.data != "preferences" and self.loss != "sft":
            raise ConfigError(f"data={self.data} (continued pretraining) trains with loss=sft, got loss={self.loss}")


@dataclass(frozen=True)
class CriticOptimConfig(_Section):
    """What both critic trainings read: a copy, with the same defaults, in `critic_cold` and `critic_refine`."""
    finetune: str = opt("full", choices=("full", "lora"), doc="train all weights or a LoRA on the language model")
    lora_rank: int = opt(16, ge=1)
    lora_alpha: float = opt(16.0, gt=0)
    learning_rate: float = opt(5e-4, gt=0)
    weight_decay: float = opt(0.01, ge=0)
    warmup_steps: int = opt(30, ge=0)
    max_grad_norm: float = opt(1.0, gt=0)
    batch_size: int = opt(16, ge=1)
    no_cot_fraction: float = opt(0.25, ge=0, le=1, doc="share of examples in the answer-only format")
    checkpoint_every: int = opt(150, ge=1)
    eval_every: int = opt(150, ge=1)
    log_every: int = opt(10, ge=1, doc="a metrics row (the loss averaged since the last row) every this many steps, "
                         "between evaluations")
    num_threads: int = opt(0, ge=0, doc="torch threads (0 = leave torch's default)")
    seed_file: str = opt("", doc="the human seed set (JSONL / CSV, `dualipo critic seed` format); '' in the "
                         "shapes world's loop = oracle-labelled renders made at the start of the run")
    seed_pairs: int = opt(600, ge=0, doc="oracle seed set: pairs (0 = pointwise records only)")
    seed_noise: float = opt(0.1, ge=0, le=1)
    seed: int = opt(0, ge=0)


@dataclass(frozen=True)
class CriticColdConfig(CriticOptimConfig):
    """`dualipo critic cold-start` and `critic caption` (and the size of `critic seed`'s oracle seed set)."""
    num_steps: int = opt(1800, ge=1)
    both_orders: bool = opt(True, doc="train every pair in both presentation orders (position-bias control)")
    caption_videos: tuple[str, ...] = opt((), doc="shapes-world video directories (prompts.jsonl layout) whose "
                                          "captioning / comparison examples the cold start mixes in")
    caption_mix: float = opt(0.0, ge=0, le=0.9, doc="share of each cold-start batch drawn from captioning "
                             "examples (`caption_videos`), against memorising the seed set")
    reasoning_mix: float = opt(0.0, ge=0, le=0.9, doc="share of each cold-start batch drawn from text-only "
                               "comparison examples built from the true descriptions of `caption_videos` (the "
                               "shapes world's stand-in for a pretrained language model's reasoning)")
    reasoning_examples: int = opt(20000, ge=1, doc="how many comparison examples to build")
    reasoning_sample_share: float = opt(0.5, ge=0, le=1, doc="share of compared descriptions taken from the "
                                        "true descriptions of generator samples among `caption_videos` (the "
                                        "rest: varied descriptions of clean renders)")
    reasoning_dimensions: tuple[str, ...] = opt((), choices=DIMENSIONS, doc="dimensions of the comparison "
                                                "examples, drawn uniformly (repeat one to weight it); empty = "
                                                "the seed set's pairwise dimensions")
    eval_pairs: int = opt(100, ge=0, doc="held-out pairs (videos when captioning) evaluated greedily at each "
                          "eval; 0 = none")


@dataclass(frozen=True)
class CriticRefineConfig(CriticOptimConfig):
    """Step 6 (SRPO, the loop and `dualipo critic refine`): refinement on the critic's own confident judgments."""
    refine: bool = opt(True, doc="False = IPO (frozen critic), the main ablation")
    method: str = opt("sft", choices=("sft", "dpo"), doc="refinement update: sft on the majority rationales mixed "
                      "with the seed set (seed_mix), or certainty-weighted sequence DPO + nll_weight x NLL")
    consistency: str = opt("claim", choices=("off", "claim", "shapes"), doc="refinement vote filter: a sampled "
                           "path votes only if its verdict agrees with its own reasoning (claim: the rationale's "
                           "stated claim; shapes: its descriptions against the prompt, shapes world)")
    learn_ties: bool = opt(False, doc="refinement also learns confident 'tie' majorities (by default only A / B "
                           "verdicts become examples)")
    certainty: str = opt("vote", choices=("vote", "pce"), doc="refinement certainty: majority vote share, or the "
                         "paper's Preference Certainty Estimator (needs pce_reference)")
    certainty_threshold: float = opt(0.75, ge=0, le=1, doc="certainty=vote: keep a judgment for refinement if "
                                     "its majority's vote share is at least this")
    pce_threshold: float = opt(0.5, ge=0, le=1, doc="certainty=pce: keep a judgment if PCE is above this (the "
                               "paper's 0.5)")
    pce_beta: float = opt(1.0, gt=0, doc="PCE = sigmoid(pce_beta * (R - mean R))")
    pce_reference: str = opt("", doc="PCE's reference critic directory for the first refinement (the cold-start "
                             "critic's base); later rounds of `dualipo run` use the previous round's critic")
    steps: int = opt(100, ge=1, doc="optimizer steps of one refinement")
    probe_pairs: int = opt(16, ge=0, doc="pairs of the round whose greedy answers are checked for unparseable "
                           "verdicts during refinement (the DPO guard)")
    probe_every: int = opt(25, ge=1, doc="refinement DPO: check the probe (the guard) every this many steps; a "
                           "checkpoint is written at each check that passes, and a failed check restores it")
    seed_mix: float = opt(0.5, ge=0, le=1, doc="fraction of each refinement batch drawn from the seed set")
    beta: float = opt(0.1, gt=0, doc="sequence-DPO beta of the critic refinement")
    nll_weight: float = opt(1.0, ge=0, doc="weight of the NLL term on the chosen rationale (refinement DPO)")
    max_abstain_rate: float = opt(0.2, ge=0, le=1, doc="DPO guard: stop and restore the last checkpoint when "
                                  "the probe's unparseable-answer rate rises above this and above its start")


@dataclass(frozen=True)
class RoundsConfig(_Section):
    """The outer loop (`dualipo run`): R rounds of sample -> judge -> pairs -> train -> refine -> evaluate."""
    num_rounds: int = opt(3, ge=1)
    order: str = opt("critic_first", choices=("critic_first", "generator_first"),
                     doc="within a round: refine the critic before training the generator, or after")
    reference: str = opt("previous", choices=("previous", "base"),
                         doc="reference policy of round k: the merged previous round, or the original base")
    prompt_file: str = opt("", doc="JSONL ({'prompt', 'id'}) or text (one prompt per line) the rounds draw their "
                           "prompts from, in order; '' = the shapes world's training prompts")
    threads: int = opt(0, ge=0, doc="torch threads per process (0 = torch's default); the stage table reports CPU "
                       "seconds beside wall seconds")
    offload_models: bool = opt(False, doc="keep only the model a stage uses on the GPU: the critic moves to CPU "
                               "before sampling, training, refinement and evaluation sampling, and the generator is "
                               "released before judging (for a critic and a generator that do not fit on one GPU "
                               "together; a no-op without CUDA)")
    tracker: str = opt("none", choices=("none", "tensorboard", "wandb"),
                       doc="also send metrics to TensorBoard / Weights & Biases (extra 'tracking'); the ledger "
                       "and metrics.jsonl always get them")


@dataclass(frozen=True)
class EvalConfig(_Section):
    """Step 7: fixed evaluation prompts and seeds, every round."""
    num_prompts: int = opt(16, ge=1)
    seeds: tuple[int, ...] = opt((0, 1))
    critic_win_rate: bool = opt(True, doc="each round k > 0 the critic also compares every held-out video with "
                                "round 0's of the same prompt and seed (win rate; costs one judgment per video "
                                "and judging dimension)")


@dataclass(frozen=True)
class RunConfig(_Section):
    """Everything a run needs; written as config.json into every run directory."""
    world: WorldConfig = field(default_factory=WorldConfig)
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    critic: CriticConfig = field(default_factory=CriticConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    judging: JudgingConfig = field(default_factory=JudgingConfig)
    pairs: PairsConfig = field(default_factory=PairsConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    critic_cold: CriticColdConfig = field(default_factory=CriticColdConfig)
    critic_refine: CriticRefineConfig = field(default_factory=CriticRefineConfig)
    rounds: RoundsConfig = field(default_factory=RoundsConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    seed: int = opt(0, ge=0)


# ----------------------------------------------------------------------------------------------- presets

def preset_small() -> RunConfig:
    """The CPU demo on the shapes world (why each value: docs/preference_gain.md, assets/critic_small/README.md): the
    world the small models learn, captioned like the base's web-like corpus (`world.web`); two-step judging with
    rationales of up to 96 tokens; beta 500 for the flow-matching error scale, timesteps in the noisier half where
    layout, colour and motion are decided; every confident judgment a pair; the shapes world's consistency check."""
    c = RunConfig()
    world = replace(c.world, height=32, width=32, shapes=("circle",), p_pair=0.0, p_speed=0.0, p_count_two=0.2,
                    object_scale=1.5, num_train_prompts=146, num_eval_prompts=64,
                    web=WebCaptionConfig(colour=0.4, motion=0.3, count=0.2))
    return replace(c, world=world, critic=replace(c.critic, max_new_tokens=96),
                   judging=replace(c.judging, describe_first=True, pairs_from="scores"),
                   critic_refine=replace(c.critic_refine, consistency="shapes"),
                   pairs=replace(c.pairs, strategy="all_confident"),
                   train=replace(c.train, beta=500.0, noise_range=(0.5, 1.0), batch_size=8, num_steps=300),
                   sampling=replace(c.sampling, prompts_per_round=32, videos_per_prompt=4),
                   eval=replace(c.eval, num_prompts=32),
                   pretrain=replace(c.pretrain, vae_from="shipped", vae_steps=0, steps=8000))


def preset_tiny() -> RunConfig:
    """Random tiny models for tests: everything runs in seconds."""
    c = RunConfig()
    arch = GeneratorArchConfig(num_layers=2, num_heads=2, head_dim=8, ffn_dim=32, time_dim=16, latent_channels=4,
                               vae_channels=(4, 8, 8), text_dim=16, text_layers=1, text_heads=2)
    both = dict(batch_size=2, seed_pairs=8, warmup_steps=1, checkpoint_every=1, eval_every=1)  # critic_cold, _refine
    return replace(
        c,
        world=replace(c.world, height=32, width=32, num_frames=9, num_train_prompts=16, num_eval_prompts=4),
        generator=replace(c.generator, path="", num_inference_steps=2, guidance_scale=1.0, arch=arch),
        critic=replace(c.critic, path="", num_frames=4, image_size=32, max_new_tokens=16, vocab_size=300,
                       hidden_size=32, intermediate_size=64, num_layers=2, num_heads=2, num_kv_heads=1, mrope_section=(2, 3, 3),
                       vision_depth=1, vision_embed_dim=32, vision_heads=2, temporal_patch_size=2),
        sampling=replace(c.sampling, videos_per_prompt=2, prompts_per_round=2, batch_size=2),
        judging=replace(c.judging, num_votes=2),
        train=replace(c.train, num_steps=2, batch_size=1, checkpoint_every=1),
        critic_cold=replace(c.critic_cold, num_steps=2, eval_pairs=2, **both),
        critic_refine=replace(c.critic_refine, steps=2, probe_pairs=2, **both),
        rounds=replace(c.rounds, num_rounds=1),
        eval=replace(c.eval, num_prompts=2, seeds=(0,)),
        pretrain=replace(c.pretrain, num_videos=8, vae_steps=2, vae_batch_size=2, vae_crop=16, steps=3, batch_size=2,
                         warmup_steps=1, checkpoint_every=1, log_every=1, eval_prompts=0),
    )


def _preset_full(world: dict[str, Any], generator: dict[str, Any]) -> RunConfig:
    """What the full presets share: the paper's loop (8 videos per prompt, best-vs-worst pairs, K = 8 paths in both
    orders, certainty 0.5, 3 rounds), a Qwen2.5-VL-7B-Instruct critic from a local directory (any Qwen2-VL /
    Qwen2.5-VL directory: the architecture is read from its config.json), LoRA training in bf16, and the memory
    features of docs/full_scale.md (80 GB cards). Prompts: the shapes world's until `rounds.prompt_file` names the
    user's (then set `critic_refine.seed_file` too)."""
    c, critic = RunConfig(), dict(finetune="lora", learning_rate=1e-5, batch_size=4)
    return replace(
        c,
        world=replace(c.world, num_train_prompts=3072, **world),
        generator=replace(c.generator, num_inference_steps=50, lora_rank=64, lora_alpha=64.0, dtype="bfloat16",
                          vae_slicing=True, vae_tiling=True, **generator),
        critic=replace(c.critic, path="models/Qwen2.5-VL-7B-Instruct", arch="qwen2_5_vl", image_size=0,
                       max_new_tokens=512, dtype="bfloat16"),
        critic_cold=replace(c.critic_cold, **critic), critic_refine=replace(c.critic_refine, **critic),
        sampling=replace(c.sampling, videos_per_prompt=8, prompts_per_round=1024, batch_size=1),
        judging=replace(c.judging, num_votes=8, both_orders=True, certainty_threshold=0.5, batch_rows=16),
        pairs=replace(c.pairs, strategy="best_vs_worst"),
        train=replace(c.train, num_steps=2000, batch_size=1, grad_accum=8, mixed_precision="bf16",
                      learning_rate=1e-5, warmup_steps=100, checkpoint_every=200, gradient_checkpointing=True,
                      frozen_on_cpu=True),
        rounds=replace(c.rounds, num_rounds=3, offload_models=True),
    )


def preset_full_cogvideox_2b() -> RunConfig:
    """CogVideoX-2B (`models/CogVideoX-2b`, diffusers layout): 49 frames at 480 x 720, 8 fps, 50 steps, CFG 6,
    T5 prompts of up to 226 tokens. The 2B transformer predicts v (its scheduler_config.json says
    `prediction_type: v_prediction`; a loaded directory's scheduler wins over `generator.arch.prediction_type`)."""
    return _preset_full(dict(height=480, width=720, num_frames=49, fps=8.0),
                        dict(backend="cogvideox", path="models/CogVideoX-2b", guidance_scale=6.0, text_max_len=226,
                             arch=GeneratorArchConfig(prediction_type="v_prediction")))


def preset_full_cogvideox_5b() -> RunConfig:
    """CogVideoX-5B (`models/CogVideoX-5b`): the same video size, sampler and v-prediction as the 2B."""
    c = preset_full_cogvideox_2b()
    return replace(c, generator=replace(c.generator, path="models/CogVideoX-5b"))


def preset_full_wan_1_3b() -> RunConfig:
    """Wan2.1-T2V-1.3B (`models/Wan2.1-T2V-1.3B-Diffusers`): 81 frames at 480 x 832, 16 fps, 50 steps, CFG 5,
    UMT5 prompts of up to 512 tokens. Flow matching; the sampler and its shift (3.0 at 480p) come from the
    directory's scheduler_config.json (`generator.arch.flow_shift` only applies to a generator built from config)."""
    return _preset_full(dict(height=480, width=832, num_frames=81, fps=16.0),
                        dict(backend="wan", path="models/Wan2.1-T2V-1.3B-Diffusers", guidance_scale=5.0,
                             text_max_len=512, arch=GeneratorArchConfig(flow_shift=3.0)))


PRESETS = {"tiny": preset_tiny, "small": preset_small, "full-cogvideox-2b": preset_full_cogvideox_2b,
           "full-cogvideox-5b": preset_full_cogvideox_5b, "full-wan-1.3b": preset_full_wan_1_3b,
           "full": preset_full_cogvideox_2b}  # `full`: the name before the 5B and Wan presets existed


# ----------------------------------------------------------------------------------------------- validation

def _check_value(key: str, value: Any, meta: Mapping[str, Any]) -> None:
    items = value if isinstance(value, tuple) else (value,)
    for item in items:
        if meta.get("choices") and item not in meta["choices"]:
            raise ConfigError(f"{key}: expected one of {list(meta['choices'])}, got {item!r}")
        if isinstance(item, (int, float)) and not isinstance(item, bool):
            if meta.get("ge") is not None and item < meta["ge"]:
                raise ConfigError(f"{key}: expected a value >= {meta['ge']}, got {item!r}")
            if meta.get("gt") is not None and item <= meta["gt"]:
                raise ConfigError(f"{key}: expected a value > {meta['gt']}, got {item!r}")
            if meta.get("le") is not None and item > meta["le"]:
                raise ConfigError(f"{key}: expected a value <= {meta['le']}, got {item!r}")


_MOVED = {"generator": {"generator.arch": GeneratorArchConfig},  # issue 28's moves: for the message only, no alias
          "critic_train": {"critic_cold": CriticColdConfig, "critic_refine": CriticRefineConfig}}


def _moved(key: str, value: Any = None) -> ConfigError | None:
    """The error for a key (or a mapping under one) that issue 28 moved (`_MOVED`), naming its new key(s); or None."""
    if isinstance(value, Mapping):
        return next(filter(None, (_moved(f"{key}.{k}", v) for k, v in value.items())), None)
    old, _, name = key.replace("critic_train.refine_steps", "critic_train.steps").partition(".")
    new = [f"{s}.{name}" for s, c in _MOVED.get(old, {}).items() if name in {f.name for f in fields(c)}]
    return ConfigError(f"config key {key!r} no longer exists: it is now {' and '.join(new)}") if new else None


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(key: str, tp: Any, value: Any) -> Any:
    """Check `value` against the annotation `tp`; allow int -> float and list -> tuple only."""
    if typing.get_origin(tp) is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp, _ellipsis) = typing.get_args(tp)
        return tuple(_coerce(f"{key}[{i}]", item_tp, v) for i, v in enumerate(value))
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp in (int, float, str, bool) and type(value) is tp:
        return value
    raise ConfigError(f"{key}: expected {_type_name(tp)}, got {type(value).__name__} {value!r}")


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build a config dataclass from a nested mapping, naming the dotted key of any error."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix.rstrip('.') or 'config'}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    known = {f.name: f for f in fields(cls)}
    for name in data:
        if name not in known:
            raise _moved(prefix + str(name), data[name]) or ConfigError(f"unknown config key {prefix + str(name)!r}; "
                              f"known keys here: {', '.join(sorted(known))}")
    kwargs = {}
    for name, value in data.items():
        tp = hints[name]
        if is_dataclass(tp):
            kwargs[name] = from_dict(tp, value, f"{prefix}{name}.")
        else:
            kwargs[name] = _coerce(prefix + name, tp, value)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        raise ConfigError(f"{prefix}{e}") from None


def to_dict(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def _merge(base: dict[str, Any], update: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v, f"{prefix}{k}.")
        else:
            out[k] = v
    return out


_SCIENTIFIC = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_override(text: str) -> tuple[list[str], Any]:
    """`train.beta=2500` -> (['train', 'beta'], 2500). Values are parsed as YAML scalars / lists."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. train.beta=2500")
    key, raw = text.split("=", 1)
    if not key:
        raise ConfigError(f"override {text!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        raise ConfigError(f"override {key}: cannot parse value {raw!r}: {e}") from None
    if isinstance(value, str) and _SCIENTIFIC.fullmatch(raw.strip()):
        value = float(raw)  # YAML 1.1 reads 1e-4 (no dot) as a string
    return key.split("."), value


def _override_dict(overrides: Sequence[str], base: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for text in overrides:
        path, value = parse_override(text)
        node, ref = out, base
        for i, part in enumerate(path[:-1]):
            if not isinstance(ref, dict) or part not in ref or not isinstance(ref[part], dict):
                raise _moved(".".join(path)) or ConfigError(f"unknown config section {'.'.join(path[:i + 1])!r} "
                                                            f"in override {text!r}")
            node, ref = node.setdefault(part, {}), ref[part]
        leaf = path[-1]
        if isinstance(ref, dict) and isinstance(ref.get(leaf), str) and not isinstance(value, str):
            value = text.split("=", 1)[1]  # a string field keeps the raw text ("001" stays "001")
        node[leaf] = value
    return out


def load_file(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise ConfigError(f"config file {p}: cannot parse: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config file {p}: expected a mapping at the top level")
    return data


def build_config(preset: str = "small", config_file: str | Path | None = None,
                 overrides: Sequence[str] = ()) -> RunConfig:
    """preset -> file -> overrides, validated. Raises ConfigError naming the key on any problem."""
    if preset not in PRESETS:
        raise ConfigError(f"unknown preset {preset!r}; expected one of {list(PRESETS)}")
    data = to_dict(PRESETS[preset]())
    if config_file is not None:
        data = _merge(data, load_file(config_file))
    data = _merge(data, _override_dict(overrides, data))
    return from_dict(RunConfig, data)


def save_config(cfg: RunConfig, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(to_dict(cfg), indent=2) + "\n")
    return p


def load_config(path: str | Path) -> RunConfig:
    """Load a resolved config.json / YAML written by `save_config` (no preset applied)."""
    return from_dict(RunConfig, load_file(path))
