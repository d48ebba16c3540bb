"""Bad input to `dualipo run`: each fails with a message naming the problem (or, for a critic that only abstains,
ends the round cleanly), and none leaves a run directory that `--resume` would trust."""

import errno
import os

import pytest

from dualipo.cli import main
from rounds_util import TINY, assert_complete, query


def _run(capsys, *args):
    rc = main(["run", *args])
    return rc, capsys.readouterr()


def _resume_refused(capsys, run, message):
    rc, out = _run(capsys, "--out", str(run), "--resume")
    assert rc == 2 and message in out.err


@pytest.mark.parametrize("name, text, message", [
    ("empty.jsonl", "", "holds no prompts"),
    ("empty.txt", "# only a comment\n\n", "holds no prompts"),
    ("bad.jsonl", '{"prompt": "a red circle moving left on a black background"}\n{"prompt": oops}\n',
     "bad.jsonl:2: not valid JSON"),
    ("nofield.jsonl", '{"text": "a red circle"}\n', "nofield.jsonl:1: expected a non-empty string field 'prompt'"),
    ("dup.jsonl", '{"prompt": "a", "id": "x"}\n{"prompt": "b", "id": "x"}\n', "prompt id 'x' appears more than once"),
    ("twice.txt", "a red circle\na red circle\n", "prompt 'a red circle' appears more than once"),
    ("badid.jsonl", '{"prompt": "a", "id": "../x"}\n', "field 'id' must be a string of letters"),
])
def test_bad_prompt_files(tmp_path, capsys, name, text, message):
    (tmp_path / name).write_text(text)
    rc, out = _run(capsys, "--preset", "tiny", f"rounds.prompt_file={tmp_path / name}", "--out", str(tmp_path / "run"))
    assert rc == 2 and message in out.err
    assert not (tmp_path / "run").exists()
    _resume_refused(capsys, tmp_path / "run", "holds no run ledger")


@pytest.mark.parametrize("override, message", [
    ("generator.path={missing}", "no such directory. Expected layout: model_index.json"),
    ("critic.path={missing}", "no such directory. Expected layout: config.json"),
])
def test_missing_checkpoint_directories(tmp_path, capsys, override, message):
    rc, out = _run(capsys, "--preset", "tiny", override.format(missing=tmp_path / "missing"), "--out",
                   str(tmp_path / "run"))
    assert rc == 2 and message in out.err and str(tmp_path / "missing") in out.err
    assert not (tmp_path / "run").exists()


def test_unwritable_run_directory(tmp_path, capsys):
    (tmp_path / "file").write_text("not a directory")
    rc, out = _run(capsys, "--preset", "tiny", "--out", str(tmp_path / "file" / "run"))
    assert rc == 2 and "cannot create the run directory" in out.err
    if os.geteuid() != 0:  # root writes anywhere
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        rc, out = _run(capsys, "--preset", "tiny", "--out", str(locked / "run"))
        assert rc == 2 and "cannot create the run directory" in out.err and not (locked / "run").exists()


def test_a_half_created_run_directory_is_refused(tmp_path, capsys):
    import sqlite3

    (tmp_path / "run").mkdir()
    sqlite3.connect(tmp_path / "run" / "ledger.sqlite").close()  # a crash while the ledger was being created
    _resume_refused(capsys, tmp_path / "run", "never completely initialised")
    rc, out = _run(capsys, "--preset", "tiny", "--out", str(tmp_path / "run"))
    assert rc == 2 and "not empty" in out.err


def test_a_ledger_that_is_not_a_database_and_an_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "ledger.sqlite").write_text("this is not a database\n" * 200)
    _resume_refused(capsys, tmp_path / "run", "is not a run ledger that can be read (file is not a database)")
    assert main(["report", str(tmp_path / "run")]) == 2
    assert "is not a run ledger that can be read" in capsys.readouterr().err
    (tmp_path / "file").write_text("x")
    rc, out = _run(capsys, "--preset", "tiny", "--out", str(tmp_path / "file"))
    assert rc == 2 and "is a file, not a directory" in out.err


def test_a_critic_that_only_abstains_ends_the_round_without_training(tmp_path, capsys, caplog):
    # the tiny preset's critic has random weights: no answer parses, every vote is an abstention
    rc, out = _run(capsys, "--preset", "tiny", "--out", str(tmp_path / "run"))
    assert rc == 0
    run = tmp_path / "run"
    assert query(run, "SELECT value FROM metrics WHERE stage = 'judge' AND name = 'abstention_rate'") == [(1.0,)]
    assert "no confident pairs" in caplog.text and "not trained this round" in caplog.text
    assert query(run, "SELECT status, note FROM stages WHERE round = 1 AND stage = 'train'") == \
        [("skipped", "no confident pairs: nothing to train on")]
    assert query(run, "SELECT count(*) FROM checkpoints") == [(0,)] and not (run / "round_01" / "train").exists()
    assert "round 1 train: no confident pairs: nothing to train on" in out.out
    rc, again = _run(capsys, "--out", str(run), "--resume")
    assert rc == 0 and "| 1 |" in again.out


def test_a_full_disk_stops_the_run_and_resume_completes_it(tmp_path, capsys, monkeypatch):
    real_fsync, calls = os.fsync, {"n": 0}

    def fsync(fd):
        calls["n"] += 1
        if calls["n"] > 12:  # some videos are written, then the disk is full
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    run = tmp_path / "run"
    rc, out = _run(capsys, *TINY, "--out", str(run))
    assert rc == 2 and "No space left on device" in out.err and "--resume" in out.err
    recorded = query(run, "SELECT count(*) FROM videos")[0][0]
    assert 0 < recorded < 2 + 2 * 3 + 2  # stopped midway; what is recorded is complete
    monkeypatch.setattr(os, "fsync", real_fsync)
    rc, out = _run(capsys, "--out", str(run), "--resume")
    assert rc == 0
    assert_complete(run, rounds=1)


def test_resume_refuses_a_changed_prompt_file_or_base_generator(tmp_path):
    from dualipo.config import build_config
    from dualipo.loop.prompts import load_prompt_pool
    from dualipo.loop.setup import open_run as _open_run
    from dualipo.loop.training import base_generator_id

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle moving left on a black background\n# a comment\na blue square growing\n")
    cfg = build_config("tiny", overrides=[f"rounds.prompt_file={prompts}"])
    pool = load_prompt_pool(cfg)
    assert pool == [("f00001", "a red circle moving left on a black background"), ("f00003", "a blue square growing")]
    run = tmp_path / "run"
    _open_run(run, cfg, pool, base_generator_id(cfg), resume=False).close()
    _open_run(run, cfg, pool, base_generator_id(cfg), resume=True).close()  # the same: accepted
    prompts.write_text("a red circle moving left on a black background\n")
    with pytest.raises(ValueError, match="prompt pool changed"):
        _open_run(run, cfg, load_prompt_pool(cfg), base_generator_id(cfg), resume=True)
    with pytest.raises(ValueError, match="base generator's weights changed"):
        _open_run(run, cfg, pool, "another base", resume=True)


def test_resume_ignores_pretrain_settings_and_refuses_a_config_of_the_old_layout(tmp_path, capsys):
    """`pretrain` is not recorded, hashed or compared (only `dualipo pretrain` reads it); a run recorded before
    critic_train and the generator's architecture fields moved cannot be resumed, and says so."""
    import json

    from dualipo.config import build_config, to_dict
    from dualipo.ledger import Ledger
    from dualipo.loop.prompts import load_prompt_pool
    from dualipo.loop.setup import open_run as _open_run
    from dualipo.loop.training import base_generator_id

    cfg = build_config("tiny")
    pool, base, run = load_prompt_pool(cfg), base_generator_id(cfg), tmp_path / "run"
    _open_run(run, cfg, pool, base, resume=False).close()
    assert "pretrain" not in json.loads((run / "config.json").read_text())
    changed = build_config("tiny", overrides=["pretrain.steps=7", "pretrain.lr=0.5"])
    _open_run(run, changed, pool, base, resume=True).close()  # accepted
    with pytest.raises(ValueError, match=r"refusing to resume .*train\.beta: 5000\.0 -> 7\.0"):
        _open_run(run, build_config("tiny", overrides=["train.beta=7"]), pool, base, resume=True)
    old = json.loads(json.dumps(to_dict(cfg)))
    old["critic_train"] = {**old.pop("critic_cold"), **old.pop("critic_refine")}
    old["generator"].update(old["generator"].pop("arch"))
    (tmp_path / "old").mkdir()
    Ledger.create(tmp_path / "old", old, pool, {"prompts_sha256": "x", "generator_base": base}).close()
    for args in ([], ["--preset", "tiny"]):
        rc, out = _run(capsys, "--out", str(tmp_path / "old"), "--resume", *args)
        assert rc == 2 and "recorded config is from an older layout" in out.err and "Traceback" not in out.err


def test_a_tracker_that_is_not_installed_fails_before_anything_is_written(tmp_path, capsys):
    import importlib.util

    if importlib.util.find_spec("tensorboard") is not None:
        pytest.skip("tensorboard is installed here")
    rc, out = _run(capsys, "--preset", "tiny", "rounds.tracker=tensorboard", "--out", str(tmp_path / "run"))
    assert rc == 2 and "pip install 'dualipo[tracking]'" in out.err and not (tmp_path / "run").exists()
