"""Text-only comparison examples: the shapes world's stand-in for the reasoning a real critic's language model
brings from its pretraining.

A real VLM critic can compare what it sees with what a prompt asks for before it is ever shown a preference
label. The tiny critic cannot: given the oracle's own true descriptions of two videos, its verdict is barely
above chance (see assets/critic_small/README.md). These examples teach only that comparison, from text:

    Prompt: a red circle moving left on a black background      (no video)
    Video A shows a red circle moving right on a black background, steady. Video B shows ...
    -> The prompt asks for moving left. Video A is moving right: no. Video B is moving left: good.
       Video B is better on motion.  Answer: B

Each example starts from the true description of a clean render of its prompt (what the prompt looks like) and
varies the motion, objects, background and steadiness of two copies, or takes the true descriptions of other
videos of the prompt (the captioning data of a generator's samples). The verdict follows a fixed rule on those
fields: no preference label and no oracle judgment of a video is used, and no video is shown. The rationale's
steps (`rationale_steps`) are the same as the seed rationales'.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import numpy as np

from dualipo.config import BACKGROUNDS, COLOURS, SHAPES
from dualipo.toy.world import DIRECTIONS

MOTIONS = tuple(f"moving {d}" for d in DIRECTIONS) + ("staying still", "growing", "shrinking")
STEADINESS = {"steady": 2, "unsteady": 1, "flickering": 0}
CLAIMS = {"A": "Video A is better", "B": "Video B is better", "tie": "Both are equally good"}  # a rationale's claim
_DESCRIPTION_RE = re.compile(r"^(?P<objects>.+?)(?: (?P<motion>moving \w+|staying still|growing|shrinking))? "
                             r"on a (?P<background>\w+) background, (?P<steadiness>\w+)$")
_ASKED_MOTION_RE = re.compile(r"\b(" + "|".join(MOTIONS) + r")\b")
_WORDS = re.compile(r"\b(" + "|".join(COLOURS + SHAPES) + r")\b")


@dataclass(frozen=True)
class Described:
    """The fields of a description 'OBJECTS MOTION on a BACKGROUND background, STEADINESS'."""
    objects: str
    motion: str
    background: str
    steadiness: str

    @classmethod
    def parse(cls, description: str) -> "Described | None":
        m = _DESCRIPTION_RE.match(description.strip().rstrip("."))
        return None if m is None else cls(m["objects"], m["motion"] or "", m["background"], m["steadiness"])

    def text(self) -> str:
        return " ".join(p for p in (self.objects, self.motion, f"on a {self.background} background,",
                                    self.steadiness) if p)


def values(d: Described, reference: Described, asked_motion: str) -> dict[str, float]:
    """The rule behind the verdicts: per dimension, how much of what the prompt asks for the description shows
    (`reference` = the clean render's description: the objects and background the prompt asks for)."""
    motion = float(d.motion == asked_motion)
    alignment = float(d.objects == reference.objects) + float(d.background == reference.background)
    consistency = STEADINESS.get(d.steadiness, 0) / 2
    return {"motion": motion, "alignment": alignment, "consistency": consistency,
            "overall": motion + alignment + consistency}


def _shows_what_is_asked(prompt: str, d: Described) -> bool:
    """The reference must show the prompt's colour and shape words and background (one-of-each prompts; the
    oracle's description of 'two red circles' names each circle and never matches)."""
    asked = prompt.split(" on a ")[0]
    return sorted(_WORDS.findall(d.objects)) == sorted(_WORDS.findall(asked)) and \
        f"on a {d.background} background" in prompt


def vary(d: Described, rng: np.random.Generator, rate: float) -> Described:
    """A copy with each field changed with probability `rate` (objects: one colour or shape word replaced)."""
    if rng.random() < rate:
        d = replace(d, motion=_other(MOTIONS, d.motion, rng))
    if rng.random() < rate:
        words = list(_WORDS.finditer(d.objects))
        if words:
            w = words[int(rng.integers(len(words)))]
            pool = COLOURS if w.group(1) in COLOURS else SHAPES
            d = replace(d, objects=d.objects[:w.start()] + _other(pool, w.group(1), rng) + d.objects[w.end():])
    if rng.random() < rate:
        d = replace(d, background=_other(BACKGROUNDS, d.background, rng))
    if rng.random() < rate:
        d = replace(d, steadiness=_other(tuple(STEADINESS), d.steadiness, rng))
    return d


def _other(options: tuple[str, ...], current: str, rng: np.random.Generator) -> str:
    rest = [o for o in options if o != current]
    return rest[int(rng.integers(len(rest)))]


def comparisons(references: list[tuple[str, str]], n: int, dimensions: tuple[str, ...], seed: int = 0,
                rate: float = 0.35, samples: dict[str, list[str]] | None = None,
                sample_share: float = 0.0) -> list[tuple[str, str, str, str, str]]:
    """`n` (prompt, description A, description B, dimension, verdict) from (prompt, true description of a clean
    render) references. Each compared description is, with probability `sample_share` and where `samples` holds
    true descriptions of other videos of that prompt (a generator's samples), one of those, else a `vary`-ed copy
    of the reference. Dimensions are drawn uniformly from `dimensions` (repeat one to weight it). Verdict: the
    description with the higher `values` on the dimension, tie if equal."""
    refs = [(p, d, m.group(1)) for p, text in references
            if (d := Described.parse(text)) is not None and (m := _ASKED_MOTION_RE.search(p)) is not None
            and _shows_what_is_asked(p, d)]
    if not refs:
        raise ValueError("no clean render whose description shows the objects and background its prompt asks "
                         "for: nothing to build comparisons from")
    seen = {p: parsed for p, texts in (samples or {}).items()
            if (parsed := [d for t in texts if (d := Described.parse(t)) is not None])}
    rng = np.random.default_rng([seed, 7])
    out = []
    for _ in range(n):
        prompt, ref, asked = refs[int(rng.integers(len(refs)))]
        dim = dimensions[int(rng.integers(len(dimensions)))]
        pool = seen.get(prompt, [])
        a, b = (pool[int(rng.integers(len(pool)))] if pool and rng.random() < sample_share else vary(ref, rng, rate)
                for _ in range(2))
        va, vb = values(a, ref, asked)[dim], values(b, ref, asked)[dim]
        out.append((prompt, a.text(), b.text(), dim, "tie" if va == vb else "A" if va > vb else "B"))
    return out


def rationale_steps(prompt: str, dimension: str, descriptions: list[str]) -> str:
    """The steps between a motion rationale's descriptions and its claim: copy out the asked motion, then name
    each video's motion and whether it is the asked one (' The prompt asks for moving left. Video A is moving
    left: good. Video B is growing: no.'; one video: ' The video is ...'). Each step only copies or compares
    neighbouring words, which a small language model learns where it does not learn the comparison in one jump
    (assets/critic_small/README.md). Other dimensions get no steps: copying the prompt into their rationales did
    not help the small critic's alignment and overall verdicts (measured with true descriptions prefilled)."""
    m = _ASKED_MOTION_RE.search(prompt)
    if dimension != "motion" or m is None:
        return ""
    asked, parsed = m.group(1), [Described.parse(d) for d in descriptions]
    steps = f" The prompt asks for {asked}."
    if all(parsed):
        names = ("Video A", "Video B") if len(parsed) == 2 else ("The video",)
        steps += "".join(f" {name} is {d.motion or 'no motion'}: {'good' if d.motion == asked else 'no'}."
                         for name, d in zip(names, parsed))
    return steps


_PAIR_DESCRIPTIONS_RE = re.compile(r"Video A shows (?P<a>[^.]+)\. Video B shows (?P<b>[^.]+)\.")
_ASKED_BACKGROUND_RE = re.compile(r"\bon an? (\w+) background\b")
CHECKED_DIMENSIONS = ("overall", "alignment", "motion", "consistency")


def prompt_values(prompt: str, d: Described) -> dict[str, float] | None:
    """`values` against the prompt's own words (no render, no oracle): alignment counts the description's colour
    and shape words equal to the prompt's (as multisets; the relation's wording is not compared) and the
    background; motion, whether it shows the asked motion; consistency, its steadiness. None if the prompt is
    not in the world's grammar."""
    motion, background = _ASKED_MOTION_RE.search(prompt), _ASKED_BACKGROUND_RE.search(prompt)
    if motion is None or background is None:
        return None
    asked = sorted(_WORDS.findall(prompt.split(" on a")[0]))
    alignment = float(sorted(_WORDS.findall(d.objects)) == asked) + float(d.background == background.group(1))
    m = float(d.motion == motion.group(1))
    consistency = STEADINESS.get(d.steadiness, 0) / 2
    return {"motion": m, "alignment": alignment, "consistency": consistency, "overall": m + alignment + consistency}


def reasoned_verdict(prompt: str, dimension: str, text: str) -> str | None:
    """The verdict a pairwise rationale's own descriptions imply ('Video A shows X. Video B shows Y.', in the
    rationale's own presentation order): the video whose description shows more of what the prompt asks for on
    `dimension` (`prompt_values`), 'tie' if equal. None when it cannot be read: descriptions missing or
    malformed, a dimension outside `CHECKED_DIMENSIONS`, or a prompt outside the world's grammar."""
    m = _PAIR_DESCRIPTIONS_RE.search(text)
    if m is None or dimension not in CHECKED_DIMENSIONS:
        return None
    a, b = Described.parse(m["a"]), Described.parse(m["b"])
    if a is None or b is None:
        return None
    va, vb = prompt_values(prompt, a), prompt_values(prompt, b)
    if va is None or vb is None:
        return None
    return "tie" if va[dimension] == vb[dimension] else "A" if va[dimension] > vb[dimension] else "B"
