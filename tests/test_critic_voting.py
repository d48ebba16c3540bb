"""Voting: majority, vote share, abstentions, order mapping, position bias (pure functions)."""

from dataclasses import replace

from dualipo.critics.voting import judgment, majority, make_sample, position_flip, tally


def test_tally_and_majority():
    votes, abstained = tally(["A", "A", None, "B", "A", None])
    assert votes == {"A": 3, "B": 1} and abstained == 2
    assert majority(votes) == ("A", 0.75)
    assert majority({"A": 2, "B": 2}) == (None, 0.0)
    assert majority({}) == (None, 0.0)
    assert majority({"tie": 3, "A": 1, "B": 1}) == ("tie", 0.6)


def test_swapped_order_maps_back():
    s = make_sample("BA", "...\nAnswer: A", "A")
    assert s.verdict == "B" and s.raw_verdict == "A"
    assert make_sample("BA", "Answer: tie", "tie").verdict == "tie"
    assert make_sample("BA", "garbage", None).verdict is None


def test_judgment_record():
    samples = [make_sample("AB", "r1\nAnswer: A", "A"), make_sample("AB", "r2", None),
               make_sample("BA", "r3\nAnswer: B", "B"), make_sample("BA", "r4\nAnswer: A", "A")]
    j = judgment("a red circle", ("a.mp4", "b.mp4"), "motion", "pairwise", samples)
    assert j.verdict == "A" and j.votes == {"A": 2, "B": 1} and j.abstentions == 1
    assert abs(j.certainty - 2 / 3) < 1e-9
    d = j.to_dict()
    assert d["samples"][2]["text"] == "r3\nAnswer: B" and d["videos"] == ("a.mp4", "b.mp4")
    rooted = j.under("runs/x")
    assert rooted.videos == ("runs/x/a.mp4", "runs/x/b.mp4") and rooted.samples == j.samples
    assert replace(j, videos=("/abs/a.mp4",)).under("runs/x").videos == ("/abs/a.mp4",)


def test_position_flip():
    biased = [make_sample("AB", "", "A"), make_sample("BA", "", "A")]
    consistent = [make_sample("AB", "", "A"), make_sample("BA", "", "B")]
    assert position_flip(biased) is True
    assert position_flip(consistent) is False
    assert position_flip([make_sample("AB", "", "tie"), make_sample("BA", "", "A")]) is None


def test_pair_from_points_votes_over_every_pair_of_paths():
    from dualipo.critics.voting import compare_points, pair_from_points

    assert [compare_points(a, b) for a, b in [("Good", "Bad"), ("Bad", "Normal"), ("Normal", "Normal"),
                                              (None, "Good"), ("Good", None)]] == ["A", "B", "tie", None, None]
    a = [make_sample("", "t", v) for v in ("Good", "Good", "Normal")]
    b = [make_sample("", "t", v) for v in ("Normal", "Bad", None)]
    j = pair_from_points("p", ("a.mp4", "b.mp4"), "colour", a, b)
    # a's levels 2, 2, 1 against b's 1, 0 (b's third path abstained): 2 vs 1 A, 2 vs 0 A (twice each),
    # 1 vs 1 tie, 1 vs 0 A -> A 5, tie 1; the abstaining path casts none of its 3 votes
    assert j.votes == {"A": 5, "tie": 1} and j.verdict == "A" and abs(j.certainty - 5 / 6) < 1e-9
    assert j.abstentions == 1 and j.mode == "pairwise" and [s.order for s in j.samples] == list("AAABBB")
    even = pair_from_points("p", ("a", "b"), "colour", [make_sample("", "t", "Good")],
                            [make_sample("", "t", "Good")])
    assert even.verdict == "tie" and even.certainty == 1.0
    split = pair_from_points("p", ("a", "b"), "colour", [make_sample("", "t", "Normal")],
                             [make_sample("", "t", v) for v in ("Good", "Bad")])
    assert split.verdict is None and split.certainty == 0.0  # A 1, B 1: no majority


def test_calibration_table_arithmetic():
    from dualipo.cli_critic import calibration_text
    from dualipo.critic_training.evaluate import calibration_table
    from dualipo.critics.voting import Judgment

    def j(verdict, certainty):
        return Judgment("p", ("a", "b"), "motion", "pairwise", (), verdict, certainty)

    judged = [j("A", 1.0), j("A", 0.9), j("B", 0.75), j("B", 0.6), j("tie", 1.0), j(None, 0.0)]
    labels = ["A", "B", "B", "tie", "A", "B"]
    rows = calibration_table(judged, labels, thresholds=(0.5, 0.7, 0.95))
    # >= 0.5 keeps the four A / B verdicts: right 1 and 3, the third reversed (B labelled, A said), the fourth a tie
    assert rows[0] == {"threshold": 0.5, "kept": 4, "kept_share": 0.6667, "kept_accuracy": 0.5,
                       "kept_reversed": 0.25}
    assert rows[1] == {"threshold": 0.7, "kept": 3, "kept_share": 0.5, "kept_accuracy": 0.6667,
                       "kept_reversed": 0.3333}
    assert rows[2] == {"threshold": 0.95, "kept": 1, "kept_share": 0.1667, "kept_accuracy": 1.0,
                       "kept_reversed": 0.0}
    assert calibration_table([j(None, 0.0)], ["A"], (0.5,))[0]["kept_accuracy"] is None
    text = calibration_text(rows).splitlines()
    assert len(text) == 4 and text[1].split() == ["0.50", "4", "0.667", "0.500", "0.250"]
