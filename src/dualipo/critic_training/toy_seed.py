"""The shapes world's seed sets (oracle-labelled, with label noise) and the videos they are made of: renders,
one-attribute corruptions and pixel defects, or generator samples, written in the `prompts.jsonl` layout of
`dualipo world sample` (several videos per prompt, so pairs form within a prompt).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from tqdm import tqdm

from dualipo.config import WorldConfig
from dualipo.critic_training.seed import SEED_DIMENSIONS, SeedRecord, read_pool, write_seed
from dualipo.jsonl import write_jsonl
from dualipo.ledger import atomic_path
from dualipo.toy.corrupt import add_flicker, applicable, corrupt_scene, noise_video
from dualipo.toy.oracle import score
from dualipo.toy.seed_labels import TIE_MARGIN, label_pair, label_single
from dualipo.toy.world import parse_prompt, prompt_pools, render
from dualipo.video import read_video, write_video

KINDS = ("clean", "scene", "flicker", "noise")
KIND_P = (0.15, 0.65, 0.17, 0.03)


def write_variants(cfg: WorldConfig, out: str | Path, n_prompts: int, per_prompt: int = 4,
                   split: str = "train", seed: int = 0) -> Path:
    """For each of `n_prompts` prompts: one clean render plus `per_prompt - 1` variants (another clean render,
    a one-attribute corruption, flicker on a render, or noise). Returns the prompts.jsonl path."""
    train, held = prompt_pools(cfg)
    pool = {"train": train, "eval": held}[split]
    rng = np.random.default_rng([seed, 11])
    out = Path(out)
    recs = []
    for i in tqdm(range(n_prompts), desc=f"rendering {split} variants", unit="prompt"):
        prompt = pool[i % len(pool)]
        scene = parse_prompt(prompt)
        for j in range(per_prompt):
            vs = int(rng.integers(1 << 30))
            kind = "clean" if j == 0 else KINDS[int(rng.choice(len(KINDS), p=KIND_P))]
            detail = kind
            if kind == "scene":
                detail = str(rng.choice(applicable(scene)))
                video = render(corrupt_scene(scene, detail, rng), vs, cfg)
            elif kind == "noise":
                video = noise_video(cfg, rng)
            else:
                video = render(scene, vs, cfg)
                if kind == "flicker":
                    video = add_flicker(video, rng)
            rel = f"videos/{i:04d}_{j}.mp4"
            write_video(out / rel, video)
            recs.append({"id": f"{i:04d}_{j}", "prompt": prompt, "seed": vs, "path": rel, "variant": detail})
    return write_jsonl(out / "prompts.jsonl", recs)


def write_generator_samples(cfg, out: str | Path, n_prompts: int, per_prompt: int = 4, split: str = "train",
                            seed: int = 0) -> Path:
    """`per_prompt` samples per prompt of the configured generator (e.g. the shipped base generator), in the
    prompts.jsonl layout, so seed pairs can be made from the distribution the critic will judge."""
    from dualipo import seeds as streams
    from dualipo.generators import build_generator, sample_videos

    train, held = prompt_pools(cfg.world)
    pool = {"train": train, "eval": held}[split]
    prompts = [pool[i % len(pool)] for i in range(n_prompts) for _ in range(per_prompt)]
    seeds = [streams.seed_set_sample(seed, i) for i in range(len(prompts))]
    videos = sample_videos(build_generator(cfg), cfg, prompts, seeds)
    out = Path(out)
    recs = []
    for i, (p, s, v) in enumerate(zip(prompts, seeds, videos)):
        rel = f"videos/{i // per_prompt:04d}_{i % per_prompt}.mp4"
        write_video(out / rel, v)
        recs.append({"id": Path(rel).stem, "prompt": p, "seed": s, "path": rel, "variant": "generator"})
    return write_jsonl(out / "prompts.jsonl", recs)


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
    path = Path(out) / "seed.jsonl"
    if not path.is_file():
        n_prompts = max(1, n_videos // 4)
        write_generator_samples(cfg, Path(out) / "videos", n_prompts, 4, "train", seed)
        _write_once(path, oracle_seed_set([Path(out) / "videos"], 0, SEED_DIMENSIONS, noise, seed,
                                          pointwise=n_prompts * 4 * len(SEED_DIMENSIONS)))
    return path


def _write_once(path: Path, records: list[SeedRecord]) -> None:
    with atomic_path(path) as tmp:
        write_seed(records, tmp)


def _pick_dimension(prompt, a, b, dimensions, rng, focus: float, margin: float) -> str:
    if rng.random() < focus:
        sa, sb = score(prompt, a), score(prompt, b)
        differ = [d for d in dimensions if abs(sa.get(d) - sb.get(d)) > margin]
        if differ:
            return differ[int(rng.integers(len(differ)))]
    return dimensions[int(rng.integers(len(dimensions)))]
