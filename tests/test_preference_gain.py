"""`benchmarks/preference_gain.py`: its selection of training items (hand-computed) and a real run through its
command line on tiny random models (rounds resample from the merged policy, a longer run reuses finished rounds,
the summary reads the runs back)."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "preference_gain.py"
spec = importlib.util.spec_from_file_location("preference_gain", SCRIPT)
pg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pg)


def test_select_from_scores():
    vids = ["v0", "v1", "v2", "v3"]
    groups = [("p", vids, [0.9, 0.5, 0.45, 0.1], None)]
    P, A, B, D = pg._select("all_pairs", 0.1, groups)  # every pair at least 0.1 apart, the better first
    assert list(zip(A, B)) == [("v0", "v1"), ("v0", "v2"), ("v0", "v3"), ("v1", "v3"), ("v2", "v3")]
    assert P == ["p"] * 5 and D is None
    assert pg._select("best_vs_worst", 0.1, groups)[1:3] == (["v0"], ["v3"])
    assert pg._select("best_vs_worst", 0.9, groups)[0] == []  # gap 0.8 < 0.9
    assert pg._select("best", 0.1, groups)[1:3] == (["v0"], None)
    # points: mean 0.4875; v0 (+0.41) desirable, v3 (-0.39) undesirable, v1 / v2 within 0.1 of the mean
    P, A, B, D = pg._select("points", 0.1, groups)
    assert (A, B, D) == (["v0", "v3"], None, [True, False])


def test_select_from_judgments():
    """Critic labels: all_pairs is every confident judgment; points counts each video's wins against losses."""
    vids = ["v0", "v1", "v2"]
    won = [(0, 1), (0, 2), (2, 1), (1, 0)]  # v0: 2 wins 1 loss; v1: 1 win 2 losses; v2: 1 win 1 loss
    groups = [("p", vids, [0.67, 0.33, 0.5], won)]
    assert list(zip(*pg._select("all_pairs", 0.1, groups)[1:3])) == [("v0", "v1"), ("v0", "v2"), ("v2", "v1"),
                                                                      ("v1", "v0")]
    P, A, B, D = pg._select("points", 0.1, groups)
    assert (P, A, D) == (["p", "p"], ["v0", "v1"], [True, False])


def _run(tmp_path, *args):
    cmd = [sys.executable, str(SCRIPT), *args, "--out", str(tmp_path / "pg"), "--preset", "tiny"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return p.stdout


@pytest.mark.parametrize("labels", ["oracle", "web"])
def test_run_rounds_extend_and_summary(tmp_path, labels):
    common = ["--arm", "a", "--prompts", "2", "--n", "2", "--eval-prompts", "2", "--gap", "0", "--labels", labels]
    extra = (["train.loss=sft", "world.web.colour=1"] if labels == "web"
             else ["train.lambda_real=1"])  # DPO + lambda2 on the curated set
    _run(tmp_path, "run", *common, "--rounds", "1", *extra)
    first = json.loads((tmp_path / "pg" / "a" / "seed0.json").read_text())
    assert first["complete"] and len(first["rounds"]) == 1
    r1 = first["rounds"][0]
    assert r1["items"] == (4 if labels == "web" else 2)  # 2 prompts x 2 renders, or one pair per prompt (gap 0)
    assert (tmp_path / "pg" / "a" / "seed0" / "round1" / "generator_lora.safetensors").is_file()
    assert ("nll_real" in r1["last_metrics"]) == (labels == "oracle")

    out = _run(tmp_path, "run", *common, "--rounds", "2", *extra)  # extends: round 1 is re-applied, not redone
    assert "round 1: reused" in out
    second = json.loads((tmp_path / "pg" / "a" / "seed0.json").read_text())
    assert second["rounds"][0] == r1 and [r["round"] for r in second["rounds"]] == [1, 2]

    with pytest.raises(AssertionError, match="another recipe"):  # a different recipe is refused, not mixed in
        _run(tmp_path, "run", *common, "--rounds", "3", "train.beta=1", *extra)

    s = json.loads(_run(tmp_path, "summary", "--oracle-arm", "a", "--kto-critic-arm", "a", "--web-control-arm", "a"))
    assert s["seeds"] == [0] and s["control_gain"] == s["web_control_gain"] and s["curated_gain"] == [None] * 3
    gains = [r["eval"]["overall"] - second["base"]["overall"] for r in second["rounds"]]
    assert s["oracle_gain_1_round"] == {"arm": "a", "mean": pytest.approx(gains[0], abs=1e-4), "std": 0.0,
                                        "seeds": [0]}
    assert s["oracle_gain_2_rounds"]["mean"] == pytest.approx(gains[1], abs=1e-4)
    assert s["oracle_gain_3_rounds"] is None and s["kto_critic_gain_1_round"] == s["oracle_gain_1_round"]


def test_headroom_scores_the_shared_round1_samples(tmp_path):
    """`headroom` samples the base once (the cache the arms share), then reads it back (here a cache whose two
    prompts' samples were swapped); per dimension the best of N is at least the mean and at least the
    best-overall sample's score."""
    args = ["headroom", "--prompts", "2", "--n", "2"]
    _run(tmp_path, *args)
    cache = tmp_path / "pg" / "_samples" / "seed0_p2_n2.npz"
    z = np.load(cache)
    frames = z["frames"][[2, 3, 0, 1]]
    np.savez(cache, frames=frames, seeds=z["seeds"])
    h = json.loads(_run(tmp_path, *args))
    prompts = pg.prompt_pools(pg.build_config("tiny").world)[0][:2]
    overall = [[pg.score(p, pg.Video(frames[2 * i + k], 8)).overall for k in range(2)] for i, p in enumerate(prompts)]
    assert h["dims"]["overall"]["mean"] == pytest.approx(np.mean(overall), abs=1e-4)
    assert h["dims"]["overall"]["best_of_n"] == h["dims"]["overall"]["at_best_overall"] == \
        pytest.approx(np.mean([max(o) for o in overall]), abs=1e-4)
    for d in h["dims"].values():
        assert d["mean"] <= d["best_of_n"] + 1e-9 and d["at_best_overall"] <= d["best_of_n"] + 1e-9
