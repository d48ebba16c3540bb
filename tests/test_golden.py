"""The round loop's behaviour against a golden run recorded before its redesign (issue 28): a tiny 2-round run
(ledger items, judgments with their sampled paths, pairs, checkpoints by weights, metrics, stage notes, the export,
the table) and one round of the small preset with the shipped models, all identical (`scripts/golden.py`)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_the_loop_reproduces_the_golden_run(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the thread count the golden run was recorded at
    p = subprocess.run([sys.executable, str(ROOT / "scripts" / "golden.py"), "compare",
                        str(ROOT / "tests" / "assets" / "golden" / "golden.json"), str(tmp_path / "runs")],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stdout[-6000:] + p.stderr[-3000:]
    assert p.stdout.strip().endswith("0 differences")
