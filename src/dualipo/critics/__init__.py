"""Video critics: a small `Critic` protocol and one builder.

`judge(prompt, video_a, video_b, dimension)` -> pairwise Judgment (verdict A / B / tie, certainty);
`score(prompt, video, dimension)` -> pointwise Judgment (Good / Normal / Bad). Videos are `Video` objects or
mp4 paths. Backends: `qwen_vl` (transformers Qwen2-VL / Qwen2.5-VL), `vllm` (the same critic served by vLLM, optional:
`pip install 'dualipo[vllm]'`; prompts, parsing and votes shared, `critics.requests`) and `oracle` (shapes-world
oracle).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

from dualipo.config import RunConfig
from dualipo.critics.voting import Judgment
from dualipo.video import Video

VideoLike = Video | str | Path


class Critic(Protocol):
    def judge(self, prompt: str, video_a: Video | str | Path, video_b: Video | str | Path,
              dimension: str) -> Judgment: ...

    def score(self, prompt: str, video: Video | str | Path, dimension: str) -> Judgment: ...

    def judge_many(self, items: Sequence[tuple[str, VideoLike, VideoLike, str]]) -> list[Judgment]:
        """Many (prompt, a, b, dimension) at once (batched where the backend can); the round loop's call."""

    def score_many(self, items: Sequence[tuple[str, VideoLike, str]]) -> list[Judgment]: ...

    def to_host(self) -> None:
        """Give the accelerator's memory back (weights to CPU, or the engine asleep) while another model needs it;
        `to_device()` brings the critic back before it judges. No-ops where nothing is on an accelerator."""

    def to_device(self) -> None: ...

    def close(self) -> None:
        """Free what the critic holds (a vLLM engine's GPU memory) before another critic loads; unusable after."""


def build_critic(cfg: RunConfig, path: str | None = None) -> Critic:
    """The configured critic; `path` (a directory) replaces `critic.path`: a refined critic of a run."""
    if path is not None:
        from dataclasses import replace

        cfg = replace(cfg, critic=replace(cfg.critic, path=path))
    match cfg.critic.backend:
        case "qwen_vl":
            from dualipo.critics.qwen_vl import QwenVLCritic, load_model

            model, tok = load_model(cfg.critic)
            return QwenVLCritic(model, tok, cfg.critic, cfg.judging)
        case "vllm":
            from dualipo.critics.vllm_backend import load_critic

            return load_critic(cfg)
        case "oracle":
            from dualipo.critics.oracle import OracleCritic

            return OracleCritic(cfg.critic.oracle_noise, cfg.judging.pairs_from)
        case _:
            raise ValueError(f"critic.backend: unknown backend {cfg.critic.backend!r}")


__all__ = ["Critic", "Judgment", "build_critic"]
