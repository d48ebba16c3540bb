"""Architecture configs of the public checkpoints, for planning and benchmarking without their weights.

Each entry holds, per component, the library, the class and the config.json values needed to build it with
random weights (on the `meta` device for counting, or on a GPU for `benchmarks/full_arch.py`). Fields left out
take the class defaults of diffusers 0.42 / transformers 5.x, which equal the public values.

Sources (checked against public text, not guessed):
- CogVideoX-2B / 5B transformer and VAE: diffusers `scripts/convert_cogvideox_to_diffusers.py` (2B: 30 layers, 30
  heads, no RoPE, VAE scaling 1.15258426; 5B: 42 layers, 48 heads, RoPE, VAE scaling 0.7; every other field is
  the `CogVideoXTransformer3DModel` / `AutoencoderKLCogVideoX` default: head dim 64, 16 latent channels,
  time_embed_dim 512, text_embed_dim 4096, sample 49 x 60 x 90, patch 2, 226 text tokens). Text encoder: the
  script's `google/t5-v1_1-xxl` (d_model 4096, d_ff 10240, 24 layers, 64 heads, vocab 32128, gated-gelu).
- Wan2.1-T2V-1.3B: diffusers `scripts/convert_wan_to_diffusers.py` ("Wan-T2V-1.3B": 12 heads x 128, 30 layers,
  ffn 8960, freq_dim 256, text_dim 4096, patch (1, 2, 2), in/out 16); VAE `AutoencoderKLWan()` defaults (base_dim
  96, z_dim 16, dim_mult [1, 2, 4, 4], 2 res blocks); text encoder `google/umt5-xxl` (as T5-XXL, vocab 256384).
- Qwen2.5-VL-7B-Instruct: its config.json (hidden 3584, 28 layers, 28 heads, 4 KV heads, intermediate 18944,
  vocab 152064, untied embeddings, m-RoPE [16, 24, 24], theta 1e6; vision: depth 32, hidden 1280, intermediate
  3420, 16 heads, out 3584, patch 14, temporal patch 2, merge 2, window 112, full attention in blocks 7/15/23/31).

Counted on the meta device (tests/test_plan.py): transformers 1,693,783,872 (2B), 5,570,283,072 (5B),
1,418,996,800 (Wan 1.3B); Qwen2.5-VL-7B 8,292,166,656.

A local checkpoint directory always wins: `dualipo plan` reads its config.json files when the configured path
exists, and uses these only for a path that does not exist here, matched by name (`match_published`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

T5_XXL = {"d_model": 4096, "d_ff": 10240, "d_kv": 64, "num_heads": 64, "num_layers": 24, "vocab_size": 32128,
          "feed_forward_proj": "gated-gelu", "relative_attention_num_buckets": 32, "tie_word_embeddings": False}
UMT5_XXL = {**T5_XXL, "vocab_size": 256384}

_COG_VAE = {"block_out_channels": [128, 256, 256, 512], "latent_channels": 16, "layers_per_block": 3,
            "norm_num_groups": 32, "temporal_compression_ratio": 4}


def _cogvideox(layers: int, heads: int, rope: bool, scaling: float) -> dict[str, Any]:
    return {
        "backend": "cogvideox",
        "transformer": ("diffusers", "CogVideoXTransformer3DModel", {
            "num_attention_heads": heads, "attention_head_dim": 64, "num_layers": layers, "in_channels": 16,
            "out_channels": 16, "time_embed_dim": 512, "text_embed_dim": 4096, "sample_frames": 49,
            "sample_height": 60, "sample_width": 90, "patch_size": 2, "max_text_seq_length": 226,
            "use_rotary_positional_embeddings": rope}),
        "vae": ("diffusers", "AutoencoderKLCogVideoX", {**_COG_VAE, "scaling_factor": scaling}),
        "text_encoder": ("transformers", "T5EncoderModel", ("t5", T5_XXL)),
    }


WAN_1_3B = {
    "backend": "wan",
    "transformer": ("diffusers", "WanTransformer3DModel", {
        "num_attention_heads": 12, "attention_head_dim": 128, "num_layers": 30, "ffn_dim": 8960, "freq_dim": 256,
        "text_dim": 4096, "patch_size": [1, 2, 2], "in_channels": 16, "out_channels": 16, "cross_attn_norm": True,
        "qk_norm": "rms_norm_across_heads", "eps": 1e-6}),
    "vae": ("diffusers", "AutoencoderKLWan", {"base_dim": 96, "z_dim": 16, "dim_mult": [1, 2, 4, 4],
                                              "num_res_blocks": 2, "temperal_downsample": [False, True, True]}),
    "text_encoder": ("transformers", "UMT5EncoderModel", ("umt5", UMT5_XXL)),
}

QWEN2_5_VL_7B = {
    "model_type": "qwen2_5_vl", "tie_word_embeddings": False,
    "text_config": {"vocab_size": 152064, "hidden_size": 3584, "intermediate_size": 18944,
                    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4,
                    "max_position_embeddings": 128000, "tie_word_embeddings": False, "rms_norm_eps": 1e-6,
                    "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0,
                                        "mrope_section": [16, 24, 24]}},
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16,
                      "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31], "tokens_per_second": 2},
}

GENERATORS: dict[str, dict[str, Any]] = {
    "cogvideox-2b": _cogvideox(30, 30, False, 1.15258426),
    "cogvideox-5b": _cogvideox(42, 48, True, 0.7),
    "wan2.1-t2v-1.3b": WAN_1_3B,
}
CRITICS: dict[str, dict[str, Any]] = {"qwen2.5-vl-7b-instruct": QWEN2_5_VL_7B}

# Directory names of the public checkpoints (lower case) -> published entry. A path whose last component is one
# of these (e.g. models/CogVideoX-2b, /data/Wan2.1-T2V-1.3B-Diffusers) selects the entry when it does not exist.
ALIASES = {
    "cogvideox-2b": "cogvideox-2b", "cogvideox-5b": "cogvideox-5b",
    "wan2.1-t2v-1.3b": "wan2.1-t2v-1.3b", "wan2.1-t2v-1.3b-diffusers": "wan2.1-t2v-1.3b",
    "qwen2.5-vl-7b-instruct": "qwen2.5-vl-7b-instruct", "qwen2.5-vl-7b": "qwen2.5-vl-7b-instruct",
}


def match_published(path: str, table: dict[str, dict[str, Any]], key: str) -> str:
    """The published entry for a checkpoint path that does not exist here, by its directory name.

    Raises ValueError naming `key`, the path and the known names when nothing matches (never a guess)."""
    name = ALIASES.get(Path(path).name.lower())
    if name is None or name not in table:
        known = sorted(k for k, v in ALIASES.items() if v in table)
        raise ValueError(f"{key}={path!r}: no such directory here, and its name matches no published architecture "
                         f"(known directory names: {', '.join(known)}); point {key} at a local checkpoint or "
                         f"name one with --published-{key.split('.')[0]} NAME ({', '.join(sorted(table))})")
    return name
