"""The analysis scripts behind docs/critic.md sections 5 and 6: `scripts/critic_compare.py` (two critics on the
same labelled pairs), `scripts/label_accuracy.py` (a run's judgments or refinement data graded against the oracle
afterwards) and `scripts/reevaluate.py` (an ablation's generators on more noise seeds), on hand-built judgments and
real tiny runs with hand-computed figures."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from dualipo.config import build_config, save_config
from dualipo.ledger import Ledger
from dualipo.toy.world import prompt_pools, render_prompt
from dualipo.video import write_video

ROOT = Path(__file__).resolve().parents[1]


def script(name: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "scripts" / name), *map(str, args)], capture_output=True,
                          text=True)


def record(verdict: str | None, certainty: float, label: str, prompt: str = "p", videos=("a.mp4", "b.mp4")) -> dict:
    return {"prompt": prompt, "videos": list(videos), "dimension": "alignment", "mode": "pairwise", "samples": [],
            "verdict": verdict, "certainty": certainty, "votes": {}, "abstentions": 0, "label": label}


def write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_critic_compare_figures_and_differences(tmp_path):
    labels = ["A", "B", "tie", "A", "B"]
    # baseline: right and kept; reversed and kept; tie (not kept); uncertain (not kept); right and kept
    base = [("A", 0.9), ("A", 0.8), ("tie", 0.7), ("B", 0.4), ("B", 0.6)]
    cand = [("A", 0.9), ("B", 0.9), ("A", 0.9), ("A", 0.9), ("B", 0.9)]  # every decisive pair right, all kept
    a = write(tmp_path / "a.jsonl", [record(v, c, lab) for (v, c), lab in zip(base, labels)])
    b = write(tmp_path / "b.jsonl", [record(v, c, lab) for (v, c), lab in zip(cand, labels)])
    p = script("critic_compare.py", a, b, "--resamples", "50")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    # decisive pairs 0, 1, 3, 4: baseline right on 0 and 4; kept 0, 1, 4 (2 right, 1 reversed)
    assert (out["decisive_accuracy"]["baseline"], out["decisive_accuracy"]["candidate"]) == (0.5, 1.0)
    assert (out["kept_share"]["baseline"], out["kept_share"]["candidate"]) == (0.6, 1.0)
    assert out["kept_accuracy"]["baseline"] == pytest.approx(2 / 3, abs=1e-4)
    assert out["kept_accuracy"]["candidate"] == 0.8  # the tie pair kept as A is not right, nor reversed
    assert out["kept_reversed"]["baseline"] == pytest.approx(1 / 3, abs=1e-4)
    assert out["kept_reversed"]["candidate"] == 0.0
    assert out["kept_reversed"]["difference"] == pytest.approx(-1 / 3, abs=1e-4)
    assert out["kept_reversed"]["se"] > 0
    other = write(tmp_path / "c.jsonl", [record(v, c, "A") for v, c in cand])
    p = script("critic_compare.py", a, other)
    assert p.returncode != 0 and "not hold the same labelled pairs" in p.stderr


def tiny_run(tmp_path: Path, judgments: list[tuple[str, float, tuple[str, str], list[dict]]]) -> Path:
    """A run directory (ledger and config) whose round 1 judged three real renders: good.mp4 and good2.mp4 show
    prompt 0 (alignment about 0.94 each: an oracle tie), bad.mp4 shows prompt 1 (0.42 on prompt 0)."""
    cfg = build_config("tiny")
    prompts = prompt_pools(cfg.world)[0][:2]
    run = tmp_path / "arm" / "seed0"
    (run / "round_01").mkdir(parents=True)
    write_video(run / "round_01" / "good.mp4", render_prompt(prompts[0], 1, cfg.world))
    write_video(run / "round_01" / "bad.mp4", render_prompt(prompts[1], 1, cfg.world))
    write_video(run / "round_01" / "good2.mp4", render_prompt(prompts[0], 2, cfg.world))
    save_config(cfg, run / "config.json")
    ledger = Ledger.create(run, {"x": 1}, [("p0", prompts[0])], {})
    for verdict, certainty, videos, samples in judgments:
        r = record(verdict, certainty, "", prompts[0], tuple(f"round_01/{v}" for v in videos))
        ledger.add_judgment(1, "p0", {**r, "samples": samples})
    ledger.close()
    return run


def test_label_accuracy_grades_each_rounds_judgments_against_the_oracle(tmp_path):
    run = tiny_run(tmp_path, [("A", 0.8, ("good.mp4", "bad.mp4"), []), ("A", 0.95, ("bad.mp4", "good.mp4"), []),
                              ("B", 0.4, ("bad.mp4", "good2.mp4"), []),
                              ("A", 0.9, ("good.mp4", "good2.mp4"), []),  # an oracle tie
                              ("tie", 1.0, ("good.mp4", "good.mp4"), [])])
    p = script("label_accuracy.py", run, "--from-round", "1", "--thresholds", "0.3", "0.5", "0.9")
    assert p.returncode == 0, p.stderr
    per_round, pooled = (json.loads(x) for x in p.stdout.splitlines())
    # [right, reversed, oracle tie]: right at 0.8, reversed at 0.95, right at 0.4 (the ledger keeps one judgment
    # per video pair and dimension), two renders of the prompt are an oracle tie; a tie verdict is not graded
    assert (per_round["round"], per_round["0.3"], per_round["0.5"], per_round["0.9"]) == (1, [2, 1, 1], [1, 1, 1],
                                                                                          [0, 1, 1])
    assert pooled["arm"] == str(run.parent) and pooled["0.5"] == {"kept": 3, "oracle_ties": 1,
                                                                  "reversed_of_decisive": 0.5}


def paths(*claims_and_answers: tuple[str, str]) -> list[dict]:
    """Sampled paths in order AB: (the claimed winner, the answer)."""
    return [{"order": "AB", "text": f"Video {claim} is better on alignment.\nAnswer: {answer}",
             "raw_verdict": answer, "verdict": answer} for claim, answer in claims_and_answers]


def test_label_accuracy_grades_the_refinement_data(tmp_path):
    """--refinement grades the consistency-filtered candidates the run's settings keep (tiny: vote share >= 0.75,
    claim filter): the filtered verdict, not the recorded one."""
    run = tiny_run(tmp_path, [
        ("A", 1.0, ("good.mp4", "bad.mp4"), paths(*[("A", "A")] * 4)),  # right
        ("A", 1.0, ("bad.mp4", "good.mp4"), paths(*[("A", "A")] * 3, *[("B", "A")] * 3)),  # reversed (3 of 3)
        ("A", 0.75, ("good.mp4", "good2.mp4"), paths(*[("A", "A")] * 3, ("B", "B"))),  # an oracle tie
        ("A", 0.5, ("good2.mp4", "bad.mp4"), paths(("A", "A"), ("B", "B"))),  # no majority: not kept
        # recorded A (5 of 8, reversed), but its A paths claim B: filtered, it is B 3 of 3, and right
        ("A", 0.625, ("bad.mp4", "good2.mp4"), paths(*[("B", "B")] * 3, *[("B", "A")] * 5))])
    p = script("label_accuracy.py", run, "--from-round", "1", "--refinement")
    assert p.returncode == 0, p.stderr
    per_round, pooled = (json.loads(x) for x in p.stdout.splitlines())
    assert (per_round["round"], per_round["vote"]) == (1, [2, 1, 1]) and "pce" not in per_round
    assert pooled["vote"] == {"kept": 4, "oracle_ties": 1, "reversed_of_decisive": round(1 / 3, 4)}
    p = script("label_accuracy.py", run, "--pce-reference", run)
    assert p.returncode != 0 and "go with --refinement" in p.stderr


def test_reevaluate_pools_more_seeds_and_pairs_the_arms_by_seed(tmp_path):
    """Two real tiny runs (one round each) as arm `a`; arm `b` is a copy whose ledger says round 1 scored 0.1
    higher: its generators are the same, so the new videos score the same and the pooled difference is
    0.1 x (the loop's videos / all videos), exactly."""
    import shutil
    import sqlite3

    from rounds_util import TINY, cli

    for seed in (0, 1):
        cli(["run", *TINY, "rounds.num_rounds=1", f"seed={seed}", "--out", f"ab/a/seed{seed}"], tmp_path)
        shutil.copytree(tmp_path / f"ab/a/seed{seed}", tmp_path / f"ab/b/seed{seed}")
        db = sqlite3.connect(tmp_path / f"ab/b/seed{seed}/ledger.sqlite")
        db.execute("UPDATE metrics SET value = value + 0.1 WHERE round = 1 AND stage = 'evaluate' "
                   "AND name = 'oracle_overall'")
        db.commit()
        db.close()
    ab = tmp_path / "ab"
    assert (ab / "a/seed0/round_01/generator_lora.safetensors").exists()  # a trained round, not the base again
    p = script("reevaluate.py", ab, "--round", "1", "--eval-seeds", "7", "8", "9", "--reference", "a")
    assert p.returncode == 0, p.stderr[-3000:]
    *runs, table = (json.loads(x) for x in p.stdout.splitlines())
    assert [(r["arm"], r["seed"]) for r in runs] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    loop, new = runs[0]["loop_videos"], runs[0]["new_videos"]
    assert new == 3 * loop  # the loop's prompts x three more seeds each
    assert runs[2]["new"] == runs[0]["new"] and runs[2]["loop"] == pytest.approx(runs[0]["loop"] + 0.1, abs=1e-4)
    vs = table["arms"]["b"]["vs_a"]
    assert vs["difference"] == pytest.approx(0.1 * loop / (loop + new), abs=2e-4) and vs["se"] < 1e-3
    assert table["base"]["run"] == "a/seed0" and (ab / "reevaluate_r1" / "base.json").exists()
    before = (ab / "reevaluate_r1" / "a_seed0.json").stat().st_mtime_ns
    assert script("reevaluate.py", ab, "--round", "1", "--eval-seeds", "7", "8", "9").returncode == 0
    assert (ab / "reevaluate_r1" / "a_seed0.json").stat().st_mtime_ns == before  # reused, not sampled again
    p = script("reevaluate.py", ab, "--round", "1", "--eval-seeds", "7")
    assert p.returncode != 0 and "holds seeds [7, 8, 9], not [7]" in p.stderr
    p = script("reevaluate.py", ab, "--round", "1", "--eval-seeds", "0", "--out", tmp_path / "other")
    assert p.returncode != 0 and "already evaluated seeds [0]" in p.stderr
    # a run whose ledger has no round-0 evaluation: the arms are still compared, the base is left out
    shutil.copytree(ab / "a/seed0", tmp_path / "nobase/a/seed0")
    db = sqlite3.connect(tmp_path / "nobase/a/seed0/ledger.sqlite")
    db.execute("DELETE FROM metrics WHERE round = 0 AND stage = 'evaluate'")
    db.commit()
    db.close()
    p = script("reevaluate.py", tmp_path / "nobase", "--round", "1", "--eval-seeds", "7", "8", "9")
    assert p.returncode == 0, p.stderr[-3000:]
    assert json.loads(p.stdout.splitlines()[-1])["base"] is None and "no run evaluated round 0" in p.stderr


def scored_pair(dimension: str, scores: tuple[float, float], label: str, verdict: str, paths_a: list[str],
                paths_b: list[str], name: str) -> tuple[dict, dict]:
    """A labelled pair and its judgment aggregated from pointwise scores (a's sampled levels, then b's)."""
    videos = [f"{name}_a.mp4", f"{name}_b.mp4"]
    samples = [{"order": o, "text": "", "raw_verdict": v, "verdict": v}
               for o, paths in (("A", paths_a), ("B", paths_b)) for v in paths]
    pair = {"prompt": "p", "video_a": videos[0], "video_b": videos[1], "dimension": dimension, "label": label,
            "scores": list(scores)}
    return pair, {**record(verdict, 1.0, label, videos=videos), "dimension": dimension, "samples": samples}


def test_critic_diagnose_separates_the_scale_from_perception():
    import importlib.util
    spec = importlib.util.spec_from_file_location("critic_diagnose", ROOT / "scripts" / "critic_diagnose.py")
    diagnose = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(diagnose)
    made = [
        # levels Good / Bad on both scales apart; the critic's mean levels 5/3 against 1/3: ordered right, and right
        scored_pair("alignment", (0.9, 0.3), "A", "A", ["Good", "Good", "Normal"], ["Bad", "Normal", "Bad"], "p1"),
        # both Normal on three levels (a perfect scorer says tie), apart on five; mean 2 against 4/3: ordered wrong
        scored_pair("alignment", (0.6, 0.8), "B", "tie", ["Good", "Good"], ["Normal", "Normal", "Good"], "p2"),
        # Bad against Good, but the critic calls both Normal: equal means, a tie, wrong
        scored_pair("motion", (0.0, 1.0), "B", "tie", ["Normal", "Normal"], ["Normal", "Normal"], "p3"),
        # a tie pair: not decisive, its videos still count for the level accuracy
        scored_pair("alignment", (0.5, 0.55), "tie", "tie", ["Normal"], ["Bad"], "p4"),
    ]
    compared = dict(made[0][1], samples=[{"order": "AB", "text": "", "raw_verdict": "A", "verdict": "A"}])
    pairs, judgments = [p for p, _ in made] + [made[0][0]], [j for _, j in made] + [compared]
    out = diagnose.scale_vs_perception(judgments, pairs)
    assert out["all"] == {"decisive": 3, "three_level_ceiling": round(2 / 3, 3), "five_level_ceiling": 1.0,
                          "critic": round(1 / 3, 3),
                          "mean_level_order": {"right": round(1 / 3, 3), "wrong": round(1 / 3, 3),
                                               "equal": round(1 / 3, 3)}}
    assert out["alignment"] == {"decisive": 2, "three_level_ceiling": 0.5, "five_level_ceiling": 1.0,
                                "critic": 0.5, "mean_level_order": {"right": 0.5, "wrong": 0.5, "equal": 0.0}}
    assert out["motion"]["critic"] == 0.0 and out["motion"]["mean_level_order"]["equal"] == 1.0
    # majority level against the oracle's: p1 a and b, p2 b (Normal at 0.8), p4 a (Normal at 0.5) right; p2 a
    # (Good at 0.6), p3 a and b, p4 b (Bad at 0.55) wrong
    assert (out["video_level_accuracy"], out["videos"]) == (0.5, 8)
    assert diagnose.scale_vs_perception([compared], [made[0][0]]) is None


def perception_probe():
    import importlib.util

    spec = importlib.util.spec_from_file_location("perception_probe", ROOT / "scripts" / "perception_probe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_perception_probe_judges_pairs_by_predicted_scores():
    probe = perception_probe()
    predicted = {"a": {"overall": 0.9, "motion": 0.2}, "b": {"overall": 0.5, "motion": 0.3},
                 "c": {"overall": 0.55, "motion": 1.0}}

    def pair(a, b, dim, label):
        return {"video_a": a, "video_b": b, "dimension": dim, "label": label}

    pairs = [pair("a", "b", "overall", "A"),  # 0.9 vs 0.5: A, right and ordered
             pair("b", "c", "overall", "B"),  # 0.5 vs 0.55: a tie (within 0.15), wrong; ordered (0.55 higher)
             pair("a", "b", "motion", "A"),  # 0.2 vs 0.3: a tie, wrong; not ordered
             pair("a", "c", "motion", "tie"),  # 0.2 vs 1.0: B, wrong; not decisive
             pair("b", "c", "motion", "B"),  # 0.3 vs 1.0: B, right and ordered
             pair("b", "c", "overall", "tie")]  # a tie, right; not decisive
    out = probe.judge_pairs(predicted, pairs)
    assert out == {"pairs": 6, "decisive_pairs": 4, "pair_accuracy": 0.5, "decisive_accuracy": 0.5,
                   "decisive_ordered": 0.75, "decisive_ordered_by_dimension": {"motion": 0.5, "overall": 1.0}}
    # a wider tie margin turns the first pair into a tie as well
    assert probe.judge_pairs(predicted, pairs, tie_margin=0.5)["decisive_accuracy"] == 0.25


def test_perception_probe_noisy_levels_change_the_asked_share_to_another_level():
    import torch

    probe = perception_probe()
    y = torch.tensor([0, 1, 2] * 2000).reshape(-1, 4)
    assert torch.equal(probe.noisy_levels(y, 0.0, seed=0), y)
    flipped = probe.noisy_levels(y, 1.0, seed=0)
    assert bool((flipped != y).all()) and set(flipped.unique().tolist()) == {0, 1, 2}
    # each level goes to each of the other two about equally often
    assert abs(float((flipped == (y + 1) % 3).float().mean()) - 0.5) < 0.03
    share = float((probe.noisy_levels(y, 0.1, seed=1) != y).float().mean())
    assert abs(share - 0.1) < 0.015


def test_perception_probe_fits_what_is_linear_and_reads_renders(tmp_path):
    import numpy as np

    from dualipo.config import preset_small

    probe = perception_probe()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    x = x[np.abs(x[:, 2] - x[:, 4]) > 0.5][:200]
    y = (x[:, 2] - x[:, 4] > 0).astype(int)  # linearly separable with a margin
    assert probe.linear_probe(x[:150], y[:150], x[150:], y[150:])["accuracy"] == 1.0
    # renders show their prompt: the oracle reads the prompt's motion and its score is right
    world = preset_small().world
    prompts = prompt_pools(world)[0][:8]
    d = tmp_path / "renders"
    recs = []
    for i, prompt in enumerate(prompts):
        write_video(d / f"v{i}.mp4", render_prompt(prompt, i, world))
        recs.append({"id": f"v{i}", "prompt": prompt, "path": f"v{i}.mp4"})
    write(d / "prompts.jsonl", recs)
    items = probe.load([d])
    assert [it["reading"] for it in items] == [probe.parse_prompt(p).motion for p in prompts]
    assert all(it["motion_level"] == 1 for it in items)
    p = script("perception_probe.py", "cnn", d, "--eval", d, "--epochs", "2", "--target", "motion_level",
               "--condition")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.splitlines()[-1])
    # every render's motion is right, so the majority class is all of them; epochs 2 is evaluated once
    assert (result["majority"], result["train_videos"], result["eval_videos"]) == (1.0, 8, 8)
    assert [c["epoch"] for c in result["curve"]] == [2] and result["condition"] == "colour_motion"
    # the scores target, graded as a judge of pairs of the eval videos (paths relative to the pairs file)
    pairs = [{"video_a": f"renders/v{i}.mp4", "video_b": f"renders/v{j}.mp4", "dimension": dim,
              "label": probe.verdict(items[i]["scores"][k], items[j]["scores"][k], probe.TIE_MARGIN)}
             for i, j in ((0, 1), (2, 3), (4, 5)) for k, dim in enumerate(probe.SCORE_DIMS)]
    write(tmp_path / "pairs.jsonl", pairs)
    p = script("perception_probe.py", "cnn", d, "--eval", d, "--epochs", "1", "--target", "scores",
               "--condition", "prompt", "--pairs", tmp_path / "pairs.jsonl")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.splitlines()[-1])
    assert result["oracle_on_pairs"]["pair_accuracy"] == 1.0 and result["curve"][0]["pairs"] == 12
    assert {"decisive_ordered_last_evaluations", "decisive_accuracy_last_evaluations"} <= set(result)
    # the seed annotators' three levels with their noise; noise is for that target only
    p = script("perception_probe.py", "cnn", d, "--eval", d, "--epochs", "1", "--target", "levels",
               "--label-noise", "0.1", "--pairs", tmp_path / "pairs.jsonl")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.splitlines()[-1])
    assert (result["target"], result["label_noise"], result["oracle_on_pairs"]["pair_accuracy"]) == ("levels", 0.1, 1.0)
    assert 0.0 <= result["curve"][0]["decisive_ordered"] <= 1.0
    p = script("perception_probe.py", "cnn", d, "--eval", d, "--label-noise", "0.1")
    assert p.returncode != 0 and "--label-noise is for --target levels" in p.stderr
    write(tmp_path / "pairs.jsonl", [{**pairs[0], "video_a": "elsewhere/v0.mp4"}])
    p = script("perception_probe.py", "cnn", d, "--eval", d, "--target", "scores", "--pairs", tmp_path / "pairs.jsonl")
    assert p.returncode != 0 and "is not one of the --eval videos" in p.stderr
    p = script("perception_probe.py", "linear", d, d, "--critic", "")
    assert p.returncode == 0, p.stderr[-3000:]
    result = json.loads(p.stdout.splitlines()[-1])
    assert {":vision", ":language_model", ":pixels"} <= set(result) and result["eval_videos"] == 8
    assert result["majority"] == max(Counter(probe.parse_prompt(p).motion for p in prompts).values()) / 8
    assert script("perception_probe.py", "cnn", d, "--eval", tmp_path).returncode != 0
