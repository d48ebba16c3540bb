"""Crash safety and scale-out of `dualipo run`, through the real CLI (slow: many process starts).

- SIGKILL at several points of a tiny 2-round run, `--resume` each time: the final ledger has no duplicated and
  no missing items, and the recorded items, the exported preference data and the final metrics equal those of
  an uninterrupted run (same machine and thread count: the sampling contract makes them bit-identical).
- Two CPU processes under `accelerate launch` (gloo): sampling and judging sharded by prompt, training
  data-parallel, one ledger writer.
"""

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rounds_util import TINY, assert_complete, cli, snapshot

# bigger stages than the plain tiny run, so the kills land inside them
ARGS = [*TINY, "rounds.num_rounds=2", "sampling.prompts_per_round=3", "train.num_steps=4", "eval.num_prompts=3"]


def _count(run: Path, sql: str) -> int:
    if not (run / "ledger.sqlite").is_file():
        return 0
    try:
        db = sqlite3.connect(f"file:{run / 'ledger.sqlite'}?mode=ro", uri=True, timeout=1)
        try:
            return db.execute(sql).fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error:  # not created yet
        return 0


KILL_POINTS = [  # (what, condition on the run directory)
    ("a round-1 video is recorded", lambda r: _count(r, "SELECT count(*) FROM videos WHERE split = 'train'") >= 1),
    ("a round-1 judgment is recorded", lambda r: _count(r, "SELECT count(*) FROM judgments") >= 1),
    ("round-1 training checkpointed", lambda r: (r / "round_01/train/checkpoints/step_000001/state.json").is_file()),
    ("round-1 evaluation started", lambda r: _count(r, "SELECT count(*) FROM stages WHERE round = 1 AND "
                                                       "stage = 'evaluate'") >= 1),
    ("round-2 sampling started", lambda r: _count(r, "SELECT count(*) FROM videos WHERE round = 2") >= 1),
    ("round-2 judging started", lambda r: _count(r, "SELECT count(*) FROM judgments WHERE round = 2") >= 1),
]


def _run_until(args, cwd, run: Path, condition) -> str:
    """Start `dualipo run`, SIGKILL it as soon as `condition(run)` holds; returns where it was."""
    p = subprocess.Popen([sys.executable, "-m", "dualipo.cli", "run", *args], cwd=cwd, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    while p.poll() is None:
        if condition(run):
            p.send_signal(signal.SIGKILL)
            p.wait()
            return "killed"
        time.sleep(0.05)
    assert p.returncode == 0
    return "finished before the kill"


@pytest.mark.slow
def test_sigkill_and_resume_equal_an_uninterrupted_run(tmp_path):
    cli(["run", *ARGS, "--out", "clean"], tmp_path)
    run = tmp_path / "crashed"
    outcomes = []
    for i, (what, condition) in enumerate(KILL_POINTS):
        resume = ["--resume"] if i else []
        outcomes.append((what, _run_until([*ARGS, "--out", "crashed", *resume], tmp_path, run, condition)))
    cli(["run", *ARGS, "--out", "crashed", "--resume"], tmp_path)
    assert sum(o == "killed" for _, o in outcomes) >= 4, outcomes
    for d in ("clean", "crashed"):
        assert_complete(tmp_path / d, rounds=2, eval_videos=3, prompts=3)
    clean, crashed = snapshot(tmp_path / "clean"), snapshot(run)
    for table in clean:
        assert crashed[table] == clean[table], table
    for d in ("clean", "crashed"):
        cli(["export", d, "--format", "jsonl", "--out", f"{d}/export.jsonl"], tmp_path)
    assert (run / "export.jsonl").read_text() == (tmp_path / "clean" / "export.jsonl").read_text()
    assert (run / "metrics.jsonl").read_text() == (tmp_path / "clean" / "metrics.jsonl").read_text()


@pytest.mark.slow
def test_two_processes_shard_the_loop_and_one_writes_the_ledger(tmp_path):
    # beta 50, not 5000: DPO multiplies the MSE differences by beta / 2, and with 5000 the rounding of a batch of 1
    # per process against a batch of 2 already moves the second step's loss by 1e-4
    args = [*TINY, "rounds.num_rounds=2", "train.batch_size=2", "train.beta=50"]
    # `--cpu` would start ONE process (accelerate's CPU launcher needs MPI for more); `--multi_gpu` starts two
    # through torchrun, and without CUDA the loop's Accelerator joins them in a gloo CPU group
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              "-m", "dualipo.cli", "-v", "run", *args, "--out", "two"]
    p = subprocess.run(launch, cwd=tmp_path, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-4000:]
    assert p.stdout.count("| base |") == 1  # one table: only the main process reports
    # sharded: of round 1's 3 sampling batches and 2 prompts to judge, the second process did 1 each
    assert "round 1 sampling: process 1 of 2 did 1 of 3 units" in p.stderr
    assert "round 1 judging: process 1 of 2 did 1 of 2 units" in p.stderr
    run = tmp_path / "two"
    assert_complete(run, rounds=2)
    assert snapshot(run)["checkpoints"], "round 1 trained"
    lines = (run / "round_01" / "train" / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2  # one line per optimizer step, written once
    # one process at one thread (torchrun gives each process one): the same batches and the same per-prompt seeds
    # make the same round-1 videos, judgments and pairs, bit for bit; data-parallel training gives the same losses
    # (up to the rounding of the gradient all-reduce, so later rounds agree only approximately)
    cli(["run", *args, "rounds.threads=1", "--out", "one"], tmp_path)
    one, two = snapshot(tmp_path / "one"), snapshot(run)
    first = lambda rows: [r for r in rows if r[0] == 1 and r[1] != "eval"]  # noqa: E731  round 1, not held out
    for table in ("videos", "judgments", "pairs"):
        assert first(two[table]) == first(one[table]) != [], table

    def losses(d):
        lines = (tmp_path / d / "round_01/train/metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines]
    assert losses("two") == pytest.approx(losses("one"), rel=1e-4)


@pytest.mark.slow
def test_fsdp_round_loop_resumes_training_and_matches_one_process(tmp_path):
    """The loop under FSDP2 (2 CPU processes; see tests/scripts/run_fsdp_cpu.py), interrupted inside round 1's
    training and resumed: its training losses are the single-process run's."""
    from dualipo.accelerate_configs import accelerate_config

    args = [*TINY, "rounds.num_rounds=1", "train.batch_size=2", "train.beta=50", "train.num_steps=3",
            "train.checkpoint_every=1"]
    script = Path(__file__).parent / "scripts" / "run_fsdp_cpu.py"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config("fsdp")),
              "--num_processes", "2", "--mixed_precision", "no", str(script)]
    p = subprocess.run([*launch, "--crash-at", "3", "run", *args, "--out", "two"], cwd=tmp_path,
                       capture_output=True, text=True)
    assert p.returncode != 0 and "interrupted before step 3" in p.stderr, p.stderr[-4000:]
    assert "training engine: fsdp, 2 process(es)" in p.stderr, p.stderr[-4000:]
    p = subprocess.run([*launch, "run", "--out", "two", "--resume"], cwd=tmp_path, capture_output=True,
                       text=True)
    assert p.returncode == 0, p.stderr[-4000:]
    assert "training engine: fsdp, 2 process(es)" in p.stderr and "at step 2" in p.stderr
    assert_complete(tmp_path / "two", rounds=1)
    cli(["run", *args, "rounds.threads=1", "--out", "one"], tmp_path)

    def losses(d):
        lines = (tmp_path / d / "round_01/train/metrics.jsonl").read_text().splitlines()
        return [json.loads(x)["loss"] for x in lines]
    assert len(losses("two")) == 3
    assert losses("two") == pytest.approx(losses("one"), rel=1e-4)
