"""Seed labels: the JSONL format, CSV / JSONL import with validation, and the shapes world's seed-set maker.

Pairwise record: {prompt, video_a, video_b, dimension, label: A|B|tie, reason}.
Pointwise record: {prompt, video, dimension, label: Good|Normal|Bad, reason}.
Video paths are absolute or relative to the seed file's directory. Extra keys (e.g. `clean_label`) are kept.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

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


def oracle_seed_set(dirs: list[str | Path], n_pairs: int, dimensions: tuple[str, ...], noise: float,
                    seed: int = 0, pointwise: int = 0, focus: float = 0.8,
                    tie_margin: float | None = None, other_prompt: float = 0.0) -> list[SeedRecord]:
    """Pairs formed within a prompt from the video directories, labelled by the oracle with label noise.

    With probability `focus` a pair is asked about a dimension on which its two videos differ by more than
    `tie_margin` (as an annotator is asked about the defect they see); otherwise about a uniformly drawn one
    (often a tie). Oracle scores closer than `tie_margin` are a tie: an annotator does not tell them apart.

    `pointwise` more records label one video on one dimension (Good / Normal / Bad), each (video, dimension)
    once before any is labelled again; with probability `other_prompt` it is judged against another prompt of
    the pool (what a video that does not show its prompt looks like: most useful on clean renders). Records
    keep the oracle's noise-free verdict in `clean_label` (for held-out evaluation).
    """
    from dualipo.toy.oracle import score
    from dualipo.toy.seed_labels import TIE_MARGIN, label_pair, label_single
    from dualipo.video import read_video

    tie_margin = TIE_MARGIN if tie_margin is None else tie_margin
    pool: dict[str, list[str]] = {}
    for d in dirs:
        for p, vids in read_pool(Path(d)).items():
            pool.setdefault(p, []).extend(vids)
    prompts = [p for p, v in pool.items() if len(v) >= 2]
    if not prompts:
        raise ValueError(f"{[str(d) for d in dirs]}: no prompt has two or more videos to pair")
    rng = np.random.default_rng(seed)
    cache: dict[str, object] = {}
    video = lambda p: cache.setdefault(p, read_video(p))  # noqa: E731
    out = []
    for _ in tqdm(range(n_pairs), desc="labelling seed pairs", unit="pair", disable=not n_pairs):
        prompt = prompts[int(rng.integers(len(prompts)))]
        a, b = rng.choice(len(pool[prompt]), 2, replace=False)
        va, vb = pool[prompt][a], pool[prompt][b]
        dim = _pick_dimension(prompt, video(va), video(vb), dimensions, rng, focus, tie_margin)
        lab = label_pair(prompt, video(va), video(vb), dim, rng, noise, tie_margin)
        out.append(SeedRecord(prompt, (va, vb), dim, lab.label, lab.reason,
                              {"clean_label": lab.clean_label, "scores": list(lab.scores)}))
    singles = [(p, v, d) for p in pool for v in pool[p] for d in dimensions]
    scored: dict[tuple[str, str], object] = {}  # each video scored once against each prompt
    order = rng.permutation(len(singles))
    for i in tqdm(range(pointwise), desc="labelling seed videos", unit="label", disable=not pointwise):
        prompt, v, dim = singles[order[i % len(singles)]]
        if rng.random() < other_prompt:
            prompt = [p for p in pool if p != prompt][int(rng.integers(len(pool) - 1))] if len(pool) > 1 else prompt
        key = (prompt, v)
        if key not in scored:
            scored[key] = score(prompt, video(v))
        lab = label_single(prompt, video(v), dim, rng, noise, scored=scored[key])
        out.append(SeedRecord(prompt, (v,), dim, lab.label, lab.reason,
                              {"clean_label": lab.clean_label, "scores": list(lab.scores)}))
    return out


def rendered_seed_set(world, out: str | Path, n_pairs: int, noise: float, seed: int = 0) -> Path:
    """The shapes world's stand-in for a human seed set: renders and corruptions of n_pairs / 2 train prompts
    (4 videos each) in OUT/videos, `n_pairs` oracle-labelled pairs with label noise in OUT/seed.jsonl (written
    atomically, so an existing file is complete); returns that file, made once."""
    from dualipo.critic_training.toy_videos import write_variants

    path = Path(out) / "seed.jsonl"
    if not path.is_file():
        write_variants(world, Path(out) / "videos", max(1, n_pairs // 2), 4, "train", seed)
        _write_once(path, oracle_seed_set([Path(out) / "videos"], n_pairs, SEED_DIMENSIONS, noise, seed))
    return path


def sampled_seed_set(cfg, out: str | Path, n_videos: int, noise: float, seed: int = 0) -> Path:
    """The seed set of a critic that judges pairs from pointwise scores, as its own seed set was made
    (`scripts/critic_small.sh`): 4 samples of the configured (base) generator for each of n_videos / 4 train
    prompts in OUT/videos, every sample labelled by the oracle on every seed dimension (Good / Normal / Bad) with
    label noise, in OUT/seed.jsonl (written atomically); returns that file, made once."""
    from dualipo.critic_training.toy_videos import write_generator_samples

    path = Path(out) / "seed.jsonl"
    if not path.is_file():
        n_prompts = max(1, n_videos // 4)
        write_generator_samples(cfg, Path(out) / "videos", n_prompts, 4, "train", seed)
        _write_once(path, oracle_seed_set([Path(out) / "videos"], 0, SEED_DIMENSIONS, noise, seed,
                                          pointwise=n_prompts * 4 * len(SEED_DIMENSIONS)))
    return path


def _write_once(path: Path, records: list[SeedRecord]) -> None:
    from dualipo.ledger import atomic_path

    with atomic_path(path) as tmp:
        write_seed(records, tmp)


def _pick_dimension(prompt, a, b, dimensions, rng, focus: float, margin: float) -> str:
    from dualipo.toy.oracle import score

    if rng.random() < focus:
        sa, sb = score(prompt, a), score(prompt, b)
        differ = [d for d in dimensions if abs(sa.get(d) - sb.get(d)) > margin]
        if differ:
            return differ[int(rng.integers(len(differ)))]
    return dimensions[int(rng.integers(len(dimensions)))]
