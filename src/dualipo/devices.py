"""Device settings (`generator.device`, `critic.device`) as torch devices, and moving models between devices."""

from __future__ import annotations

import gc

import torch


def resolve_device(value: str, key: str) -> torch.device:
    """'auto' = cuda when available, else cpu; anything else must be a torch device this machine has."""
    if value == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(value)
    except RuntimeError as e:
        raise ValueError(f"{key}: {value!r} is not a torch device ({e})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"{key}: {value!r} but CUDA is not available here")
    return device


def release_memory() -> None:
    """Return freed accelerator memory to the device (after a model moved to CPU or was dropped); CPU: only gc."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
