"""The Dual-IPO loop on tiny real models: `dualipo run` through the real CLI, export, resume refusals, variants,
and the proof that the loop consults the oracle only to evaluate."""

import json
import sys

import pytest

from dualipo.cli import main
from dualipo.config import build_config
from dualipo.ledger import Ledger
from dualipo.preferences import read_pairs_jsonl
from rounds_util import TINY, assert_complete, cli, query, snapshot


def test_tiny_two_rounds_through_the_cli(tmp_path):
    p = cli(["run", *TINY, "rounds.num_rounds=2", "--out", "run"], tmp_path)
    run = tmp_path / "run"
    assert "| base |" in p.stdout and "| 1 |" in p.stdout and "| 2 |" in p.stdout
    assert "ledger: run/ledger.sqlite" in p.stdout and "round_NN/videos" in p.stdout
    assert "refine: sft on" in p.stdout  # the critic refines on its own confident judgments
    assert_complete(run, rounds=2)
    pairs = query(run, "SELECT round, chosen, rejected FROM pairs")
    assert pairs and all(c != r for _, c, r in pairs)
    assert query(run, "SELECT count(*) FROM checkpoints")[0][0] >= 1
    ledger = Ledger.open(run)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert lines == ledger.metric_records()
    assert {(m["round"], m["stage"]) for m in lines} >= {(0, "evaluate"), (1, "judge"), (2, "evaluate")}
    assert 0.0 <= lines[0]["oracle_overall"] <= 1.0 and "oracle_colour" in lines[0]
    ledger.close()

    cli(["export", "run", "--format", "jsonl", "--out", "prefs.jsonl"], tmp_path)
    rows = [json.loads(x) for x in (tmp_path / "prefs.jsonl").read_text().splitlines()]
    assert len(rows) == len(pairs)
    assert {"prompt", "chosen", "rejected", "round", "votes", "certainty", "generator_checkpoint"} <= set(rows[0])
    assert sum(rows[0]["votes"].values()) > 0 and len(rows[0]["generator_checkpoint"]) == 64
    assert all((tmp_path / r["chosen"]).is_file() for r in rows)
    assert len(read_pairs_jsonl(tmp_path / "prefs.jsonl")) == len(rows)  # `dualipo train --pairs` reads it
    cli(["export", "run", "--format", "parquet", "--out", "prefs.parquet"], tmp_path)
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "prefs.parquet").to_pylist()
    assert [{k: r[k] for k in ("prompt", "chosen", "rejected", "round")} for r in table] == \
        [{k: r[k] for k in ("prompt", "chosen", "rejected", "round")} for r in rows]

    before = snapshot(run)
    again = cli(["run", "--out", "run", "--resume"], tmp_path)  # the recorded config; nothing left to do
    assert "| 2 |" in again.stdout and snapshot(run) == before
    changed = cli(["run", *TINY, "rounds.num_rounds=2", "train.beta=7", "sampling.seed=3", "--out", "run",
                   "--resume"], tmp_path, check=False)
    assert changed.returncode == 2 and "refusing to resume" in changed.stderr
    assert "train.beta: 5000.0 -> 7.0" in changed.stderr and "sampling.seed: 0 -> 3" in changed.stderr
    fresh = cli(["run", *TINY, "--out", "run"], tmp_path, check=False)
    assert fresh.returncode == 2 and "--resume" in fresh.stderr
    assert snapshot(run) == before


def _guard_oracle(monkeypatch):
    """Make every reference to the oracle's scoring functions raise unless the evaluate stage is running or the
    seed set (the stand-in for human labels, mixed into critic refinement) is being made."""
    from dualipo import rounds
    from dualipo.loop import training
    from dualipo.toy import oracle

    import importlib
    import pkgutil

    import dualipo

    for info in pkgutil.walk_packages(dualipo.__path__, "dualipo."):  # bind every `from ... import score` first,
        importlib.import_module(info.name)  # so the patch reaches them all and is undone in all after the test
    state = {"evaluating": False, "calls": 0}

    def guarded(fn):
        def wrapper(*args, **kwargs):
            if not state["evaluating"]:
                raise AssertionError(f"the loop consulted the oracle ({fn.__name__}) outside evaluation")
            state["calls"] += 1
            return fn(*args, **kwargs)
        return wrapper

    for fn in (oracle.score, oracle.score_scene):
        for module in list(sys.modules.values()):
            for name, value in list(getattr(module, "__dict__", {}).items()):
                if value is fn:
                    monkeypatch.setattr(module, name, guarded(fn))
    def allowed(fn):
        def wrapper(*args, **kwargs):
            state["evaluating"] = True
            try:
                return fn(*args, **kwargs)
            finally:
                state["evaluating"] = False
        return wrapper

    monkeypatch.setattr(rounds, "_evaluate", allowed(rounds._evaluate))
    monkeypatch.setattr(training, "seed_set", allowed(training.seed_set))
    return state


def test_the_loop_never_consults_the_oracle_outside_evaluation(tmp_path, monkeypatch):
    state = _guard_oracle(monkeypatch)
    # two rounds, the base reference (round 2 continues round 1's adapter) and the other stage order
    args = ["run", *TINY, "rounds.num_rounds=2", "rounds.reference=base", "rounds.order=generator_first",
            "--out", str(tmp_path / "run")]
    assert main(args) == 0
    assert state["calls"] > 0  # evaluation did use it
    assert query(tmp_path / "run", "SELECT count(*) FROM pairs")[0][0] > 0
    assert query(tmp_path / "run", "SELECT status FROM stages WHERE round = 1 AND stage = 'train'") == [("done",)]
    stages = [s for (s,) in query(tmp_path / "run", "SELECT stage FROM stages WHERE round = 1 ORDER BY started")]
    assert stages == ["sample", "judge", "pairs", "train", "refine", "evaluate"]
    critics = query(tmp_path / "run", "SELECT round FROM checkpoints WHERE kind = 'critic'")
    assert critics == [(1,), (2,)]  # refined on its own judgments without the oracle; round 2 judged with round 1's


def test_oracle_critic_is_the_labelled_upper_bound_and_kto_trains_on_points(tmp_path, capsys):
    assert main(["run", "--preset", "tiny", "critic.backend=oracle", "judging.mode=pointwise", "train.loss=kto",
                 "--out", str(tmp_path / "run")]) == 0
    out = capsys.readouterr().out
    assert "ORACLE as the critic: the UPPER BOUND" in out
    assert "the oracle critic (upper bound) is not trained" in out
    assert query(tmp_path / "run", "SELECT value FROM meta WHERE key = 'upper_bound'") == [("1",)]
    points = query(tmp_path / "run", "SELECT count(*) FROM points")[0][0]
    assert points > 0 and query(tmp_path / "run", "SELECT count(*) FROM checkpoints")[0][0] == 1
    assert main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "kto.jsonl")]) == 0
    rows = [json.loads(x) for x in (tmp_path / "kto.jsonl").read_text().splitlines()]
    assert len(rows) == points and {"prompt", "completion", "label", "round", "votes", "certainty"} <= set(rows[0])


def test_kto_from_pairwise_judgments(tmp_path):
    """A pairwise critic with train.loss=kto: each video's confident wins against its losses make it desirable or
    undesirable; the generator trains on those points."""
    run = tmp_path / "run"
    assert main(["run", *TINY, "train.loss=kto", "--out", str(run)]) == 0
    points = query(run, "SELECT video, desirable, votes FROM points")
    assert points and not query(run, "SELECT * FROM pairs")
    for video, desirable, votes in points:
        v = json.loads(votes)
        assert v["won"] != v["lost"] and bool(desirable) == (v["won"] > v["lost"])
    wins = {}  # recount from the judgments: every kept judgment's verdict, per video
    for a, b, verdict, certainty in query(run, "SELECT video_a, video_b, verdict, certainty FROM judgments"):
        if verdict in ("A", "B") and certainty >= 0.5:
            for video, won in ((a, verdict == "A"), (b, verdict == "B")):
                wins.setdefault(video, [0, 0])[0 if won else 1] += 1
    assert {v: [json.loads(x)["won"], json.loads(x)["lost"]] for v, _, x in points} == \
        {v: wl for v, wl in wins.items() if wl[0] != wl[1]}
    assert query(run, "SELECT status FROM stages WHERE round = 1 AND stage = 'train'") == [("done",)]
    steps = [json.loads(x) for x in (run / "round_01" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert "kto_loss" in steps[0]
    assert main(["export", str(run), "--out", str(tmp_path / "kto.jsonl")]) == 0
    assert len((tmp_path / "kto.jsonl").read_text().splitlines()) == len(points)


def test_pairs_judged_from_pointwise_scores_through_the_loop(tmp_path):
    """judging.pairs_from=scores through the real CLI: every pair's samples are its two videos' pointwise paths
    (K each, stored and read back from the ledger), its votes the K x K comparisons of their scores; the refine
    stage takes such judgments (here the tiny random critic abstains, so it has nothing to learn and says so;
    `test_srpo` checks what a confident one teaches)."""
    run = tmp_path / "run"
    assert main(["run", "--preset", "tiny", "judging.pairs_from=scores", "--out", str(run)]) == 0
    rows = query(run, "SELECT samples, votes, abstentions FROM judgments")
    k = build_config("tiny").judging.num_votes
    assert len(rows) == 2  # the tiny preset: 2 prompts x 1 pair of their 2 videos
    for samples, votes, abstentions in rows:
        paths = json.loads(samples)
        assert [s["order"] for s in paths] == ["A"] * k + ["B"] * k
        voting = [sum(s["verdict"] is not None for s in paths[i:i + k]) for i in (0, k)]
        assert sum(json.loads(votes).values()) == voting[0] * voting[1] and abstentions == 2 * k - sum(voting)
    assert query(run, "SELECT status FROM stages WHERE round = 1 AND stage = 'refine'") in ([("done",)],
                                                                                           [("skipped",)])


def test_all_confident_pairs_and_the_sft_control(tmp_path):
    run = tmp_path / "run"
    assert main(["run", *TINY, "pairs.strategy=all_confident", "train.loss=sft", "--out", str(run)]) == 0
    kept = query(run, "SELECT value FROM metrics WHERE stage = 'pairs' AND name = 'kept'")[0][0]
    pairs = query(run, "SELECT prompt_id, chosen, rejected FROM pairs ORDER BY idx")
    assert len(pairs) == kept > 0  # every confident judgment is a pair, several per prompt
    assert query(run, "SELECT status FROM stages WHERE round = 1 AND stage = 'train'") == [("done",)]
    steps = [json.loads(x) for x in (run / "round_01" / "train" / "metrics.jsonl").read_text().splitlines()]
    assert "dpo_loss" not in steps[0] and steps[0]["loss"] > 0


@pytest.mark.parametrize("overrides, message", [
    (["critic_refine.certainty=pce"], "critic_refine.certainty=pce needs a reference critic"),
    (["judging.mode=pointwise"], "train.loss=kto"),
    (["judging.mode=pointwise", "train.loss=sft"], "train.loss=kto"),
    (["sampling.prompts_per_round=999"], "prompt pool holds only 16"),
    (["rounds.prompt_file=PROMPTS"], "give it as critic_refine.seed_file"),
])
def test_loop_config_errors_fail_before_anything_is_written(tmp_path, capsys, overrides, message):
    (tmp_path / "prompts.txt").write_text("a red circle moving left on a black background\n")
    overrides = [o.replace("PROMPTS", str(tmp_path / "prompts.txt")) for o in overrides]
    assert main(["run", "--preset", "tiny", *overrides, "--out", str(tmp_path / "run")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
