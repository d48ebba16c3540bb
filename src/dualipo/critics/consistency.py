"""Rationale-verdict consistency: a vote filter for self-refinement (SRPO).

A sampled reasoning path votes only if its verdict agrees with what its own reasoning says. Checks
(`critic_refine.consistency`):
- `off`: every parseable path votes;
- `claim`: the rationale's stated claim ('Video B is better ...', 'Good on motion.') is the verdict of its answer line
  (`prompts.rationale_agrees`); works for any critic whose rationales state a claim in that form;
- `shapes`: the shapes world's structured rationales: the verdict is the video whose own description
  ('Video A shows ...') shows more of what the prompt asks for on the judged dimension
  (`toy.reasoning.reasoned_verdict`, read from the prompt's words: no oracle). A path whose descriptions
  cannot be read on a checked dimension does not vote; dimensions the check does not cover keep every path.
Everything is in the path's own presentation order; the filtered judgment is re-voted with `voting.judgment`.
"""

from __future__ import annotations

from dualipo.critics.prompts import rationale_agrees
from dualipo.critics.voting import SCORED, Judgment, Sample, from_scores, judgment, pair_from_points

CHECKS = ("off", "claim", "shapes")


def path_consistent(check: str, prompt: str, dimension: str, sample: Sample) -> bool:
    """Whether one sampled path may vote under `check` (abstentions never vote)."""
    if sample.raw_verdict is None:
        return False
    if check == "off":
        return True
    if check == "claim" or (check == "shapes" and sample.order not in ("AB", "BA")):
        return rationale_agrees(sample.text, sample.raw_verdict)  # `shapes` reads pairwise rationales only
    if check == "shapes":
        from dualipo.toy.reasoning import CHECKED_DIMENSIONS, reasoned_verdict

        if dimension not in CHECKED_DIMENSIONS:
            return True
        return reasoned_verdict(prompt, dimension, sample.text) == sample.raw_verdict
    raise ValueError(f"critic_refine.consistency: expected one of {CHECKS}, got {check!r}")


def filter_judgment(j: Judgment, check: str) -> tuple[Judgment, int]:
    """(the judgment re-voted over its consistent paths only, how many parseable paths were filtered out).
    Pointwise judgments are left as they are (the checks read pairwise rationales); a pair judged from pointwise
    scores is re-aggregated (`voting.pair_from_points`) over its consistent paths, each checked on its claim."""
    if j.mode != "pairwise" or check == "off":
        return j, 0
    keep = [s for s in j.samples if path_consistent(check, j.prompt, j.dimension, s)]
    filtered = sum(s.raw_verdict is not None for s in j.samples) - len(keep)
    if from_scores(j):
        a, b = ([s for s in keep if s.order == side] for side in SCORED)
        return pair_from_points(j.prompt, j.videos, j.dimension, a, b), filtered
    return judgment(j.prompt, j.videos, j.dimension, j.mode, keep), filtered
