"""`dualipo export RUN_DIR --format jsonl|parquet --out FILE`: a run's preference data in TRL conventions.

- Pairwise runs (DPO): `prompt`, `chosen`, `rejected` (video paths);
- pointwise runs (KTO): `prompt`, `completion` (video path), `label` (true = desirable);

plus provenance columns: `round`, `prompt_id`, `votes` (the critic's votes on the direct comparison of the two
videos as chosen / rejected / tie counts; pointwise: Good / Normal / Bad counts), `certainty`, `margin`
(pairwise), `dimension` (pointwise) and `generator_checkpoint` (the identity of the generator that sampled the
videos: base weights plus the adapters of the earlier rounds). Video paths are written relative to the output
file's folder, so `dualipo train --pairs FILE` reads an exported pair file as it is.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from dualipo.ledger import Ledger, atomic_path
from dualipo.preferences import preference_kind

FORMATS = ("jsonl", "parquet")
POINT_VOTES = ("Good", "Normal", "Bad")


def preference_rows(run_dir: str | Path, relative_to: str | Path) -> list[dict]:
    """The run's pairs (or points) as TRL-style records, video paths relative to `relative_to`."""
    run_dir = Path(run_dir)
    ledger = Ledger.open(run_dir)
    try:
        prompts = dict(ledger.prompts())
        kind = preference_kind(ledger.config()["train"]["loss"])
        rows = ledger.preferences(kind)
    finally:
        ledger.close()

    def path(rel: str) -> str:
        return os.path.relpath(run_dir / rel, relative_to)

    if kind == "pairs":
        return [{"prompt": prompts[r["prompt_id"]], "chosen": path(r["chosen"]), "rejected": path(r["rejected"]),
                 "round": r["round"], "prompt_id": r["prompt_id"], "votes": json.loads(r["votes"]),
                 "certainty": r["certainty"], "margin": r["margin"], "generator_checkpoint": r["generator"]}
                for r in rows]
    out = []
    for r in rows:
        votes = json.loads(r["votes"])
        out.append({"prompt": prompts[r["prompt_id"]], "completion": path(r["video"]), "label": bool(r["desirable"]),
                    "round": r["round"], "prompt_id": r["prompt_id"], "dimension": r["dimension"],
                    "votes": {v: votes.get(v, 0) for v in POINT_VOTES}, "certainty": r["certainty"],
                    "generator_checkpoint": r["generator"]})
    return out


def export_preferences(run_dir: str | Path, fmt: str, out: str | Path) -> tuple[Path, int]:
    """Write the run's preference data to `out` (atomically); returns (path, number of rows)."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: expected one of {list(FORMATS)}")
    out = Path(out)
    rows = preference_rows(run_dir, out.resolve().parent)
    if not rows:
        raise ValueError(f"{run_dir} holds no preference data yet: no round has finished its pairs stage with "
                         f"confident judgments")
    with atomic_path(out) as tmp:
        if fmt == "jsonl":
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        else:
            _write_parquet(tmp, rows)
    return out, len(rows)


def _write_parquet(path: Path, rows: list[dict]) -> None:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ValueError("--format parquet needs pyarrow: pip install 'dualipo[parquet]'") from None
    pq.write_table(pa.Table.from_pylist(rows), str(path))
