"""The configured models as the planner sees them: built on the `meta` device (no weights allocated), counted.

Where each architecture comes from, in this order (the source is reported, never silently chosen):
1. `generator.path=""` / `critic.path=""`: the config's architecture fields, through the same builders as a
   run (`build_wan`, `build_cogvideox`, `build_random`), so the counts equal the real models' exactly.
2. `shipped`, or a directory that exists: its config.json files (model_index.json names the classes).
3. A directory that does not exist here: the published architecture (`dualipo.published`) named by
   `--published-generator` / `--published-critic`, else matched by the directory's name; no match is an error.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dualipo.config import RunConfig
from dualipo import published

COMPONENTS = ("transformer", "vae", "text_encoder")


def numel(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def lora_params(module: torch.nn.Module, rank: int, targets: tuple[str, ...] | str) -> int:
    """Parameters peft adds: r x (in + out) per targeted Linear. A tuple matches peft's list rule (the module
    name equals a target or ends with '.' + target); a string is a regex matched against the full name."""
    total = 0
    for name, m in module.named_modules():
        hit = (re.fullmatch(targets, name) is not None if isinstance(targets, str)
               else any(name == t or name.endswith("." + t) for t in targets))
        if hit and isinstance(m, torch.nn.Linear):
            total += rank * (m.in_features + m.out_features)
    return total


# ------------------------------------------------------------------------------------------ generator
def build_component(lib: str, cls_name: str, config: Any, device: str = "meta") -> torch.nn.Module:
    """One component from (library, class name, config); random weights unless on `meta`."""
    import diffusers
    import transformers

    with torch.device(device):
        if lib == "diffusers":
            return getattr(diffusers, cls_name).from_config(config)
        model_type, values = config
        return getattr(transformers, cls_name)(transformers.AutoConfig.for_model(model_type, **values))


def _read_json(path: Path) -> dict:
    if not path.is_file():
        raise ValueError(f"{path} is missing (expected a diffusers pipeline directory: model_index.json and "
                         f"transformer/, vae/, text_encoder/ each with a config.json)")
    return json.loads(path.read_text())


def _directory_spec(root: Path) -> dict[str, tuple]:
    index = _read_json(root / "model_index.json")
    spec = {}
    for comp in COMPONENTS:
        if comp not in index:
            raise ValueError(f"{root / 'model_index.json'} names no {comp!r} component")
        lib, cls_name = index[comp]
        config = _read_json(root / comp / "config.json")
        spec[comp] = (lib, cls_name, config if lib == "diffusers" else (config.pop("model_type"), config))
    return spec


def generator_modules(cfg: RunConfig, published_name: str = "") -> tuple[dict[str, torch.nn.Module], str]:
    """(transformer, vae, text_encoder on meta, the source in words)."""
    from dualipo.generators import SHIPPED, shipped_path

    g = cfg.generator
    if g.path == "":
        with torch.device("meta"):
            if g.backend == "wan":
                from dualipo.generators.wan import build_wan
                gen = build_wan(g, cfg.world.fps)
            else:
                from dualipo.generators.cogvideox import build_cogvideox
                gen = build_cogvideox(g, cfg.world, cfg.world.fps)
        return {c: getattr(gen.pipe, c) for c in COMPONENTS}, "config fields (generator.path='')"
    root = shipped_path() if g.path == SHIPPED else Path(g.path)
    if root.is_dir():
        spec, source = _directory_spec(root), f"config.json files in {root}"
    else:
        name = published_name or published.match_published(g.path, published.GENERATORS, "generator.path")
        if name not in published.GENERATORS:
            raise ValueError(f"--published-generator {name!r}: expected one of {sorted(published.GENERATORS)}")
        entry = published.GENERATORS[name]
        if entry["backend"] != g.backend:
            raise ValueError(f"published generator {name!r} is a {entry['backend']} model but generator.backend="
                             f"{g.backend!r}")
        spec, source = {c: entry[c] for c in COMPONENTS}, f"published {name} ({g.path} does not exist here)"
    return {c: build_component(*spec[c]) for c, _ in spec.items()}, source


@dataclass(frozen=True)
class GenArch:
    """What the formulas need of a generator (all counts exact, from the built modules)."""
    backend: str
    source: str
    params: dict[str, int]  # transformer, vae, text_encoder, lora
    dim: int
    layers: int
    ffn: int
    patch: int
    patch_t: int
    channels: int
    text_dim: int
    time_dim: int
    vae_spatial: int
    vae_temporal: int
    vae_c0: int  # the VAE decoder's channels at full resolution


def gen_arch(cfg: RunConfig, published_name: str = "") -> tuple[GenArch, dict[str, torch.nn.Module]]:
    mods, source = generator_modules(cfg, published_name)
    tc, vc = mods["transformer"].config, mods["vae"].config
    dim = tc.num_attention_heads * tc.attention_head_dim
    params = {c: numel(mods[c]) for c in COMPONENTS}
    params["lora"] = lora_params(mods["transformer"], cfg.generator.lora_rank, tuple(cfg.generator.lora_targets))
    match cfg.generator.backend:
        case "wan":
            pt, ph, _ = tc.patch_size
            arch = GenArch("wan", source, params, dim, tc.num_layers, tc.ffn_dim, ph, pt, tc.in_channels,
                           tc.text_dim, tc.freq_dim, 2 ** len(vc.temperal_downsample), 2 ** sum(vc.temperal_downsample),
                           (vc.decoder_base_dim or vc.base_dim) * vc.dim_mult[0])
        case _:
            arch = GenArch("cogvideox", source, params, dim, tc.num_layers, 4 * dim, tc.patch_size,
                           tc.patch_size_t or 1, tc.in_channels, tc.text_embed_dim, tc.time_embed_dim,
                           2 ** (len(vc.block_out_channels) - 1), int(vc.temporal_compression_ratio),
                           vc.block_out_channels[0])
    return arch, mods


# ------------------------------------------------------------------------------------------ critic
def critic_model(cfg: RunConfig, published_name: str = "") -> tuple[torch.nn.Module, str]:
    """The critic on meta, and its source in words."""
    from transformers import AutoConfig

    from dualipo.critics.qwen_vl import SHIPPED, _model_class, build_random

    c = cfg.critic
    if c.backend == "oracle":
        raise ValueError("critic.backend=oracle has no model to plan for; plan a qwen_vl critic")
    if c.path == "":
        with torch.device("meta"):
            model, _ = build_random(c)
        return model, "config fields (critic.path='')"
    root = SHIPPED if c.path == "shipped" else Path(c.path)
    if root.is_dir():
        _read_json(root / "config.json")
        config, source = AutoConfig.from_pretrained(root, trust_remote_code=False), f"config.json in {root}"
    else:
        name = published_name or published.match_published(c.path, published.CRITICS, "critic.path")
        if name not in published.CRITICS:
            raise ValueError(f"--published-critic {name!r}: expected one of {sorted(published.CRITICS)}")
        values = dict(published.CRITICS[name])
        config = AutoConfig.for_model(values.pop("model_type"), **values)
        source = f"published {name} ({c.path} does not exist here)"
    if config.model_type not in ("qwen2_vl", "qwen2_5_vl"):
        raise ValueError(f"critic.path: {root} holds a {config.model_type!r} model; expected qwen2_vl or qwen2_5_vl")
    _, model_cls = _model_class(config.model_type)
    with torch.device("meta"):
        return model_cls(config), source


@dataclass(frozen=True)
class CriticArch:
    source: str
    params: dict[str, int]  # total, vision, language, lora
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    inter: int
    vocab: int
    v_hidden: int
    v_inter: int
    v_depth: int
    v_full_blocks: int  # vision blocks with full attention (the rest: windows of v_window patches)
    v_window: int
    patch: int
    temporal_patch: int
    merge: int


def critic_arch(cfg: RunConfig, published_name: str = "") -> CriticArch:
    from dualipo.critic_training.loop import LORA_TARGETS

    model, source = critic_model(cfg, published_name)
    t, v = model.config.text_config, model.config.vision_config
    vision = numel(model.model.visual)
    total = numel(model)
    lora = lora_params(model, cfg.critic_refine.lora_rank, LORA_TARGETS) if cfg.critic_refine.finetune == "lora" else 0
    if model.config.model_type == "qwen2_5_vl":
        v_hidden, v_inter = v.hidden_size, v.intermediate_size
        full, window = len(v.fullatt_block_indexes), (v.window_size // v.patch_size) ** 2
    else:
        v_hidden, v_inter, full, window = v.embed_dim, v.embed_dim * v.mlp_ratio, v.depth, 0
    head_dim = t.hidden_size // t.num_attention_heads
    return CriticArch(source, {"total": total, "vision": vision, "language": total - vision, "lora": lora},
                      t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads, head_dim,
                      t.intermediate_size, t.vocab_size, v_hidden, int(v_inter), v.depth, full, window, v.patch_size,
                      v.temporal_patch_size, v.spatial_merge_size)
