"""Verdict parser and prompt templates: well-formed, truncated, contradictory and adversarial outputs."""

import pytest

from dualipo.critics import prompts
from dualipo.critics.prompts import parse_verdict, rationale_agrees, rationale_claim, swap_reason


@pytest.mark.parametrize("text,verdict", [
    ("Video A shows a red circle. Video B shows a blue circle.\nAnswer: A", "A"),
    ("reasoning\nAnswer: B", "B"),
    ("Answer: tie", "tie"),
    ("Answer: TIE", "tie"),
    ("step 1\nstep 2\n\nAnswer:  A.  \n\n", "A"),
    ("The answer is clear.\r\nAnswer: B", "B"),
    ("First I thought Answer: A was right; Answer: A\nAnswer: A", "A"),
])
def test_well_formed(text, verdict):
    assert parse_verdict(text) == verdict


@pytest.mark.parametrize("text", [
    "", "   \n ", "Video A shows a red circle. Video B sh",  # truncated
    "Video A shows a red circle.\nAnswer:",  # truncated answer
    "Answer: A\nVideo B is actually better",  # answer not on the last line
    "Answer: A\nAnswer: B",  # contradictory
    "I would say Answer: B but\nAnswer: A",  # contradictory, answer earlier in the text
    "Answer: A or B", "Answer: AB", "Answer: C", "Answer: Good",  # outside the pairwise set
    "answer A", "Verdict: A", "The final answer: A is better",  # wrong format
    "Answer: A\u200b", "Answer: 'A'",  # adversarial characters
])
def test_malformed_is_abstention(text):
    assert parse_verdict(text) is None


def test_pointwise_parsing():
    assert parse_verdict("The video shows a red circle.\nAnswer: Good", "pointwise") == "Good"
    assert parse_verdict("Answer: bad", "pointwise") == "Bad"
    assert parse_verdict("Answer: A", "pointwise") is None
    assert parse_verdict("Answer: Normal\nAnswer: Bad", "pointwise") is None
    with pytest.raises(ValueError, match="mode"):
        parse_verdict("Answer: A", "ranking")


def test_templates_per_dimension():
    for dim in prompts.QUESTIONS:
        cot = prompts.pair_prompt("a red circle moving left on a black background", dim, True)
        plain = prompts.pair_prompt("a red circle moving left on a black background", dim, False)
        assert cot.count(prompts.VIDEO_SLOT) == 2 and "Video A" in cot and "Video B" in cot
        assert "step by step" in cot and "step by step" not in plain
        assert prompts.point_prompt("p", dim).count(prompts.VIDEO_SLOT) == 1
    with pytest.raises(ValueError, match="dimension"):
        prompts.pair_prompt("p", "beauty")


def test_target_and_swap():
    reason = "Video A shows a red circle. Video B shows a blue circle. Video A is better on colour."
    assert prompts.target_text(reason, "A").endswith("\nAnswer: A")
    assert prompts.target_text(reason, "A", chain_of_thought=False) == "Answer: A"
    swapped = swap_reason(reason)
    assert swapped == "Video A shows a blue circle. Video B shows a red circle. Video B is better on colour."
    assert swap_reason("Video A is better: it moves left.") == "Video B is better: it moves left."
    steps = ("Video A shows a red circle moving left. Video B shows a red circle growing. The prompt asks for growing. "
             "Video A is moving left: no. Video B is growing: good. Video B is better on motion.")
    assert swap_reason(steps) == ("Video A shows a red circle growing. Video B shows a red circle moving left. The "
                                  "prompt asks for growing. Video A is growing: good. Video B is moving left: no. "
                                  "Video A is better on motion.")
    assert prompts.swap_verdict("A") == "B" and prompts.swap_verdict("tie") == "tie"
    assert rationale_claim(reason) == "A" and rationale_agrees(reason, "A") and not rationale_agrees(reason, "B")
    assert rationale_claim("Both are equally good on motion.") == "tie"
    assert rationale_agrees("no claim here", "B") and not rationale_agrees("no claim", None)


def test_two_step_rationale_start():
    assert prompts.caption_description(" The video shows a red circle moving left.\n") == "a red circle moving left"
    assert prompts.caption_description("a blue blob") == "a blue blob"  # free-form caption kept
    assert prompts.caption_description(" . ") == "nothing recognisable"
    assert prompts.described(["x", "y"]) == "Video A shows x. Video B shows y."
    assert prompts.described(["x"]) == "The video shows x."
