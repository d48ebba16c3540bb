"""Steps 2-4 of a round: the critic judges the round's videos (K reasoning paths, both orders, majority vote),
the certainty filter drops unsure judgments, and the rest become DPO pairs (`pairs.strategy`: best vs worst per
prompt, or every confident judgment) or KTO points.

Judging is sharded by prompt: one unit = every judgment of one prompt's N videos (all pairs in pairwise mode,
every video in pointwise mode), in one batched critic call seeded by (round, prompt), so a resumed or
multi-process run samples the same reasoning paths. A unit is skipped on resume only if all its judgments are
recorded. The preference stage is pure bookkeeping on the recorded judgments and is simply redone on resume.
"""

from __future__ import annotations

import itertools
import json
import logging
from pathlib import Path

import torch

from dualipo.critics.voting import Judgment, judgment_from_row
from dualipo.jsonl import write_jsonl
from dualipo.ledger import atomic_path
from dualipo.loop.context import RunContext, from_main, run_sharded, unit_seed
from dualipo.loop.sampling import verified_videos
from dualipo.preferences import (Pair, pairs_from_judgments, points_from_judgments, points_from_pairwise,
                                 preference_kind, write_pairs_jsonl)

log = logging.getLogger(__name__)


def _units(ctx: RunContext, k: int) -> list[dict]:
    """Per prompt of round k (in round order): its videos and the judgments it needs, as (dimension, a, b)."""
    rows = verified_videos(ctx, k)
    by_prompt: dict[str, list[str]] = {}
    for r in rows:
        by_prompt.setdefault(r["prompt_id"], []).append(r["path"])
    prompts = dict(ctx.pool)
    return [{"pos": pos, "prompt_id": pid, "prompt": prompts[pid],
             "wanted": wanted_judgments(paths, ctx.cfg.judging.mode, ctx.cfg.judging.dimensions)}
            for pos, (pid, paths) in enumerate(by_prompt.items())]


def wanted_judgments(paths: list[str], mode: str, dimensions) -> list[tuple[str, str, str]]:
    """The judgments one prompt's videos need, as (dimension, a, b): every pair (pairwise mode) or every video
    (pointwise, b = "") on every dimension. The annotation app offers humans the same items."""
    combos = itertools.combinations(paths, 2) if mode == "pairwise" else ((p, "") for p in paths)
    return [(d, a, b) for a, b in combos for d in dimensions]


def judge_stage(ctx: RunContext, k: int) -> tuple[str, str]:
    def plan():
        units = _units(ctx, k)
        have = {(r["prompt_id"], r["dimension"], r["video_a"], r["video_b"]) for r in ctx.ledger.judgments(k)}
        return [u for u in units if any((u["prompt_id"], *w) not in have for w in u["wanted"])], len(units)

    todo, total = from_main(ctx, plan)
    if len(todo) < total:
        log.info("round %d judging: %d of %d prompts already judged", k, total - len(todo), total)

    def work(unit: dict) -> list[tuple[str, dict]]:
        torch.manual_seed(unit_seed(ctx.cfg, k, unit["pos"]))
        p = unit["prompt"]
        if ctx.cfg.judging.mode == "pairwise":
            js = ctx.critic.judge_many([(p, ctx.abs(a), ctx.abs(b), d) for d, a, b in unit["wanted"]])
        else:
            js = ctx.critic.score_many([(p, ctx.abs(a), d) for d, a, _ in unit["wanted"]])
        out = []
        for (_, a, b), j in zip(unit["wanted"], js):
            rec = j.to_dict()
            rec["videos"] = [a, b] if b else [a]
            out.append((unit["prompt_id"], rec))
        return out

    run_sharded(ctx, todo, work, lambda res: ctx.ledger.add_judgment(k, *res), f"round {k} judging", "prompt")
    if not ctx.main:
        return "done", ""
    js = [judgment_from_row(r, dict(ctx.pool)) for r in ctx.ledger.judgments(k)]
    samples = sum(len(j.samples) for j in js)
    abstained = sum(j.abstentions for j in js)
    ctx.metrics.log(k, "judge", {"judgments": len(js), "samples": samples,
                                 "abstention_rate": abstained / max(samples, 1),
                                 "mean_certainty": sum(j.certainty for j in js) / max(len(js), 1)})
    return "done", f"{len(js)} judgments, {abstained} of {samples} sampled answers abstained"


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


def preference_stage(ctx: RunContext, k: int) -> tuple[str, str]:
    """Confident judgments -> DPO pairs (`pairs.strategy`) or, with train.loss=kto, KTO points (pointwise
    Good / Bad labels, or from pairwise judgments a video's wins against its losses); written as TRL-style JSONL
    beside the round's videos and recorded in the ledger (all of a round's rows in one transaction)."""
    if not ctx.main:
        return "done", ""
    cfg, rd = ctx.cfg, ctx.rel(ctx.round_dir(k))
    ids = {text: pid for pid, text in ctx.pool}
    js = [judgment_from_row(r, dict(ctx.pool)) for r in ctx.ledger.judgments(k)]
    gen_id = {r["path"]: r["generator"] for r in ctx.ledger.videos(k, "train")}
    thr = cfg.judging.certainty_threshold
    pairwise = preference_kind(cfg.train.loss) == "pairs"
    if pairwise:
        pairs, stats = pairs_from_judgments(js, thr, cfg.pairs.min_margin, cfg.pairs.strategy)
        rows = [(k, i, ids[p.prompt], p.chosen, p.rejected, p.certainty, p.margin,
                 json.dumps(_pair_votes(js, p.chosen, p.rejected)), gen_id[p.chosen]) for i, p in enumerate(pairs)]
        local = [Pair(p.prompt, _relative_to(p.chosen, rd), _relative_to(p.rejected, rd), p.certainty, p.margin)
                 for p in pairs]
        with atomic_path(ctx.round_dir(k) / "pairs.jsonl") as tmp:
            write_pairs_jsonl(tmp, local, round=k)
        ctx.ledger.replace_preferences(k, "pairs", rows)
    else:
        if cfg.judging.mode == "pointwise":
            points, stats = points_from_judgments(js, thr)
            votes = {(j.videos[0], j.dimension): j.votes for j in js}
            labelled = [(p, dim, votes[(p.video, dim)]) for p, dim in _point_dims(points, js, thr)]
        else:  # KTO from pairwise judgments: a video's confident wins against its losses
            points, tallies, stats = points_from_pairwise(js, thr)
            dims = "+".join(cfg.judging.dimensions)
            labelled = [(p, dims, {"won": w, "lost": lost}) for p, (w, lost) in zip(points, tallies)]
        rows = [(k, ids[p.prompt], p.video, dim, int(p.desirable), p.certainty, json.dumps(v), gen_id[p.video])
                for p, dim, v in labelled]
        with atomic_path(ctx.round_dir(k) / "points.jsonl") as tmp:
            write_jsonl(tmp, ({"prompt": p.prompt, "completion": _relative_to(p.video, rd), "label": p.desirable,
                               "certainty": p.certainty, "round": k} for p in points))
        ctx.ledger.replace_preferences(k, "points", rows)
    d = stats.dropped
    ctx.metrics.log(k, "pairs", {"judgments": stats.judgments, "kept": stats.kept, "dropped": sum(d.values()),
                                 **{f"dropped_{r}": n for r, n in d.items()}, "items": stats.items,
                                 "prompts_without_item": stats.prompts_without_pair})
    what = "pairs" if pairwise else "labelled videos"
    if stats.items == 0:
        log.warning("round %d: no confident %s: of %d judgments, %d had no majority (abstained or split), %d were "
                    "ties, %d were below judging.certainty_threshold=%s; the %d kept rank no video of any prompt "
                    "above another. The generator is not trained this round.",
                    k, what, stats.judgments, d["no_verdict"], d["tie"], d["uncertain"], thr, stats.kept)
        return "done", f"no confident {what} ({stats.kept} of {stats.judgments} judgments kept, no pair ranked)"
    return "done", f"{stats.items} {what} from {stats.kept} of {stats.judgments} judgments kept"


def _point_dims(points, js: list[Judgment], thr: float):
    """Each point with the dimension of the judgment it came from (points_from_judgments keeps their order)."""
    from dualipo.preferences import drop_reason

    kept = [j for j in js if j.mode == "pointwise" and drop_reason(j, thr) is None and j.verdict != "Normal"]
    assert len(kept) == len(points)
    return [(p, j.dimension) for p, j in zip(points, kept)]
