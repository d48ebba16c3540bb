"""The run ledger: atomic files, one transaction per item, config differences, incomplete ledgers."""

import sqlite3

import pytest
import torch
from safetensors.torch import save_file

from dualipo.ledger import (Ledger, atomic_path, atomic_write_text, config_differences, sha256_file,
                            weights_sha256)


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "a" / "x.mp4"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            assert tmp.suffix == ".mp4" and tmp.parent == target.parent
            tmp.write_bytes(b"half")
            raise RuntimeError("crash while writing")
    assert not target.exists() and list(target.parent.iterdir()) == []
    atomic_write_text(target, "whole")
    assert target.read_text() == "whole" and [p.name for p in target.parent.iterdir()] == ["x.mp4"]


def test_config_differences_name_dotted_keys():
    old = {"train": {"beta": 5000.0, "loss": "dpo"}, "rounds": {"num_rounds": 3}, "seed": 0}
    new = {"train": {"beta": 2500.0, "loss": "dpo"}, "rounds": {"num_rounds": 3}, "seed": 1}
    assert config_differences(old, new) == ["seed: 0 -> 1", "train.beta: 5000.0 -> 2500.0"]
    assert config_differences(old, old) == []


def _ledger(tmp_path) -> Ledger:
    return Ledger.create(tmp_path, {"seed": 0}, [("p0", "a red circle"), ("p1", "a blue square")], {"k": "v"})


def test_ledger_records_items_once_and_times_stages(tmp_path):
    ledger = _ledger(tmp_path)
    assert ledger.prompts() == [("p0", "a red circle"), ("p1", "a blue square")]
    assert ledger.meta()["k"] == "v" and ledger.config() == {"seed": 0}
    rec = {"videos": ["a.mp4", "b.mp4"], "dimension": "alignment", "mode": "pairwise", "verdict": "A",
           "certainty": 0.75, "votes": {"A": 3, "B": 1}, "abstentions": 0,
           "samples": [{"order": "AB", "text": "Answer: A", "raw_verdict": "A", "verdict": "A"}]}
    ledger.add_judgment(1, "p0", rec)
    ledger.add_judgment(1, "p0", rec)  # a resumed unit judged again: recorded once
    assert len(ledger.judgments(1)) == 1
    ledger.add_video(1, "train", "p0", 7, 0, "v.mp4", "ab", "g")
    ledger.add_video(1, "train", "p0", 7, 0, "v.mp4", "ab", "g")
    assert len(ledger.videos(1, "train")) == 1
    ledger.start_stage(1, "sample")
    ledger.finish_stage(1, "sample", note="n")
    first = ledger.stage(1, "sample")["wall_s"]
    ledger.start_stage(1, "sample")  # a stage rerun adds its time
    ledger.finish_stage(1, "sample")
    assert ledger.stage(1, "sample")["status"] == "done" and ledger.stage(1, "sample")["wall_s"] >= first
    ledger.add_metrics(1, "judge", {"judgments": 4.0, "accuracy": None})
    assert ledger.metric_records() == [{"round": 1, "stage": "judge", "judgments": 4.0, "accuracy": None}]
    ledger.close()
    assert sqlite3.connect(tmp_path / "ledger.sqlite").execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_an_interrupted_ledger_creation_is_never_trusted(tmp_path):
    sqlite3.connect(tmp_path / "ledger.sqlite").close()  # the file exists, its first transaction never committed
    with pytest.raises(ValueError, match="never completely initialised"):
        Ledger.open(tmp_path)
    with pytest.raises(ValueError, match="holds no run ledger"):
        Ledger.open(tmp_path / "elsewhere")


def test_weights_hash_ignores_metadata(tmp_path):
    t = {"w": torch.arange(6.0).reshape(2, 3)}
    save_file(t, str(tmp_path / "a.safetensors"), metadata={"order": "x,y"})
    save_file(t, str(tmp_path / "b.safetensors"), metadata={"order": "y,x"})
    assert sha256_file(tmp_path / "a.safetensors") != sha256_file(tmp_path / "b.safetensors")
    assert weights_sha256(tmp_path / "a.safetensors") == weights_sha256(tmp_path / "b.safetensors")
    save_file({"w": t["w"] + 1}, str(tmp_path / "c.safetensors"))
    assert weights_sha256(tmp_path / "c.safetensors") != weights_sha256(tmp_path / "a.safetensors")
