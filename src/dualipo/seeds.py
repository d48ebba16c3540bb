"""Every seed the package derives, in one place: one function per named stream, each a fixed formula of the
configured base seed and the item's position, so a resumed, a sharded and an uninterrupted run draw the same
numbers. The formulas are part of the determinism contract (changing one changes every run's videos or labels)."""

from __future__ import annotations

WIN_RATE_OFFSET = 500_000  # win-rate judging units, apart from the round's judging units (positions < 500000)
WEB_STREAM = 1_000  # caption streams of the loop's web control: 1000 + 1000 x seed + round (pretraining: its seed)
PRETRAIN_STAGE = {"vae": 1, "transformer": 2}


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


def world_sample_captions(seed: int) -> int:
    """The caption draws of `dualipo world sample --seed S` (pretraining uses its own seed, the loop 1000+)."""
    return 7 + 1000 * seed


def generator_training(train_seed: int, k: int) -> int:
    """Round k's generator training: fresh noise draws and LoRA init per round."""
    return train_seed + 1000 * (k - 1)


def critic_refinement(critic_seed: int, k: int) -> int:
    """Round k's critic refinement (data order, sampled paths)."""
    return critic_seed + k


def training_step(train_seed: int, step: int) -> int:
    """The items (and real videos) of a generator training step, the same for any process or accumulation."""
    return train_seed * 1_000_003 + step


def training_noise(train_seed: int, step: int, slot: int, stream: int) -> int:
    """The noise and timestep of one sample of a training step: slot in the global batch, stream (0-7: winner,
    loser, real, ...), so any split of the batch over micro-batches or processes draws the same values."""
    return ((train_seed * 7919 + step) * 4099 + slot) * 8 + stream


def pretraining_step(seed: int, stage: str, step: int) -> int:
    """A pretraining step's draws (`stage` vae or transformer)."""
    return seed * 1_000_003 + PRETRAIN_STAGE[stage] * 10_007_000 + step


def pretraining_render(seed: int, i: int) -> int:
    """The layout of pretraining render i."""
    return seed * 1_000_000 + i


def seed_set_sample(seed: int, i: int) -> int:
    """Sample i of the generator's own videos made for a critic seed set."""
    return seed * 100_003 + i
