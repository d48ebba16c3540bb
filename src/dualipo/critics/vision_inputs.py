"""Qwen2-VL / Qwen2.5-VL video inputs in pure torch (no torchvision, so no transformers video processor).

`patchify` reproduces the patch layout of `Qwen2VLVideoProcessor` (CLIP mean/std, temporal patches, 2x2 merge
order); `encode` turns chat texts with video slots plus videos into model inputs: `input_ids`,
`attention_mask`, `pixel_values_videos`, `video_grid_thw`, `mm_token_type_ids` (required by transformers 5.x:
0 text, 2 video) and, for Qwen2.5-VL, `second_per_grid_ts`. Texts are left-padded (generation) or
right-padded with labels (training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dualipo.critics.prompts import VIDEO_SLOT
from dualipo.video import Video, read_video, sample_frames

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
VIDEO_PAD = "<|video_pad|>"


@dataclass(frozen=True)
class VisionSpec:
    patch_size: int
    temporal_patch_size: int
    merge_size: int
    num_frames: int
    image_size: int  # 0 = smart_resize of the input size
    min_pixels: int = 16 * 16
    max_pixels: int = 448 * 448

    @classmethod
    def from_model(cls, model_config, num_frames: int, image_size: int) -> "VisionSpec":
        vc = model_config.vision_config
        return cls(vc.patch_size, vc.temporal_patch_size, vc.spatial_merge_size, num_frames, image_size)


def smart_resize(h: int, w: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """Sides rounded to multiples of `factor` with the pixel count kept in bounds (as Qwen2-VL's processor)."""
    hb, wb = max(factor, round(h / factor) * factor), max(factor, round(w / factor) * factor)
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb, wb = math.ceil(h * beta / factor) * factor, math.ceil(w * beta / factor) * factor
    return hb, wb


def load_frames(video: Video | str | Path, spec: VisionSpec) -> torch.Tensor:
    """uint8 frames (T, H, W, 3) sampled to `spec.num_frames`, from a Video or an mp4 path."""
    v = video if isinstance(video, Video) else read_video(video)
    return torch.from_numpy(sample_frames(v, spec.num_frames).frames.copy())


def resize(frames_THWC: torch.Tensor, spec: VisionSpec) -> torch.Tensor:
    """uint8 (T, H, W, 3) -> float (T, 3, H', W') in [0, 1] at the critic's input size: a square of side
    `spec.image_size` rounded to a multiple of patch x merge, or `smart_resize` of the input size (bicubic)."""
    factor = spec.patch_size * spec.merge_size
    v = frames_THWC.permute(0, 3, 1, 2).float() / 255.0
    if spec.image_size:
        side = max(factor, round(spec.image_size / factor) * factor)
        size = (side, side)
    else:
        size = smart_resize(v.shape[2], v.shape[3], factor, spec.min_pixels, spec.max_pixels)
    if tuple(v.shape[2:]) != size:
        v = F.interpolate(v, size=size, mode="bicubic", align_corners=False).clamp(0, 1)
    return v


def resized_uint8(frames_THWC: torch.Tensor, spec: VisionSpec) -> np.ndarray:
    """The frames `patchify` sees, as uint8 (T, H', W', 3) (rounded): the input of a backend that runs the
    model's own processor (vLLM), so that processor has nothing left to resize."""
    v = resize(frames_THWC, spec).mul(255.0).round().to(torch.uint8)
    return v.permute(0, 2, 3, 1).contiguous().numpy()


def patchify(frames_THWC: torch.Tensor, spec: VisionSpec) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 (T, H, W, 3) -> patches (N, 3 * tps * ps * ps) and grid_thw (1, 3)."""
    ps, tps, ms = spec.patch_size, spec.temporal_patch_size, spec.merge_size
    v = (resize(frames_THWC, spec) - MEAN) / STD
    if pad := -v.shape[0] % tps:
        v = torch.cat([v, v[-1:].expand(pad, -1, -1, -1)])
    T, C, H, W = v.shape
    gt, gh, gw = T // tps, H // ps, W // ps
    p = v.view(gt, tps, C, gh // ms, ms, ps, gw // ms, ms, ps).permute(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return p.reshape(gt * gh * gw, C * tps * ps * ps), torch.tensor([[gt, gh, gw]])


def expand_slots(text: str, grids: list[torch.Tensor], merge: int) -> str:
    """Replace each video slot by as many `<|video_pad|>` tokens as that video has merged patches."""
    parts = text.split(VIDEO_SLOT)
    if len(parts) - 1 != len(grids):
        raise ValueError(f"prompt has {len(parts) - 1} video slots but {len(grids)} videos were given")
    out = parts[0]
    for grid, rest in zip(grids, parts[1:]):
        n = int(grid.prod()) // merge ** 2
        out += f"<|vision_start|>{VIDEO_PAD * n}<|vision_end|>{rest}"
    return out


def encode(tokenizer, model_config, spec: VisionSpec, texts: list[str], videos: list[list[torch.Tensor]],
           targets: list[str] | None = None, fps: float = 8.0,
           dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Batch of chat texts (with video slots) and their videos (patchified tensors) -> model inputs.

    `videos[i]` holds the (patches, grid) pairs of text i, in slot order. With `targets`, the batch is
    right-padded and `labels` cover the target tokens only (plus EOS); without, it is left-padded. Patches
    are cast to `dtype` and every tensor is put on `device` (the model's); a batch of text-only rows has no video
    inputs.
    """
    patches, grids, ids, n_prompt = [], [], [], []
    for text, vids in zip(texts, videos):
        patches += [p for p, _ in vids]
        grids += [g for _, g in vids]
        ids.append(tokenizer(expand_slots(text, [g for _, g in vids], spec.merge_size)).input_ids)
        n_prompt.append(len(ids[-1]))
    if targets is not None:
        eos = tokenizer.eos_token_id
        ids = [x + tokenizer(t).input_ids + [eos] for x, t in zip(ids, targets)]
    width = max(len(x) for x in ids)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(ids), width), pad, dtype=torch.long)
    attention = torch.zeros((len(ids), width), dtype=torch.long)
    labels = torch.full((len(ids), width), -100, dtype=torch.long)
    for i, x in enumerate(ids):
        sl = slice(0, len(x)) if targets is not None else slice(width - len(x), width)
        input_ids[i, sl] = torch.tensor(x)
        attention[i, sl] = 1
        if targets is not None:
            labels[i, n_prompt[i]:len(x)] = input_ids[i, n_prompt[i]:len(x)]
    batch = dict(input_ids=input_ids, attention_mask=attention,
                 mm_token_type_ids=(input_ids == model_config.video_token_id).long() * 2)
    if patches:
        batch.update(pixel_values_videos=torch.cat(patches).to(dtype), video_grid_thw=torch.cat(grids))
    if patches and model_config.model_type == "qwen2_5_vl":
        batch["second_per_grid_ts"] = torch.full((len(grids),), spec.temporal_patch_size / fps)
    if targets is not None:
        batch["labels"] = labels
    return {k: v.to(device) for k, v in batch.items()}
