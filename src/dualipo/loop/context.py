"""What every stage of a run shares: the run context, work sharded across processes, prompts and seeds, and the
generator of each round rebuilt from the recorded adapters.

Multi-process (`accelerate launch`): every process runs the same loop. The main process alone reads and writes
the ledger; it decides what is left to do and broadcasts it (`from_main`). Work units are dealt round-robin
(`run_sharded`); each process writes its own files, and the main process records them once they are complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from tqdm.auto import tqdm

from dualipo.config import RunConfig, to_dict
from dualipo.ledger import Ledger, sha256_file

log = logging.getLogger(__name__)
_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
ADAPTER_KIND = "generator_lora"


@dataclass
class RunContext:
    cfg: RunConfig
    run_dir: Path
    acc: Any  # accelerate.Accelerator
    pool: list[tuple[str, str]]  # (prompt id, prompt): the prompt pool the rounds draw from
    base_id: str  # identity of the base generator weights (provenance)
    critic: Any = None  # built once; replaced after each refinement (training.critic_after)
    ledger: Ledger | None = None  # main process only
    metrics: Any = None  # loop.tracking.Metrics, main process only
    upper_bound: bool = False  # the oracle is the critic

    @property
    def main(self) -> bool:
        return self.acc.is_main_process

    def round_dir(self, k: int) -> Path:
        return round_dir(self.run_dir, k)

    def rel(self, path: Path) -> str:
        return str(Path(path).relative_to(self.run_dir))

    def abs(self, rel: str) -> Path:
        return self.run_dir / rel


def round_dir(run_dir: Path, k: int) -> Path:
    """Where round k's files live (videos, eval, pairs, train, adapters)."""
    return Path(run_dir) / f"round_{k:02d}"


def eval_prompt_id(pos: int) -> str:
    """Id of the held-out prompt at position `pos` of the evaluation prompts (names its videos)."""
    return f"e{pos:04d}"


# ------------------------------------------------------------------------------------------ processes

def from_main(ctx: RunContext, compute: Callable[[], Any]) -> Any:
    """`compute()` on the main process (which owns the ledger), broadcast to every process. An error on the main
    process is raised on every process, so none waits forever."""
    if ctx.acc.num_processes == 1:
        return compute()
    from accelerate.utils import broadcast_object_list

    box: list[Any] = [None]
    error = None
    if ctx.main:
        try:
            box[0] = ("ok", compute())
        except Exception as e:  # re-raised below, after the other processes have been told
            box[0], error = ("error", f"{type(e).__name__}: {e}"), e
    broadcast_object_list(box)
    if error is not None:
        raise error
    status, value = box[0]
    if status == "error":
        raise ValueError(f"the main process failed: {value}")
    return value


def run_sharded(ctx: RunContext, units: Sequence[Any], work: Callable[[Any], list], commit: Callable[[Any], None],
                desc: str, unit: str) -> None:
    """Deal `units` round-robin over the processes (step s: process r does unit s * P + r); after each step the
    results are gathered on the main process, which commits them in order. Only the main process shows progress."""
    p, r = ctx.acc.num_processes, ctx.acc.process_index
    bar = tqdm(total=len(units), desc=desc, unit=unit, disable=not ctx.main or not units)
    mine = 0
    for start in range(0, len(units), p):
        mine += start + r < len(units)
        results = work(units[start + r]) if start + r < len(units) else []
        if p > 1:
            from accelerate.utils import gather_object

            results = gather_object(results)
        if ctx.main:
            for res in results:
                commit(res)
        bar.update(min(p, len(units) - start))
    bar.close()
    if p > 1:
        log.debug("%s: process %d of %d did %d of %d units (%s)", desc, r, p, mine, len(units), unit)
    ctx.acc.wait_for_everyone()


# ------------------------------------------------------------------------------------------ prompts, seeds

def load_prompt_pool(cfg: RunConfig) -> list[tuple[str, str]]:
    """(prompt id, prompt) pairs: `rounds.prompt_file` (see `read_prompt_file`) or, when it is empty, the shapes
    world's training prompts."""
    if not cfg.rounds.prompt_file:
        from dualipo.toy.world import prompt_pools

        return [(f"w{i:05d}", p) for i, p in enumerate(prompt_pools(cfg.world)[0])]
    return read_prompt_file(Path(cfg.rounds.prompt_file), "rounds.prompt_file")


def read_prompt_file(path: Path, what: str) -> list[tuple[str, str]]:
    """(prompt id, prompt) pairs from JSONL (`prompt` and optional `id`) or text (one prompt per line; blank lines
    and `#` comments skipped); errors name `what` (the option or key that gave the file), the file and the line."""
    if not path.is_file():
        raise ValueError(f"{what}: {path} does not exist")
    pool = _read_jsonl_prompts(path) if path.suffix == ".jsonl" else _read_text_prompts(path, what)
    if not pool:
        raise ValueError(f"{what}: {path} holds no prompts")
    for kind, values in (("prompt id", [pid for pid, _ in pool]), ("prompt", [text for _, text in pool])):
        seen: set[str] = set()
        for v in values:
            if v in seen:
                raise ValueError(f"{what}: {path}: {kind} {v!r} appears more than once")
            seen.add(v)
    return pool


def _read_jsonl_prompts(path: Path) -> list[tuple[str, str]]:
    from dualipo.jsonl import read_jsonl

    pool = []
    for n, rec in read_jsonl(path, "prompt file"):
        prompt, pid = rec.get("prompt"), rec.get("id", f"f{n:05d}")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError(f"{path}:{n}: expected a non-empty string field 'prompt', got {rec!r}")
        if not isinstance(pid, (str, int)) or isinstance(pid, bool) or not _ID.fullmatch(str(pid)):
            raise ValueError(f"{path}:{n}: field 'id' must be a string of letters, digits, '_', '.' or '-' (it "
                             f"names video files) or an integer, got {pid!r}")
        pool.append((str(pid), prompt.strip()))
    return pool


def _read_text_prompts(path: Path, what: str) -> list[tuple[str, str]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise ValueError(f"{what}: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
    pool = []
    for n, line in enumerate(lines, start=1):
        if any(ord(c) < 32 and c != "\t" for c in line):
            raise ValueError(f"{path}:{n}: control character in a prompt line")
        if line.strip() and not line.lstrip().startswith("#"):
            pool.append((f"f{n:05d}", line.strip()))
    return pool


def pool_hash(pool: list[tuple[str, str]]) -> str:
    return hashlib.sha256(json.dumps(pool).encode()).hexdigest()


def round_prompts(ctx: RunContext, k: int) -> list[tuple[str, str]]:
    """The prompts of round k: the next `sampling.prompts_per_round` of the pool, wrapping around."""
    n, per = len(ctx.pool), ctx.cfg.sampling.prompts_per_round
    return [ctx.pool[((k - 1) * per + i) % n] for i in range(per)]


def video_seed(cfg: RunConfig, k: int, prompt_pos: int, j: int) -> int:
    """Seed of video j of the prompt at position `prompt_pos` in round k (distinct across rounds and items)."""
    return cfg.sampling.seed * 10**9 + k * 10**6 + prompt_pos * cfg.sampling.videos_per_prompt + j


def unit_seed(cfg: RunConfig, k: int, prompt_pos: int) -> int:
    """Seed of the critic's sampled reasoning paths for one prompt's judgments: a resumed or sharded run judges
    every prompt with the same random draws as an uninterrupted single-process run."""
    return cfg.seed * 10**9 + k * 10**6 + prompt_pos


# ------------------------------------------------------------------------------------------ generator per round

def base_generator_id(cfg: RunConfig) -> str:
    """The base generator's identity: its config section and, when loaded from a directory, the hash of its
    transformer weights (a resume refuses changed base weights)."""
    from dualipo.generators import SHIPPED, shipped_path

    h = hashlib.sha256(json.dumps(to_dict(cfg.generator), sort_keys=True).encode())
    g = cfg.generator
    if g.path:
        root = shipped_path() if g.path == SHIPPED else Path(g.path)
        for f in sorted((root / "transformer").glob("*.safetensors")):
            h.update(f.name.encode() + sha256_file(f).encode())
    return h.hexdigest()


def adapters_through(ctx: RunContext, k: int) -> list[tuple[int, str, str, str]]:
    """(round, run-relative path, file sha256, weights sha256) of the generator adapters of rounds 1..k."""
    def compute():
        return [(r["round"], r["path"], r["sha256"], r["weights_sha256"]) for r in ctx.ledger.checkpoints(ADAPTER_KIND)
                if r["round"] <= k]
    return from_main(ctx, compute)


def generator_id(ctx: RunContext, adapters: list[tuple[int, str, str, str]]) -> str:
    """Identity of the generator that is the base plus these adapters (provenance of sampled videos)."""
    chain = [ctx.base_id, ctx.cfg.rounds.reference] + [w for *_, w in adapters]
    return hashlib.sha256("|".join(chain).encode()).hexdigest()


def generator_after(ctx: RunContext, k: int):
    """The generator at the end of round k (k = 0: the base), rebuilt from the recorded adapters, so an
    uninterrupted and a resumed run use the same weights. `rounds.reference=previous`: every earlier adapter is
    merged (the reference moves forward); `base`: the latest adapter stays a live adapter on the base weights,
    and training continues it (the reference stays the base)."""
    from dualipo.generators import build_generator

    adapters = adapters_through(ctx, k)
    gen = build_generator(ctx.cfg)
    for _, rel, sha, _ in adapters if ctx.cfg.rounds.reference == "previous" else adapters[-1:]:
        path = ctx.abs(rel)
        if not path.is_file() or sha256_file(path) != sha:
            raise ValueError(f"generator adapter {path} is missing or differs from the one the ledger recorded "
                             f"(sha256 {sha[:12]}); the run directory was changed outside dualipo")
        gen.load_lora(path)
        if ctx.cfg.rounds.reference == "previous":
            gen.merge_lora()
    return gen, generator_id(ctx, adapters)
