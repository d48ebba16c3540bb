"""Cold start on a tiny critic: loss goes down, checkpoint + resume equals an uninterrupted run, CLI."""

import json
import os
import re

import pytest

from dualipo.cli import main
from dualipo.config import build_config
from dualipo.critic_training.cold_start import cold_start, sft_examples
from dualipo.critic_training.loop import batch_indices, mixed_batch
from dualipo.optim import warmup_cosine
from dualipo.checkpoint import latest_checkpoint
from dualipo.toy.reasoning import CLAIMS
from dualipo.critic_training.seed import load_seed


@pytest.fixture(scope="module")
def seed_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("seedset")
    assert main(["critic", "videos", "--preset", "tiny", "--out", str(d), "--prompts", "2", "--per-prompt", "3"]) == 0
    assert main(["critic", "seed", "--preset", "tiny", "--videos", str(d), "--out", str(d / "seed.jsonl"),
                 "critic_cold.seed_pairs=6", "--pointwise", "2"]) == 0
    return d / "seed.jsonl"


def test_examples_both_orders(seed_file):
    recs = load_seed(seed_file)
    ex = sft_examples(recs, both_orders=True, no_cot_fraction=0.0)
    assert len(ex) == 2 * 6 + 2
    assert ex[0].videos == ex[1].videos[::-1]
    assert ex[0].target.splitlines()[-1] != ex[1].target.splitlines()[-1] or "tie" in ex[0].target
    assert all(e.target.startswith("Answer:") for e in sft_examples(recs, True, no_cot_fraction=1.0))


def test_schedule_and_data_order_are_pure():
    assert batch_indices(3, 10, 4, 0) == batch_indices(3, 10, 4, 0)
    assert sorted(batch_indices(0, 4, 4, 1)) == [0, 1, 2, 3]
    assert warmup_cosine(0, 1.0, 2, 10, 0.1) == 0.5 and abs(warmup_cosine(10, 1.0, 2, 10, 0.1) - 0.1) < 1e-9


def test_mixed_batch_takes_its_share_from_aux():
    main_, aux, aux2 = list("abcdef"), ["x", "y"], ["p", "q", "r", "s"]
    b = mixed_batch(0, main_, [(aux, 0.25)], 8, 0)  # round(0.25 * 8) = 2 captioning items, 6 seed items
    assert sorted(b[:6]) == main_ and sorted(b[6:]) == aux
    assert mixed_batch(5, main_, [(aux, 0.25)], 8, 0) == mixed_batch(5, main_, [(aux, 0.25)], 8, 0)
    assert mixed_batch(1, main_, [([], 0.5), (aux, 0.0)], 4, 0) == [main_[i] for i in batch_indices(1, 6, 4, 0)]
    two = mixed_batch(0, main_, [(aux, 0.25), (aux2, 0.5)], 8, 0)  # 2 seed, 2 captioning, 4 comparison items
    assert set(two[:2]) <= set(main_) and sorted(two[2:4]) == aux and sorted(two[4:]) == aux2


def test_resume_equals_uninterrupted(seed_file, tmp_path):
    over = ["critic_cold.num_steps=4", "critic_cold.checkpoint_every=2", "critic_cold.eval_pairs=0"]
    full = cold_start(build_config("tiny", overrides=over), seed_file, tmp_path / "full")
    first = build_config("tiny", overrides=["critic_cold.num_steps=2", *over[1:]])
    cold_start(first, seed_file, tmp_path / "split")
    cold_start(build_config("tiny", overrides=over), seed_file, tmp_path / "split")  # resumes at step 2
    a = json.loads((latest_checkpoint(tmp_path / "full" / "ckpt") / "state.json").read_text())["extra"]["losses"]
    b = json.loads((latest_checkpoint(tmp_path / "split" / "ckpt") / "state.json").read_text())["extra"]["losses"]
    assert len(a) == len(b) == 4 and a == pytest.approx(b, rel=1e-5, abs=1e-6)
    assert (full / "model.safetensors").is_file() and (full / "tokenizer.json").is_file()


def test_lora_cold_start_and_cli_eval(seed_file, tmp_path, capsys):
    out = tmp_path / "lora"
    assert main(["critic", "cold-start", "--preset", "tiny", f"critic_cold.seed_file={seed_file}", "--heldout",
                 str(seed_file), "--out", str(out), "critic_cold.finetune=lora", "critic_cold.num_steps=1"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and {"accuracy", "position_bias", "abstention_rate", "tie_rate"} <= set(rows[-1])
    capsys.readouterr()
    assert main(["critic", "eval", "--preset", "tiny", "--pairs", str(seed_file), "--limit", "2",
                 f"critic.path={out / 'final'}", "judging.num_votes=1"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["n"] == 2 and 0 <= res["position_bias"] <= 1 and "per_dimension" in res
    runs = {}  # sampled votes (K = 2) are reproducible per --seed, and every judgment can be written out
    for name, seed in (("a", "0"), ("b", "0"), ("c", "1")):
        assert main(["critic", "eval", "--preset", "tiny", "--pairs", str(seed_file), "--limit", "2", "--seed",
                     seed, "--judgments", str(tmp_path / f"{name}.jsonl"), f"critic.path={out / 'final'}",
                     "judging.num_votes=2"]) == 0
        runs[name] = [json.loads(x) for x in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
    labels = [r.label for r in load_seed(seed_file)[:2]]
    assert [j["label"] for j in runs["a"]] == labels and all(len(j["samples"]) == 4 for j in runs["a"])
    texts = {k: [s["text"] for j in v for s in j["samples"]] for k, v in runs.items()}
    assert texts["a"] == texts["b"] and texts["a"] != texts["c"]


def test_caption_pretraining_cli_then_cold_start_from_it(seed_file, tmp_path, capsys):
    from dualipo.critic_training.cold_start import caption_examples, comparison_examples
    from dualipo.critic_training.evaluate import parse_description

    videos = seed_file.parent
    ex = caption_examples([videos])
    assert len(ex) == 6 and all(len(e.videos) == 1 and "Prompt:" not in e.text for e in ex)
    assert all(parse_description(e.target) is not None for e in ex)
    out = tmp_path / "caption"
    assert main(["critic", "caption", "--preset", "tiny", "--videos", str(videos), "--heldout", str(videos),
                 "--out", str(out), "critic_cold.num_steps=2"]) == 0
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    assert {"exact", "malformed", "objects_accuracy", "motion_accuracy", "steadiness_accuracy"} <= set(rows[-1])
    assert rows[-1]["n"] == 2  # the tiny preset evaluates critic_cold.eval_pairs videos
    cache = out / "caption_examples.jsonl"  # descriptions kept for a resume
    lines = cache.read_text().splitlines()
    assert caption_examples([videos], cache=cache) == ex
    cache.write_text("".join(x.replace("The video shows", "CACHED") + "\n" for x in lines))
    assert all(e.target.startswith("CACHED") for e in caption_examples([videos], cache=cache))
    os.utime(ex[0].videos[0], ns=(0, 0))  # a changed video invalidates the cache
    assert caption_examples([videos], cache=cache) == ex and "CACHED" not in cache.read_text()
    cold = tmp_path / "cold"
    args = ["critic", "cold-start", "--preset", "tiny", f"critic_cold.seed_file={seed_file}",
            f"critic_cold.caption_videos=[{videos}]", "--out", str(cold), f"critic.path={out / 'final'}",
            "critic_cold.num_steps=1", "critic_cold.eval_pairs=0"]
    assert main(args) == 2  # captioning videos without a share of the batch for them
    assert "critic_cold.caption_mix or reasoning_mix > 0" in capsys.readouterr().err
    assert main([*args, "critic_cold.caption_mix=0.5", "critic_cold.reasoning_mix=0.5"]) == 2
    assert "leaves no room for the seed set" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # the removed flag: critic_cold.caption_videos replaced it
        main([*args[:5], "--caption-videos", str(videos), *args[6:]])
    assert "unrecognized arguments: --caption-videos" in capsys.readouterr().err
    assert main([*args, "critic_cold.caption_videos=[nowhere]"]) == 2
    assert "critic_cold.caption_videos: not a directory: nowhere" in capsys.readouterr().err
    assert main([*args[:5], "critic_cold.caption_mix=0.25", *args[5:8], "critic_cold.reasoning_mix=0.25",
                 *args[8:]]) == 0  # overrides between the options
    assert (cold / "final" / "model.safetensors").is_file()
    comparisons = comparison_examples([videos], ex, 8, ("motion",))
    assert len(comparisons) == 8 and all(c.videos == () and "<|video_pad|>" not in c.text for c in comparisons)
    assert all(c.text.endswith(".") and "Video B shows" in c.text and "Prompt:" in c.text for c in comparisons)
    for c in comparisons:  # the steps copy the asked motion, rate each video, and the verdict follows from them
        m = re.fullmatch(r" The prompt asks for (.+?)\. Video A is (.+?): (good|no)\. Video B is (.+?): (good|no)\. "
                         r"(.+) on motion\.\nAnswer: (A|B|tie)", c.target)
        assert m, c.target
        want = {("good", "no"): "A", ("no", "good"): "B"}.get((m[3], m[5]), "tie")
        assert m[1] in c.text and m[7] == want and m[6] == CLAIMS[want]


def test_parse_description_fields():
    from dualipo.critic_training.evaluate import parse_description

    got = parse_description("The video shows a red circle to the left of a blue square moving left on a black "
                            "background, steady.")
    assert got == {"objects": "a red circle to the left of a blue square", "motion": "moving left",
                   "background": "black", "steadiness": "steady"}
    assert parse_description("The video shows no clear object on a gray background, flickering.")["motion"] == ""
    assert parse_description("The video shows a red circle growing on a black") is None  # truncated
    assert parse_description("Answer: A") is None


class _FixedCritic:
    """Returns pre-set raw verdicts per order: the arithmetic of evaluate_pairs, checked by hand."""

    def __init__(self, verdicts):
        self.verdicts = verdicts  # per pair: (AB-order verdicts, BA-order verdicts as the model said them)

    def judge_many(self, items, num_votes, chain_of_thought, both_orders):
        from dualipo.critics.voting import judgment, make_sample

        out = []
        for (p, a, b, d), (ab, ba) in zip(items, self.verdicts[:len(items)]):
            ab, ba = ([v] if v is None or isinstance(v, str) else v for v in (ab, ba))  # one vote, or a list
            out.append(judgment(p, (a, b), d, "pairwise", [make_sample("AB", "", v) for v in ab] +
                                [make_sample("BA", "", v) for v in ba]))
        self.verdicts = self.verdicts[len(items):]
        return out


def test_evaluate_pairs_by_hand():
    from dualipo.critic_training.evaluate import evaluate_pairs
    from dualipo.critic_training.seed import SeedRecord

    labels = ["A", "B", "tie", "A"]
    recs = [SeedRecord("p", ("a", "b"), "motion" if i < 2 else "colour", lab, "") for i, lab in enumerate(labels)]
    # pair 0: both orders say A (BA-order "B" maps back to A) -> right; pair 1: position-biased "A" twice -> split;
    # pair 2: tie in both -> right; pair 3: abstain + "A" -> A wins -> right
    res = evaluate_pairs(_FixedCritic([("A", "B"), ("A", "A"), ("tie", "tie"), (None, "B")]), recs)
    assert res["accuracy"] == 0.75 and res["accuracy_decisive"] == pytest.approx(2 / 3)
    assert res["majority_baseline"] == 0.5 and res["undecided_rate"] == 0.25
    assert res["position_bias"] == 0.5  # pairs 0 and 1 name a letter in both orders; pair 1 flips
    assert res["abstention_rate"] == 1 / 8 and res["per_dimension"] == {"colour": 1.0, "motion": 0.5}
    assert res["accuracy_ab"] == 0.5 and res["accuracy_ba"] == 1.0  # BA verdicts mapped back: A, B, tie, A
    assert res["kept_share"] == 0.5 and res["kept_accuracy"] == 1.0 and res["kept_reversed"] == 0.0  # pairs 0, 3


def test_evaluate_pairs_reports_what_the_loop_would_keep():
    from dualipo.critic_training.evaluate import evaluate_pairs
    from dualipo.critic_training.seed import SeedRecord

    recs = [SeedRecord("p", ("a", "b"), "motion", lab, "") for lab in ("A", "B", "tie", "A", "B")]
    votes = [(["A", "A"], ["B", "B"]),  # A 4/4 -> kept, right
             (["A", "A"], ["B", "A"]),  # A 3/4 -> kept, reversed (the label is B)
             (["B", "B"], ["A", "tie"]),  # B 3/4 -> kept, wrong on a tie (not reversed)
             (["A", "B"], ["B", "tie"]),  # A 2/4 -> kept at 0.5 only
             (["tie", "tie"], ["tie", "B"])]  # tie -> never kept
    res = evaluate_pairs(_FixedCritic(list(votes)), recs, certainty_threshold=0.5)
    assert res["kept_share"] == 0.8 and res["kept_accuracy"] == 0.5 and res["kept_reversed"] == 0.25
    res = evaluate_pairs(_FixedCritic(list(votes)), recs, certainty_threshold=0.75)
    assert res["kept_share"] == 0.6 and res["kept_accuracy"] == pytest.approx(1 / 3)
    assert res["kept_reversed"] == pytest.approx(1 / 3)
    assert evaluate_pairs(_FixedCritic(list(votes)), recs, certainty_threshold=1.0)["kept_share"] == 0.2
