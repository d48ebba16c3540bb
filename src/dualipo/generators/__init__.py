"""Text-to-video generators: the `Generator` protocol and `build_generator(cfg)`.

Backends (one explicit `match` on `cfg.generator.backend`): `wan` (WanPipeline) and `cogvideox`
(CogVideoXPipeline), both real diffusers classes, LoRA through peft. `cfg.generator.path` selects the weights:
a local diffusers directory, `"shipped"` (the small Wan generator pretrained on the shapes world, in
`dualipo/assets/generator_small`), or `""` for a random init built from the config's architecture fields.
"""

from __future__ import annotations

import contextlib
from importlib import resources
from pathlib import Path
from typing import Protocol, Sequence

import torch

from dualipo.config import RunConfig
from dualipo.devices import resolve_device
from dualipo.model_dirs import check_diffusers_dir
from dualipo.video import Video

SHIPPED = "shipped"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class Generator(Protocol):
    """What the round loop and the trainer use. All latents are normalised `latents_BCFHW`.

    Reproducibility contract of `sample` (measured in `benchmarks/generator.py`):

    - **Exact**: the same items (prompt, seed) in the same order with the same `batch_size`, on the same machine,
      torch build and thread count, give bit-identical frames. Batches are formed from fixed item indices
      (`fixed_batches`: items [i*B, (i+1)*B)), and each item's noise comes from its own seed only, so a run
      that resumes sampling at a batch boundary rebuilds exactly the batches of an uninterrupted run.
    - **Approximate**: the same (prompt, seed) in another batch, at another position of a batch, or under
      another thread count gives the same video up to floating-point rounding: at most 2 uint8 levels per pixel
      (measured: 1). Batched matrix products round differently for different batch shapes and thread splits.
      Bit-identity across batchings would need one video per forward pass: about 2x the time per video on the
      small preset at 2 threads (0.84 s vs 0.37 s at batch 8), so it is not promised.
    """

    def sample(self, prompts: Sequence[str], seeds: Sequence[int], *, num_frames: int, height: int, width: int,
               num_inference_steps: int | None = None, guidance_scale: float | None = None,
               batch_size: int = 8, progress: bool = True) -> list[Video]: ...

    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor: ...

    def encode_videos(self, videos: Sequence[Video], batch_size: int = 16,
                      generator: torch.Generator | None = None, progress: bool = False) -> torch.Tensor: ...

    def draw_noise_and_timesteps(self, latents_BCFHW: torch.Tensor,
                                 generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]: ...

    def denoising_errors(self, latents_BCFHW: torch.Tensor, prompt_embeds: torch.Tensor, timesteps: torch.Tensor,
                         noise_BCFHW: torch.Tensor) -> torch.Tensor: ...

    def reference_mode(self) -> contextlib.AbstractContextManager[None]: ...

    def add_lora(self, adapter_name: str = "default", seed: int | None = None) -> None: ...

    def lora_parameters(self) -> list[torch.nn.Parameter]: ...

    def save_lora(self, directory: str | Path, adapter_name: str = "default") -> Path: ...

    def load_lora(self, directory: str | Path, adapter_name: str = "default") -> None: ...

    def merge_lora(self) -> None: ...

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path: ...


def shipped_path() -> Path:
    return Path(str(resources.files("dualipo") / "assets" / "generator_small"))


def generator_dir(cfg: RunConfig) -> Path | None:
    """The directory the configured generator loads from (None: a random init from config), checked without
    loading anything: a missing or incomplete directory is an error naming the file and the expected layout."""
    g = cfg.generator
    if g.path == SHIPPED:
        if g.backend != "wan":
            raise ValueError(f"generator.path='shipped' is the Wan small generator; with generator.backend="
                             f"{g.backend} set generator.path to a {g.backend} directory or ''")
        path = shipped_path()
        if not (path / "model_index.json").is_file():
            raise ValueError(f"generator.path='shipped': no diffusers pipeline (model_index.json) in {path} (run "
                             "`dualipo pretrain --preset small --out DIR` and point generator.path at DIR/pipeline)")
        return path
    return check_diffusers_dir(Path(g.path), "generator.path", g.backend) if g.path else None


def build_generator(cfg: RunConfig) -> Generator:
    """The configured backend, from a directory, the shipped weights, or a random init from config."""
    g, fps = cfg.generator, cfg.world.fps
    dtype = DTYPES[g.dtype]
    path = generator_dir(cfg)
    match g.backend:
        case "wan":
            from dualipo.generators.wan import build_wan, load_wan
            gen = build_wan(g, fps) if path is None else load_wan(path, g, fps, dtype)
        case "cogvideox":
            from dualipo.generators.cogvideox import build_cogvideox, load_cogvideox
            gen = build_cogvideox(g, cfg.world, fps) if path is None else load_cogvideox(path, g, fps, dtype)
        case other:
            raise ValueError(f"generator.backend={other!r}: expected 'wan' or 'cogvideox'")
    if path is None and dtype != torch.float32:
        gen.pipe.to(dtype)
    gen.enable_memory_features()
    gen.pipe.to(resolve_device(g.device, "generator.device"))
    return gen


def sample_videos(gen: Generator, cfg: RunConfig, prompts: Sequence[str], seeds: Sequence[int],
                  progress: bool = True) -> list[Video]:
    """One video per (prompt, seed) at the configured size (`world.num_frames`, `height`, `width`) in batches of
    `sampling.batch_size`: how the loop, the evaluations and the seed sets sample."""
    w = cfg.world
    return gen.sample(list(prompts), list(seeds), num_frames=w.num_frames, height=w.height, width=w.width,
                      batch_size=cfg.sampling.batch_size, progress=progress)
