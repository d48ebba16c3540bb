"""Every seed the round loop derives, in one place: one function per named stream, each a fixed formula of the
configured base seed and the item's position, so a resumed, a sharded and an uninterrupted run draw the same
numbers. The formulas are part of the determinism contract (changing one changes every run's videos or labels)."""

from __future__ import annotations

WIN_RATE_OFFSET = 500_000  # win-rate judging units, apart from the round's judging units (positions < 500000)
WEB_STREAM = 1_000  # caption streams of the loop's web control: 1000 + 1000 x seed + round (pretraining: its seed)


def video(sampling_seed: int, k: int, prompt_pos: int, per_prompt: int, j: int) -> int:
    """Video j of the prompt at position `prompt_pos` of round k (distinct across rounds and items)."""
    return sampling_seed * 10**9 + k * 10**6 + prompt_pos * per_prompt + j


def judging(seed: int, k: int, unit_pos: int) -> int:
    """The critic's sampled reasoning paths for one judging unit (one prompt's judgments) of round k."""
    return seed * 10**9 + k * 10**6 + unit_pos


def win_rate(seed: int, k: int, prompt_pos: int) -> int:
    """The critic's paths when it compares a held-out video of round k with round 0's."""
    return judging(seed, k, WIN_RATE_OFFSET + prompt_pos)


def web_captions(seed: int, k: int) -> int:
    """The caption draws of round k's web-corpus control data."""
    return WEB_STREAM * (1 + seed) + k


def generator_training(train_seed: int, k: int) -> int:
    """Round k's generator training: fresh noise draws and LoRA init per round."""
    return train_seed + 1000 * (k - 1)


def critic_refinement(critic_seed: int, k: int) -> int:
    """Round k's critic refinement (data order, sampled paths)."""
    return critic_seed + k
