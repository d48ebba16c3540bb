"""The prompts of a run: the pool (`rounds.prompt_file` or the shapes world's training prompts), each round's slice
of it, and the held-out prompts' ids."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from dualipo.config import RunConfig

_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


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


def round_prompts(pool: list[tuple[str, str]], per_round: int, k: int) -> list[tuple[str, str]]:
    """The prompts of round k: the next `per_round` of the pool, wrapping around."""
    n = len(pool)
    return [pool[((k - 1) * per_round + i) % n] for i in range(per_round)]


def eval_prompts(cfg: RunConfig) -> list[str]:
    """The held-out prompts every round is evaluated on: the first `eval.num_prompts` of the world's held-out pool."""
    from dualipo.toy.world import prompt_pools

    return prompt_pools(cfg.world)[1][:cfg.eval.num_prompts]


def eval_prompt_id(pos: int) -> str:
    """Id of the held-out prompt at position `pos` of the evaluation prompts (names its videos)."""
    return f"e{pos:04d}"
