"""Oracle-made seed labels: the shapes world's stand-in for human annotators.

Pairwise (A / B / tie) and pointwise (Good / Normal / Bad) labels per quality dimension, each with a short
templated reason that ends in the verdict, and a configurable label-noise rate: with probability `noise_rate`
the annotator's verdict is replaced by a different one drawn uniformly (annotator disagreement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualipo.toy.oracle import OracleScore, score, verdict
from dualipo.toy.reasoning import CLAIMS, rationale_steps
from dualipo.video import Video

PAIR_LABELS = ("A", "B", "tie")
POINT_LABELS = ("Good", "Normal", "Bad")
TIE_MARGIN = 0.15  # oracle scores closer than this are a tie: an annotator does not tell them apart
POINT_CUTS = (0.5, 0.85)  # pointwise levels: Bad below the first cut, Good from the second, Normal between
MAX_LISTED = 3  # objects named in a description before it says "and more"


@dataclass(frozen=True)
class OracleLabel:
    label: str  # the (possibly noisy) verdict
    reason: str  # templated rationale that ends with the verdict
    clean_label: str  # the oracle's own verdict before noise
    scores: tuple[float, ...]  # the oracle's score(s) on the dimension

    @property
    def noisy(self) -> bool:
        return self.label != self.clean_label


def describe(s: OracleScore) -> str:
    """What the oracle saw, in words: 'a red circle to the left of a blue square moving left on a black
    background, steady' (two objects are placed relative to each other, more than three are cut to three
    'and more'; the last word rates consistency)."""
    objects = s.seen.get("objects") or []
    if s.seen.get("layout"):
        things = f"a {s.seen['layout']}"
    elif len(objects) > MAX_LISTED:  # a scatter of blobs: name a few, keep rationales short
        things = ", ".join(f"a {o}" for o in objects[:MAX_LISTED]) + " and more"
    else:
        things = " and ".join(f"a {o}" for o in objects) if objects else "no clear object"
    motion = s.seen.get("motion")
    moving = {"static": "staying still", "none": "", "growing": "growing", "shrinking": "shrinking"}.get(
        motion, f"moving {motion}")
    c = s.dims.get("consistency", 1.0)
    steady = "steady" if c >= 0.75 else "unsteady" if c >= 0.4 else "flickering"
    return " ".join(p for p in (things, moving, f"on a {s.seen.get('background')} background,", steady) if p)


def _noisy(clean: str, options: tuple[str, ...], rng: np.random.Generator, noise_rate: float) -> str:
    if not 0.0 <= noise_rate <= 1.0:
        raise ValueError(f"noise_rate must be in [0, 1], got {noise_rate}")
    if rng.random() >= noise_rate:
        return clean
    others = [o for o in options if o != clean]
    return others[int(rng.integers(len(others)))]


def label_pair(prompt: str, a: Video, b: Video, dimension: str, rng: np.random.Generator,
               noise_rate: float = 0.1, tie_margin: float = TIE_MARGIN) -> OracleLabel:
    """Pairwise label on `dimension` ('overall', 'alignment', 'motion', ...)."""
    sa, sb = score(prompt, a), score(prompt, b)
    va, vb = sa.get(dimension), sb.get(dimension)
    clean = verdict(va, vb, tie_margin)
    label = _noisy(clean, PAIR_LABELS, rng, noise_rate)
    claim = CLAIMS[label]
    da, db = describe(sa), describe(sb)
    reason = f"Video A shows {da}. Video B shows {db}.{rationale_steps(prompt, dimension, [da, db])} {claim} on " \
             f"{dimension}."
    return OracleLabel(label, reason, clean, (va, vb))


def level_index(value: float, cuts: tuple[float, ...] = POINT_CUTS) -> int:
    """How many of the ascending `cuts` a score reaches: 0 .. len(cuts) (0 = Bad .. 2 = Good at POINT_CUTS)."""
    return sum(value >= c for c in cuts)


def point_level(value: float) -> str:
    """The seed annotators' pointwise level of an oracle score: Good / Normal / Bad at POINT_CUTS."""
    return POINT_LABELS[len(POINT_CUTS) - level_index(value)]


def label_single(prompt: str, video: Video, dimension: str, rng: np.random.Generator,
                 noise_rate: float = 0.1, scored: OracleScore | None = None) -> OracleLabel:
    """Pointwise label at `point_level`. `scored`: the oracle's score of this video against this prompt, when
    the caller has it already (labelling several dimensions)."""
    s = scored if scored is not None else score(prompt, video)
    v = s.get(dimension)
    clean = point_level(v)
    label = _noisy(clean, POINT_LABELS, rng, noise_rate)
    d = describe(s)
    reason = f"The video shows {d}.{rationale_steps(prompt, dimension, [d])} {label} on {dimension}."
    return OracleLabel(label, reason, clean, (v,))
