"""The real CLI, as a user runs it: subprocesses of the installed `dualipo` entry point."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from dualipo.config import load_config
from dualipo.video import read_video

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def run(args, cwd, check=True):
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, shell=isinstance(args, str))
    if check:
        assert p.returncode == 0, p.stderr
    return p


def test_config_prints_resolved_values(tmp_path):
    p = run(["dualipo", "config", "--preset", "tiny", "train.beta=2500", "rounds.num_rounds=2"], tmp_path)
    cfg = json.loads(p.stdout)
    assert cfg["train"]["beta"] == 2500.0 and cfg["rounds"]["num_rounds"] == 2


@pytest.mark.parametrize("override, message", [("train.bta=1", "train.bta"),
                                                ("train.beta=abc", "train.beta: expected float"),
                                                ("sampling.videos_per_prompt=1", "expected a value >= 2")])
def test_bad_config_fails_before_work(tmp_path, override, message):
    p = run(["dualipo", "world", "sample", "--n", "2", "--out", "out", override], tmp_path, check=False)
    assert p.returncode == 2 and message in p.stderr
    assert not (tmp_path / "out").exists()


def test_world_sample_writes_videos_and_jsonl(tmp_path):
    run(["dualipo", "world", "sample", "--preset", "tiny", "--n", "3", "--out", "w", "--split", "eval"], tmp_path)
    records = [json.loads(line) for line in (tmp_path / "w/prompts.jsonl").read_text().splitlines()]
    assert len(records) == 3 and [r["seed"] for r in records] == [0, 1, 2]
    video = read_video(tmp_path / "w" / records[0]["path"])
    assert video.frames.shape == (9, 32, 32, 3)
    assert all(r["oracle"]["overall"] > 0.9 for r in records)
    assert load_config(tmp_path / "w/config.json").world.height == 32
    assert (tmp_path / "w/thumbs/0000.png").is_file()


def _quick_examples():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"<!-- quick-example -->\s*```bash\n(.*?)```", text, flags=re.S)


def test_readme_has_quick_examples():
    assert len(_quick_examples()) >= 2


@pytest.mark.parametrize("block", _quick_examples())
def test_readme_quick_example_runs(block, tmp_path):
    for line in block.strip().splitlines():
        if line.strip() and not line.startswith("#"):
            run(line, tmp_path)
