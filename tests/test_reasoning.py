"""Text-only comparison examples (the shapes world's stand-in for a language model's reasoning)."""

import numpy as np
import pytest

from dualipo.toy.reasoning import Described, comparisons, rationale_steps, values, vary

PROMPT = "a red circle moving left on a black background"
REF = "a red circle moving left on a black background, steady"


def test_describe_fields_roundtrip_and_values_by_hand():
    ref = Described.parse(REF)
    assert ref == Described("a red circle", "moving left", "black", "steady") and ref.text() == REF
    assert Described.parse("no clear object on a gray background, flickering").motion == ""
    assert Described.parse("a red circle moving left") is None
    wrong = Described("a red square", "moving right", "black", "unsteady")
    assert values(ref, ref, "moving left") == {"motion": 1.0, "alignment": 2.0, "consistency": 1.0, "overall": 4.0}
    # motion 0, objects wrong + background right = 1, unsteady = 1/2, overall 0 + 1 + 0.5
    assert values(wrong, ref, "moving left") == {"motion": 0.0, "alignment": 1.0, "consistency": 0.5,
                                                 "overall": 1.5}


def test_vary_changes_each_field_at_its_rate():
    ref = Described.parse(REF)
    rng = np.random.default_rng(0)
    assert all(vary(ref, rng, 0.0) == ref for _ in range(20))
    changed = [vary(ref, rng, 1.0) for _ in range(20)]
    for d in changed:
        assert d.motion != ref.motion and d.background != ref.background and d.steadiness != ref.steadiness
        assert d.objects != ref.objects and len(d.objects.split()) == 3  # one colour or shape word replaced


def test_comparisons_follow_the_rule_and_skip_bad_references():
    refs = [(PROMPT, REF), ("two red circles moving left on a black background", REF),  # objects not as asked
            ("a blue circle moving up on a navy background", "a blue circle moving up on a black background, "
             "steady")]  # background not as asked
    out = comparisons(refs, 300, ("motion", "alignment", "consistency", "overall"), seed=1)
    assert len(out) == 300 and {p for p, *_ in out} == {PROMPT}
    ref = Described.parse(REF)
    for _, a, b, dim, verdict in out:
        va, vb = (values(Described.parse(x), ref, "moving left")[dim] for x in (a, b))
        assert verdict == ("tie" if va == vb else "A" if va > vb else "B")
    assert {v for *_, v in out} == {"A", "B", "tie"} and {d for *_, d, _ in out} == {"motion", "alignment",
                                                                                     "consistency", "overall"}
    assert comparisons(refs, 50, ("motion",), seed=1) == comparisons(refs, 50, ("motion",), seed=1)
    with pytest.raises(ValueError, match="nothing to build comparisons from"):
        comparisons(refs[1:], 5, ("motion",))


def test_rationale_steps_by_hand():
    for dim in ("consistency", "alignment", "overall"):
        assert rationale_steps(PROMPT, dim, [REF, REF]) == ""
    assert rationale_steps("a red circle on a black background", "motion", [REF, REF]) == ""
    other = "a red circle growing on a gray background, steady"
    assert rationale_steps(PROMPT, "motion", [REF, other]) == (" The prompt asks for moving left. Video A is moving "
                                                               "left: good. Video B is growing: no.")
    assert rationale_steps(PROMPT, "motion", ["no clear object on a gray background, flickering"]) == (
        " The prompt asks for moving left. The video is no motion: no.")


def test_comparisons_draw_sampled_descriptions_at_their_share():
    sampled = "a red circle and a blue blob growing on a black background, flickering"
    refs = [(PROMPT, REF)]
    none = comparisons(refs, 200, ("motion",), seed=2, samples={PROMPT: [sampled]}, sample_share=0.0)
    every = comparisons(refs, 200, ("motion",), seed=2, samples={PROMPT: [sampled]}, sample_share=1.0)
    assert all(sampled not in (a, b) for _, a, b, *_ in none)
    assert all(a == b == sampled and v == "tie" for _, a, b, _, v in every)
    half = comparisons(refs, 400, ("motion",), seed=2, samples={PROMPT: [sampled, "garbled"]}, sample_share=0.5)
    share = sum((a == sampled) + (b == sampled) for _, a, b, *_ in half) / 800
    assert 0.4 < share < 0.6  # unparseable sampled descriptions are dropped, not compared
