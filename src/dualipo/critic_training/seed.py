"""Seed labels: the JSONL format and CSV / JSONL import with validation (the shapes world's seed sets: `toy_seed`).

Pairwise record: {prompt, video_a, video_b, dimension, label: A|B|tie, reason}.
Pointwise record: {prompt, video, dimension, label: Good|Normal|Bad, reason}.
Video paths are absolute or relative to the seed file's directory. Extra keys (e.g. `clean_label`) are kept.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

from dualipo.critics.prompts import PAIR_VERDICTS, POINT_VERDICTS, QUESTIONS
from dualipo.jsonl import read_jsonl, write_jsonl

PAIR_KEYS = ("prompt", "video_a", "video_b", "dimension", "label", "reason")
SEED_DIMENSIONS = ("overall", "alignment", "motion", "consistency")  # the shapes world's seed sets
POINT_KEYS = ("prompt", "video", "dimension", "label", "reason")


@dataclass(frozen=True)
class SeedRecord:
    prompt: str
    videos: tuple[str, ...]  # resolved paths: (a, b) pairwise, (v,) pointwise
    dimension: str
    label: str
    reason: str
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def mode(self) -> str:
        return "pairwise" if len(self.videos) == 2 else "pointwise"

    def to_json(self, base: Path | None = None) -> dict:
        rel = [_relative(v, base) for v in self.videos]
        vids = {"video_a": rel[0], "video_b": rel[1]} if self.mode == "pairwise" else {"video": rel[0]}
        return {"prompt": self.prompt, **vids, "dimension": self.dimension, "label": self.label,
                "reason": self.reason, **self.extra}


def _relative(path: str, base: Path | None) -> str:
    if base is None:
        return path
    try:
        return str(Path(path).resolve().relative_to(base.resolve()))
    except ValueError:
        return str(Path(path).resolve())


def validate(raw: dict, where: str, base: Path, check_files: bool = True) -> SeedRecord:
    """One raw record -> SeedRecord, or ValueError naming `where` (file:line) and the bad key."""
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected an object, got {type(raw).__name__}")
    pair = "video_a" in raw or "video_b" in raw
    keys, allowed = (PAIR_KEYS, PAIR_VERDICTS) if pair else (POINT_KEYS, POINT_VERDICTS)
    for k in keys:
        if k not in raw:
            raise ValueError(f"{where}: missing key {k!r} ({'pairwise' if pair else 'pointwise'} records need "
                             f"{', '.join(keys)})")
        if not isinstance(raw[k], str) or (k != "reason" and not raw[k].strip()):
            raise ValueError(f"{where}: key {k!r} must be a non-empty string, got {raw[k]!r}")
    if raw["label"] not in allowed:
        raise ValueError(f"{where}: label {raw['label']!r} is not one of {'|'.join(allowed)}")
    if raw["dimension"] not in QUESTIONS:
        raise ValueError(f"{where}: dimension {raw['dimension']!r} is not one of {', '.join(QUESTIONS)}")
    vids = []
    for k in (("video_a", "video_b") if pair else ("video",)):
        p = Path(raw[k]) if Path(raw[k]).is_absolute() else base / raw[k]
        if check_files and not p.is_file():
            raise ValueError(f"{where}: {k} file {p} does not exist")
        vids.append(str(p))
    extra = {k: v for k, v in raw.items() if k not in keys}
    return SeedRecord(raw["prompt"], tuple(vids), raw["dimension"], raw["label"], raw["reason"], extra)


def load_seed(path: str | Path, check_files: bool = True) -> list[SeedRecord]:
    """Read a seed set from JSONL or CSV (header row with the record keys); errors name file and line."""
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"seed file {path} does not exist")
    base = path.parent
    out = []
    if path.suffix.lower() == ".csv":
        with path.open(newline="") as f:
            for i, row in enumerate(csv.DictReader(f), start=2):
                row = {k: v for k, v in row.items() if v not in (None, "")} | {"reason": row.get("reason") or ""}
                out.append(validate(row, f"{path}:{i}", base, check_files))
    else:
        for i, raw in read_jsonl(path, "seed file"):
            out.append(validate(raw, f"{path}:{i}", base, check_files))
    if not out:
        raise ValueError(f"seed file {path} holds no records")
    return out


def write_seed(records: list[SeedRecord], path: str | Path) -> Path:
    path = Path(path)
    return write_jsonl(path, (r.to_json(path.parent) for r in records))


def import_seed(src: str | Path, out: str | Path) -> Path:
    """Validate a CSV / JSONL seed set and write it as the canonical JSONL."""
    return write_seed(load_seed(src), out)


def read_pool(directory: Path) -> dict[str, list[str]]:
    """prompt -> video paths, from a `prompts.jsonl` directory (as written by `dualipo world sample`)."""
    jsonl = directory / "prompts.jsonl"
    if not jsonl.is_file():
        raise ValueError(f"{directory}: no prompts.jsonl (expected the `dualipo world sample` layout)")
    pool: dict[str, list[str]] = {}
    for i, r in read_jsonl(jsonl):
        if "prompt" not in r or "path" not in r:
            raise ValueError(f"{jsonl}:{i}: record needs 'prompt' and 'path'")
        pool.setdefault(r["prompt"], []).append(str(directory / r["path"]))
    return pool
