"""The labels file: JSONL in the seed format (`dualipo critic import` / `critic cold-start` read it as is), written
so that no label is ever lost or duplicated.

- Each label is one appended line, flushed and fsynced before the request returns (a line torn by a crash
  mid-append was never acknowledged, and is cut off when the file is read back); an undo rewrites the file
  without the label through a temporary file, fsync and rename. All of it under one lock, so concurrent requests
  (two browser tabs) neither interleave nor duplicate.
- One annotator labels an item once: a second label for the same (item, annotator) is refused.
- A restarted server reads the file back and goes on where its annotators stopped. Lines that other tools wrote
  (seed records without the app's keys) are kept and count for the items they match.
- One server per labels file: a second one is refused while the first holds `LABELS.lock`.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import threading
import time
from pathlib import Path

from dualipo.annotate.items import Item, item_id
from dualipo.critic_training.seed import SeedRecord, validate
from dualipo.jsonl import read_jsonl
from dualipo.ledger import fsync_dir

log = logging.getLogger(__name__)


class DuplicateLabel(Exception):
    pass


class LabelStore:
    def __init__(self, path: str | Path):
        self.path = Path(path).resolve()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._lockfile = open(self.path.with_suffix(self.path.suffix + ".lock"), "w")
        try:
            fcntl.flock(self._lockfile, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lockfile.close()
            raise ValueError(f"another annotation server is writing {self.path} (it holds {self._lockfile.name})")
        self.records: list[tuple[str, dict]] = []  # (item id, record) for every line of the file, in order
        self._drop_torn_tail()
        if self.path.is_file():
            for n, rec in read_jsonl(self.path, "labels file"):
                r = validate(rec, f"{self.path}:{n}", self.path.parent, check_files=False)
                self.records.append((rec.get("item") or item_id(r.prompt, r.videos, r.dimension), rec))

    def _drop_torn_tail(self) -> None:
        """A crash in the middle of an append leaves a last line without its newline: that label was never
        acknowledged (the request had not returned), so it is cut off, not read back half-written."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data[:data.rfind(b"\n") + 1]
            log.warning("%s: dropping an unfinished last line (%d bytes) left by an interrupted write", self.path,
                        len(data) - len(keep))
            with self.path.open("r+b") as f:
                f.truncate(len(keep))
                os.fsync(f.fileno())

    def close(self) -> None:
        fcntl.flock(self._lockfile, fcntl.LOCK_UN)
        self._lockfile.close()

    def labelled(self, annotator: str) -> set[str]:
        """Ids of the items this annotator has labelled."""
        with self._lock:
            return {i for i, r in self.records if r.get("annotator", "") == annotator}

    def add(self, item: Item, label: str, reason: str, annotator: str = "", session: str = "") -> dict:
        """Append one label (fsynced); DuplicateLabel if this annotator labelled the item already."""
        if label not in item.options:
            raise ValueError(f"label {label!r} is not one of {'|'.join(item.options)}")
        rec = SeedRecord(item.prompt, item.videos, item.dimension, label, reason).to_json(self.path.parent)
        rec |= {"item": item.id, "swapped": item.swapped, "annotator": annotator, "session": session,
                "time": round(time.time(), 3)}
        line = json.dumps(rec) + "\n"
        with self._lock:
            if any(i == item.id and r.get("annotator", "") == annotator for i, r in self.records):
                raise DuplicateLabel(f"{annotator or 'this annotator'} has labelled item {item.id} already")
            with self.path.open("a") as f:
                f.write(line)
                f.flush()
                os.fsync(f.fileno())
            self.records.append((item.id, rec))
        return rec

    def undo(self, session: str) -> dict | None:
        """Remove the latest label this session wrote (the file rewritten atomically); None if it wrote none."""
        with self._lock:
            idx = next((i for i in range(len(self.records) - 1, -1, -1)
                        if session and self.records[i][1].get("session") == session), None)
            if idx is None:
                return None
            rest = self.records[:idx] + self.records[idx + 1:]
            tmp = self.path.with_name(self.path.name + ".tmp")
            with tmp.open("w") as f:
                f.write("".join(json.dumps(r) + "\n" for _, r in rest))
                f.flush()
                os.fsync(f.fileno())
            tmp.replace(self.path)
            fsync_dir(self.path.parent)
            removed, self.records = self.records[idx][1], rest
            return removed
