"""Prompt templates per quality dimension and the verdict parser.

The critic is asked to reason step by step and to end with one final line in a fixed format:
``Answer: A`` / ``Answer: B`` / ``Answer: tie`` (pairwise) or ``Answer: Good|Normal|Bad`` (pointwise).
`parse_verdict` is strict: anything malformed (no final answer line, truncation, two different answers,
extra words on the answer line) is an abstention (None), never a guess.
"""

from __future__ import annotations

import re

PAIR_VERDICTS = ("A", "B", "tie")
POINT_VERDICTS = ("Good", "Normal", "Bad")

# The paper's dimensions (visual quality, motion, text alignment, consistency) plus the shapes world's own.
QUESTIONS = {
    "overall": "overall quality",
    "alignment": "prompt alignment",
    "colour": "colour",
    "shape": "shape",
    "count": "object count",
    "relation": "spatial relation",
    "motion": "motion",
    "consistency": "visual quality and consistency",
}
VIDEO_SLOT = "<|vision_start|><|video_pad|><|vision_end|>"  # expanded to the video's token count later
ANSWER_RE = re.compile(r"^\s*Answer:\s*(\S+?)\s*\.?\s*$")
ANY_ANSWER_RE = re.compile(r"Answer:\s*(\S+)", re.IGNORECASE)


def _question(dimension: str) -> str:
    if dimension not in QUESTIONS:
        raise ValueError(f"unknown judging dimension {dimension!r}; expected one of {sorted(QUESTIONS)}")
    return QUESTIONS[dimension]


def pair_instruction(dimension: str, chain_of_thought: bool = True) -> str:
    head = f"Which video is better on {_question(dimension)}?"
    if chain_of_thought:
        return f"{head} Think step by step, then end with the line Answer: A, B or tie."
    return f"{head} Reply with the line Answer: A, B or tie only."


def point_instruction(dimension: str, chain_of_thought: bool = True) -> str:
    head = f"How good is the video on {_question(dimension)}?"
    if chain_of_thought:
        return f"{head} Think step by step, then end with the line Answer: Good, Normal or Bad."
    return f"{head} Reply with the line Answer: Good, Normal or Bad only."


def mode_of(text: str) -> str:
    """'pointwise' if a chat text asks for a pointwise verdict (`point_instruction`), else 'pairwise'."""
    return "pointwise" if "Answer: Good, Normal or Bad" in text else "pairwise"


def chat(user: str) -> str:
    """Qwen chat format for one user turn, ending where the assistant's answer starts."""
    return f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def pair_prompt(prompt: str, dimension: str, chain_of_thought: bool = True, videos: bool = True) -> str:
    """Both videos in one prompt, labelled Video A and Video B (in the order the videos are passed); with
    `videos=False` the labels stay and the videos are left out (text-only comparison examples)."""
    slot = VIDEO_SLOT if videos else ""
    return chat(f"Prompt: {prompt}\nVideo A: {slot}\nVideo B: {slot}\n{pair_instruction(dimension, chain_of_thought)}")


def point_prompt(prompt: str, dimension: str, chain_of_thought: bool = True) -> str:
    return chat(f"Prompt: {prompt}\nVideo: {VIDEO_SLOT}\n{point_instruction(dimension, chain_of_thought)}")


def caption_prompt() -> str:
    """Captioning pretraining: the video alone, no text prompt (nothing to copy the answer from)."""
    return chat(f"Video: {VIDEO_SLOT}\nDescribe the video.")


def caption_target(description: str) -> str:
    return f"The video shows {description}."


def caption_description(caption: str) -> str:
    """The description in a caption: 'The video shows X.' -> 'X' (a free-form caption is kept as it is)."""
    text = " ".join(caption.split()).rstrip(".")
    return text.removeprefix("The video shows ").strip() or "nothing recognisable"


def described(descriptions: list[str]) -> str:
    """The start of a rationale that restates descriptions made before the prompt was seen (two-step judging):
    'Video A shows X. Video B shows Y.' for a pair, 'The video shows X.' for one video, the form the seed
    rationales begin with, so the critic goes on with the comparison and the verdict. No trailing space: the
    next word's token carries its own leading space, as in training."""
    if len(descriptions) == 1:
        return f"The video shows {descriptions[0]}."
    a, b = descriptions
    return f"Video A shows {a}. Video B shows {b}."


def target_text(reason: str, verdict: str, chain_of_thought: bool = True) -> str:
    """The assistant answer the critic is trained to produce: rationale, then the final verdict line."""
    answer = f"Answer: {verdict}"
    return f"{reason.strip()}\n{answer}" if chain_of_thought and reason.strip() else answer


def parse_verdict(text: str, mode: str = "pairwise") -> str | None:
    """The verdict of the last non-empty line `Answer: X`, or None (abstention) if the output is malformed.

    Malformed: no answer line at the end (truncated), a verdict outside the mode's set, extra words on the
    answer line, or another `Answer:` earlier in the text that names a different verdict (contradictory).
    """
    allowed = {"pairwise": PAIR_VERDICTS, "pointwise": POINT_VERDICTS}.get(mode)
    if allowed is None:
        raise ValueError(f"unknown judging mode {mode!r}; expected 'pairwise' or 'pointwise'")
    lines = [ln for ln in text.replace("\r", "\n").split("\n") if ln.strip()]
    if not lines:
        return None
    m = ANSWER_RE.match(lines[-1])
    if m is None:
        return None
    canon = {v.lower(): v for v in allowed}
    verdict = canon.get(m.group(1).lower())
    if verdict is None:
        return None
    for other in ANY_ANSWER_RE.findall("\n".join(lines[:-1])):
        if canon.get(other.strip(".,;").lower()) != verdict:
            return None
    return verdict


def swap_verdict(verdict: str | None) -> str | None:
    """Map a verdict given for the order (b, a) back to the order (a, b)."""
    return {"A": "B", "B": "A"}.get(verdict, verdict) if verdict is not None else None


_SENTENCE_RE = re.compile(r"[^.!?]*[.!?]+(?:\s+|$)|[^.!?]+$")
_DESCRIBES_RE = re.compile(r"^\s*Video ([AB]) (shows|is)\b(?! better\b)")  # a description, or a step


def swap_reason(reason: str) -> str:
    """The same rationale for the swapped order: 'Video A' and 'Video B' exchanged, and the sentences about one
    video ('Video B shows ...', and the steps 'Video B is growing: good.') put back in A-then-B order, each kind
    in its own places, so the rationale's structure does not depend on the presentation order (only its content
    does). The claim ('Video B is better ...') stays where it is."""
    swapped = re.sub(r"\bVideo ([AB])\b", lambda m: "Video " + ("B" if m.group(1) == "A" else "A"), reason)
    sentences = _SENTENCE_RE.findall(swapped)
    slots = []
    for kind in ("shows", "is"):
        mine = [i for i, t in enumerate(sentences) if (m := _DESCRIBES_RE.match(t)) and m.group(2) == kind]
        ordered = sorted((sentences[i] for i in mine), key=lambda t: _DESCRIBES_RE.match(t).group(1))
        for i, t in zip(mine, ordered):
            sentences[i] = t
        slots += mine
    out = "".join(sentences)
    if slots and not out.endswith(swapped[len(swapped.rstrip()):]):
        out = out.rstrip() + swapped[len(swapped.rstrip()):]
    return out


_CLAIM_RE = re.compile(r"(Video [AB] is better|Both are equally good|\b(?:Good|Normal|Bad) on\b)")


def rationale_claim(text: str) -> str | None:
    """The verdict the rationale itself states ('Video A is better' -> 'A'), or None if it states none."""
    claims = _CLAIM_RE.findall(text)
    if not claims:
        return None
    last = claims[-1]
    if last.startswith("Video"):
        return last.split()[1]
    return "tie" if last.startswith("Both") else last.split()[0]


def rationale_agrees(text: str, verdict: str | None) -> bool:
    """Rationale-verdict consistency (SRPO filter): the stated claim, if any, equals the verdict."""
    claim = rationale_claim(text)
    return verdict is not None and (claim is None or claim == verdict)
