"""One code path for every VLM backend: the requests a judgment needs, and the Judgments their answers make.

A backend (transformers `qwen_vl`, `vllm`) supplies two methods: `visual(video)` (the video as that backend's
model input) and `generate(texts, visuals, k, do_sample=None)` (K answers per chat text). Everything else is
here and shared: the chat text of each request and its videos in slot order (`pair_rows`, `point_rows`,
two-step `caption_rows` / `continuation_rows`), the verdict parser and the vote (`pair_judgments`,
`point_judgments`, `voting.pair_from_points`), and the `Critic` protocol on top (`VotingCritic`).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

from dualipo.critics import prompts
from dualipo.critics.voting import Judgment, judgment, make_sample, pair_from_points
from dualipo.video import Video, video_key, video_name

VideoLike = Video | str | Path
Row = tuple[str, Sequence[VideoLike]]  # (chat text with video slots, the videos in slot order)
PairItem = tuple[str, VideoLike, VideoLike, str]  # (prompt, a, b, dimension)
PointItem = tuple[str, VideoLike, str]  # (prompt, video, dimension)


def pair_rows(items: Sequence[PairItem], both_orders: bool, cot: bool) -> tuple[list[Row], list[tuple[int, str]]]:
    """One request per item and presentation order ('AB', then 'BA' when `both_orders`), and its (item, order)."""
    rows, keys = [], []
    for i, (prompt, a, b, dim) in enumerate(items):
        for order in ("AB", "BA") if both_orders else ("AB",):
            rows.append((prompts.pair_prompt(prompt, dim, cot), (a, b) if order == "AB" else (b, a)))
            keys.append((i, order))
    return rows, keys


def pair_judgments(items: Sequence[PairItem], keys: Sequence[tuple[int, str]],
                   outs: Sequence[Sequence[str]]) -> list[Judgment]:
    """Pairwise Judgments from the K texts of each `pair_rows` request: parsed, mapped back to (a, b), voted."""
    per_item: list[list] = [[] for _ in items]
    for (i, order), group in zip(keys, outs):
        per_item[i] += [make_sample(order, t, prompts.parse_verdict(t, "pairwise")) for t in group]
    return [judgment(p, (video_name(a), video_name(b)), d, "pairwise", s)
            for (p, a, b, d), s in zip(items, per_item)]


def point_rows(items: Sequence[PointItem], cot: bool) -> list[Row]:
    return [(prompts.point_prompt(p, d, cot), (v,)) for p, v, d in items]


def point_judgments(items: Sequence[PointItem], outs: Sequence[Sequence[str]]) -> list[Judgment]:
    return [judgment(p, (video_name(v),), d, "pointwise",
                     [make_sample("", t, prompts.parse_verdict(t, "pointwise")) for t in group])
            for (p, v, d), group in zip(items, outs)]


def caption_rows(rows: Sequence[Row]) -> tuple[list, list[Row]]:
    """Two-step judging, step 1: each distinct video of the rows once, with the caption prompt (no text prompt).
    Returns the distinct videos' keys and the caption requests."""
    distinct = {video_key(v): v for _, vs in rows for v in vs}
    return list(distinct), [(prompts.caption_prompt(), (v,)) for v in distinct.values()]


def continuation_rows(rows: Sequence[Row], keys: Sequence, captions: Sequence[Sequence[str]],
                      k: int) -> tuple[list[Row], list[str]]:
    """Two-step judging, step 2: one request per row and reasoning path j, its text continued with the j-th
    descriptions of its videos (`prompts.described`). Returns the requests and the starts they continue with."""
    desc = {key: [prompts.caption_description(c) for c in group] for key, group in zip(keys, captions)}
    starts = [prompts.described([desc[video_key(v)][j] for v in vs]) for _, vs in rows for j in range(k)]
    paths = [row for row in rows for _ in range(k)]
    return [(t + s, vs) for (t, vs), s in zip(paths, starts)], starts


def join_continuations(starts: Sequence[str], outs: Sequence[Sequence[str]], n_rows: int, k: int) -> list[list[str]]:
    """The K full rationales per row of step 2 (each start followed by the path's one answer)."""
    texts = [s + o[0] for s, o in zip(starts, outs)]
    return [texts[i * k:(i + 1) * k] for i in range(n_rows)]


class VotingCritic:
    """The `Critic` protocol on a backend's `video_input` and `generate`; `cfg` is the CriticConfig, `judging` the
    JudgingConfig."""

    cfg: Any
    judging: Any
    _visuals: OrderedDict | None = None  # path -> (model input, bytes), least recently used first
    _visual_bytes: int = 0

    def video_input(self, video: VideoLike) -> Any:
        """The video as this backend's model input (decoded, sampled, resized)."""
        raise NotImplementedError

    def visual(self, video: VideoLike) -> Any:
        """`video_input`, kept for videos given by path (a video is judged in several pairs and trained on every
        epoch) up to `critic.visual_cache_mb`, the least recently used dropped first."""
        if isinstance(video, Video) or self.cfg.visual_cache_mb == 0:
            return self.video_input(video)
        key = str(video)
        if self._visuals is None:
            self._visuals = OrderedDict()
        if key in self._visuals:
            self._visuals.move_to_end(key)
            return self._visuals[key][0]
        out = self.video_input(video)
        size = sum(x.nbytes for x in (out if isinstance(out, tuple) else (out,)) if hasattr(x, "nbytes"))
        self._visuals[key] = (out, size)
        self._visual_bytes += size
        while self._visual_bytes > self.cfg.visual_cache_mb * 2**20 and len(self._visuals) > 1:
            self._visual_bytes -= self._visuals.popitem(last=False)[1][1]
        return out

    def generate(self, texts: list[str], videos: list[list], k: int, do_sample: bool | None = None) -> list[list[str]]:
        raise NotImplementedError

    def to_host(self) -> None:
        """See `Critic.to_host`; a backend that holds accelerator memory overrides both."""

    def to_device(self) -> None:
        """See `Critic.to_host`."""

    def close(self) -> None:
        """See `Critic.close`."""

    def judge(self, prompt: str, video_a: VideoLike, video_b: VideoLike, dimension: str) -> Judgment:
        return self.judge_many([(prompt, video_a, video_b, dimension)])[0]

    def score(self, prompt: str, video: VideoLike, dimension: str) -> Judgment:
        return self.score_many([(prompt, video, dimension)])[0]

    def judge_many(self, items: Sequence[PairItem], num_votes: int | None = None,
                   chain_of_thought: bool | None = None, both_orders: bool | None = None) -> list[Judgment]:
        """Pairwise judgments of many (prompt, a, b, dimension), batched (see `answers`); with
        `judging.pairs_from=scores`, from pointwise scores of each distinct (prompt, video, dimension)
        (`voting.pair_from_points`; `both_orders` does not apply)."""
        k = num_votes or self.judging.num_votes
        cot = self.judging.chain_of_thought if chain_of_thought is None else chain_of_thought
        if self.judging.pairs_from == "scores":
            return self._pairs_from_scores(items, k, cot)
        both = self.judging.both_orders if both_orders is None else both_orders
        rows, keys = pair_rows(items, both, cot)
        return pair_judgments(items, keys, self.answers(rows, k, cot))

    def _pairs_from_scores(self, items, k: int, cot: bool) -> list[Judgment]:
        distinct = {(p, video_key(v), d): (p, v, d) for p, a, b, d in items for v in (a, b)}
        scored = dict(zip(distinct, self.score_many(list(distinct.values()), k, cot)))
        return [pair_from_points(p, (video_name(a), video_name(b)), d, scored[p, video_key(a), d].samples,
                                 scored[p, video_key(b), d].samples) for p, a, b, d in items]

    def score_many(self, items: Sequence[PointItem], num_votes: int | None = None,
                   chain_of_thought: bool | None = None) -> list[Judgment]:
        k = num_votes or self.judging.num_votes
        cot = self.judging.chain_of_thought if chain_of_thought is None else chain_of_thought
        return point_judgments(items, self.answers(point_rows(items, cot), k, cot))

    def answers(self, rows: Sequence[Row], k: int, cot: bool) -> list[list[str]]:
        """K answers per (chat text, videos in slot order), all rows in ONE batched `generate` call.

        Two-step judging (`judging.describe_first`, CoT only): first every distinct video is described K times
        without the prompt (one more batched call), then reasoning path j of a row starts with the j-th
        descriptions of its videos (`prompts.described`) and the critic writes the comparison and verdict. The
        prompt is not in view while the videos are described, so it cannot be copied into the descriptions.
        """
        if not (cot and self.judging.describe_first):
            return self.generate([t for t, _ in rows], [[self.visual(v) for v in vs] for _, vs in rows], k)
        keys, caps = caption_rows(rows)
        captions = self.generate([t for t, _ in caps], [[self.visual(v) for v in vs] for _, vs in caps], k)
        paths, starts = continuation_rows(rows, keys, captions, k)
        outs = self.generate([t for t, _ in paths], [[self.visual(v) for v in vs] for _, vs in paths], 1,
                             do_sample=k > 1)
        return join_continuations(starts, outs, len(rows), k)
