"""An offline byte-level BPE tokenizer for critics built from config (no hub access).

Trained in about 0.1 s on text generated from the shapes world's vocabulary and the critic's templates, with the
Qwen2-VL special tokens, so every prompt, rationale and verdict word is usually one token. Byte-level, so any text
still encodes. Deterministic: the same vocabulary size gives the same tokenizer.
"""

from __future__ import annotations

import itertools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from dualipo.config import BACKGROUNDS, COLOURS, DIMENSIONS, SHAPES

SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>", "<|vision_end|>",
            "<|image_pad|>", "<|video_pad|>")
PAD, EOS = "<|endoftext|>", "<|im_end|>"


def _corpus() -> list[str]:
    from dualipo.critics.prompts import pair_instruction, point_instruction

    lines = []
    motions = ["moving left", "moving right", "moving up", "moving down", "staying still", "growing",
               "shrinking", "slowly", "quickly", "no clear object", "steady", "unsteady", "flickering"]
    relations = ["to the left of", "to the right of", "above", "below"]
    for c, s, bg in itertools.product(COLOURS, SHAPES, BACKGROUNDS):
        lines.append(f"a {c} {s} and two {c} {s}s on a {bg} background")
        lines.append(f"a {c} blob, a {c} {s} and more")
    for m, r in itertools.product(motions, relations):
        lines.append(f"a red circle {r} a blue square, {m}, on a black background")
    for d in DIMENSIONS:
        for cot in (True, False):
            lines += [pair_instruction(d, cot), point_instruction(d, cot)]
        for v in ("Video A is better", "Video B is better", "Both are equally good", "Good", "Normal", "Bad"):
            lines.append(f"Video A shows x. Video B shows y. The prompt asks for z. {v} on {d}.")
            lines.append(f"The video shows x. The prompt asks for z. {v} on {d}.")
    lines += [f"Answer: {v}" for v in ("A", "B", "tie", "Good", "Normal", "Bad")]
    lines += ["Prompt: Video A: Video B: Video: user assistant system", "Describe the video."]
    return lines * 4


def build_tokenizer(vocab_size: int = 600) -> PreTrainedTokenizerFast:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=list(SPECIALS), show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, pad_token=PAD, padding_side="left")
