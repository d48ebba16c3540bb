"""Step 7 of a round, and the only place the loop consults the shapes-world oracle (the ground truth of the toy
world, standing where humans stand in the paper): never to make preference data, only to measure.

- Held-out score: the generator at the end of the round samples the world's held-out prompts
  (`eval.num_prompts`) with fixed seeds (`eval.seeds`); the oracle scores each video per dimension and overall
  (from the sampled frames; `generators.evaluate.measure`, as `dualipo evaluate` does). The videos are kept in
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

from pathlib import Path

import numpy as np
import torch

from dualipo import seeds
from dualipo.config import RunConfig
from dualipo.critics.voting import Judgment
from dualipo.generators import evaluate as generator_evaluation
from dualipo.loop.processes import Processes
from dualipo.loop.sampling import Item
from dualipo.metrics import win_rate
from dualipo.toy import oracle
from dualipo.video import Video


def measure(item: Item, video: Video) -> dict:
    """A held-out video's figures (`generators.evaluate.measure`)."""
    return generator_evaluation.measure(item.prompt, video)


def held_out_scores(recs: list[dict]) -> dict:
    """The round's figures: `oracle_<key>` (overall and per dimension), `eval_videos` and `video_<metric>`."""
    mean = generator_evaluation.summarize(recs)
    out = {key: v for key, v in mean.items() if key.startswith("oracle_") and key != "oracle_videos"}
    out["eval_videos"] = len(recs)
    out.update({f"video_{key}": v for key, v in mean.items() if not key.startswith("oracle_")})
    return out


def critic_win_rate(critic, cfg: RunConfig, k: int, items: list[Item], base: list[Item], run_dir: Path,
                    procs: Processes) -> dict:
    """The round's critic on (round k, round 0) held-out videos of the same prompt and seed, every judging
    dimension; one unit per prompt, seeded like the judging units, sharded across processes."""
    base_path = {(it.prompt_id, it.seed): it.path for it in base}
    units: dict[str, list[tuple[Item, str]]] = {}
    for it in items:
        units.setdefault(it.prompt_id, []).append((it, base_path[(it.prompt_id, it.seed)]))
    dims = cfg.judging.dimensions

    def work(pos: int) -> list[str | None]:
        torch.manual_seed(seeds.win_rate(cfg.seed, k, pos))
        unit = list(units.values())[pos]
        js = critic.judge_many([(it.prompt, run_dir / it.path, run_dir / b, d) for it, b in unit for d in dims])
        return [j.verdict for j in js]

    verdicts: list[str | None] = []
    procs.shard(list(range(len(units))), work, verdicts.append, f"round {k} win rate vs round 0", "prompt")
    rate, n = win_rate(verdicts)
    return {"critic_win_rate": rate, "critic_win_rate_judgments": n}


def critic_accuracy(cfg: RunConfig, js: list[Judgment], pairs: list[tuple[str, str, str]] | None,
                    run_dir: Path) -> dict:
    """The critic's majority verdicts of a round (`js`) against the oracle's noise-free verdicts, and, for
    pairwise training, the round's pairs ((prompt, chosen, rejected) run-relative) against the oracle."""
    from dualipo.preferences import drop_reason
    from dualipo.toy.seed_labels import TIE_MARGIN, point_level

    score_of = oracle.RunScores(run_dir)
    thr = cfg.judging.certainty_threshold
    hits, kept_hits = [], []
    for j in js:
        try:
            if j.mode == "pairwise":
                truth = oracle.verdict(*(score_of(j.prompt, v).get(j.dimension) for v in j.videos), TIE_MARGIN)
            else:
                truth = point_level(score_of(j.prompt, j.videos[0]).get(j.dimension))
        except ValueError:  # not a shapes-world prompt: the oracle cannot judge it
            continue
        hits.append(j.verdict == truth)
        if drop_reason(j, thr) is None:
            kept_hits.append(j.verdict == truth)
    out = {"critic_judgments_scored": len(hits),
           "critic_accuracy": float(np.mean(hits)) if hits else None,
           "critic_kept_accuracy": float(np.mean(kept_hits)) if kept_hits else None}
    if pairs is not None:
        out.update(_pair_accuracy(cfg, pairs, score_of))
    return out


def _pair_accuracy(cfg: RunConfig, pairs: list[tuple[str, str, str]], score_of) -> dict:
    """Share of the round's DPO pairs whose chosen video the oracle scores higher (mean over the judged
    dimensions), and the mean oracle gap chosen - rejected."""
    dims = cfg.judging.dimensions
    gaps = []
    for prompt, *videos in pairs:
        try:
            chosen, rejected = ([score_of(prompt, v).get(d) for d in dims] for v in videos)
        except ValueError:  # not a shapes-world prompt
            continue
        gaps.append(float(np.mean(chosen) - np.mean(rejected)))
    return {"critic_pair_accuracy": float(np.mean([g > 0 for g in gaps])) if gaps else None,
            "pair_oracle_gap": float(np.mean(gaps)) if gaps else None}
