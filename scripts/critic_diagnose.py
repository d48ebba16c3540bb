"""Where a critic's pairwise errors are, from `dualipo critic eval --judgments FILE` and its labelled pairs.

    python scripts/critic_diagnose.py JUDGMENTS.jsonl PAIRS.jsonl

Prints JSON: decisive accuracy per dimension and per kind of difference (which of the oracle's dimensions differ
by more than the tie margin between the two videos), the verdicts on ties, and, path by path, whether the
critic's own descriptions were right (field by field, against the oracle's descriptions in the pair's reason)
and whether its verdict followed them (the verdict its descriptions imply, `toy.reasoning.reasoned_verdict`;
pairwise comparisons only: a pair judged from pointwise scores has its descriptions checked, not its verdicts).
For pairs judged from pointwise scores it also separates the answer scale's limit from the critic's perception
(`scale_vs_perception`): per dimension, the share of decisive pairs a perfect scorer decides on the seed
annotators' three levels and on five, the critic's decisive accuracy, how the critic's mean sampled level orders
the two videos (right / wrong / equal: its ties broken at no margin) and how often its majority level of a video
is the oracle's.
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from dualipo.critics.prompts import swap_verdict
from dualipo.critics.voting import POINT_LEVELS, SCORED
from dualipo.toy.reasoning import Described, reasoned_verdict
from dualipo.toy.oracle import RunScores
from dualipo.toy.seed_labels import POINT_CUTS, TIE_MARGIN, level_index, point_level

FIELDS = ("objects", "motion", "background", "steadiness")
KINDS = ("colour", "count", "motion", "consistency")
FIVE_CUTS = (0.25, 0.5, 0.75, 0.9)  # a finer answer scale's cut points, for its ceiling


def _mean(xs) -> float | None:
    return round(float(np.mean(xs)), 3) if len(xs) else None


def scale_vs_perception(judgments: list[dict], pairs: list[dict]) -> dict | None:
    """Per dimension and over all, on the decisive pairs judged from pointwise scores (None if there are none):
    `three_level_ceiling` / `five_level_ceiling` (the share a perfect scorer decides: the oracle's levels of the
    two videos differ), `critic` (decisive accuracy), `mean_level_order` (the share where the critic's mean
    sampled level is higher for the better video, lower, or equal); and over the distinct (video, dimension)
    judged, `video_level_accuracy` (the critic's majority level is the oracle's `point_level`)."""
    stats, videos = defaultdict(lambda: defaultdict(list)), {}
    for j, p in zip(judgments, pairs):
        if not j["samples"] or any(s["order"] not in SCORED for s in j["samples"]):
            continue
        levels = {o: [POINT_LEVELS[s["verdict"]] for s in j["samples"] if s["order"] == o and s["verdict"]]
                  for o in SCORED}
        for o, video, value in zip(SCORED, (p["video_a"], p["video_b"]), p["scores"]):
            if levels[o]:
                videos[(video, p["dimension"])] = (Counter(levels[o]).most_common(1)[0][0],
                                                   POINT_LEVELS[point_level(value)])
        if p["label"] == "tie" or not all(levels.values()):
            continue
        better, worse = ("A", "B") if p["label"] == "A" else ("B", "A")
        s_better, s_worse = sorted(p["scores"], reverse=True)
        gap = np.mean(levels[better]) - np.mean(levels[worse])
        for key in (p["dimension"], "all"):
            st = stats[key]
            st["three_level_ceiling"].append(level_index(s_better) > level_index(s_worse))
            st["five_level_ceiling"].append(level_index(s_better, FIVE_CUTS) > level_index(s_worse, FIVE_CUTS))
            st["critic"].append(j["verdict"] == p["label"])
            st["order"].append(np.sign(gap))
    if not stats:
        return None
    out = {}
    for key in sorted(stats, key=lambda k: (k == "all", k)):
        st = stats[key]
        order = np.array(st.pop("order"))
        out[key] = {"decisive": len(order), **{k: _mean(v) for k, v in st.items()},
                    "mean_level_order": {"right": _mean(order > 0), "wrong": _mean(order < 0),
                                         "equal": _mean(order == 0)}}
    out["video_level_accuracy"] = _mean([got == true for got, true in videos.values()])
    out["videos"] = len(videos)
    out["cuts"] = {"three_level": list(POINT_CUTS), "five_level": list(FIVE_CUTS)}
    return out


def main(judgments_path: str, pairs_path: str) -> dict:
    judgments = [json.loads(x) for x in open(judgments_path)]
    pairs = [json.loads(x) for x in open(pairs_path)]
    oracle = RunScores(Path(pairs_path).parent)  # the pairs' video paths are relative to their file
    by_dim, by_kind, on_ties = defaultdict(list), defaultdict(list), Counter()
    field_hits, followed, implied_right = defaultdict(list), [], []
    for j, p in zip(judgments, pairs):
        label = p["label"]
        if label == "tie":
            on_ties[str(j["verdict"])] += 1
        else:
            hit = j["verdict"] == label
            by_dim[p["dimension"]].append(hit)
            sa, sb = (oracle(p["prompt"], p[k]) for k in ("video_a", "video_b"))
            kinds = [d for d in KINDS if d in sa.dims and abs(sa.get(d) - sb.get(d)) > TIE_MARGIN]
            by_kind["+".join(kinds) or "none (graded)"].append(hit)
        truth = p["reason"].split(". Video B shows ")
        true_a = Described.parse(truth[0].removeprefix("Video A shows "))
        true_b = Described.parse(truth[1].split(".")[0]) if len(truth) > 1 else None
        for s in j["samples"]:
            text = s["text"]
            if s["order"] in ("A", "B"):  # a video scored on its own: only its description can be checked
                got = Described.parse(text.removeprefix("The video shows ").split(".")[0])
                true = true_a if s["order"] == "A" else true_b
                if got is not None and true is not None:
                    for f in FIELDS:
                        field_hits[f].append(getattr(got, f) == getattr(true, f))
                continue
            implied = reasoned_verdict(p["prompt"], p["dimension"], text)
            if s["order"] == "BA":
                implied = swap_verdict(implied)
            if implied is not None and s["verdict"] is not None:
                followed.append(implied == s["verdict"])
                if label != "tie":
                    implied_right.append(implied == label)
            seen = text.split(". Video B shows ")
            got_a = Described.parse(seen[0].removeprefix("Video A shows "))
            got_b = Described.parse(seen[1].split(".")[0]) if len(seen) > 1 else None
            if s["order"] == "BA":
                got_a, got_b = got_b, got_a
            for got, true in ((got_a, true_a), (got_b, true_b)):
                if got is not None and true is not None:
                    for f in FIELDS:
                        field_hits[f].append(getattr(got, f) == getattr(true, f))

    return {
        "decisive_pairs": sum(len(v) for v in by_dim.values()),
        "decisive_accuracy_per_dimension": {d: [_mean(v), len(v)] for d, v in sorted(by_dim.items())},
        "decisive_accuracy_per_difference": {k: [_mean(v), len(v)] for k, v in sorted(by_kind.items())},
        "verdicts_on_ties": dict(on_ties),
        "description_field_accuracy": {f: _mean(v) for f, v in field_hits.items()},
        "verdict_follows_own_descriptions": _mean(followed),
        "own_descriptions_imply_the_label_decisive": _mean(implied_right),
        "scale_vs_perception": scale_vs_perception(judgments, pairs),
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3]), indent=1))
