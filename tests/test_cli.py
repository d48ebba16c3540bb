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


# every subcommand that takes overrides: (argv before the options, options as groups); a group never splits an
# option from its values
OPTIONED = [
    (["run"], [["--out", "o"], ["--resume"], ["--preset", "tiny"]]),
    (["ablate"], [["--out", "o"], ["--arms", "ipo", "dual_ipo"], ["--seeds", "0", "1"], ["--table-only"]]),
    (["evaluate"], [["--prompts", "p.txt"], ["--lora", "a"], ["--lora", "b"], ["--out", "o.json"]]),
    (["config"], [["--preset", "tiny"], ["--config", "c.yaml"]]),
    (["world", "sample"], [["--n", "2"], ["--out", "o"], ["--split", "eval"], ["--seed", "3"]]),
    (["pretrain"], [["--out", "o"], ["--preset", "tiny"]]),
    (["sample"], [["--out", "o"], ["--prompt", "a red circle"], ["--seeds", "0", "1"], ["--num-prompts", "2"]]),
    (["train"], [["--pairs", "p.jsonl"], ["--out", "o"]]),
    (["critic", "videos"], [["--out", "o"], ["--generator"], ["--prompts", "2"], ["--seed", "1"]]),
    (["critic", "seed"], [["--videos", "{d}", "{d}"], ["--out", "s.jsonl"], ["--dimensions", "motion", "colour"]]),
    (["critic", "import"], [["--out", "o"], ["src.csv"]]),
    (["critic", "cold-start"], [["--heldout", "h.jsonl"], ["--out", "o"], ["--no-resume"]]),
    (["critic", "caption"], [["--videos", "{d}"], ["--heldout", "{d}", "{d}"], ["--out", "o"]]),
    (["critic", "refine"], [["--judgments", "j.jsonl"], ["--out", "o"], ["--no-resume"], ["--round", "2"]]),
    (["critic", "eval"], [["--pairs", "p.jsonl"], ["--limit", "2"], ["--seed", "1"], ["--judgments", "j.jsonl"]]),
    (["annotate"], [["--stats", "l.jsonl"], ["--against", "oracle"], ["--token", "abc="], ["--dimensions", "motion"]]),
    (["plan"], [["--gpus", "8"], ["--published-critic", "qwen2.5-vl-7b-instruct"], ["--json"]]),
]
OVERRIDES = ["train.beta=2500", "eval.seeds=[2,3]", "seed=1"]


@pytest.mark.parametrize("command, groups", OPTIONED, ids=[" ".join(c) for c, _ in OPTIONED])
def test_options_and_overrides_mix_in_any_order(command, groups, tmp_path):
    """Overrides before, after and between the options (right after a list option too) parse alike."""
    from dualipo.cli import build_parser

    groups = [[w.format(d=tmp_path) for w in g] for g in groups]
    orders = [[*OVERRIDES, *sum(groups, [])], [*sum(groups, []), *OVERRIDES]]
    mixed = []  # one override after each group, the rest at the end
    for i, g in enumerate(groups):
        mixed += [*g, *OVERRIDES[i:i + 1]]
    orders.append(mixed + OVERRIDES[len(groups):])
    parsed = [vars(build_parser().parse_args([*command, *argv])) for argv in orders]
    for ns in parsed:
        ns.pop("func")
    assert parsed[0] == parsed[1] == parsed[2] and parsed[0]["overrides"] == OVERRIDES


@pytest.mark.parametrize("argv, key", [  # removed flags and the config keys that replaced them
    (["critic", "seed", "--videos", ".", "--out", "s", "--pairs", "6"], "critic_cold.seed_pairs"),
    (["critic", "seed", "--videos", ".", "--out", "s", "--noise", "0"], "critic_cold.seed_noise"),
    (["critic", "seed", "--videos", ".", "--out", "s", "--seed", "7"], "critic_cold.seed"),
    (["critic", "cold-start", "--out", "o", "--seed-file", "s.jsonl"], "critic_cold.seed_file"),
    (["critic", "cold-start", "--out", "o", "--caption-videos", "a", "b"], "critic_cold.caption_videos"),
    (["critic", "refine", "--judgments", "j", "--out", "o", "--seed-file", "s.jsonl"], "critic_refine.seed_file"),
    (["ablate", "--out", "o", "--rounds", "2"], "rounds.num_rounds"),
    (["evaluate", "--prompts", "p", "--out", "o", "--seeds", "2", "3"], "eval.seeds"),
    (["evaluate", "--prompts", "p", "--out", "o", "--generator", "shipped"], "generator.path"),
])
def test_removed_flags_fail_and_their_config_keys_parse(argv, key, capsys):
    from dualipo.cli import build_parser

    flag = next(w for w in argv[::-1] if w.startswith("--"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    assert f"unrecognized arguments: {flag}" in capsys.readouterr().err
    given = argv[:argv.index(flag)] + [f"{key}=1"]
    assert build_parser().parse_args(given).overrides == [f"{key}=1"]

