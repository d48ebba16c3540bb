"""The planner's formulas: FLOPs and bytes of one forward, one training step, one judgment. Pure arithmetic on
the counted architectures (`plan_models`); every formula is written out in docs/full_scale.md.

Notation: d = transformer width (heads x head dim), f = feed-forward width, n_l = blocks, S_v = video tokens,
L = text tokens, b = bytes per element. A matmul of an (m x k) by a (k x n) matrix is 2 m k n FLOPs.
"""

from __future__ import annotations

import math

from dualipo.plan_models import CriticArch, GenArch

GiB = 2 ** 30
# Values saved for the backward pass per token and block (counted from the diffusers blocks: norm inputs and
# outputs, q / k / v before and after q-k norm and RoPE, the attention output, the gated residuals; Wan adds
# its cross-attention's query, norm, output and residual). Plus the feed-forward's two f-wide tensors.
SAVED_PER_TOKEN = {"cogvideox": 12, "wan": 18}
INFER_PER_TOKEN = 5  # live d-wide tensors in one block at inference (residual, norm, q/k/v or attention output)
VAE_LIVE_MAPS = 8  # full-resolution feature maps alive at once in the VAE decoder's last level
VAE_DECODE_CHUNK = {"cogvideox": 2, "wan": 1}  # latent frames per decoder call in diffusers 0.42
LLM_SAVED_PER_TOKEN = 8  # a Qwen2 decoder layer: norms, q/k/v, attention output, residuals (x hidden)


def latent_frames(a: GenArch, frames: int) -> int:
    return (frames - 1) // a.vae_temporal + 1


def video_tokens(a: GenArch, frames: int, height: int, width: int) -> int:
    """S_v = ceil(T_lat / p_t) x (H / s / p) x (W / s / p) for a T x H x W video (s = VAE spatial factor)."""
    hp, wp = height // a.vae_spatial // a.patch, width // a.vae_spatial // a.patch
    return math.ceil(latent_frames(a, frames) / a.patch_t) * hp * wp


def transformer_flops(a: GenArch, s_v: int, text: int) -> dict[str, int]:
    """One transformer forward of one video (batch 1), by term. CogVideoX attends over the concatenation of
    text and video tokens (S = S_v + L); Wan self-attends over video tokens and cross-attends to the text."""
    d, f, n = a.dim, a.ffn, a.layers
    pin = a.channels * a.patch ** 2 * a.patch_t  # values per patch
    te = a.time_dim
    if a.backend == "cogvideox":
        s = s_v + text
        linear = n * (2 * s * (4 * d * d + 2 * d * f) + 2 * 2 * te * 6 * d)  # qkvo, ff; two AdaLN-zero linears
        attention = n * 4 * s * s * d  # Q K^T and P V
        embed = (2 * s_v * pin * d + 2 * text * a.text_dim * d + 2 * s_v * d * pin  # patch in, text proj, out
                 + 2 * (d * te + te * te) + 2 * te * 2 * d)  # timestep MLP, final AdaLN
    else:
        linear = n * (2 * s_v * 6 * d * d + 2 * text * 2 * d * d + 2 * s_v * 2 * d * f)  # self qkvo + cross q,o;
        attention = n * (4 * s_v * s_v * d + 4 * s_v * text * d)  # cross k,v on text; ff
        embed = (2 * s_v * pin * d + 2 * s_v * d * pin + 2 * (te * d + d * d) + 2 * d * 6 * d
                 + 2 * text * (a.text_dim * d + d * d))
    return {"linear": linear, "attention": attention, "embed": embed}


def dpo_step_flops(a: GenArch, s_v: int, text: int, videos: int = 2, reference: bool = True,
                   checkpointing: bool = False) -> dict[str, int]:
    """One preference example: the policy forward and backward on `videos` videos (2 for a DPO pair) plus the
    reference forward (adapters disabled). The base weights are frozen, so the backward computes activation
    gradients only: 1x the linear FLOPs and 2x the attention FLOPs; the adapters add 2 S P_lora forward and
    twice that backward. Gradient checkpointing recomputes the policy forward once more."""
    t = transformer_flops(a, s_v, text)
    fwd = sum(t.values())
    tokens = s_v + (text if a.backend == "cogvideox" else 0)
    lora = 2 * tokens * a.params["lora"]
    policy_fwd = videos * (fwd + lora)
    policy_bwd = videos * (t["linear"] + t["embed"] + 2 * t["attention"] + 2 * lora)
    out = {"policy_forward": policy_fwd, "policy_backward": policy_bwd,
           "reference_forward": videos * fwd if reference else 0,
           "recompute": policy_fwd if checkpointing else 0}
    out["total"] = sum(out.values())
    return out


def train_activation_bytes(a: GenArch, s_v: int, text: int, videos: int, b: int, checkpointing: bool) -> int:
    """Saved activations of the policy forward on `videos` videos, plus the larger of the reference forward's
    transient and one block's gradients during the backward."""
    tokens = videos * (s_v + (text if a.backend == "cogvideox" else 0))
    block = tokens * (SAVED_PER_TOKEN[a.backend] * a.dim + 2 * a.ffn) * b
    if a.backend == "wan":
        block += videos * text * 2 * a.dim * b  # cross-attention keys and values
    saved = a.layers * tokens * a.dim * b + block if checkpointing else a.layers * block
    return saved + max(infer_activation_bytes(a, s_v, text, videos, b), block)


def infer_activation_bytes(a: GenArch, s_v: int, text: int, sequences: int, b: int) -> int:
    """One block's live tensors at inference (fused attention: no S x S matrix is stored)."""
    tokens = sequences * (s_v + (text if a.backend == "cogvideox" else 0))
    return tokens * (INFER_PER_TOKEN * a.dim + a.ffn) * b


def vae_decode_bytes(a: GenArch, vae_c0: int, height: int, width: int, videos: int, b: int) -> int:
    """The decoder's last level: VAE_LIVE_MAPS maps of C0 channels at full resolution for one decoder call."""
    frames = VAE_DECODE_CHUNK[a.backend] * a.vae_temporal
    return VAE_LIVE_MAPS * videos * frames * height * width * vae_c0 * b


def kv_bytes_per_token(c: CriticArch, b: int) -> int:
    return 2 * c.layers * c.kv_heads * c.head_dim * b


def llm_linear_params(c: CriticArch) -> int:
    """Matmul weights one token meets in the language model (q, k, v, o and the gated MLP of every layer)."""
    attn = 2 * c.hidden * c.heads * c.head_dim + 2 * c.hidden * c.kv_heads * c.head_dim
    return c.layers * (attn + 3 * c.hidden * c.inter)


def llm_forward_flops(c: CriticArch, tokens: int, new_tokens: int) -> int:
    """A causal forward over `tokens` positions: 2 N_lin T + 2 n_l T^2 d_attn (half of the full Q K^T and P V)
    plus the LM head on each generated position."""
    return (2 * llm_linear_params(c) * tokens + 2 * c.layers * tokens * tokens * c.heads * c.head_dim
            + 2 * c.hidden * c.vocab * new_tokens)


def vision_flops(c: CriticArch, patches: int) -> int:
    """The vision encoder on one video of N_p patches: 2 N_p P_vision + attention (full blocks: 4 N_p^2 d_v;
    window blocks: 4 N_p W d_v with W patches per window)."""
    full = c.v_full_blocks * 4 * patches * patches * c.v_hidden
    window = (c.v_depth - c.v_full_blocks) * 4 * patches * min(c.v_window, patches) * c.v_hidden
    return 2 * patches * c.params["vision"] + full + window


def llm_prefill_bytes(c: CriticArch, sequences: int, tokens: int, b: int) -> int:
    """One decoder layer's live tensors during the prefill: the gated MLP (2 x intermediate) and 4 x hidden."""
    return sequences * tokens * (2 * c.inter + 4 * c.hidden) * b


def llm_train_bytes(c: CriticArch, sequences: int, tokens: int, b: int, checkpointing: bool) -> int:
    layer = sequences * tokens * (LLM_SAVED_PER_TOKEN * c.hidden + 3 * c.inter) * b
    return (c.layers * sequences * tokens * c.hidden * b + layer) if checkpointing else c.layers * layer + layer
