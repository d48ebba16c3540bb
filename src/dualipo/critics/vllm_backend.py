"""The Qwen2-VL / Qwen2.5-VL critic served by vLLM (`critic.backend=vllm`, `pip install 'dualipo[vllm]'`).

Thin: the requests (chat texts, videos in slot order, two-step judging), the parser and the vote are the
transformers backend's own (`requests.VotingCritic`); this module only turns each video into the frames vLLM
takes and each batch of requests into ONE `LLM.generate` call with `SamplingParams(n=K, ...)`.

Video input: the frames the transformers backend samples (`critic.num_frames`) and resizes
(`vision_inputs.resize`), as uint8 (T, H, W, 3), with metadata (fps 8, every frame kept) so that Qwen2.5-VL's
temporal positions match, and `do_sample_frames=False` so vLLM's processor neither resamples nor (size bounds
set to the critic's) resizes them. Pixel values can differ from the transformers backend's by the uint8 rounding
of resized frames. vLLM is imported only when an engine is built; the model loads from a local directory only.
"""

from __future__ import annotations

import importlib.util
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import torch

from dualipo.config import CriticConfig, JudgingConfig, RunConfig
from dualipo.critics.requests import VideoLike, VotingCritic
from dualipo.critics.vision_inputs import MEAN, STD, VisionSpec, load_frames, resized_uint8
from dualipo.devices import release_memory
from dualipo.model_dirs import check_transformers_dir

INSTALL = "pip install 'dualipo[vllm]'"
FPS = 8.0  # the clip rate the transformers backend gives Qwen2.5-VL's temporal positions (vision_inputs.encode)
PROCESSOR_FILES = ("preprocessor_config.json", "video_preprocessor_config.json")


def require_vllm() -> None:
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(f"critic.backend=vllm needs vLLM, which is not installed here: {INSTALL} "
                          "(on a CUDA machine), or use critic.backend=qwen_vl")


def processor_config(model_config, spec: VisionSpec) -> dict:
    """Qwen2-VL image / video processor settings for a directory that has none (one saved by `save_model`):
    the critic's patching, CLIP mean / std and the critic's pixel bounds."""
    vc = model_config.vision_config
    proc = "Qwen2_5_VLProcessor" if model_config.model_type == "qwen2_5_vl" else "Qwen2VLProcessor"
    return dict(processor_class=proc, patch_size=vc.patch_size, temporal_patch_size=vc.temporal_patch_size,
                merge_size=vc.spatial_merge_size, min_pixels=spec.min_pixels, max_pixels=spec.max_pixels,
                size={"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels},
                image_mean=MEAN.flatten().tolist(), image_std=STD.flatten().tolist(), do_resize=True,
                do_rescale=True, rescale_factor=1 / 255, do_normalize=True, do_convert_rgb=True)


def staged(path: Path, model_config, spec: VisionSpec) -> Path:
    """`path` itself when it has a processor config, else a temporary directory of links to its files plus the
    processor configs (`processor_config`): vLLM runs the model's own processor, which needs them."""
    if (path / PROCESSOR_FILES[0]).is_file():
        return path
    out = Path(tempfile.mkdtemp(prefix="dualipo-vllm-critic-"))
    for f in path.iterdir():
        (out / f.name).symlink_to(f.resolve())
    cfg = processor_config(model_config, spec)
    (out / PROCESSOR_FILES[0]).write_text(json.dumps(dict(cfg, image_processor_type="Qwen2VLImageProcessor")))
    (out / PROCESSOR_FILES[1]).write_text(json.dumps(dict(cfg, video_processor_type="Qwen2VLVideoProcessor")))
    return out


def model_dir(cfg: CriticConfig) -> Path:
    """The local directory vLLM loads: `critic.path`, the shipped critic, or ('') a random critic built from the
    config and saved to a temporary directory. Never a hub name: a missing directory is an error."""
    from dualipo.critics.qwen_vl import SHIPPED, build_random, save_model

    if cfg.path == "":
        model, tok = build_random(cfg)
        return save_model(model, tok, tempfile.mkdtemp(prefix="dualipo-vllm-random-"), dtype=cfg.dtype)
    return check_transformers_dir(SHIPPED if cfg.path == "shipped" else Path(cfg.path), "critic.path")


def engine_kwargs(cfg: CriticConfig, path: Path, spec: VisionSpec) -> dict:
    """`vllm.LLM(**...)` for the critic at `path`: two videos per request, frames neither resampled nor resized."""
    kw = dict(model=str(path), tokenizer=str(path), dtype=cfg.dtype, seed=cfg.init_seed, trust_remote_code=False,
              tensor_parallel_size=cfg.vllm_tensor_parallel, gpu_memory_utilization=cfg.vllm_gpu_memory,
              limit_mm_per_prompt={"video": 2}, enable_sleep_mode=True,
              mm_processor_kwargs={"size": {"shortest_edge": spec.min_pixels, "longest_edge": spec.max_pixels},
                                   "do_sample_frames": False})
    if cfg.vllm_max_model_len:
        kw["max_model_len"] = cfg.vllm_max_model_len
    return kw


def load_critic(cfg: RunConfig, **engine_overrides) -> "VLLMCritic":
    """A vLLM engine on `critic.path` (local only; HF_HUB_OFFLINE is set unless the caller set it)."""
    require_vllm()
    from transformers import AutoConfig, AutoTokenizer

    path = model_dir(cfg.critic)
    model_config = AutoConfig.from_pretrained(path, trust_remote_code=False)
    if model_config.model_type not in ("qwen2_vl", "qwen2_5_vl"):
        raise ValueError(f"critic.path: {path} holds a {model_config.model_type!r} model; expected qwen2_vl or "
                         "qwen2_5_vl")
    spec = VisionSpec.from_model(model_config, cfg.critic.num_frames, cfg.critic.image_size)
    path = staged(path, model_config, spec)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import vllm

    llm = vllm.LLM(**{**engine_kwargs(cfg.critic, path, spec), **engine_overrides})
    eos = AutoTokenizer.from_pretrained(path, trust_remote_code=False).eos_token_id
    return VLLMCritic(llm, spec, eos, cfg.critic, cfg.judging)


def sampling_kwargs(critic: CriticConfig, judging: JudgingConfig, n: int, sample: bool, seed: int | None,
                    eos: int | None) -> dict:
    """`SamplingParams(**...)`: n sampled paths at the judging temperature / top_p (all tokens, as the transformers
    backend's top_k=0), or greedy (temperature 0)."""
    kw = dict(n=n, temperature=judging.temperature if sample else 0.0, max_tokens=critic.max_new_tokens,
              skip_special_tokens=True)
    if sample:
        kw.update(top_p=judging.top_p, seed=seed)
    if eos is not None:
        kw["stop_token_ids"] = [eos]
    return kw


def vllm_prompts(texts: list[str], visuals: list[list]) -> list[dict]:
    """vLLM prompts: the chat text (its video slots are expanded by vLLM's processor) and its videos in order."""
    return [{"prompt": t, "multi_modal_data": {"video": list(vs)}} if vs else {"prompt": t}
            for t, vs in zip(texts, visuals)]


def _sampling_params(**kw):
    from vllm import SamplingParams

    return SamplingParams(**kw)


class VLLMCritic(VotingCritic):
    """The `Critic` protocol on a `vllm.LLM` (requests and votes shared with the transformers backend)."""

    def __init__(self, llm, spec: VisionSpec, eos_token_id: int | None, critic: CriticConfig,
                 judging: JudgingConfig, sampling_params: Callable[..., Any] = _sampling_params):
        self.llm, self.spec, self.eos, self.cfg, self.judging = llm, spec, eos_token_id, critic, judging
        self.sampling_params = sampling_params
        self._asleep = False

    def video_input(self, video: VideoLike) -> tuple:
        """(uint8 frames (T, H, W, 3) at the critic's size, their metadata)."""
        frames = resized_uint8(load_frames(video, self.spec), self.spec)
        t, h, w = frames.shape[:3]
        return (frames, dict(total_num_frames=t, fps=FPS, duration=t / FPS, frames_indices=list(range(t)),
                             width=w, height=h))

    def generate(self, texts: list[str], videos: list[list], k: int, do_sample: bool | None = None) -> list[list[str]]:
        """K answers per text from ONE `LLM.generate` call (sampled with a seed per request drawn from torch's
        generator, so the loop's seeds fix the votes; greedy, one answer repeated K times, when not sampling)."""
        sample = (k > 1 if do_sample is None else do_sample) and self.judging.temperature > 0
        base = int(torch.randint(0, 2 ** 31 - 1, (1,)))
        params = [self.sampling_params(**sampling_kwargs(self.cfg, self.judging, k if sample else 1, sample,
                                                         base + i, self.eos)) for i in range(len(texts))]
        self.to_device()  # judging never runs on a sleeping engine
        outs = self.llm.generate(vllm_prompts(texts, videos), params, use_tqdm=False)
        return [[o.text for o in out.outputs] * (1 if sample else k) for out in outs]

    def to_host(self) -> None:
        """vLLM's level-1 sleep: the weights to CPU memory, the KV cache freed (`enable_sleep_mode`). Once: the
        loop parks the critic before every stage that is not judging, and vLLM does not check a second sleep."""
        if self.llm is not None and not self._asleep:
            self.llm.sleep(level=1)
            self._asleep = True

    def to_device(self) -> None:
        if self.llm is not None and self._asleep:
            self.llm.wake_up()
            self._asleep = False

    def close(self) -> None:
        """Free the engine's GPU memory (before the generator or a critic being trained needs it)."""
        self.llm = None
        release_memory()
