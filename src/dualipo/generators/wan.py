"""Wan 2.1 backend: `WanPipeline` = `WanTransformer3DModel` + `AutoencoderKLWan` + T5-style text encoder.

Parameterization: rectified flow. With `s ~ U(0, 1)`, `x_s = (1 - s) x0 + s noise`, timestep `1000 s`, the
transformer predicts the velocity `noise - x0`. Latents are normalised `(z - latents_mean) / latents_std` with
the statistics stored in the VAE config, exactly what `WanPipeline` undoes before decoding. Layout: Wan's
transformer takes `latents_BCFHW` as is.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel

from dualipo.config import GeneratorArchConfig, GeneratorConfig
from dualipo.generators.base import DiffusersGenerator
from dualipo.generators.text import build_text_encoder, build_tokenizer


class WanGenerator(DiffusersGenerator):
    pipeline_class = WanPipeline

    def enable_vae_tiling(self, tile: int) -> None:
        """Tiles of `tile` pixels overlapping by a quarter (0 = diffusers' 256-pixel tiles, stride 192)."""
        if tile:
            self.vae.enable_tiling(tile, tile, tile * 3 // 4, tile * 3 // 4)
        else:
            self.vae.enable_tiling()

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.vae.config
        shape = (1, c.z_dim, 1, 1, 1)
        mean = torch.tensor(c.latents_mean, dtype=like.dtype).view(shape)
        std = torch.tensor(c.latents_std, dtype=like.dtype).view(shape)
        return mean, std

    def normalize(self, raw_BCFHW: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(raw_BCFHW)
        return (raw_BCFHW - mean) / std

    def denormalize(self, latents_BCFHW: torch.Tensor) -> torch.Tensor:
        mean, std = self._stats(latents_BCFHW)
        return latents_BCFHW * std + mean

    def set_latent_stats(self, raw_BCFHW: torch.Tensor) -> None:
        mean = raw_BCFHW.float().mean(dim=(0, 2, 3, 4))
        std = raw_BCFHW.float().std(dim=(0, 2, 3, 4)).clamp_min(1e-4)
        self.vae.register_to_config(latents_mean=mean.tolist(), latents_std=std.tolist())

    def draw_timesteps(self, n: int, generator: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        """Flow time `s ~ U(lo, hi)` (s = 1: pure noise) as Wan timesteps `1000 s` (float)."""
        return (lo + torch.rand(n, generator=generator) * (hi - lo)) * 1000.0

    def predict(self, latents_BCFHW, prompt_embeds, timesteps, noise_BCFHW):
        s = (timesteps.float() / 1000.0).view(-1, 1, 1, 1, 1).to(latents_BCFHW.dtype)
        noisy = (1 - s) * latents_BCFHW + s * noise_BCFHW
        pred = self.transformer(hidden_states=noisy, encoder_hidden_states=prompt_embeds, timestep=timesteps,
                                return_dict=False)[0]
        return pred, noise_BCFHW - latents_BCFHW


def _wan_vae(a: GeneratorArchConfig) -> AutoencoderKLWan:
    ch = a.vae_channels
    if len(ch) < 3 or any(c % ch[0] for c in ch):
        raise ValueError(f"generator.arch.vae_channels={ch}: Wan needs >= 3 levels, each a multiple of the first "
                         f"(the VAE compresses time 4x with two temporal downsamplings)")
    levels = len(ch) - 1
    return AutoencoderKLWan(base_dim=ch[0], z_dim=a.latent_channels, dim_mult=[c // ch[0] for c in ch],
                            num_res_blocks=1, temperal_downsample=[False] * (levels - 2) + [True, True],
                            latents_mean=[0.0] * a.latent_channels, latents_std=[1.0] * a.latent_channels,
                            scale_factor_spatial=2 ** levels, scale_factor_temporal=4)


def build_wan(g: GeneratorConfig, fps: float) -> WanGenerator:
    """A random-init Wan pipeline from `g.arch` (seeded by its `init_seed`)."""
    tokenizer, a = build_tokenizer(g.text_max_len), g.arch
    text_encoder = build_text_encoder(a, len(tokenizer))
    fork = torch.random.fork_rng()
    with fork:
        torch.manual_seed(a.init_seed)
        vae = _wan_vae(a)
        transformer = WanTransformer3DModel(
            patch_size=(1, a.patch_size, a.patch_size), num_attention_heads=a.num_heads,
            attention_head_dim=a.head_dim, in_channels=a.latent_channels, out_channels=a.latent_channels,
            text_dim=a.text_dim, freq_dim=a.time_dim, ffn_dim=a.ffn_dim, num_layers=a.num_layers,
            cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=64)
    scheduler = FlowMatchEulerDiscreteScheduler(shift=a.flow_shift)
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                       scheduler=scheduler)
    return WanGenerator(pipe, g, fps)


def load_wan(path: str | Path, g: GeneratorConfig, fps: float, dtype: torch.dtype) -> WanGenerator:
    """A Wan pipeline from a local diffusers directory (never downloads; no remote code)."""
    pipe = WanPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    return WanGenerator(pipe, g, fps)
