"""SRPO critic refinement on tiny real critics: the consistency filter on hand-written rationales, the certainty
estimators, the refinement data, the update's loss properties, the guard, and `dualipo critic refine`."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from dualipo.cli import main
from dualipo.config import ConfigError, build_config
from dualipo.critics import build_critic
from dualipo.critic_training.loop import Example, load_trainable, sequence_logprobs, sft_loss, train_loop
from dualipo.critics.consistency import filter_judgment, path_consistent
from dualipo.critics.voting import Judgment, judgment, make_sample
from dualipo.ledger import Ledger
from dualipo.critic_training.certainty import check_reference, keep, pce, rationale_rewards
from dualipo.critic_training.refine_data import candidates, training_items
from dualipo.critic_training.refine import dpo_loss_fn
from dualipo.toy.world import prompt_pools, render_prompt
from dualipo.video import write_video

PROMPT = "a red circle moving left on a black background"
RIGHT = "a red circle moving left on a black background, steady"
WRONG = "a red circle moving right on a black background, steady"


def path(order, a, b, claim, answer):
    text = f"Video A shows {a}. Video B shows {b}. Video {claim} is better on motion.\nAnswer: {answer}"
    return make_sample(order, text, answer)


def test_consistency_filter_on_hand_written_rationales():
    good = path("AB", RIGHT, WRONG, "A", "A")  # its descriptions say A moves as asked: A is consistent
    wrong_verdict = path("AB", RIGHT, WRONG, "B", "B")  # claims B although its own descriptions favour A
    lying_answer = path("AB", RIGHT, WRONG, "A", "B")  # claim A, answer B
    swapped = path("BA", WRONG, RIGHT, "B", "B")  # the BA order: its B is the first video, and it moves as asked
    for s in (good, swapped):
        assert path_consistent("shapes", PROMPT, "motion", s) and path_consistent("claim", PROMPT, "motion", s)
    assert not path_consistent("shapes", PROMPT, "motion", wrong_verdict)
    assert path_consistent("claim", PROMPT, "motion", wrong_verdict)  # claim and answer agree: claim can't tell
    assert not path_consistent("claim", PROMPT, "motion", lying_answer)
    assert not path_consistent("shapes", PROMPT, "motion", lying_answer)
    unreadable = make_sample("AB", "Both look fine to me. Video A is better on motion.\nAnswer: A", "A")
    assert not path_consistent("shapes", PROMPT, "motion", unreadable)
    assert path_consistent("shapes", PROMPT, "colour", unreadable)  # a dimension the check does not read
    assert not path_consistent("off", PROMPT, "motion", make_sample("AB", "garbled", None))  # abstentions never
    with pytest.raises(ValueError, match="critic_refine.consistency"):
        path_consistent("nope", PROMPT, "motion", good)

    # three inconsistent B votes outvote two consistent A votes; the filter turns the judgment around
    j = judgment(PROMPT, ("a.mp4", "b.mp4"), "motion", "pairwise", [good, swapped] + [wrong_verdict] * 3)
    assert j.verdict == "B"
    f, filtered = filter_judgment(j, "shapes")
    assert (f.verdict, f.certainty, filtered) == ("A", 1.0, 3)
    assert filter_judgment(j, "off") == (j, 0)


def test_certainty_estimators_and_pce_configuration_errors():
    r = torch.tensor([1.0, -1.0, 3.0])  # mean 1
    assert pce(r, 2.0).tolist() == pytest.approx([0.5, 1 / (1 + math.exp(4)), 1 / (1 + math.exp(-4))])
    assert keep(0.75, "vote", 0.75, 0.5) and not keep(0.74, "vote", 0.75, 0.5)
    assert keep(0.51, "pce", 0.75, 0.5) and not keep(0.5, "pce", 0.75, 0.5)  # strict: PCE > 0.5
    with pytest.raises(ConfigError, match="needs a reference critic"):
        check_reference("shipped", "")
    with pytest.raises(ConfigError, match="is the critic being refined"):
        check_reference("runs/critic", "runs/critic")
    cfg = build_config("tiny")
    model, tok, critic = load_trainable(cfg, cfg.critic_refine)
    ex = [Example("<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n", (), "Answer: A")] * 2
    with pytest.raises(ConfigError, match="same model"):
        rationale_rewards(critic, critic, ex)
    twin = load_trainable(cfg, cfg.critic_refine)[2]  # the same weights in another object: every R is 0
    with pytest.raises(ConfigError, match="R = 0 for every judgment"):
        rationale_rewards(critic, twin, ex)
    other = load_trainable(replace(cfg, critic=replace(cfg.critic, init_seed=1)), cfg.critic_refine)[2]
    assert rationale_rewards(critic, other, ex).abs().sum() > 0


def test_refinement_data_rationales_per_order_and_counts():
    a_ab = path("AB", RIGHT, WRONG, "A", "A")
    a_ba = path("BA", WRONG, RIGHT, "B", "B")
    b_ab = path("AB", RIGHT, WRONG, "B", "B")
    js = [
        judgment(PROMPT, ("a", "b"), "motion", "pairwise", [a_ab, a_ab, a_ba, b_ab]),  # 3:1 for a
        judgment(PROMPT, ("c", "d"), "motion", "pairwise", [a_ab, a_ab]),  # unanimous, AB order only
        judgment(PROMPT, ("e", "f"), "motion", "pairwise", [a_ab, b_ab]),  # even split: no label
        judgment(PROMPT, ("g", "h"), "motion", "pairwise", [make_sample("AB", "Answer: tie", "tie")]),  # tie
    ]
    cands, stats = candidates(js, "off")
    assert (stats.judgments, stats.candidates, stats.no_label["no_majority"], stats.no_label["tie"]) == (4, 2, 1, 1)
    first, second = cands
    assert first.chosen["AB"].target == a_ab.text and first.chosen["BA"].target == a_ba.text
    assert first.chosen["BA"].videos == ("b", "a") and first.rejected["AB"].target == b_ab.text
    assert set(first.rejected) == {"AB", "BA"}  # the BA minority is the AB one, swapped
    assert first.rejected["BA"].target.endswith("Answer: A")
    # the unanimous judgment has no BA path: its BA example is the AB rationale with A and B swapped
    assert second.chosen["BA"].target == (f"Video A shows {WRONG}. Video B shows {RIGHT}. Video B is better on "
                                          f"motion.\nAnswer: B") and not second.rejected
    sft, dpo = training_items([(first, 0.75), (second, 1.0)], stats)
    assert (len(sft), len(dpo), stats.sft_examples, stats.dpo_pairs) == (4, 2, 4, 2)
    assert [w for *_, w in dpo] == [0.75, 0.75]
    ties, tie_stats = candidates(js, "off", learn_ties=True)  # the tie majority becomes an example too
    assert len(ties) == 3 and tie_stats.no_label["tie"] == 0 and ties[-1].chosen["AB"].target == "Answer: tie"
    _, filtered_stats = candidates(js, "shapes")
    # the two `b_ab` paths contradict their own descriptions; the bare tie answer has none to check on motion
    assert filtered_stats.paths_filtered == 3


def test_refinement_data_from_pairs_judged_on_pointwise_scores():
    """A confident pair judged from scores teaches each video its own majority pointwise rationale; a path whose
    claim contradicts its answer does not vote (the claim check)."""
    from dualipo.critics.voting import pair_from_points

    def point(level, claim=None):
        return make_sample("", f"The video shows {RIGHT}. {claim or level} on motion.\nAnswer: {level}", level)

    good, bad, liar = point("Good"), point("Bad"), point("Good", claim="Bad")
    j = pair_from_points(PROMPT, ("a", "b"), "motion", [good, good, liar], [bad, bad, good])
    assert j.verdict == "A" and j.votes == {"A": 6, "tie": 3}  # liar votes before filtering
    (c,), stats = candidates([j], "claim")
    assert stats.paths_filtered == 1 and c.judgment.votes == {"A": 4, "tie": 2}
    (same,), _ = candidates([j], "shapes")  # the shapes check reads pairwise rationales: scores get the claim check
    assert same.judgment.votes == c.judgment.votes
    assert set(c.chosen) == {"A", "B"} and c.chosen["A"].videos == ("a",) and c.chosen["B"].videos == ("b",)
    assert c.chosen["A"].target == good.text and c.chosen["B"].target == bad.text
    assert "How good is the video on motion?" in c.chosen["A"].text and "Video B:" not in c.chosen["A"].text
    assert set(c.rejected) == {"B"} and c.rejected["B"].target == good.text  # a's paths are unanimous
    sft, dpo = training_items([(c, c.judgment.certainty)], stats)
    assert [e.videos for e in sft] == [("a",), ("b",)] and len(dpo) == 1


@pytest.fixture(scope="module")
def tiny_pairs(tmp_path_factory):
    """Two real pairs of tiny videos with CoT rationales, as (chosen, rejected, certainty)."""
    d = tmp_path_factory.mktemp("videos")
    cfg = build_config("tiny")
    prompts = prompt_pools(cfg.world)[0][:2]
    pairs = []
    for i, p in enumerate(prompts):
        a, b = d / f"{i}a.mp4", d / f"{i}b.mp4"
        write_video(a, render_prompt(p, 1, cfg.world))
        write_video(b, render_prompt(p, 2, cfg.world))
        text = f"<|im_start|>user\nPrompt: {p}\nVideo A: <|vision_start|><|video_pad|><|vision_end|>\n" \
               f"Video B: <|vision_start|><|video_pad|><|vision_end|>\nWhich?<|im_end|>\n<|im_start|>assistant\n"
        pairs.append((Example(text, (str(a), str(b)), "Video A is better.\nAnswer: A"),
                      Example(text, (str(a), str(b)), "Video B is better.\nAnswer: B"), 1.0))
    return pairs


def test_dpo_loss_is_log2_at_the_reference_and_zero_certainty_pairs_give_no_gradient(tiny_pairs):
    cfg = build_config("tiny", overrides=["critic_refine.nll_weight=0", "critic_refine.batch_size=2"])
    model, _, critic = load_trainable(cfg, cfg.critic_refine)
    model.eval()  # no dropout: policy == reference exactly
    loss, m = dpo_loss_fn(cfg.critic_refine, critic, tiny_pairs)(critic, 0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-5) and m["seq_dpo_loss"] == pytest.approx(math.log(2),
                                                                                                      abs=1e-5)
    nll_cfg = replace(cfg, critic_refine=replace(cfg.critic_refine, nll_weight=1.0))
    zero = [(c, r, 0.0) for c, r, _ in tiny_pairs]
    loss, _ = dpo_loss_fn(nll_cfg.critic_refine, critic, zero)(critic, 0)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(float(g.abs().max()) == 0.0 for g in grads)  # neither the DPO nor the NLL term moves it


@pytest.mark.parametrize("method", ["sft", "dpo"])
def test_refinement_loss_falls_on_a_fixed_batch(tiny_pairs, method):
    cfg = build_config("tiny", overrides=["critic_refine.batch_size=2", "critic_refine.learning_rate=3e-3"])
    model, _, critic = load_trainable(cfg, cfg.critic_refine)
    fn = dpo_loss_fn(cfg.critic_refine, critic, tiny_pairs) if method == "dpo" else \
        (lambda c, step: (sft_loss(c, [p[0] for p in tiny_pairs]), {}))
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(12):
        loss, _ = fn(critic, step)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0]
    if method == "dpo":
        lp_c, n = sequence_logprobs(critic, [p[0] for p in tiny_pairs])
        assert (n > 0).all() and torch.isfinite(lp_c).all()


def test_guard_stops_and_restores_the_last_checkpoint(tiny_pairs, tmp_path):
    cfg = build_config("tiny", overrides=["critic_refine.learning_rate=1e-2"])
    fn = lambda c, step: (sft_loss(c, [p[0] for p in tiny_pairs]), {"step_seen": step})  # noqa: E731
    ct = cfg.critic_refine
    final = train_loop(cfg, ct, load_trainable(cfg, ct), tmp_path, fn, lambda c: {"probe": 0.0}, False, "guarded", 6,
                       guard=lambda row: "rose" if row["step"] == 4 else None, eval_every=2)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4] and rows[-1]["stopped"] == "rose"
    assert [r["step_seen"] for r in rows] == [0.5, 2.5]  # the loss function's metrics, averaged since the last row
    ckpt = load_file(tmp_path / "ckpt" / "step_000002" / "trainable.safetensors")
    saved = load_file(final / "model.safetensors")
    assert not (tmp_path / "ckpt" / "step_000004").exists()
    # the final critic is the step-2 checkpoint's (transformers saves Qwen2-VL under its legacy key names)
    assert torch.equal(saved["model.embed_tokens.weight"], ckpt["model.language_model.embed_tokens.weight"].half())


def test_metrics_rows_every_log_every_steps_and_evaluation_on_its_own_schedule(tiny_pairs, tmp_path):
    """The refinement curve is dense enough to draw: a loss row every log_every steps, the evaluation added at
    eval_every and at the end; each row's loss averages the steps since the previous row."""
    cfg = build_config("tiny", overrides=["critic_refine.log_every=2"])
    fn = lambda c, step: (sft_loss(c, [p[0] for p in tiny_pairs]), {"step_seen": step})  # noqa: E731
    ct = cfg.critic_refine
    train_loop(cfg, ct, load_trainable(cfg, ct), tmp_path, fn, lambda c: {"probe": 0.0}, False, "logged", 7,
               eval_every=5)
    rows = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4, 5, 6, 7]
    assert ["probe" in r for r in rows] == [False, False, True, False, True]
    assert [r["step_seen"] for r in rows] == [0.5, 2.5, 4.0, 5.0, 6.0]


@pytest.fixture
def judgment_file(tmp_path):
    cfg = build_config("tiny")
    recs = []
    for i, p in enumerate(prompt_pools(cfg.world)[0][:3]):
        a, b = tmp_path / f"{i}a.mp4", tmp_path / f"{i}b.mp4"
        write_video(a, render_prompt(p, 1, cfg.world))
        write_video(b, render_prompt(p, 2, cfg.world))
        paths = [make_sample("AB", "Video A is better on motion.\nAnswer: A", "A")] * 3 + \
            [make_sample("BA", "Video B is better on motion.\nAnswer: B", "B")] * 3 + \
            [make_sample("AB", "Video B is better on motion.\nAnswer: B", "B")]
        recs.append(judgment(p, (str(a), str(b)), "motion", "pairwise", paths).to_dict())
    f = tmp_path / "judgments.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in recs))
    return f


def test_critic_refine_cli_sft_and_dpo(judgment_file, tmp_path, capsys):
    for method in ("sft", "dpo"):
        out = tmp_path / method
        assert main(["critic", "refine", "--preset", "tiny", "--judgments", str(judgment_file), "--out", str(out),
                     f"critic_refine.method={method}", "critic_refine.seed_mix=0"]) == 0
        printed = capsys.readouterr().out
        counts = json.loads((out / "data.json").read_text())
        assert (counts["judgments"], counts["confident"], counts["sft_examples"], counts["dpo_pairs"]) == (3, 3, 6, 6)
        assert f"critic.path={out / 'final'}" in printed and (out / "final" / "model.safetensors").is_file()
        rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["step"] == 2 and "abstention_rate" in rows[-1]
        if method == "dpo":  # the DPO terms are logged next to the loss
            assert {"nll", "reward_acc"} <= set(rows[-1]) and rows[-1]["nll"] > 0
        refined = build_critic(build_config("tiny", overrides=[f"critic.path={out / 'final'}"]))
        rec = json.loads(judgment_file.read_text().splitlines()[0])
        assert len(refined.judge(rec["prompt"], *rec["videos"], "motion").samples) == 4  # it loads and judges
    capsys.readouterr()
    assert main(["critic", "refine", "--preset", "tiny", "--judgments", str(judgment_file), "--out",
                 str(tmp_path / "x"), "critic_refine.certainty_threshold=1.0"]) == 2
    assert "no confident judgment to refine the critic on" in capsys.readouterr().err
    assert main(["critic", "refine", "--preset", "tiny", "--judgments", str(judgment_file), "--out",
                 str(tmp_path / "y")]) == 2
    assert "needs the seed set" in capsys.readouterr().err
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "x"}\n')
    assert main(["critic", "refine", "--preset", "tiny", "--judgments", str(bad), "--out", str(tmp_path / "z")]) == 2
    assert "bad.jsonl:1: not a judgment record" in capsys.readouterr().err


def test_critic_refine_reads_a_round_of_a_run_directory(judgment_file, tmp_path, capsys):
    """`--judgments RUN_DIR --round K` learns from the ledger's round-K judgments (videos relative to the run, as
    the loop stores them): the same data as the same judgments given as JSONL; a missing round or --round is
    refused."""
    recs = [json.loads(x) for x in judgment_file.read_text().splitlines()]
    run = tmp_path / "run"
    (run / "round_01").mkdir(parents=True)
    ledger = Ledger.create(run, {"x": 1}, [(f"p{i}", r["prompt"]) for i, r in enumerate(recs)], {})
    for i, r in enumerate(recs):
        videos = []
        for v in r["videos"]:
            (run / "round_01" / Path(v).name).write_bytes(Path(v).read_bytes())
            videos.append(f"round_01/{Path(v).name}")
        ledger.add_judgment(1, f"p{i}", {**r, "videos": videos})
    ledger.close()
    base = ["critic", "refine", "--preset", "tiny", "critic_refine.seed_mix=0", "--judgments"]
    assert main([*base, str(run), "--round", "1", "--out", str(tmp_path / "r")]) == 0
    assert main([*base, str(judgment_file), "--out", str(tmp_path / "j")]) == 0
    counts = json.loads((tmp_path / "r" / "data.json").read_text())
    assert counts == json.loads((tmp_path / "j" / "data.json").read_text())
    assert (counts["judgments"], counts["confident"], counts["sft_examples"]) == (3, 3, 6)
    capsys.readouterr()
    assert main([*base, str(run), "--round", "2", "--out", str(tmp_path / "x")]) == 2
    assert "holds no judgments of round 2" in capsys.readouterr().err
    assert main([*base, str(run), "--out", str(tmp_path / "y")]) == 2
    assert "say which round's judgments with --round K" in capsys.readouterr().err
    assert main([*base, str(judgment_file), "--round", "1", "--out", str(tmp_path / "z")]) == 2
    assert "--round picks a round of a run directory" in capsys.readouterr().err
