"""Record or compare a golden run: proof that a refactoring changed no behaviour.

    OMP_NUM_THREADS=1 python scripts/golden.py record GOLDEN.json [WORK_DIR]   # runs under WORK_DIR (a temp dir)
    OMP_NUM_THREADS=1 python scripts/golden.py compare GOLDEN.json [WORK_DIR]  # runs again, prints the differences

The golden run is (1) the tiny preset with the pairwise test critic, 2 rounds, through the real CLI, then
`dualipo export`: every ledger table (videos with their hashes, judgments with their sampled paths, pairs,
points, checkpoints by weights hash, metrics, stage notes), the exported rows and the per-round table; and
(2) one round of the small preset (the shipped generator and critic) at fixed seeds: its ledger and held-out
table. Wall times and adapter file hashes (peft writes metadata in set order) are left out; so are the table's times and the checkout's path.
`tests/assets/golden/golden.json` was recorded before the loop's redesign (issue 28), and re-recorded when the
shipped critic changed (issue 25: the deeper critic; the loop unchanged), at one thread on the development
machine (x86-64 CPU, torch 2.13.0): same machine and thread count give identical figures (the determinism
contract); another CPU may differ in the last bits of floating-point sums.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--preset", "tiny", f"critic.path={ROOT / 'tests' / 'assets' / 'critic_pairwise'}", "critic.num_frames=8",
        "critic.image_size=48", "judging.chain_of_thought=false", "sampling.videos_per_prompt=3",
        "rounds.num_rounds=2"]
SMALL = ["--preset", "small", "rounds.num_rounds=1", "sampling.prompts_per_round=8", "eval.num_prompts=16"]
TABLES = {
    "videos": "SELECT round, split, prompt_id, seed, item, path, sha256, generator FROM videos ORDER BY round, split, item",
    "judgments": "SELECT * FROM judgments ORDER BY round, prompt_id, dimension, video_a, video_b",
    "pairs": "SELECT * FROM pairs ORDER BY round, idx",
    "points": "SELECT * FROM points ORDER BY round, video, dimension",
    "checkpoints": "SELECT round, kind, path, weights_sha256, step FROM checkpoints ORDER BY round, kind",
    "metrics": "SELECT round, stage, name, value FROM metrics ORDER BY round, stage, name",
    "stages": "SELECT round, stage, status, note FROM stages ORDER BY round, stage",
    "prompts": "SELECT * FROM prompts ORDER BY position",
}
TIMED = ("_s", "seconds", "per_s", "wall", "cpu")  # metric names that are times


def cli(*args: str, cwd: Path) -> str:
    p = subprocess.run([sys.executable, "-m", "dualipo.cli", *args], cwd=cwd, capture_output=True, text=True)
    if p.returncode:
        raise SystemExit(f"dualipo {' '.join(args)} failed:\n{p.stderr[-3000:]}")
    return p.stdout


def ledger(run: Path) -> dict:
    db = sqlite3.connect(f"file:{run / 'ledger.sqlite'}?mode=ro", uri=True)
    try:
        out = {name: [list(r) for r in db.execute(sql)] for name, sql in TABLES.items()}
    finally:
        db.close()
    out["metrics"] = [r for r in out["metrics"] if not r[2].endswith(TIMED)]
    return out


def table(text: str) -> list[str]:
    """The per-round table without what depends on the machine: wall and CPU times, the checkout's path."""
    lines = [line.replace(str(ROOT), "ROOT") for line in text.splitlines() if not line.startswith("stage ")]
    return [line.rsplit("|", 2)[0] + "|" if line.startswith("|") else line for line in lines]


def record(runs: Path) -> dict:
    shutil.rmtree(runs, ignore_errors=True)
    runs.mkdir(parents=True)
    tiny_table = cli("run", *TINY, "--out", "tiny", cwd=runs)
    cli("export", "tiny", "--out", "tiny_export.jsonl", cwd=runs)
    small_table = cli("run", *SMALL, "--out", "small", cwd=runs)
    return {"tiny": {"ledger": ledger(runs / "tiny"), "table": table(tiny_table),
                     "export": (runs / "tiny_export.jsonl").read_text().splitlines()},
            "small": {"ledger": ledger(runs / "small"), "table": table(small_table)}}


def differences(a, b, where: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{where}/{k}: only in one" for k in sorted(set(a) ^ set(b))]
        return out + [d for k in sorted(set(a) & set(b)) for d in differences(a[k], b[k], f"{where}/{k}")]
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{where}: {len(a)} rows against {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in differences(x, y, f"{where}[{i}]")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def main() -> None:
    import tempfile

    what, path = sys.argv[1], Path(sys.argv[2])
    with tempfile.TemporaryDirectory() as tmp:
        now = json.loads(json.dumps(record(Path(sys.argv[3]) if len(sys.argv) > 3 else Path(tmp) / "runs")))
    if what == "record":
        path.write_text(json.dumps(now, indent=1) + "\n")
        print(f"recorded {path}")
        return
    diffs = differences(json.loads(path.read_text()), now)
    print("\n".join(diffs[:200]) or "identical")
    print(f"{len(diffs)} differences")
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
