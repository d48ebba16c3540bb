"""`dualipo ablate` through the real CLI on tiny real models: every arm is a finished loop run with its switch
applied, the table is read back from their ledgers, a second call reuses the runs, and the pretraining control
trains on renders with web captions."""

import json

import pytest

from dualipo.ablate import arms, collect
from dualipo.config import COLOURS, ConfigError, build_config
from dualipo.ledger import Ledger
from dualipo.loop.summary import round_rows
from rounds_util import N, P, TINY, cli, query, snapshot

ARMS = ["dual_ipo", "ipo", "control_web", "control_seed"]


def _config(run) -> dict:
    return json.loads((run / "config.json").read_text())


def test_ablate_runs_each_arm_and_tabulates_them(tmp_path):
    cmd = ["ablate", *TINY, "--out", "abl", "rounds.num_rounds=2", "--seeds", "0", "1", "--arms", *ARMS,
           "world.web.colour=1"]
    p = cli(cmd, tmp_path)
    out = tmp_path / "abl"
    for arm in ARMS:
        for s in (0, 1):
            run = out / arm / f"seed{s}"
            cfg = _config(run)
            assert cfg["rounds"]["num_rounds"] == 2 and cfg["seed"] == cfg["sampling"]["seed"] == s
            assert query(run, "SELECT value FROM meta WHERE key = 'finished'")
    # each arm is its switch: IPO never refines, Dual-IPO does; the seed control refines on the seed set alone
    assert not query(out / "ipo" / "seed0", "SELECT * FROM checkpoints WHERE kind = 'critic'")
    assert query(out / "dual_ipo" / "seed0", "SELECT * FROM checkpoints WHERE kind = 'critic'")
    assert _config(out / "control_seed" / "seed0")["critic_refine"]["seed_mix"] == 1.0
    # the web control trains every round on one render per sampled video, at twice the batch, captioned like the
    # web corpus (here every colour named wrong), fresh caption draws per round and seed
    control = out / "control_web" / "seed1"
    assert _config(control)["train"]["batch_size"] == 2 * build_config("tiny").train.batch_size
    assert query(control, "SELECT round, value FROM metrics WHERE stage = 'train' AND name = 'items'") == \
        [(1, P * N), (2, P * N)]
    sampled = {(p, s) for p, s in query(control, "SELECT p.prompt, v.seed FROM videos v JOIN prompts p ON "
                                                 "p.prompt_id = v.prompt_id WHERE v.round = 1 AND v.split = 'train'")}
    data = [json.loads(x) for x in (control / "round_01" / "train_data.jsonl").read_text().splitlines()]
    assert {(d["prompt"], d["seed"]) for d in data} == sampled  # the renders of the round's own items
    def without_colours(text):
        return [w for w in text.split() if w not in COLOURS]

    assert all(d["caption"] != d["prompt"] and without_colours(d["caption"]) == without_colours(d["prompt"])
               for d in data)

    md = (out / "ablation.md").read_text()
    assert md.startswith("Made by: `dualipo ablate --preset tiny")
    labels = [line.split(" | ")[0].lstrip("| ") for line in md.splitlines() if line.startswith("| ")][1:]
    assert labels == ["base generator (round 0)", "IPO (frozen critic), 1 round", "IPO (frozen critic), 2 rounds",
                      "Dual-IPO, 1 round", "Dual-IPO, 2 rounds",
                      "control: continued pretraining on the web corpus instead of preference rounds, 1 round",
                      "control: continued pretraining on the web corpus instead of preference rounds, 2 rounds",
                      "control: critic refinement compute on seed training, 2 rounds"]
    assert md in p.stdout and all(line.endswith("| 0 1 |") for line in md.splitlines()[4:4 + len(labels)])
    html = (out / "ablation.html").read_text()
    assert html.count("<tr>") == len(labels) + 1 and "critic_refine.seed_mix=1" in html

    # the JSON's figures are the ledgers' own: means over seeds, deltas paired by seed
    rows = {r["label"]: r for r in json.loads((out / "ablation.json").read_text())["rows"]}
    per = {(a, s): round_rows(Ledger.open(out / a / f"seed{s}")) for a in ARMS for s in (0, 1)}
    ipo = rows["IPO (frozen critic), 2 rounds"]
    assert ipo["oracle"] == pytest.approx((per[("ipo", 0)][2]["oracle"] + per[("ipo", 1)][2]["oracle"]) / 2)
    assert ipo["delta"] == pytest.approx(sum(per[("ipo", s)][2]["oracle"] - per[("dual_ipo", s)][2]["oracle"]
                                             for s in (0, 1)) / 2)
    assert rows["Dual-IPO, 2 rounds"]["delta"] is None
    one = rows["Dual-IPO, 1 round"]  # against the web control after the same round, paired by seed
    assert one["delta_control"] == pytest.approx(sum(per[("dual_ipo", s)][1]["oracle"] - per[("control_web", s)][1][
        "oracle"] for s in (0, 1)) / 2)
    diffs = [per[("dual_ipo", s)][1]["oracle"] - per[("control_web", s)][1]["oracle"] for s in (0, 1)]
    assert one["delta_control_se"] == pytest.approx(abs(diffs[0] - diffs[1]) / 2)  # std (ddof 1) / sqrt(2)
    assert rows["control: continued pretraining on the web corpus instead of preference rounds, 2 rounds"]["pairs"] \
        == 2 * P * N

    before = {a: snapshot(out / a / "seed0") for a in ARMS}
    again = cli(cmd, tmp_path)  # finished runs are reused, the table is the same
    assert "finished earlier, reused" in again.stderr
    assert {a: snapshot(out / a / "seed0") for a in ARMS} == before
    assert (out / "ablation.md").read_text() == md
    only = cli(["ablate", *TINY, "--out", "abl", "rounds.num_rounds=2", "--seeds", "0", "--arms", *ARMS, "--table-only"],
               tmp_path)
    assert "finished earlier" not in only.stderr and {a: snapshot(out / a / "seed0") for a in ARMS} == before
    rows = json.loads((out / "ablation.json").read_text())["rows"]
    assert all(r["seeds"] == [0] and r["oracle_std"] is None for r in rows)
    other = cli(["ablate", *TINY, "--out", "abl", "rounds.num_rounds=3", "--arms", "ipo"], tmp_path, check=False)
    assert other.returncode == 2 and "refusing to resume" in other.stderr  # a finished run of another config


def test_collect_leaves_out_arms_not_run(tmp_path):
    cfg = build_config("tiny")
    with pytest.raises(ValueError, match="no finished ablation run"):
        from dualipo.ablate import write_tables

        write_tables(tmp_path, arms(cfg), [0], 2)
    assert collect(tmp_path, arms(cfg), [0], 2) == []


def test_ablate_and_render_control_errors(tmp_path):
    bad = cli(["ablate", "--preset", "tiny", "--out", "x", "--arms", "nope"], tmp_path, check=False)
    assert bad.returncode == 2 and "unknown arm(s) ['nope']" in bad.stderr
    # an override written after --arms / --seeds is still an override (here a bad one, refused by name)
    late = cli(["ablate", "--preset", "tiny", "--out", "x", "--arms", "ipo", "--seeds", "0", "train.beta=-1",
                "--table-only"], tmp_path, check=False)
    assert late.returncode == 2 and "train.beta" in late.stderr and not (tmp_path / "x").exists()
    assert "invalid int value: 'one'" in cli(["ablate", "--preset", "tiny", "--out", "x", "--seeds", "one"], tmp_path,
                                      check=False).stderr
    seeded = cli(["ablate", "--preset", "tiny", "--out", "x", "--arms", "ipo", "train.seed=3"], tmp_path, check=False)
    assert seeded.returncode == 2 and "train.seed=3: dualipo ablate sets" in seeded.stderr and "--seeds" in seeded.stderr
    assert not (tmp_path / "x").exists()  # the per-run seeds are --seeds: an override of one is refused, not lost
    with pytest.raises(ConfigError, match="data=web"):
        build_config("tiny", overrides=["train.data=web"])
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\n")
    refused = cli(["run", "--preset", "tiny", "train.data=curated", "train.loss=sft",
                   f"rounds.prompt_file={prompts}", "--out", "r"], tmp_path, check=False)
    assert refused.returncode == 2 and "cannot render" in refused.stderr and not (tmp_path / "r").exists()
