"""Offline text encoder for generators built from config: a word-level tokenizer and a frozen random tiny T5.

Why this choice (and not a pretrained encoder): no machine reaches a model hub and no T5/UMT5 weights ship
on the package registry, so the encoder must be built offline. The shapes-world grammar has a closed
vocabulary of about 40 words, so a word-level tokenizer (`tokenizers.WordLevel`, wrapped in
`PreTrainedTokenizerFast`) is exact: every word is one token, nothing is unknown. The encoder is the real
`transformers.T5EncoderModel` (the class Wan and CogVideoX pipelines call), randomly initialised from a fixed
seed and frozen: its contextual token embeddings are distinct per word and carry word order through the
relative-position bias, and the generator's cross-attention learns to read them (measured in
notes/small_generator: colour and direction were learned from such embeddings). Being frozen, it is never
trained, so the pipeline's `encode_prompt` gives identical inputs at pretraining and at sampling time; it is
shipped with the generator (a few hundred kB) so loading never depends on re-running the seeded init.
Full-size backends load their real tokenizer and encoder from the local diffusers directory instead.
"""

from __future__ import annotations

import torch
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast, T5Config, T5EncoderModel

from dualipo.config import BACKGROUNDS, COLOURS, MOTIONS, SHAPES, GeneratorArchConfig

SPECIALS = ("<pad>", "</s>", "<unk>")
_GRAMMAR_WORDS = ("a", "two", "moving", "slowly", "quickly", "staying", "still", "growing", "shrinking", "on",
                  "background", "to", "the", "left", "right", "of", "above", "below", "up", "down", ",")


def vocabulary() -> list[str]:
    """Specials, then every word of the shapes-world grammar (plural shapes included), sorted for stability."""
    words = set(_GRAMMAR_WORDS) | set(COLOURS) | set(BACKGROUNDS) | set(MOTIONS) | set(SHAPES)
    words |= {f"{s}s" for s in SHAPES}
    return list(SPECIALS) + sorted(words)


def build_tokenizer(max_length: int) -> PreTrainedTokenizerFast:
    """Word-level tokenizer: lower-cased, split on whitespace and punctuation, `</s>` appended (T5 style)."""
    vocab = {w: i for i, w in enumerate(vocabulary())}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    eos = vocab["</s>"]
    tok.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                       special_tokens=[("</s>", eos)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=max_length)


def build_text_encoder(a: GeneratorArchConfig, vocab_size: int) -> T5EncoderModel:
    """A frozen, randomly initialised T5 encoder (seeded by `a.text_seed`) of width `a.text_dim`."""
    if a.text_dim % a.text_heads:
        raise ValueError(f"generator.arch.text_dim={a.text_dim} must be divisible by text_heads={a.text_heads}")
    cfg = T5Config(vocab_size=vocab_size, d_model=a.text_dim, d_kv=a.text_dim // a.text_heads, d_ff=2 * a.text_dim,
                   num_layers=a.text_layers, num_heads=a.text_heads, relative_attention_num_buckets=8,
                   dropout_rate=0.0)
    fork = torch.random.fork_rng()
    with fork:
        torch.manual_seed(a.text_seed)
        model = T5EncoderModel(cfg)
    return model.eval().requires_grad_(False)
