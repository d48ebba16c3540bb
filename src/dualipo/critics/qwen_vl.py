"""Qwen2-VL / Qwen2.5-VL video critic through transformers.

Loaded from a local directory (`from_pretrained`, `trust_remote_code` off), from the package's shipped small
critic (`path: shipped`), or built with random weights from the architecture fields of `CriticConfig` plus an
offline tokenizer. A pair goes into one prompt (Video A, Video B); K reasoning paths for both presentation
orders, and for many judgments at once, come out of ONE batched `generate` call (two with two-step judging:
describe each video without the prompt, then compare).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from dualipo.config import CriticConfig, JudgingConfig
from dualipo.critics.requests import VotingCritic
from dualipo.critics.vision_inputs import VisionSpec, encode, load_frames, patchify
from dualipo.model_dirs import check_transformers_dir
from dualipo.video import Video

log = logging.getLogger(__name__)
SHIPPED = Path(__file__).resolve().parent.parent / "assets" / "critic_small"
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
VideoLike = Video | str | Path


def _model_class(arch: str):
    match arch:
        case "qwen2_vl":
            from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration
            return Qwen2VLConfig, Qwen2VLForConditionalGeneration
        case "qwen2_5_vl":
            from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
            return Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration
        case _:
            raise ValueError(f"critic.arch: unknown architecture {arch!r}")


def build_random(cfg: CriticConfig):
    """(model, tokenizer) with random weights from the config's architecture fields."""
    from dualipo.critics.tokenizer import SPECIALS, build_tokenizer

    if 2 * sum(cfg.mrope_section) != cfg.hidden_size // cfg.num_heads:
        raise ValueError(f"critic.mrope_section {cfg.mrope_section} must sum to head_dim / 2 = "
                         f"{cfg.hidden_size // cfg.num_heads // 2}")
    tok = build_tokenizer(cfg.vocab_size)
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIALS}
    text = dict(vocab_size=len(tok), hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                num_hidden_layers=cfg.num_layers, num_attention_heads=cfg.num_heads,
                num_key_value_heads=cfg.num_kv_heads, max_position_embeddings=2048, tie_word_embeddings=True,
                rope_parameters={"rope_type": "default", "rope_theta": 10000.0,
                                 "mrope_section": list(cfg.mrope_section)},
                bos_token_id=None, eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    common = dict(depth=cfg.vision_depth, num_heads=cfg.vision_heads, patch_size=cfg.patch_size,
                  spatial_merge_size=cfg.spatial_merge_size, temporal_patch_size=cfg.temporal_patch_size)
    config_cls, model_cls = _model_class(cfg.arch)
    match cfg.arch:
        case "qwen2_vl":
            vision = dict(common, embed_dim=cfg.vision_embed_dim, hidden_size=cfg.hidden_size, mlp_ratio=4)
        case _:
            vision = dict(common, hidden_size=cfg.vision_embed_dim, intermediate_size=4 * cfg.vision_embed_dim,
                          out_hidden_size=cfg.hidden_size, window_size=4 * cfg.patch_size * cfg.spatial_merge_size,
                          fullatt_block_indexes=[cfg.vision_depth - 1], tokens_per_second=2)
    mc = config_cls(text_config=text, vision_config=vision, image_token_id=ids["<|image_pad|>"],
                    video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
                    vision_end_token_id=ids["<|vision_end|>"])
    torch.manual_seed(cfg.init_seed)
    return model_cls(mc).to(DTYPES[cfg.dtype]).eval(), tok


def device_of(cfg: CriticConfig) -> torch.device:
    """`critic.device` as a torch device ('auto' = cuda when available)."""
    from dualipo.devices import resolve_device

    return resolve_device(cfg.device, "critic.device")


def load_model(cfg: CriticConfig):
    """(model, tokenizer) as `cfg.path` says: '' random from config, 'shipped', or a local directory; on
    `critic.device`."""
    device = device_of(cfg)
    if cfg.path == "":
        model, tok = build_random(cfg)
        return model.to(device), tok
    from transformers import AutoConfig, AutoTokenizer

    path = SHIPPED if cfg.path == "shipped" else Path(cfg.path)
    check_transformers_dir(path, "critic.path")
    arch = AutoConfig.from_pretrained(path, trust_remote_code=False).model_type
    if arch not in ("qwen2_vl", "qwen2_5_vl"):
        raise ValueError(f"critic.path: {path} holds a {arch!r} model; expected qwen2_vl or qwen2_5_vl")
    _, model_cls = _model_class(arch)
    model = model_cls.from_pretrained(path, dtype=DTYPES[cfg.dtype], trust_remote_code=False).to(device).eval()
    tok = AutoTokenizer.from_pretrained(path, trust_remote_code=False)
    tok.padding_side = "left"
    return model, tok


def save_model(model, tokenizer, out: str | Path, dtype: str = "float16") -> Path:
    """Save as a standard transformers directory (safetensors) loadable with `critic.path=<out>`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    orig = next(model.parameters()).dtype
    model.to(DTYPES[dtype]).save_pretrained(out, safe_serialization=True)
    model.to(orig)
    tokenizer.save_pretrained(out)
    return out


class QwenVLCritic(VotingCritic):
    """The `Critic` protocol on a Qwen-VL model through transformers (`requests.VotingCritic` builds the requests
    and votes; this class turns videos into patches and texts into answers)."""

    def __init__(self, model, tokenizer, critic: CriticConfig, judging: JudgingConfig):
        self.model, self.tokenizer, self.cfg, self.judging = model, tokenizer, critic, judging
        self.spec = VisionSpec.from_model(model.config, critic.num_frames, critic.image_size)

    def video_input(self, video: VideoLike) -> tuple[torch.Tensor, torch.Tensor]:
        """Patches and grid of a video."""
        return patchify(load_frames(video, self.spec), self.spec)

    def inputs(self, texts: list[str], videos: list[list], targets: list[str] | None = None) -> dict:
        """Model inputs (`vision_inputs.encode`) in the model's dtype and on its device."""
        param = next(self.model.parameters())
        return encode(self.tokenizer, self.model.config, self.spec, texts, videos, targets, dtype=param.dtype,
                      device=param.device)

    @torch.no_grad()
    def generate(self, texts: list[str], videos: list[list], k: int, do_sample: bool | None = None) -> list[list[str]]:
        """K answers per text, from one `generate` call per `judging.batch_rows` texts (0: all in one call).
        Sampled when K > 1 (unless `do_sample` says otherwise) at a temperature above 0; otherwise greedy, the
        one answer repeated K times (as the vLLM backend does)."""
        sample = (k > 1 if do_sample is None else do_sample) and self.judging.temperature > 0
        n = k if sample else 1
        gen = dict(max_new_tokens=self.cfg.max_new_tokens, num_return_sequences=n, do_sample=sample,
                   pad_token_id=self.tokenizer.pad_token_id, eos_token_id=self.tokenizer.eos_token_id)
        if sample:
            gen.update(temperature=self.judging.temperature, top_p=self.judging.top_p, top_k=0)
        step = self.judging.batch_rows or max(len(texts), 1)
        answers = []
        for s in range(0, len(texts), step):
            batch = self.inputs(texts[s:s + step], videos[s:s + step])
            out = self.model.generate(**batch, **gen)
            decoded = self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            answers += [decoded[i * n:(i + 1) * n] * (k // n) for i in range(len(decoded) // n)]
        return answers

    def to_host(self) -> None:
        self.model.to("cpu")

    def to_device(self) -> None:
        self.model.to(device_of(self.cfg))
