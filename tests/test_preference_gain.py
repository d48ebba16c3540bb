"""The preference-gain benchmark's arms as `dualipo ablate` arms (`--arms-file`), through the real CLI on tiny real
models: oracle labels (with lambda2) and the web control as arms-file arms, a row after every round, gains over the
base and the paired comparison with a named reference read back from the ledgers, finished runs reused, another
recipe refused; the shipped arms file; `benchmarks/headroom.py` on the round-1 samples every arm shares.
(The selection of pairs and KTO points from judgments is the loop's: tests/test_preferences.py.)"""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from dualipo.ablate import arm_config, arms, file_arms
from dualipo.config import build_config
from dualipo.ledger import Ledger
from dualipo.loop.summary import round_rows
from dualipo.toy.oracle import score
from dualipo.video import read_video
from rounds_util import N, P, TINY, cli, query

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("headroom", ROOT / "benchmarks" / "headroom.py")
hr = importlib.util.module_from_spec(spec)
spec.loader.exec_module(hr)

# oracle_noise=1: the tiny random generator's videos are all oracle ties; every tie becomes a verdict, so pairs exist
ARMS = """
[a]
label = "DPO, oracle labels"
extends = "oracle"
overrides = ["train.lambda_real=1", "train.beta=%s", "critic.oracle_noise=1"]

[w]
extends = "control_web"
"""
CMD = ["ablate", *TINY, "--out", "pg", "--arms-file", "arms.toml", "rounds.num_rounds=2", "--seeds", "0",
       "world.web.colour=1"]


@pytest.fixture(scope="module")
def pg(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pg")
    (tmp / "arms.toml").write_text(ARMS % 500)
    return tmp, cli(CMD, tmp)


def test_arms_file_arms_run_the_loop_and_tabulate(pg):
    tmp, p = pg
    out = tmp / "pg"
    for arm in ("a", "w"):
        assert query(out / arm / "seed0", "SELECT value FROM meta WHERE key = 'finished'")
    cfg = json.loads((out / "a" / "seed0" / "config.json").read_text())
    assert cfg["critic"]["backend"] == "oracle" and cfg["train"]["lambda_real"] == 1 and cfg["train"]["beta"] == 500
    # lambda2: the denoising loss on the curated set is trained and logged, every round
    assert [r for r, in query(out / "a" / "seed0", "SELECT round FROM metrics WHERE name = 'final_nll_real'")] == [1, 2]
    # the web control trains on one render per sampled video, every round
    assert query(out / "w" / "seed0", "SELECT round, value FROM metrics WHERE stage = 'train' AND name = 'items'") \
        == [(1, P * N), (2, P * N)]
    rows = {r["label"]: r for r in json.loads((out / "ablation.json").read_text())["rows"]}
    assert list(rows) == ["base generator (round 0)", "DPO, oracle labels, 1 round", "DPO, oracle labels, 2 rounds",
                          "w, 1 round", "w, 2 rounds"]  # an arms-file arm has a row after every round
    per = {a: round_rows(Ledger.open(out / a / "seed0")) for a in ("a", "w")}
    assert rows["base generator (round 0)"]["arm"] == "a" and rows["base generator (round 0)"]["gain"] is None
    for k in (1, 2):  # the gain over the base is the run's own round k minus its round 0
        assert rows[f"w, {k} round{'s' if k > 1 else ''}"]["gain"] == pytest.approx(
            per["w"][k]["oracle"] - per["w"][0]["oracle"])
    assert "vs" not in rows["w, 2 rounds"] and "gain" not in (out / "ablation.md").read_text().split("\n")[2]


def test_reference_arm_paired_difference_and_share(pg):
    tmp, _ = pg
    out = tmp / "pg"
    p = cli([*CMD, "--table-only", "--reference", "a"], tmp)
    assert "finished earlier" not in p.stderr
    data = json.loads((out / "ablation.json").read_text())
    assert data["references"] == ["a"]
    per = {a: round_rows(Ledger.open(out / a / "seed0")) for a in ("a", "w")}
    w2 = {r["label"]: r for r in data["rows"]}["w, 2 rounds"]
    gain = {a: per[a][2]["oracle"] - per[a][0]["oracle"] for a in ("a", "w")}
    assert w2["vs"]["a"]["delta"] == pytest.approx(per["w"][2]["oracle"] - per["a"][2]["oracle"])
    assert w2["vs"]["a"]["delta_se"] is None  # one seed
    assert w2["vs"]["a"]["share"] == (pytest.approx(gain["w"] / gain["a"]) if gain["a"] else None)
    md = (out / "ablation.md").read_text()
    head = md.splitlines()[2]
    assert "| vs web control | gain | vs a | share of a's gain | critic acc |" in head
    assert "share of ARM's gain" in md and md.count("\n| ") == 6


def test_finished_runs_reused_and_another_recipe_refused(pg):
    tmp, _ = pg
    again = cli(CMD, tmp)
    assert again.stderr.count("finished earlier, reused") == 2
    (tmp / "arms.toml").write_text(ARMS % 1)
    try:
        other = cli(CMD, tmp, check=False)
    finally:
        (tmp / "arms.toml").write_text(ARMS % 500)
    assert other.returncode == 2 and "refusing to resume" in other.stderr  # not mixed in


def test_headroom_scores_the_round1_samples_every_arm_shares(pg):
    """Round 1 samples the base with the same seeds in every arm; headroom scores them per dimension: the best of
    N is at least the mean and at least the best-overall sample's score."""
    tmp, _ = pg
    out = tmp / "pg"
    sampled = {a: query(out / a / "seed0", "SELECT prompt_id, seed, sha256 FROM videos WHERE round = 1 AND split = "
                                          "'train' ORDER BY item") for a in ("a", "w")}
    assert sampled["a"] == sampled["w"] and len(sampled["a"]) == P * N
    h = hr.headroom(out / "a" / "seed0")
    prompts = dict(query(out / "a" / "seed0", "SELECT prompt_id, prompt FROM prompts"))
    rows = query(out / "a" / "seed0", "SELECT prompt_id, path FROM videos WHERE round = 1 AND split = 'train'")
    overall: dict[str, list[float]] = {}
    for pid, path in rows:
        overall.setdefault(pid, []).append(score(prompts[pid], read_video(out / "a" / "seed0" / path)).overall)
    assert h["prompts"] == P and h["n"] == [N]
    assert h["dims"]["overall"]["mean"] == pytest.approx(np.mean([np.mean(o) for o in overall.values()]), abs=1e-4)
    assert h["dims"]["overall"]["best_of_n"] == h["dims"]["overall"]["at_best_overall"] == \
        pytest.approx(np.mean([max(o) for o in overall.values()]), abs=1e-4)
    for d in h["dims"].values():
        assert d["mean"] <= d["best_of_n"] + 1e-9 and d["at_best_overall"] <= d["best_of_n"] + 1e-9
    with pytest.raises(ValueError, match="no train videos of round 9"):
        hr.headroom(out / "a" / "seed0", 9)


def test_shipped_arms_file_maps_the_benchmark_recipes():
    base = build_config("small")
    table = file_arms(ROOT / "benchmarks" / "preference_gain.toml", arms(base))
    cfg = {n: arm_config("small", None, ["rounds.num_rounds=3"], a, 0) for n, a in table.items()}
    assert {n for n, c in cfg.items() if c.critic.backend == "oracle"} == \
        {"dpo_oracle_3r", "kto_oracle", "dpo_oracle_n8", "dpo_oracle_real100", "dpo_b500_all", "dpo_b500_all_hi",
         "dpo_b500_all_lr5e-4", "sft_best_lr5e-4"}
    assert not cfg["dpo_critic"].critic_refine.refine and cfg["kto_critic"].train.loss == "kto"  # labels, frozen
    assert (cfg["control_pretrain_renders"].train.data, cfg["control_pretrain_web"].train.data) == ("curated", "web")
    assert cfg["control_pretrain_renders"].train.batch_size == 2 * base.train.batch_size
    best = cfg["sft_best_lr5e-4"]  # SFT on the best of N: the chosen video of each prompt's best-vs-worst pair
    assert (best.train.loss, best.pairs.strategy, best.train.learning_rate) == ("sft", "best_vs_worst", 5e-4)
    assert cfg["dpo_oracle_n8"].sampling.videos_per_prompt == 8 and cfg["dpo_oracle_real100"].train.lambda_real == 100
    assert cfg["dpo_b500_all"].train.noise_range == (0.0, 1.0) and cfg["dpo_b500_all_hi"].train.noise_range == (0.5, 1)


@pytest.mark.parametrize("text, message", [
    ("[x]\nextends = 'nope'\n", "extends 'nope': expected a built-in arm"),
    ("[x]\nbeta = 1\n", "unknown key(s) ['beta']"),
    ("[x]\noverrides = 'train.beta=1'\n", "expected a list of 'KEY=VALUE' strings"),
    ("[ipo]\n", "not a built-in arm's"),
    ("['a/b']\n", "it names the runs' directory"),
    ("x = 1\n", "expected a table [x]"),
    ("[x\n", "cannot parse"),
])
def test_arms_file_errors_name_the_file_and_arm(tmp_path, text, message):
    f = tmp_path / "arms.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match="arms file .*arms.toml") as e:
        file_arms(f, arms(build_config("tiny")))
    assert message in str(e.value)


def test_arms_file_errors_through_the_cli(tmp_path):
    (tmp_path / "arms.toml").write_text("[x]\noverrides = ['train.beta=-1']\n")
    base = ["ablate", "--preset", "tiny", "--out", "o", "--arms-file", "arms.toml"]
    bad = cli(base, tmp_path, check=False)  # every arm's config is checked before anything runs
    assert bad.returncode == 2 and "train.beta" in bad.stderr and not (tmp_path / "o").exists()
    missing = cli([*base[:-1], "none.toml"], tmp_path, check=False)
    assert missing.returncode == 2 and "arms file none.toml does not exist" in missing.stderr
    ref = cli([*base, "--arms", "ipo", "--reference", "y"], tmp_path, check=False)
    assert ref.returncode == 2 and "unknown arm(s) ['y']" in ref.stderr
