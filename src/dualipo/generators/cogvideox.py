"""CogVideoX backend: `CogVideoXPipeline` = `CogVideoXTransformer3DModel` + `AutoencoderKLCogVideoX` + T5.

Parameterization: DDPM-style diffusion through the pipeline's own scheduler (`CogVideoXDDIMScheduler`):
integer timesteps `t ~ U{0 .. T-1}`, `x_t = scheduler.add_noise(x0, noise, t)`, and the target is the velocity
`scheduler.get_velocity(x0, noise, t)` for `prediction_type="v_prediction"` (CogVideoX-2B / 5B) or the noise
for `"epsilon"`. Latents are the VAE's `z * scaling_factor` (no shift), as the pipeline decodes them.
Layout: the public API uses `latents_BCFHW` like every backend; CogVideoX's transformer wants
`latents_BFCHW` (frames before channels), so `predict` permutes in and out.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import (AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline,
                       CogVideoXTransformer3DModel)

from dualipo.config import GeneratorConfig, WorldConfig
from dualipo.generators.base import DiffusersGenerator
from dualipo.generators.text import build_text_encoder, build_tokenizer


class CogVideoXGenerator(DiffusersGenerator):
    pipeline_class = CogVideoXPipeline

    def _call_kwargs(self) -> dict:
        return {"use_dynamic_cfg": False}

    def enable_vae_tiling(self, tile: int) -> None:
        """Tiles of `tile` pixels overlapping by a quarter (0 = diffusers' 240 x 360 tiles, overlap 1/6 x 1/5)."""
        if tile:
            self.vae.enable_tiling(tile, tile, 0.25, 0.25)
        else:
            self.vae.enable_tiling()

    def normalize(self, raw_BCFHW: torch.Tensor) -> torch.Tensor:
        return raw_BCFHW * self.vae.config.scaling_factor

    def denormalize(self, latents_BCFHW: torch.Tensor) -> torch.Tensor:
        return latents_BCFHW / self.vae.config.scaling_factor

    def set_latent_stats(self, raw_BCFHW: torch.Tensor) -> None:
        scale = 1.0 / float(raw_BCFHW.float().std().clamp_min(1e-4))
        self.vae.register_to_config(scaling_factor=scale)
        self.pipe.vae_scaling_factor_image = scale  # the pipeline caches it at construction

    def draw_timesteps(self, n: int, generator: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        """Integer DDPM timesteps uniform over [lo T, hi T) (T = num_train_timesteps; high t = more noise)."""
        T = self.pipe.scheduler.config.num_train_timesteps
        return torch.randint(round(lo * T), max(round(hi * T), round(lo * T) + 1), (n,), generator=generator)

    def predict(self, latents_BCFHW, prompt_embeds, timesteps, noise_BCFHW):
        x0_BFCHW = latents_BCFHW.permute(0, 2, 1, 3, 4)
        noise_BFCHW = noise_BCFHW.permute(0, 2, 1, 3, 4)
        scheduler = self.pipe.scheduler
        t = timesteps.long()
        noisy_BFCHW = scheduler.add_noise(x0_BFCHW, noise_BFCHW, t)
        pred_BFCHW = self.transformer(hidden_states=noisy_BFCHW, encoder_hidden_states=prompt_embeds, timestep=t,
                                      return_dict=False)[0]
        match scheduler.config.prediction_type:
            case "v_prediction":
                target_BFCHW = scheduler.get_velocity(x0_BFCHW, noise_BFCHW, t)
            case "epsilon":
                target_BFCHW = noise_BFCHW
            case other:
                raise ValueError(f"CogVideoX scheduler prediction_type={other!r}: expected v_prediction or epsilon")
        return pred_BFCHW.permute(0, 2, 1, 3, 4), target_BFCHW.permute(0, 2, 1, 3, 4)


def build_cogvideox(g: GeneratorConfig, world: WorldConfig, fps: float) -> CogVideoXGenerator:
    """A random-init CogVideoX pipeline from `g.arch`, sized for `world`."""
    a, ch = g.arch, g.arch.vae_channels
    if len(ch) < 3 or any(c % a.vae_norm_groups for c in ch) or a.latent_channels % 2:
        raise ValueError(f"generator.arch.vae_channels={ch}: CogVideoX needs >= 3 levels (4x temporal compression), "
                         f"each divisible by generator.arch.vae_norm_groups={a.vae_norm_groups}, and an even "
                         f"generator.arch.latent_channels (got {a.latent_channels})")
    spatial = 2 ** (len(ch) - 1)
    if world.height % (spatial * a.patch_size) or world.width % (spatial * a.patch_size):
        raise ValueError(f"world size {world.height}x{world.width} must be divisible by VAE factor {spatial} x "
                         f"generator.arch.patch_size={a.patch_size}")
    tokenizer = build_tokenizer(g.text_max_len)
    text_encoder = build_text_encoder(a, len(tokenizer))
    fork = torch.random.fork_rng()
    with fork:
        torch.manual_seed(a.init_seed)
        vae = AutoencoderKLCogVideoX(
            in_channels=3, out_channels=3, down_block_types=("CogVideoXDownBlock3D",) * len(ch),
            up_block_types=("CogVideoXUpBlock3D",) * len(ch), block_out_channels=tuple(ch),
            latent_channels=a.latent_channels, layers_per_block=1, norm_num_groups=a.vae_norm_groups,
            temporal_compression_ratio=4)
        transformer = CogVideoXTransformer3DModel(
            num_attention_heads=a.num_heads, attention_head_dim=a.head_dim, in_channels=a.latent_channels,
            out_channels=a.latent_channels, time_embed_dim=a.time_dim, text_embed_dim=a.text_dim,
            num_layers=a.num_layers, sample_width=world.width // spatial, sample_height=world.height // spatial,
            sample_frames=world.num_frames, patch_size=a.patch_size, temporal_compression_ratio=4,
            max_text_seq_length=g.text_max_len)
    scheduler = CogVideoXDDIMScheduler(prediction_type=a.prediction_type, beta_schedule="scaled_linear",
                                       clip_sample=False, rescale_betas_zero_snr=True, timestep_spacing="trailing")
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=scheduler)
    return CogVideoXGenerator(pipe, g, fps)


def load_cogvideox(path: str | Path, g: GeneratorConfig, fps: float, dtype: torch.dtype) -> CogVideoXGenerator:
    """A CogVideoX pipeline from a local diffusers directory (never downloads; no remote code)."""
    pipe = CogVideoXPipeline.from_pretrained(str(path), dtype=dtype, local_files_only=True)
    return CogVideoXGenerator(pipe, g, fps)
