"""Where a critic's pairwise errors are, from `dualipo critic eval --judgments FILE` and its labelled pairs.

    python scripts/critic_diagnose.py JUDGMENTS.jsonl PAIRS.jsonl

Prints JSON: decisive accuracy per dimension and per kind of difference (which of the oracle's dimensions differ
by more than the tie margin between the two videos), the verdicts on ties, and, path by path, whether the
critic's own descriptions were right (field by field, against the oracle's descriptions in the pair's reason)
and whether its verdict followed them (the verdict its descriptions imply, `toy.reasoning.reasoned_verdict`;
pairwise comparisons only: a pair judged from pointwise scores has its descriptions checked, not its verdicts).
"""

from __future__ import annotations

import json
import sys
from collections import Counter, defaultdict

import numpy as np

from dualipo.critics.prompts import swap_verdict
from dualipo.toy.reasoning import Described, reasoned_verdict
from dualipo.toy.oracle import score
from dualipo.toy.seed_labels import TIE_MARGIN
from dualipo.video import read_video

FIELDS = ("objects", "motion", "background", "steadiness")
KINDS = ("colour", "count", "motion", "consistency")


def main(judgments_path: str, pairs_path: str) -> dict:
    judgments = [json.loads(x) for x in open(judgments_path)]
    pairs = [json.loads(x) for x in open(pairs_path)]
    cache: dict = {}

    def oracle(prompt, path):
        return cache.setdefault(path, score(prompt, read_video(path)))

    base = pairs_path.rsplit("/", 1)[0] + "/" if "/" in pairs_path else ""
    by_dim, by_kind, on_ties = defaultdict(list), defaultdict(list), Counter()
    field_hits, followed, implied_right = defaultdict(list), [], []
    for j, p in zip(judgments, pairs):
        label = p["label"]
        if label == "tie":
            on_ties[str(j["verdict"])] += 1
        else:
            hit = j["verdict"] == label
            by_dim[p["dimension"]].append(hit)
            sa, sb = (oracle(p["prompt"], base + p[k]) for k in ("video_a", "video_b"))
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

    mean = lambda xs: round(float(np.mean(xs)), 3) if xs else None  # noqa: E731
    return {
        "decisive_pairs": sum(len(v) for v in by_dim.values()),
        "decisive_accuracy_per_dimension": {d: [mean(v), len(v)] for d, v in sorted(by_dim.items())},
        "decisive_accuracy_per_difference": {k: [mean(v), len(v)] for k, v in sorted(by_kind.items())},
        "verdicts_on_ties": dict(on_ties),
        "description_field_accuracy": {f: mean(v) for f, v in field_hits.items()},
        "verdict_follows_own_descriptions": mean(followed),
        "own_descriptions_imply_the_label_decisive": mean(implied_right),
    }


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:3]), indent=1))
