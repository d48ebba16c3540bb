"""Steps 5-6 of a round: train the generator on the round's preference data, and refine the critic; and the models
of each round rebuilt from what the ledger recorded.

Generator training is `trainer.train_generator` (Diffusion-DPO or -KTO + the lambda1 / lambda2 NLL terms,
data-parallel under accelerate) on the generator at the end of the previous round; it resumes from its own
checkpoints in `round_k/train/checkpoints`. The finished adapter is copied atomically to
`round_k/generator_lora.safetensors`; later rounds rebuild the generator from the recorded adapters.

Critic refinement (SRPO, `dualipo.critic_training.refine`) learns from the round's own judgments (consistency filter, certainty,
SFT mixed with the seed set or certainty-weighted DPO) on the main process, in `round_k/critic/` (it resumes from
its checkpoints there). With `critic_refine.refine=false` the critic stays frozen (the paper's IPO).
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from dualipo import seeds
from dualipo.config import RunConfig, to_dict
from dualipo.critics.voting import Judgment
from dualipo.ledger import atomic_path, sha256_file
from dualipo.loop.processes import Processes
from dualipo.loop.sampling import Item

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    """A weights file the ledger recorded: round, run-relative path, file sha256, tensors' sha256."""
    round: int
    path: str
    sha256: str
    weights_sha256: str


def checked(run_dir: Path, rec: Recorded, what: str) -> Path:
    path = run_dir / rec.path
    if not path.is_file() or sha256_file(path) != rec.sha256:
        raise ValueError(f"{what} {path} is missing or differs from the one the ledger recorded (sha256 "
                         f"{rec.sha256[:12]}); the run directory was changed outside dualipo")
    return path


# ------------------------------------------------------------------------------------------ generator

def base_generator_id(cfg: RunConfig) -> str:
    """The base generator's identity: its config section and, when loaded from a directory, the hash of its
    transformer weights (a resume refuses changed base weights)."""
    from dualipo.generators import SHIPPED, shipped_path

    flat = to_dict(cfg.generator)  # hashed in the flat layout before issue 28: a generator keeps its identity
    h = hashlib.sha256(json.dumps({**flat.pop("arch"), **flat}, sort_keys=True).encode())
    if path := cfg.generator.path:
        root = shipped_path() if path == SHIPPED else Path(path)
        for f in sorted((root / "transformer").glob("*.safetensors")):
            h.update(f.name.encode() + sha256_file(f).encode())
    return h.hexdigest()


def round_generator(cfg: RunConfig, run_dir: Path, base_id: str, adapters: list[Recorded]):
    """The base generator plus the adapters of rounds 1..k (k = 0: none), and its identity (provenance of its
    videos), so an uninterrupted and a resumed run use the same weights. `rounds.reference=previous`: every adapter
    is merged (the reference moves forward); `base`: the latest stays a live adapter on the base weights, and
    training continues it (the reference stays the base)."""
    from dualipo.generators import build_generator

    gen = build_generator(cfg)
    previous = cfg.rounds.reference == "previous"
    for rec in adapters if previous else adapters[-1:]:
        gen.load_lora(checked(run_dir, rec, "generator adapter"))
        if previous:
            gen.merge_lora()
    chain = [base_id, cfg.rounds.reference] + [a.weights_sha256 for a in adapters]
    return gen, hashlib.sha256("|".join(chain).encode()).hexdigest()


def render_cache(cfg: RunConfig, k: int, items: list[Item], gen, data_file: Path | None):
    """`train.data=web|curated`: the world's render of each of the round's sampled items (same prompt, the item's
    seed for the layout) as SFT data, captioned like the web corpus (fresh caption draws each round and seed) or
    with the true prompt: continued plain pretraining in place of preference data. What it trains on is written
    to `data_file` (true prompt, caption, seed; the main process passes it)."""
    from dualipo.jsonl import write_jsonl
    from dualipo.toy.corrupt import web_captions
    from dualipo.toy.world import render_prompt
    from dualipo.trainer import build_cache

    captions = [it.prompt for it in items]
    if cfg.train.data == "web":
        captions = web_captions(captions, cfg.world, stream=seeds.web_captions(cfg.seed, k))
    if data_file is not None:
        write_jsonl(data_file, [{"prompt": it.prompt, "caption": c, "seed": it.seed} for it, c in zip(items, captions)])
    return build_cache(gen, captions, [render_prompt(it.prompt, it.seed, cfg.world) for it in items])


def preference_cache(cfg: RunConfig, gen, rows: list[dict], prompts: list[str], run_dir: Path):
    """The latents of the round's pairs (chosen and, for DPO, rejected) or KTO points, plus real videos for the
    lambda2 term."""
    from dualipo.preferences import real_videos_from_world
    from dualipo.trainer import build_cache
    from dualipo.video import read_video

    real = real_videos_from_world(cfg.world, len(rows), cfg.train.real_set_size) if cfg.train.lambda_real else None
    if "chosen" in rows[0]:  # train.loss=sft learns from the chosen videos only
        rejected = [read_video(run_dir / r["rejected"]) for r in rows] if cfg.train.loss == "dpo" else None
        return build_cache(gen, prompts, [read_video(run_dir / r["chosen"]) for r in rows], rejected, real=real)
    return build_cache(gen, prompts, [read_video(run_dir / r["video"]) for r in rows],
                       desirable=[bool(r["desirable"]) for r in rows], real=real)


def cache_on_disk(procs: Processes, path: Path, build):
    """A round's latent cache (latents and prompt embeddings), encoded once before training by the main process
    and written to `path` (round_k/train/latents.safetensors), which every process then reads (a resumed training
    stage reads it instead of encoding again). Training reads only this cache, so the VAE and text encoder can
    leave the GPU (`train.frozen_on_cpu`)."""
    from dualipo.trainer import LatentCache

    def encode() -> None:
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            build().save(path)

    procs.from_main(encode)
    return LatentCache.load(path)


def train_adapter(cfg: RunConfig, k: int, gen, cache, out: Path, procs: Processes) -> tuple[Path, int]:
    """Train round k's adapter on `cache` in `out` (resuming from its checkpoints); the main process copies it
    atomically beside the round (round_k/generator_lora.safetensors). Returns that path and the steps."""
    from dualipo.trainer import train_generator

    train_cfg = replace(cfg.train, seed=seeds.generator_training(cfg.train.seed, k))
    train_generator(gen, cache, train_cfg, out, accelerator=procs.accelerator)
    final = out.parent / "generator_lora.safetensors"
    if procs.main:
        with atomic_path(final) as tmp:
            shutil.copyfile(out / "generator_lora.safetensors", tmp)
    return final, train_cfg.num_steps


def train_summary(path: Path, items: int) -> dict:
    """Mean of the last tenth of the steps (at least one) of the trainer's metrics, plus the first loss."""
    lines = [json.loads(x) for x in path.read_text().splitlines() if x.strip()]
    tail = lines[-max(1, len(lines) // 10):]
    keys = sorted({key for r in tail for key in r if key != "step"})
    out = {"items": items, "steps": lines[-1]["step"], "first_loss": lines[0]["loss"]}
    out.update({f"final_{key}": sum(r[key] for r in tail if key in r) / sum(key in r for r in tail) for key in keys})
    return out


# ------------------------------------------------------------------------------------------ critic

def refine(cfg: RunConfig, k: int, js: list[Judgment], critics: list[str], out: Path, seed_file: str | None):
    """Refine the critic of round k-1 (the last of `critics`, absolute directories of the critics refined so far,
    or `critic.path`) on round k's judgments (video paths absolute) in `out`. Returns (final directory or None,
    the data counts, what it learned from); None when the judgments hold nothing to learn."""
    from dualipo.critic_training.refine import NothingToLearn, refine_critic

    ct = cfg.critic_refine
    current = critics[-1] if critics else cfg.critic.path
    reference = critics[-2] if len(critics) > 1 else (cfg.critic.path if critics else ct.pce_reference)
    try:
        final, counts = refine_critic(cfg, js, out, seed_file, resume=True, critic=current, reference=reference,
                                      seed=seeds.critic_refinement(ct.seed, k))
    except NothingToLearn as e:
        log.warning("round %d refine: %s; the critic stays as it is", k, e)
        return None, json.loads((out / "data.json").read_text()), str(e)
    return final, counts, (f"{ct.method} on {counts['confident']} confident judgments of {counts['judgments']} "
                           f"({counts['paths_filtered']} paths filtered)")


def refine_summary(counts: dict, metrics_file: Path | None) -> dict:
    flat = {f"no_label_{r}": n for r, n in counts.pop("no_label").items()}
    out = {**{key: v for key, v in counts.items() if isinstance(v, (int, float))}, **flat}
    if metrics_file is not None:
        rows = [json.loads(x) for x in metrics_file.read_text().splitlines() if x.strip()]
        out.update({"final_loss": rows[-1]["loss"] if rows else None,
                    "final_abstention_rate": rows[-1].get("abstention_rate") if rows else None})
    return out


def seed_set(cfg: RunConfig, run_dir: Path) -> str | None:
    """The seed set mixed into refinement: `critic_refine.seed_file`, or in the shapes world (the default prompt
    pool) made once in RUN/seed/ and labelled by the oracle (it makes seed labels, as human annotators would; it
    never judges the loop's videos): pairs of renders and corruptions, or, for a critic that judges pairs from
    pointwise scores, the base generator's own samples labelled pointwise (`critic_refine.seed_pairs` of them).
    None when refinement mixes in no seed data."""
    ct = cfg.critic_refine
    if ct.seed_mix == 0 or ct.method != "sft":
        return None
    if ct.seed_file:
        return ct.seed_file
    assert not cfg.rounds.prompt_file, "rounds.run_rounds refuses this before the run starts"
    from dualipo.critic_training.toy_seed import rendered_seed_set, sampled_seed_set

    if cfg.judging.pairs_from == "scores":
        return str(sampled_seed_set(cfg, run_dir / "seed", ct.seed_pairs, ct.seed_noise, ct.seed))
    return str(rendered_seed_set(cfg.world, run_dir / "seed", ct.seed_pairs, ct.seed_noise, ct.seed))
