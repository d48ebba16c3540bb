"""Checks that a local checkpoint directory has the on-disk layout its loader needs, before loading it.

A missing directory or file raises `ValueError` naming the config key, the missing file and the expected layout,
instead of a loader's traceback deep inside diffusers or transformers. Two layouts, those of the public
checkpoints:

- diffusers pipeline (`generator.path`; CogVideoX-2b / 5b, Wan2.1-T2V-1.3B-Diffusers): `model_index.json`, and
  one folder per component: `transformer/` and `vae/` (config.json + diffusion_pytorch_model.safetensors, or its
  `.index.json` and shards), `text_encoder/` (config.json + model.safetensors, or its index and shards),
  `tokenizer/` (tokenizer_config.json + tokenizer.json or spiece.model), `scheduler/scheduler_config.json`;
- transformers Qwen2-VL / Qwen2.5-VL (`critic.path`): config.json, model.safetensors (or its index and shards),
  tokenizer_config.json + tokenizer.json (or vocab.json and merges.txt). The critic builds its video inputs itself
  (`critics.vision_inputs`), so preprocessor_config.json is not needed.

Weights are read as safetensors only: a directory with only `.bin` / `.pt` weights is reported as such.
"""

from __future__ import annotations

import json
from pathlib import Path

DIFFUSERS_LAYOUT = ("model_index.json; transformer/ and vae/ (config.json + diffusion_pytorch_model.safetensors or "
                    "its .index.json + shards); text_encoder/ (config.json + model.safetensors or its .index.json + "
                    "shards); tokenizer/ (tokenizer_config.json + tokenizer.json or spiece.model); "
                    "scheduler/scheduler_config.json")
TRANSFORMERS_LAYOUT = ("config.json; model.safetensors or model.safetensors.index.json + its shards; "
                       "tokenizer_config.json + tokenizer.json (or vocab.json + merges.txt)")
PIPELINES = {"wan": "WanPipeline", "cogvideox": "CogVideoXPipeline"}


class LayoutError(ValueError):
    """A checkpoint directory is missing or does not have the expected layout."""


def _fail(key: str, root: Path, problem: str, layout: str) -> LayoutError:
    return LayoutError(f"{key}={str(root)!r}: {problem}. Expected layout: {layout}")


def _weights(key: str, root: Path, folder: Path, stem: str, layout: str) -> None:
    """`stem.safetensors`, or `stem.safetensors.index.json` and every shard it lists."""
    single, index = folder / f"{stem}.safetensors", folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return
    if index.is_file():
        try:
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        except (json.JSONDecodeError, KeyError, AttributeError) as e:
            raise _fail(key, root, f"{index} is not a safetensors index (no weight_map: {e})", layout) from None
        for shard in shards:
            if not (folder / shard).is_file():
                raise _fail(key, root, f"missing {folder / shard} (listed in {index.name})", layout)
        return
    other = sorted(p.name for p in folder.glob("*") if p.suffix in (".bin", ".pt", ".pth", ".ckpt"))
    found = f"; found only {', '.join(other)} (weights are read as safetensors only)" if other else ""
    raise _fail(key, root, f"missing {single} (or {index.name} + shards){found}", layout)


def _tokenizer(key: str, root: Path, folder: Path, layout: str, files: tuple[tuple[str, ...], ...]) -> None:
    if not (folder / "tokenizer_config.json").is_file():
        raise _fail(key, root, f"missing {folder / 'tokenizer_config.json'}", layout)
    if not any(all((folder / f).is_file() for f in option) for option in files):
        wanted = " or ".join(" + ".join(option) for option in files)
        raise _fail(key, root, f"missing the tokenizer's vocabulary in {folder} ({wanted})", layout)


def _require(key: str, root: Path, file: Path, layout: str) -> None:
    if not file.is_file():
        raise _fail(key, root, f"missing {file}", layout)


def check_diffusers_dir(root: str | Path, key: str = "generator.path", backend: str | None = None) -> Path:
    """Raise `LayoutError` unless `root` is a complete diffusers pipeline (of `backend`'s pipeline class)."""
    root = Path(root)
    if not root.is_dir():
        raise _fail(key, root, "no such directory", DIFFUSERS_LAYOUT)
    _require(key, root, root / "model_index.json", DIFFUSERS_LAYOUT)
    try:
        cls = json.loads((root / "model_index.json").read_text()).get("_class_name")
    except (json.JSONDecodeError, AttributeError) as e:
        raise _fail(key, root, f"{root / 'model_index.json'} is not a JSON object ({e})", DIFFUSERS_LAYOUT) from None
    if backend is not None and cls != PIPELINES[backend]:
        raise _fail(key, root, f"model_index.json names {cls!r} but generator.backend={backend} loads a "
                    f"{PIPELINES[backend]}", DIFFUSERS_LAYOUT)
    for sub in ("transformer", "vae"):
        _require(key, root, root / sub / "config.json", DIFFUSERS_LAYOUT)
        _weights(key, root, root / sub, "diffusion_pytorch_model", DIFFUSERS_LAYOUT)
    _require(key, root, root / "text_encoder" / "config.json", DIFFUSERS_LAYOUT)
    _weights(key, root, root / "text_encoder", "model", DIFFUSERS_LAYOUT)
    _tokenizer(key, root, root / "tokenizer", DIFFUSERS_LAYOUT, (("tokenizer.json",), ("spiece.model",)))
    _require(key, root, root / "scheduler" / "scheduler_config.json", DIFFUSERS_LAYOUT)
    return root


def check_transformers_dir(root: str | Path, key: str = "critic.path") -> Path:
    """Raise `LayoutError` unless `root` is a complete transformers model directory with its tokenizer."""
    root = Path(root)
    if not root.is_dir():
        raise _fail(key, root, "no such directory", TRANSFORMERS_LAYOUT)
    _require(key, root, root / "config.json", TRANSFORMERS_LAYOUT)
    _weights(key, root, root, "model", TRANSFORMERS_LAYOUT)
    _tokenizer(key, root, root, TRANSFORMERS_LAYOUT, (("tokenizer.json",), ("vocab.json", "merges.txt")))
    return root
