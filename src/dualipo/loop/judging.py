"""Steps 2-4 of a round: the critic judges the round's videos (K reasoning paths, both orders, majority vote),
the certainty filter drops unsure judgments, and the rest become DPO pairs (`pairs.strategy`: best vs worst per
prompt, or every confident judgment) or KTO points.

Judging is sharded by prompt: one unit = every judgment of one prompt's N videos (all pairs in pairwise mode,
every video in pointwise mode), in one batched critic call seeded by (round, prompt), so a resumed or
multi-process run samples the same reasoning paths. The preference step is pure bookkeeping on the recorded
judgments and is simply redone on resume.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from dualipo import seeds
from dualipo.config import RunConfig
from dualipo.critics.voting import Judgment
from dualipo.jsonl import write_jsonl
from dualipo.ledger import atomic_path
from dualipo.preferences import (Pair, drop_reason, pairs_from_judgments, points_from_judgments, points_from_pairwise,
                                 preference_kind, write_pairs_jsonl)


@dataclass(frozen=True)
class Unit:
    pos: int  # position of the prompt in the round (seeds its reasoning paths)
    prompt_id: str
    prompt: str
    wanted: list[tuple[str, str, str]]  # (dimension, video a, video b or "")


def wanted_judgments(paths: list[str], mode: str, dimensions) -> list[tuple[str, str, str]]:
    """The judgments one prompt's videos need, as (dimension, a, b): every pair (pairwise mode) or every video
    (pointwise, b = "") on every dimension. The annotation app offers humans the same items."""
    combos = itertools.combinations(paths, 2) if mode == "pairwise" else ((p, "") for p in paths)
    return [(d, a, b) for a, b in combos for d in dimensions]


def judging_units(cfg: RunConfig, videos: list[tuple[str, str]], prompts: dict[str, str]) -> list[Unit]:
    """Per prompt of the round (in round order) its videos' judgments; `videos` are (prompt id, path)."""
    by_prompt: dict[str, list[str]] = {}
    for pid, path in videos:
        by_prompt.setdefault(pid, []).append(path)
    return [Unit(pos, pid, prompts[pid], wanted_judgments(paths, cfg.judging.mode, cfg.judging.dimensions))
            for pos, (pid, paths) in enumerate(by_prompt.items())]


def judge_unit(critic, cfg: RunConfig, k: int, unit: Unit, run_dir: Path) -> list[tuple[str, dict]]:
    """Every judgment of one unit in one critic call, seeded by (round, prompt position): (prompt id, record)."""
    torch.manual_seed(seeds.judging(cfg.seed, k, unit.pos))
    p = unit.prompt
    if cfg.judging.mode == "pairwise":
        js = critic.judge_many([(p, run_dir / a, run_dir / b, d) for d, a, b in unit.wanted])
    else:
        js = critic.score_many([(p, run_dir / a, d) for d, a, _ in unit.wanted])
    out = []
    for (_, a, b), j in zip(unit.wanted, js):
        rec = j.to_dict()
        rec["videos"] = [a, b] if b else [a]
        out.append((unit.prompt_id, rec))
    return out


def judging_summary(js: list[Judgment]) -> tuple[dict, str]:
    samples = sum(len(j.samples) for j in js)
    abstained = sum(j.abstentions for j in js)
    values = {"judgments": len(js), "samples": samples, "abstention_rate": abstained / max(samples, 1),
              "mean_certainty": sum(j.certainty for j in js) / max(len(js), 1)}
    return values, f"{len(js)} judgments, {abstained} of {samples} sampled answers abstained"


def _pair_votes(js: list[Judgment], chosen: str, rejected: str) -> dict[str, int]:
    """Votes of the direct judgments between the pair's two videos, as chosen / rejected / tie counts."""
    out = {"chosen": 0, "rejected": 0, "tie": 0}
    for j in js:
        if set(j.videos) != {chosen, rejected}:
            continue
        for verdict, n in j.votes.items():
            if verdict == "tie":
                out["tie"] += n
            else:
                winner = j.videos[0] if verdict == "A" else j.videos[1]
                out["chosen" if winner == chosen else "rejected"] += n
    return out


def _relative_to(path: str, folder: str) -> str:
    return str(Path(path).relative_to(folder))


def preference_rows(cfg: RunConfig, k: int, js: list[Judgment], ids: dict[str, str], generators: dict[str, str],
                    round_dir: Path, round_rel: str):
    """Confident judgments -> DPO pairs (`pairs.strategy`) or, with train.loss=kto, KTO points (pointwise Good /
    Bad labels, or from pairwise judgments a video's wins against its losses). Writes them as TRL-style JSONL in
    `round_dir` and returns (ledger table, its rows, the filter's stats); `ids` maps prompts to prompt ids,
    `generators` video paths to the generator that sampled them."""
    thr = cfg.judging.certainty_threshold
    if preference_kind(cfg.train.loss) == "pairs":
        pairs, stats = pairs_from_judgments(js, thr, cfg.pairs.min_margin, cfg.pairs.strategy)
        rows = [(k, i, ids[p.prompt], p.chosen, p.rejected, p.certainty, p.margin,
                 json.dumps(_pair_votes(js, p.chosen, p.rejected)), generators[p.chosen]) for i, p in enumerate(pairs)]
        local = [Pair(p.prompt, _relative_to(p.chosen, round_rel), _relative_to(p.rejected, round_rel), p.certainty,
                      p.margin) for p in pairs]
        with atomic_path(round_dir / "pairs.jsonl") as tmp:
            write_pairs_jsonl(tmp, local, round=k)
        return "pairs", rows, stats
    if cfg.judging.mode == "pointwise":
        points, stats = points_from_judgments(js, thr)
        votes = {(j.videos[0], j.dimension): j.votes for j in js}
        labelled = [(p, dim, votes[(p.video, dim)]) for p, dim in _point_dims(points, js, thr)]
    else:  # KTO from pairwise judgments: a video's confident wins against its losses
        points, tallies, stats = points_from_pairwise(js, thr)
        dims = "+".join(cfg.judging.dimensions)
        labelled = [(p, dims, {"won": w, "lost": lost}) for p, (w, lost) in zip(points, tallies)]
    rows = [(k, ids[p.prompt], p.video, dim, int(p.desirable), p.certainty, json.dumps(v), generators[p.video])
            for p, dim, v in labelled]
    with atomic_path(round_dir / "points.jsonl") as tmp:
        write_jsonl(tmp, ({"prompt": p.prompt, "completion": _relative_to(p.video, round_rel), "label": p.desirable,
                           "certainty": p.certainty, "round": k} for p in points))
    return "points", rows, stats


def _point_dims(points, js: list[Judgment], thr: float):
    """Each point with the dimension of the judgment it came from (points_from_judgments keeps their order)."""
    kept = [j for j in js if j.mode == "pointwise" and drop_reason(j, thr) is None and j.verdict != "Normal"]
    assert len(kept) == len(points)
    return [(p, j.dimension) for p, j in zip(points, kept)]
