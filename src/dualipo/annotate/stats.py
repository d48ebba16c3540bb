"""`dualipo annotate --stats LABELS.jsonl`: how far annotators agree with each other, and with a reference judge
(the configured critic, or in the shapes world the noise-free oracle) on the items they labelled.

Pairwise labels are compared in one canonical order (the two videos sorted by path), so a label given with the
videos shown the other way round counts as the same answer. An annotator's later label of an item replaces an
earlier one.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from pathlib import Path

from dualipo.annotate.items import item_id
from dualipo.critic_training.seed import SeedRecord, load_seed

FLIP = {"A": "B", "B": "A", "tie": "tie"}
ANONYMOUS = "(anonymous)"


def canonical(r: SeedRecord) -> tuple[str, str]:
    """(item id, label in the order of the sorted videos)."""
    iid = item_id(r.prompt, r.videos, r.dimension)
    if len(r.videos) == 2 and sorted(r.videos) != list(r.videos):
        return iid, FLIP[r.label]
    return iid, r.label


def by_annotator(records: list[SeedRecord]) -> dict[str, dict[str, str]]:
    """annotator -> item id -> canonical label (the latest)."""
    out: dict[str, dict[str, str]] = defaultdict(dict)
    for r in records:
        iid, label = canonical(r)
        out[r.extra.get("annotator") or ANONYMOUS][iid] = label
    return dict(out)


def _rate(a: dict[str, str], b: dict[str, str]) -> dict:
    shared = sorted(a.keys() & b.keys())
    agree = sum(a[i] == b[i] for i in shared)
    return {"shared": len(shared), "agreement": round(agree / len(shared), 4) if shared else None}


def agreement(records: list[SeedRecord], reference: dict[str, str] | None = None) -> dict:
    """Label counts, pairwise agreement between annotators on the items both labelled, and each annotator's
    agreement with `reference` (item id -> canonical label) when given."""
    ann = by_annotator(records)
    counts = defaultdict(int)
    for labels in ann.values():
        for iid in labels:
            counts[iid] += 1
    out = {"labels": len(records), "items": len(counts), "items_labelled_by_several": sum(c > 1 for c in
                                                                                         counts.values()),
           "annotators": {a: len(v) for a, v in sorted(ann.items())},
           "between_annotators": [{"a": a, "b": b, **_rate(ann[a], ann[b])}
                                  for a, b in itertools.combinations(sorted(ann), 2)]}
    if reference is not None:
        out["with_reference"] = {a: _rate(v, reference) for a, v in sorted(ann.items())}
    return out


def reference_labels(critic, records: list[SeedRecord]) -> dict[str, str]:
    """One verdict per labelled item from `critic` (a `Critic`: the VLM or the oracle), in canonical order."""
    items: dict[str, SeedRecord] = {}
    for r in records:
        items.setdefault(canonical(r)[0], r)
    pairs = [(i, r) for i, r in items.items() if len(r.videos) == 2]
    points = [(i, r) for i, r in items.items() if len(r.videos) == 1]
    out = {}
    if pairs:
        js = critic.judge_many([(r.prompt, *sorted(r.videos), r.dimension) for _, r in pairs])
        out |= {i: j.verdict for (i, _), j in zip(pairs, js)}
    if points:
        js = critic.score_many([(r.prompt, r.videos[0], r.dimension) for _, r in points])
        out |= {i: j.verdict for (i, _), j in zip(points, js)}
    return out


def stats(labels: str | Path, critic=None) -> dict:
    records = load_seed(labels)
    return agreement(records, None if critic is None else reference_labels(critic, records))


def stats_text(s: dict, reference: str = "") -> str:
    lines = [f"{s['labels']} labels of {s['items']} items, {s['items_labelled_by_several']} labelled by several "
             f"annotators", "annotators: " + ", ".join(f"{a} {n}" for a, n in s["annotators"].items())]
    fmt = lambda r: "-" if r["agreement"] is None else f"{r['agreement']:.3f}"  # noqa: E731
    for r in s["between_annotators"]:
        lines.append(f"  {r['a']} vs {r['b']}: agreement {fmt(r)} on {r['shared']} shared items")
    for a, r in s.get("with_reference", {}).items():
        lines.append(f"  {a} vs the {reference}: agreement {fmt(r)} on {r['shared']} items")
    return "\n".join(lines)
