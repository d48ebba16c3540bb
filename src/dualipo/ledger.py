"""The run ledger: one SQLite database per run (`RUN_DIR/ledger.sqlite`, WAL, stdlib `sqlite3`).

It records the resolved config and its hash, the prompt pool, each stage of each round with its status and
wall time, and every item: videos (prompt id, seed, file hash), judgments (every vote and rationale, majority,
certainty), pairs / pointwise labels, generator checkpoints and metrics. A resume does exactly what the ledger
says is not done.

Crash safety: an item's file is written under a temporary name, fsynced and renamed (`atomic_path`), and only
then is its row committed, in its own transaction. A crash therefore never records a half-written item; at
worst it leaves an unrecorded file that the resumed run writes again. Only the main process writes.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

LEDGER = "ledger.sqlite"
SCHEMA_VERSION = "1"
STATUSES = ("running", "done", "skipped")

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (prompt_id TEXT PRIMARY KEY, position INTEGER NOT NULL, prompt TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS stages (
  round INTEGER NOT NULL, stage TEXT NOT NULL, status TEXT NOT NULL CHECK (status IN ('running','done','skipped')),
  started REAL NOT NULL, finished REAL, wall_s REAL NOT NULL DEFAULT 0, cpu_s REAL NOT NULL DEFAULT 0,
  note TEXT NOT NULL DEFAULT '',
  PRIMARY KEY (round, stage));
CREATE TABLE IF NOT EXISTS videos (
  round INTEGER NOT NULL, split TEXT NOT NULL CHECK (split IN ('train','eval')), prompt_id TEXT NOT NULL,
  seed INTEGER NOT NULL, item INTEGER NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, generator TEXT NOT NULL,
  PRIMARY KEY (round, split, prompt_id, seed));
CREATE TABLE IF NOT EXISTS judgments (
  round INTEGER NOT NULL, prompt_id TEXT NOT NULL, dimension TEXT NOT NULL, video_a TEXT NOT NULL,
  video_b TEXT NOT NULL, mode TEXT NOT NULL, verdict TEXT, certainty REAL NOT NULL, votes TEXT NOT NULL,
  abstentions INTEGER NOT NULL, samples TEXT NOT NULL,
  PRIMARY KEY (round, prompt_id, dimension, video_a, video_b));
CREATE TABLE IF NOT EXISTS pairs (
  round INTEGER NOT NULL, idx INTEGER NOT NULL, prompt_id TEXT NOT NULL, chosen TEXT NOT NULL,
  rejected TEXT NOT NULL, certainty REAL NOT NULL, margin REAL NOT NULL, votes TEXT NOT NULL,
  generator TEXT NOT NULL, PRIMARY KEY (round, idx));
CREATE TABLE IF NOT EXISTS points (
  round INTEGER NOT NULL, prompt_id TEXT NOT NULL, video TEXT NOT NULL, dimension TEXT NOT NULL,
  desirable INTEGER NOT NULL, certainty REAL NOT NULL, votes TEXT NOT NULL, generator TEXT NOT NULL,
  PRIMARY KEY (round, video, dimension));
CREATE TABLE IF NOT EXISTS checkpoints (
  round INTEGER NOT NULL, kind TEXT NOT NULL, path TEXT NOT NULL, sha256 TEXT NOT NULL, weights_sha256 TEXT NOT NULL,
  step INTEGER NOT NULL, PRIMARY KEY (round, kind));
CREATE TABLE IF NOT EXISTS metrics (
  round INTEGER NOT NULL, stage TEXT NOT NULL, name TEXT NOT NULL, value REAL,
  PRIMARY KEY (round, stage, name));
"""


# ------------------------------------------------------------------------------------------ files

def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside `path` (same suffix); when the body returns, fsync it, rename it onto
    `path` and fsync the directory. On an exception the temporary file is removed and `path` is untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """Hash of a safetensors file's tensors (names, dtypes, shapes, values), independent of its metadata."""
    import torch
    from safetensors.torch import load_file

    h = hashlib.sha256()
    for name, t in sorted(load_file(str(path)).items()):
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def config_hash(config: Mapping[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ, as 'key: old -> new'."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += config_differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: {json.dumps(a)} -> {json.dumps(b)}")
    return out


# ------------------------------------------------------------------------------------------ the database

class Ledger:
    """A run's SQLite ledger. `Ledger.create` starts a run, `Ledger.open` reopens one (both on the main process)."""

    def __init__(self, path: Path, readonly: bool = False):
        self.path = Path(path)
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        self.db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=60)
        self.db.row_factory = sqlite3.Row
        if not readonly:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")

    @classmethod
    def create(cls, run_dir: Path, config: Mapping[str, Any], prompts: list[tuple[str, str]],
               meta: Mapping[str, str]) -> "Ledger":
        """A new ledger: schema, config, config hash, prompt pool and `meta`, all in one transaction."""
        ledger = cls(run_dir / LEDGER)
        with ledger.transaction() as db:
            for stmt in SCHEMA.strip().split(";\n"):
                if stmt.strip():
                    db.execute(stmt)
            rows = {"schema_version": SCHEMA_VERSION, "config": json.dumps(config, sort_keys=True),
                    "config_hash": config_hash(config), "created": str(time.time()), **meta}
            db.executemany("INSERT INTO meta VALUES (?, ?)", rows.items())
            db.executemany("INSERT INTO prompts VALUES (?, ?, ?)",
                           [(pid, i, text) for i, (pid, text) in enumerate(prompts)])
        return ledger

    @classmethod
    def open(cls, run_dir: Path, readonly: bool = False) -> "Ledger":
        path = Path(run_dir) / LEDGER
        if not path.is_file():
            raise ValueError(f"{run_dir} holds no run ledger ({LEDGER}); it is not a dualipo run directory")
        unreadable = (f"{path} is not a run ledger that can be read ({{}}): the file was damaged or replaced; a run "
                      f"directory's ledger.sqlite is written only by dualipo")
        try:
            ledger = cls(path, readonly=readonly)
        except sqlite3.DatabaseError as e:  # not SQLite at all, or cannot be opened
            raise ValueError(unreadable.format(e)) from None
        try:
            complete = ledger.meta().get("config_hash") is not None
        except sqlite3.OperationalError:  # no meta table yet
            complete = False
        except sqlite3.DatabaseError as e:  # not SQLite at all
            ledger.db.close()
            raise ValueError(unreadable.format(e)) from None
        if not complete:
            ledger.close()
            raise ValueError(f"{path} was never completely initialised (the first run stopped while creating it); "
                             f"delete {run_dir} and start again without --resume")
        return ledger

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def rows(self, sql: str, *args: Any) -> list[sqlite3.Row]:
        return self.db.execute(sql, args).fetchall()

    # ----------------------------------------------------------------------------------- run
    def meta(self) -> dict[str, str]:
        return {r["key"]: r["value"] for r in self.rows("SELECT key, value FROM meta")}

    def config(self) -> dict[str, Any]:
        return json.loads(self.meta()["config"])

    def set_meta(self, key: str, value: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def prompts(self) -> list[tuple[str, str]]:
        return [(r["prompt_id"], r["prompt"]) for r in self.rows("SELECT * FROM prompts ORDER BY position")]

    # ----------------------------------------------------------------------------------- stages
    def stage(self, rnd: int, stage: str) -> sqlite3.Row | None:
        found = self.rows("SELECT * FROM stages WHERE round = ? AND stage = ?", rnd, stage)
        return found[0] if found else None

    def start_stage(self, rnd: int, stage: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO stages (round, stage, status, started) VALUES (?, ?, 'running', ?) "
                       "ON CONFLICT (round, stage) DO UPDATE SET status = 'running', started = excluded.started",
                       (rnd, stage, time.time()))

    def finish_stage(self, rnd: int, stage: str, status: str = "done", note: str = "", cpu_s: float = 0.0) -> None:
        """Mark a stage done or skipped; its wall time (and the main process's CPU time) add to earlier attempts'."""
        assert status in STATUSES[1:], status
        now = time.time()
        with self.transaction() as db:
            db.execute("UPDATE stages SET status = ?, finished = ?, wall_s = wall_s + (? - started), "
                       "cpu_s = cpu_s + ?, note = ? WHERE round = ? AND stage = ?",
                       (status, now, now, cpu_s, note, rnd, stage))

    def stages(self) -> list[sqlite3.Row]:
        return self.rows("SELECT * FROM stages ORDER BY round, started")

    # ----------------------------------------------------------------------------------- items
    def add_video(self, rnd: int, split: str, prompt_id: str, seed: int, item: int, path: str, sha256: str,
                  generator: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO videos VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                       (rnd, split, prompt_id, seed, item, path, sha256, generator))

    def videos(self, rnd: int, split: str) -> list[sqlite3.Row]:
        return self.rows("SELECT * FROM videos WHERE round = ? AND split = ? ORDER BY item", rnd, split)

    def add_judgment(self, rnd: int, prompt_id: str, record: Mapping[str, Any]) -> None:
        """`record`: a `Judgment.to_dict()` whose videos are run-relative paths."""
        a, b = (list(record["videos"]) + [""])[:2]
        with self.transaction() as db:
            db.execute("INSERT OR IGNORE INTO judgments VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (rnd, prompt_id, record["dimension"], a, b, record["mode"], record["verdict"],
                        record["certainty"], json.dumps(record["votes"]), record["abstentions"],
                        json.dumps(record["samples"])))

    def judgments(self, rnd: int) -> list[sqlite3.Row]:
        return self.rows("SELECT * FROM judgments WHERE round = ? ORDER BY prompt_id, dimension, video_a, video_b",
                         rnd)

    def replace_preferences(self, rnd: int, table: str, rows: list[tuple]) -> None:
        """All pairs (or points) of a round in one transaction: a rerun of the stage replaces them."""
        assert table in ("pairs", "points"), table
        width = 9 if table == "pairs" else 8
        with self.transaction() as db:
            db.execute(f"DELETE FROM {table} WHERE round = ?", (rnd,))
            db.executemany(f"INSERT INTO {table} VALUES ({', '.join('?' * width)})", rows)

    def preferences(self, table: str, rnd: int | None = None) -> list[sqlite3.Row]:
        assert table in ("pairs", "points"), table
        where, args = ("WHERE round = ?", (rnd,)) if rnd is not None else ("", ())
        order = "round, idx" if table == "pairs" else "round, prompt_id, video, dimension"
        return self.rows(f"SELECT * FROM {table} {where} ORDER BY {order}", *args)

    def add_checkpoint(self, rnd: int, kind: str, path: str, sha256: str, weights_sha256: str, step: int) -> None:
        """`sha256`: the file (integrity); `weights_sha256`: its tensors (identity: safetensors metadata such as
        peft's unordered target-module list may differ between byte-different files of the same weights)."""
        with self.transaction() as db:
            db.execute("INSERT OR REPLACE INTO checkpoints VALUES (?, ?, ?, ?, ?, ?)",
                       (rnd, kind, path, sha256, weights_sha256, step))

    def checkpoints(self, kind: str) -> list[sqlite3.Row]:
        return self.rows("SELECT * FROM checkpoints WHERE kind = ? ORDER BY round", kind)

    def add_metrics(self, rnd: int, stage: str, values: Mapping[str, float | None]) -> None:
        with self.transaction() as db:
            db.executemany("INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)",
                           [(rnd, stage, k, v) for k, v in values.items()])

    def metrics(self) -> list[sqlite3.Row]:
        return self.rows("SELECT * FROM metrics ORDER BY round, rowid")

    def metric_records(self) -> list[dict[str, Any]]:
        """One record per (round, stage): the metrics.jsonl view of the ledger."""
        out: dict[tuple[int, str], dict[str, Any]] = {}
        for r in self.metrics():
            out.setdefault((r["round"], r["stage"]), {"round": r["round"], "stage": r["stage"]})[r["name"]] = r["value"]
        return list(out.values())
