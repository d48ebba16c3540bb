"""A run's round-k held-out videos as a video directory (`prompts.jsonl` + videos/), for `dualipo critic seed`:
what a critic must judge after k rounds of preference training.

    python scripts/run_eval_videos.py RUN_DIR ROUND OUT_DIR

Reads the run's ledger (round k's `eval` videos and their held-out prompts) and copies the videos.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from pathlib import Path

from dualipo.config import load_config
from dualipo.toy.world import prompt_pools


def main(run: str, k: int, out: str) -> Path:
    run_dir, out_dir = Path(run), Path(out)
    held = prompt_pools(load_config(run_dir / "config.json").world)[1]
    db = sqlite3.connect(f"file:{run_dir / 'ledger.sqlite'}?mode=ro", uri=True)
    rows = db.execute("SELECT prompt_id, seed, path FROM videos WHERE round = ? AND split = 'eval' ORDER BY path",
                      (k,)).fetchall()
    db.close()
    if not rows:
        raise SystemExit(f"{run_dir}: no held-out videos of round {k} in the ledger")
    (out_dir / "videos").mkdir(parents=True, exist_ok=True)
    with (out_dir / "prompts.jsonl").open("w") as f:
        for pid, seed, path in rows:
            name = Path(path).name
            shutil.copy(run_dir / path, out_dir / "videos" / name)
            f.write(json.dumps({"id": Path(name).stem, "prompt": held[int(pid[1:])], "seed": seed,
                                "path": f"videos/{name}", "variant": "generator"}) + "\n")
    print(f"wrote {len(rows)} videos and {out_dir / 'prompts.jsonl'}")
    return out_dir


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
