"""Two CPU processes (gloo) through `accelerate launch` give the single-process losses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parent / "scripts" / "train_tiny.py"


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_two_process_run_matches_single_process(tmp_path):
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "one")], check=True, capture_output=True)
    # `--cpu` would start ONE process; `--multi_gpu` without CUDA starts two in a gloo CPU group
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
              "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
              str(SCRIPT), str(tmp_path / "two")]
    p = subprocess.run(launch, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr[-3000:]
    assert (tmp_path / "one" / "num_processes").read_text() == "1"
    assert (tmp_path / "two" / "num_processes").read_text() == "2"
    one, two = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert len(one) == len(two) == 3
    assert two == pytest.approx(one, rel=1e-4)
    assert (tmp_path / "two" / "generator_lora.safetensors").is_file()
