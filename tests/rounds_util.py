"""Shared by the round-loop tests: the tiny run's arguments, the real CLI as a subprocess, ledger snapshots."""

import itertools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

# The tiny preset with a small real critic that compares two videos and answers without reasoning (the critic
# shipped before the pointwise one, kept as a test fixture): real models, seconds per stage, and confident
# verdicts even on the tiny random generator's noise (the tiny random critic abstains on everything).
PAIRWISE_CRITIC = Path(__file__).resolve().parent / "assets" / "critic_pairwise"
TINY = ["--preset", "tiny", f"critic.path={PAIRWISE_CRITIC}", "critic.num_frames=8", "critic.image_size=48",
        "judging.chain_of_thought=false", "sampling.videos_per_prompt=3"]
P, N = 2, 3  # prompts per round, videos per prompt (tiny preset + TINY)
BIN = Path(sys.executable).parent


def cli(args, cwd, check=True, **kw):
    """`python -m dualipo.cli ARGS` as a user runs it."""
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run([sys.executable, "-m", "dualipo.cli", *args], cwd=cwd, env=env, capture_output=True,
                       text=True, **kw)
    if check:
        assert p.returncode == 0, p.stderr[-4000:]
    return p


def query(run_dir, sql, *args):
    db = sqlite3.connect(f"file:{Path(run_dir) / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        return db.execute(sql, args).fetchall()
    finally:
        db.close()


def snapshot(run_dir) -> dict:
    """Everything a run recorded that must not depend on when it was interrupted (no wall times, no file hashes
    of adapters: peft writes its metadata in set order; their tensors are compared by `weights_sha256`)."""
    q = lambda sql: query(run_dir, sql)  # noqa: E731
    return {
        "videos": q("SELECT round, split, prompt_id, seed, item, path, sha256, generator FROM videos "
                    "ORDER BY round, split, item"),
        "judgments": q("SELECT * FROM judgments ORDER BY round, prompt_id, dimension, video_a, video_b"),
        "pairs": q("SELECT * FROM pairs ORDER BY round, idx"),
        "points": q("SELECT * FROM points ORDER BY round, video, dimension"),
        "checkpoints": q("SELECT round, kind, path, weights_sha256, step FROM checkpoints ORDER BY round, kind"),
        "metrics": q("SELECT round, stage, name, value FROM metrics ORDER BY round, stage, name"),
        "stages": q("SELECT round, stage, status, note FROM stages ORDER BY round, stage"),
    }


def assert_complete(run_dir, rounds: int, eval_videos: int = 2, prompts: int = P, per_prompt: int = N) -> None:
    """No duplicated and no missing items, every recorded file present with its hash, no temporary files."""
    from dualipo.ledger import sha256_file

    s = snapshot(run_dir)
    train = [v for v in s["videos"] if v[1] == "train"]
    assert len(train) == rounds * prompts * per_prompt
    assert len({(v[0], v[2], v[3]) for v in train}) == len(train)
    assert len([v for v in s["videos"] if v[1] == "eval"]) == (rounds + 1) * eval_videos
    assert len(s["judgments"]) == rounds * prompts * len(list(itertools.combinations(range(per_prompt), 2)))
    assert {(r, st) for r, st, status, _ in s["stages"] if status in ("done", "skipped")} == \
        {(0, "evaluate")} | {(r, st) for r in range(1, rounds + 1)
                             for st in ("sample", "judge", "refine", "pairs", "train", "evaluate")}
    for (path, sha) in query(run_dir, "SELECT path, sha256 FROM videos UNION ALL SELECT path, sha256 FROM checkpoints"):
        assert sha256_file(Path(run_dir) / path) == sha, path
    assert not [p for p in Path(run_dir).rglob(".*.tmp*")]
