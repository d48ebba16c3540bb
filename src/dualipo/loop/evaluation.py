"""Step 7 of a round, and the only place the loop consults the shapes-world oracle (the ground truth of the toy
world, standing where humans stand in the paper): never to make preference data, only to measure.

- Held-out score: the generator at the end of the round samples the world's held-out prompts
  (`eval.num_prompts`) with fixed seeds (`eval.seeds`); the oracle scores each video per dimension and overall
  (from the sampled frames, as `generators.evaluate.evaluate_generator` does). The videos are kept in
  `round_k/eval/` to compare rounds.
- Weight-free video metrics (`dualipo.metrics`, VBench's formulas with OpenCV flow) of the same videos, as
  `video_*` means: temporal flickering, static fraction, dynamic degree, motion smoothness, frame consistency.
- Critic win rate (`eval.critic_win_rate`, k > 0): the round's critic compares each held-out video of round k
  with round 0's of the same prompt and seed on every judging dimension (K paths, both orders, majority vote);
  win rate = (wins + ties / 2) / judgments with a verdict.
- Critic accuracy: the oracle's own verdict on each of the round's judgments (no label noise), against the
  critic's majority verdict: on all judgments, on the kept (confident) ones, and on the final pairs.

The stage is redone as a whole on resume (sampling is deterministic, so the figures are the same).
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from dualipo.loop import placement
from dualipo.loop.context import RunContext, generator_after, run_sharded, unit_seed
from dualipo.loop.sampling import Item, eval_items, sample_chunks
from dualipo.metrics import mean_by_key, summarize_video_metrics, video_metrics, win_rate
from dualipo.preferences import preference_kind
from dualipo.toy import oracle

log = logging.getLogger(__name__)
WIN_RATE_SEED_OFFSET = 500_000  # unit seeds of the win-rate judgments: apart from the round's judging units


def evaluate_stage(ctx: RunContext, k: int) -> tuple[str, str]:
    from dualipo.toy.world import prompt_pools

    gen, gen_id = generator_after(ctx, k)
    prompts = prompt_pools(ctx.cfg.world)[1][:ctx.cfg.eval.num_prompts]
    items = eval_items(ctx, k, prompts)
    recs: list[dict] = []

    def scores(item, video) -> dict:
        s = oracle.score(item.prompt, video)
        return {"overall": s.overall, "dims": s.dims, "video": video_metrics(video.frames, video.fps)}

    sample_chunks(ctx, gen, items, set(), f"round {k} evaluation", scores, recs.append)
    wins = {}
    if k > 0 and ctx.cfg.eval.critic_win_rate:
        placement.release_generator(ctx, gen)
        placement.use_critic(ctx)
        wins = critic_win_rate(ctx, k, prompts)
    if not ctx.main:
        return "done", ""
    for r in recs:
        ctx.ledger.add_video(k, "eval", r["prompt_id"], r["seed"], r["index"], r["path"], r["sha256"], gen_id)
    values = held_out_scores(recs)
    values.update({f"video_{name}": v for name, v in summarize_video_metrics([r["video"] for r in recs]).items()})
    if k > 0:
        values.update(critic_accuracy(ctx, k))
    values.update(wins)
    ctx.metrics.log(k, "evaluate", values)
    return "done", f"held-out oracle score {values['oracle_overall']:.4f} on {len(recs)} videos"


def held_out_scores(recs: list[dict]) -> dict:
    out = {f"oracle_{d}": v for d, v in mean_by_key([r["dims"] for r in recs]).items()}
    out["oracle_overall"] = float(np.mean([r["overall"] for r in recs]))
    out["eval_videos"] = len(recs)
    return out


def critic_win_rate(ctx: RunContext, k: int, prompts: list[str]) -> dict:
    """The round's critic on (round k, round 0) held-out videos of the same prompt and seed, every judging
    dimension; one unit per prompt, seeded like the judging units, sharded across processes."""
    base = {(it.prompt_id, it.seed): it.path for it in eval_items(ctx, 0, prompts)}
    units: dict[str, list[tuple[Item, str]]] = {}
    for it in eval_items(ctx, k, prompts):
        units.setdefault(it.prompt_id, []).append((it, base[(it.prompt_id, it.seed)]))
    dims = ctx.cfg.judging.dimensions

    def work(pos: int) -> list[str | None]:
        torch.manual_seed(unit_seed(ctx.cfg, k, WIN_RATE_SEED_OFFSET + pos))
        unit = list(units.values())[pos]
        js = ctx.critic.judge_many([(it.prompt, ctx.abs(it.path), ctx.abs(b), d) for it, b in unit for d in dims])
        return [j.verdict for j in js]

    verdicts: list[str | None] = []
    run_sharded(ctx, list(range(len(units))), work, verdicts.append, f"round {k} win rate vs round 0", "prompt")
    rate, n = win_rate(verdicts)
    return {"critic_win_rate": rate, "critic_win_rate_judgments": n}


def critic_accuracy(ctx: RunContext, k: int) -> dict:
    """The critic's majority verdicts of round k against the oracle's noise-free verdicts."""
    from dualipo.critics.voting import judgment_from_row
    from dualipo.preferences import drop_reason
    from dualipo.toy.seed_labels import TIE_MARGIN, label_single
    from dualipo.video import read_video

    cache: dict[str, oracle.OracleScore] = {}

    def score_of(prompt: str, rel: str) -> oracle.OracleScore:
        if rel not in cache:
            cache[rel] = oracle.score(prompt, read_video(ctx.abs(rel)))
        return cache[rel]

    thr = ctx.cfg.judging.certainty_threshold
    hits, kept_hits = [], []
    for row in ctx.ledger.judgments(k):
        j = judgment_from_row(row, dict(ctx.pool))
        try:
            if j.mode == "pairwise":
                va, vb = (score_of(j.prompt, v).get(j.dimension) for v in j.videos)
                truth = "tie" if abs(va - vb) <= TIE_MARGIN else ("A" if va > vb else "B")
            else:
                truth = label_single(j.prompt, read_video(ctx.abs(j.videos[0])), j.dimension,
                                     np.random.default_rng(0), noise_rate=0.0).clean_label
        except ValueError:  # not a shapes-world prompt: the oracle cannot judge it
            continue
        hits.append(j.verdict == truth)
        if drop_reason(j, thr) is None:
            kept_hits.append(j.verdict == truth)
    out = {"critic_judgments_scored": len(hits),
           "critic_accuracy": float(np.mean(hits)) if hits else None,
           "critic_kept_accuracy": float(np.mean(kept_hits)) if kept_hits else None}
    if preference_kind(ctx.cfg.train.loss) == "pairs":
        out.update(_pair_accuracy(ctx, k, score_of))
    return out


def _pair_accuracy(ctx: RunContext, k: int, score_of) -> dict:
    """Share of the round's DPO pairs whose chosen video the oracle scores higher (mean over the judged
    dimensions), and the mean oracle gap chosen - rejected."""
    dims = ctx.cfg.judging.dimensions
    prompts = dict(ctx.pool)
    gaps = []
    for r in ctx.ledger.preferences("pairs", k):
        prompt = prompts[r["prompt_id"]]
        try:
            chosen, rejected = ([score_of(prompt, v).get(d) for d in dims] for v in (r["chosen"], r["rejected"]))
        except ValueError:  # not a shapes-world prompt
            continue
        gaps.append(float(np.mean(chosen) - np.mean(rejected)))
    return {"critic_pair_accuracy": float(np.mean([g > 0 for g in gaps])) if gaps else None,
            "pair_oracle_gap": float(np.mean(gaps)) if gaps else None}
