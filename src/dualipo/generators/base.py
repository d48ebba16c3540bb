"""What both diffusers backends share: sampling with per-video seeds, LoRA through peft, the reference mode.

Backends subclass `DiffusersGenerator` and add only their parameterization: how latents are normalised, how a
noisy input and its training target are formed, and the transformer call (`wan.py`, `cogvideox.py`). Every
latent tensor that crosses the public API is `latents_BCFHW` (batch, channels, frames, height, width),
normalised to roughly unit scale; backends whose transformer wants another order permute internally.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Iterator, Sequence

import torch
from peft import LoraConfig
from tqdm.auto import tqdm

from dualipo.config import GeneratorConfig
from dualipo.losses import per_sample_mse
from dualipo.video import Video, from_tensor, stack_videos

log = logging.getLogger(__name__)
LORA_FILE = "generator_lora.safetensors"


def fixed_batches(n_items: int, batch_size: int) -> list[range]:
    """Item indices per batch: [0, B), [B, 2B), ... A resumed run that restarts at a batch boundary rebuilds the
    same batches, so its videos are bit-identical to an uninterrupted run's (the sampling contract)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return [range(s, min(s + batch_size, n_items)) for s in range(0, n_items, batch_size)]


def lora_layers(module: torch.nn.Module) -> list[torch.nn.Module]:
    """The peft tuner layers (LoRA-wrapped linears) inside `module`, in module order."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return [m for m in module.modules() if isinstance(m, BaseTunerLayer)]


@contextlib.contextmanager
def adapters_disabled(layers: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Inside: every layer of `layers` computes its base layer only (the reference model); re-enabled on exit,
    even if the body raises. What diffusers' `disable_adapters()` / `enable_adapters()` do per layer, without
    their walk over every module and their package-version check on each call (measured in
    `benchmarks/dpo_step.py`: that overhead is what made the reference forward slower than a frozen copy's)."""
    for layer in layers:
        layer.enable_adapters(False)
    try:
        yield
    finally:
        for layer in layers:
            layer.enable_adapters(True)


class DiffusersGenerator:
    """A diffusers text-to-video pipeline plus the methods training needs. Subclasses set `pipeline_class`."""

    pipeline_class: type

    def __init__(self, pipe, g: GeneratorConfig, fps: float) -> None:
        self.pipe, self.cfg, self.fps = pipe, g, fps
        self._lora_layers: list[torch.nn.Module] | None = None  # found on first reference_mode()
        self._prompt_embeds: dict[str, torch.Tensor] = {}  # sampling's text embeddings (the text encoder is frozen)
        self.pipe.set_progress_bar_config(disable=True)
        for m in (pipe.vae, pipe.text_encoder):
            m.requires_grad_(False).eval()

    def enable_memory_features(self) -> None:
        """`generator.vae_slicing` / `vae_tiling` for every VAE encode and decode (sampling and the latent cache)."""
        if self.cfg.vae_slicing:
            self.vae.enable_slicing()
        if self.cfg.vae_tiling:
            self.enable_vae_tiling(self.cfg.vae_tile)

    def enable_vae_tiling(self, tile: int) -> None:
        """Tiled VAE with square tiles of `tile` pixels (0 = the VAE's default tiles)."""
        raise NotImplementedError

    # --------------------------------------------------------------------------------------- components
    @property
    def transformer(self) -> torch.nn.Module:
        return self.pipe.transformer

    @property
    def vae(self) -> torch.nn.Module:
        return self.pipe.vae

    @property
    def max_text_len(self) -> int:
        return self.cfg.text_max_len

    def save_pretrained(self, path: str | Path, dtype: torch.dtype | None = None) -> Path:
        """The whole pipeline as a diffusers directory (safetensors); `dtype` casts a copy for shipping."""
        path = Path(path)
        if dtype is None:
            self.pipe.save_pretrained(path, safe_serialization=True)
            return path
        original = {n: m.dtype for n, m in self.pipe.components.items() if isinstance(m, torch.nn.Module)}
        try:
            self.pipe.to(dtype)
            self.pipe.save_pretrained(path, safe_serialization=True)
        finally:
            for n, dt in original.items():
                getattr(self.pipe, n).to(dt)
        return path

    # --------------------------------------------------------------------------------------- sampling
    @torch.no_grad()
    def sample(self, prompts: Sequence[str], seeds: Sequence[int], *, num_frames: int, height: int, width: int,
               num_inference_steps: int | None = None, guidance_scale: float | None = None,
               batch_size: int = 8, progress: bool = True) -> list[Video]:
        """One video per (prompt, seed) item, in batches of fixed item indices (`fixed_batches`).

        For N videos per prompt, repeat the prompt N times with N seeds. The reproducibility contract (exact for
        the same items and batch size, within 2 uint8 levels across batchings) is in the `Generator` protocol.
        """
        if len(prompts) != len(seeds):
            raise ValueError(f"sample: got {len(prompts)} prompts but {len(seeds)} seeds; pass one seed per video")
        steps = num_inference_steps or self.cfg.num_inference_steps
        cfg_scale = self.cfg.guidance_scale if guidance_scale is None else guidance_scale
        videos: list[Video] = []
        batches = fixed_batches(len(prompts), batch_size)
        for b in tqdm(batches, desc="sampling", unit="batch", disable=not progress or len(batches) < 2):
            batch_p, batch_s = [prompts[i] for i in b], [seeds[i] for i in b]
            gens = [torch.Generator().manual_seed(int(x)) for x in batch_s]
            frames = self.pipe(**self._prompt_inputs(batch_p, cfg_scale > 1.0), num_frames=num_frames,
                               height=height, width=width, num_inference_steps=steps, guidance_scale=cfg_scale,
                               generator=gens, output_type="pt", max_sequence_length=self.max_text_len,
                               **self._call_kwargs()).frames  # (B, F, C, H, W) in [0, 1]
            videos += [from_tensor(f, "TCHW", (0.0, 1.0), fps=self.fps) for f in frames]
        return videos

    def _call_kwargs(self) -> dict:
        return {}

    def _prompt_inputs(self, prompts: list[str], guided: bool) -> dict:
        """The pipeline's prompt embeddings, each distinct prompt (and the empty negative prompt) encoded once per
        generator, alone, and kept on CPU: N videos of a prompt cost one text-encoder pass, not N."""
        cache = self._prompt_embeds
        for p in dict.fromkeys([*prompts, *([""] if guided else [])]):
            if p not in cache:
                cache[p] = self.encode_prompts([p])
        device = self.transformer.device
        out = {"prompt_embeds": torch.cat([cache[p] for p in prompts]).to(device)}
        if guided:
            out["negative_prompt_embeds"] = cache[""].expand(len(prompts), -1, -1).to(device)
        return out

    # --------------------------------------------------------------------------------------- training inputs
    @torch.no_grad()
    def encode_prompts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Prompt embeddings (B, L, D) on CPU, exactly as the pipeline computes them at sampling time."""
        embeds = self.pipe.encode_prompt(list(prompts), do_classifier_free_guidance=False,
                                         max_sequence_length=self.max_text_len)[0]
        return embeds.detach().cpu()

    def pixels(self, videos: Sequence[Video]) -> torch.Tensor:
        """Videos as the VAE's input: `pixels_BCFHW` in [-1, 1]."""
        pixels = stack_videos(videos, "TCHW", (-1.0, 1.0)).permute(0, 2, 1, 3, 4)
        return pixels.to(device=self.vae.device, dtype=self.vae.dtype)

    @torch.no_grad()
    def encode_videos(self, videos: Sequence[Video], batch_size: int = 16, generator: torch.Generator | None = None,
                      progress: bool = False) -> torch.Tensor:
        """Normalised `latents_BCFHW` on CPU (the posterior mode, or a sample when `generator` is given). Cache them."""
        out = []
        starts = range(0, len(videos), batch_size)
        for s in tqdm(starts, desc="encoding", unit="batch", disable=not progress):
            dist = self.vae.encode(self.pixels(videos[s:s + batch_size])).latent_dist
            raw = dist.mode() if generator is None else dist.sample(generator)
            out.append(self.normalize(raw).cpu())
        return torch.cat(out)

    def draw_noise_and_timesteps(self, latents_BCFHW: torch.Tensor, generator: torch.Generator,
                                 noise_range: tuple[float, float] = (0.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise like the latents and one timestep per sample; repeat them across a pair's two members.

        `noise_range` = (lo, hi): timesteps uniform over that fraction of the noise schedule (0 = clean, 1 = pure
        noise); the default, the whole schedule, is the plain denoising objective.
        """
        lo, hi = noise_range
        if not 0.0 <= lo < hi <= 1.0:
            raise ValueError(f"noise_range must satisfy 0 <= lo < hi <= 1, got {noise_range}")
        noise = torch.randn(latents_BCFHW.shape, generator=generator, dtype=torch.float32)
        return noise.to(latents_BCFHW.dtype), self.draw_timesteps(latents_BCFHW.shape[0], generator, lo, hi)

    def denoising_errors(self, latents_BCFHW: torch.Tensor, prompt_embeds: torch.Tensor,
                         timesteps: torch.Tensor, noise_BCFHW: torch.Tensor) -> torch.Tensor:
        """Per-sample MSE (B,) of the model's own target, averaged over all latent dims (C, F, H, W).

        Gradients flow when called outside `torch.no_grad`; inside `reference_mode()` it is the reference's.
        """
        pred, target = self.predict(latents_BCFHW, prompt_embeds, timesteps, noise_BCFHW)
        return per_sample_mse(pred, target)

    # --------------------------------------------------------------------------------------- LoRA
    def add_lora(self, adapter_name: str = "default", seed: int | None = None) -> None:
        """Add a LoRA adapter (rank / alpha / targets from the config) to the transformer; only it trains."""
        g = self.cfg
        self.transformer.requires_grad_(False)
        config = LoraConfig(r=g.lora_rank, lora_alpha=g.lora_alpha, init_lora_weights=True,
                            target_modules=list(g.lora_targets))
        fork = torch.random.fork_rng()
        with fork:
            if seed is not None:
                torch.manual_seed(seed)
            self.transformer.add_adapter(config, adapter_name=adapter_name)
        self._lora_layers = None
        self._lora_to_float32()

    def _lora_to_float32(self) -> None:
        """The adapter trains in float32 even on a bf16 / fp16 transformer (added or loaded)."""
        for name, param in self.transformer.named_parameters():
            if "lora_" in name:
                param.data = param.data.float()

    def lora_parameters(self) -> list[torch.nn.Parameter]:
        return [p for n, p in self.transformer.named_parameters() if "lora_" in n and p.requires_grad]

    def save_lora(self, directory: str | Path, adapter_name: str = "default") -> Path:
        """Write the adapter as `directory/generator_lora.safetensors` (peft keys, diffusers format)."""
        directory = Path(directory)
        self.transformer.save_lora_adapter(directory, adapter_name=adapter_name, weight_name=LORA_FILE)
        return directory / LORA_FILE

    def load_lora(self, directory: str | Path, adapter_name: str = "default") -> None:
        """Load an adapter written by `save_lora` (the directory, or the file itself)."""
        path = Path(directory)
        file = path if path.is_file() else path / LORA_FILE
        if not file.is_file():
            raise ValueError(f"no LoRA file at {file}; expected a {LORA_FILE} written by save_lora")
        self.transformer.load_lora_adapter(str(file.parent), weight_name=file.name, adapter_name=adapter_name,
                                           prefix=None)
        self._lora_layers = None
        self._lora_to_float32()

    def merge_lora(self) -> None:
        """Fold the active adapters into the base weights and drop them (moves the reference forward)."""
        self._require_adapters("merge_lora")
        self.transformer.fuse_lora()
        self.transformer.unload_lora()
        self._lora_layers = None

    def _require_adapters(self, what: str) -> None:
        if not getattr(self.transformer, "_hf_peft_config_loaded", False):
            raise ValueError(f"{what}: the transformer has no LoRA adapter; call add_lora() or load_lora() first")

    @contextlib.contextmanager
    def reference_mode(self) -> Iterator[None]:
        """Inside: the reference model (adapters disabled). The adapters are re-enabled even if the body raises."""
        self._require_adapters("reference_mode")
        if self._lora_layers is None:
            self._lora_layers = lora_layers(self.transformer)
        with adapters_disabled(self._lora_layers):
            yield

    # --------------------------------------------------------------------------------------- backend hooks
    def normalize(self, raw_BCFHW: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def set_latent_stats(self, raw_BCFHW: torch.Tensor) -> None:
        """Record the VAE's latent statistics in its config so normalised latents are unit scale."""
        raise NotImplementedError

    def draw_timesteps(self, n: int, generator: torch.Generator, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
        """n timesteps uniform over the fraction [lo, hi) of the noise schedule (0 = clean, 1 = pure noise)."""
        raise NotImplementedError

    def predict(self, latents_BCFHW, prompt_embeds, timesteps, noise_BCFHW) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, target) in the backend's own parameterization, both `BCFHW`."""
        raise NotImplementedError
