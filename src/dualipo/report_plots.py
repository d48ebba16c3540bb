"""The report's figures: matplotlib (no pyplot state), returned as inline SVG text. No user-provided text goes
into a figure (prompts and rationales stay in the HTML, escaped); every function returns None when it has
nothing to draw, so the page can say so instead."""

from __future__ import annotations

import io
from typing import Mapping, Sequence

import matplotlib
from matplotlib.figure import Figure

COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")


def to_svg(fig: Figure, name: str) -> str:
    """The figure as an `<svg>` element (no XML prolog), with ids salted by `name` so that several figures can
    share one page, and no date, so the same data gives the same text."""
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": name, "svg.fonttype": "none"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg"):]


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    fig.set_layout_engine("constrained")
    return fig


def _step_lines(ax, per_round: Mapping[int, Sequence[Mapping]], keys: Sequence[str]) -> bool:
    """Plot `keys` of per-step records, the rounds one after another on a shared step axis, with a dashed line
    at each round's start. Returns whether anything was drawn."""
    offset, drawn = 0, False
    for k, records in sorted(per_round.items()):
        if not records:
            continue
        ax.axvline(offset, color="#bbbbbb", linestyle="--", linewidth=0.8)
        ax.text(offset, 1.0, f" round {k}", transform=ax.get_xaxis_transform(), va="top", fontsize=7, color="#666")
        for i, key in enumerate(keys):
            pts = [(offset + n, r[key]) for n, r in enumerate(records) if r.get(key) is not None]
            if pts:
                ax.plot(*zip(*pts), color=COLOURS[i], linewidth=1.2, marker="o" if len(pts) == 1 else None,
                        markersize=4, label=key if k == min(per_round) else None)  # one point: a dot
                drawn = True
        offset += len(records)
    ax.set_xlabel("optimizer step (rounds in sequence)")
    return drawn


def training_curves(per_round: Mapping[int, Sequence[Mapping]]) -> str | None:
    """Generator training: total loss and the DPO / KTO loss (left), implicit accuracy (right), per step."""
    if not any(per_round.values()):
        return None
    fig = _figure(9.5, 3.0)
    left, right = fig.subplots(1, 2)
    keys = [key for key in ("loss", "dpo_loss", "kto_loss") if any(key in r for rs in per_round.values() for r in rs)]
    _step_lines(left, per_round, keys)
    left.set_title("generator loss", fontsize=10)
    left.legend(fontsize=8, loc="upper right")
    if _step_lines(right, per_round, ["implicit_acc"]):
        right.set_ylim(-0.02, 1.02)
        right.axhline(0.5, color="#999", linewidth=0.6, linestyle=":")
    else:
        right.text(0.5, 0.5, "no implicit accuracy logged (sft training)", ha="center", transform=right.transAxes)
    right.set_title("implicit accuracy (DPO / KTO)", fontsize=10)
    return to_svg(fig, "training")


def critic_curve(per_round: Mapping[int, Sequence[Mapping]]) -> str | None:
    """Critic refinement loss per step (the `loss` key of each round's critic metrics)."""
    if not any(any("loss" in r for r in rs) for rs in per_round.values()):
        return None
    fig = _figure(6.0, 3.0)
    ax = fig.subplots()
    _step_lines(ax, per_round, ["loss"])
    ax.set_title("critic refinement loss", fontsize=10)
    return to_svg(fig, "critic")


def round_metrics(series: Mapping[str, Mapping[int, float]]) -> str | None:
    """Chosen evaluation metrics over rounds (round 0 = the base generator), one line each."""
    series = {name: v for name, v in series.items() if v}
    if not series:
        return None
    fig = _figure(6.5, 3.2)
    ax = fig.subplots()
    for i, (name, values) in enumerate(series.items()):
        rounds = sorted(values)
        ax.plot(rounds, [values[r] for r in rounds], marker="o", color=COLOURS[i % len(COLOURS)], label=name)
    ax.set_xlabel("round (0 = base)")
    ax.set_xticks(sorted({r for v in series.values() for r in v}))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("evaluation over rounds", fontsize=10)
    return to_svg(fig, "rounds")


def kept_dropped(counts: Mapping[int, Mapping[str, float]]) -> str | None:
    """Per round, stacked bars of kept judgments and dropped ones by reason; the preference items as dots."""
    rounds = sorted(k for k, c in counts.items() if c)
    if not rounds:
        return None
    parts = ["kept"] + sorted({key for c in counts.values() for key, n in c.items()
                               if key.startswith("dropped_") and n})
    fig = _figure(6.0, 3.0)
    ax = fig.subplots()
    bottom = [0.0] * len(rounds)
    for i, key in enumerate(parts):
        values = [counts[k].get(key) or 0.0 for k in rounds]
        ax.bar(rounds, values, bottom=bottom, color=COLOURS[i % len(COLOURS)], label=key.replace("_", " "))
        bottom = [b + v for b, v in zip(bottom, values)]
    ax.plot(rounds, [counts[k].get("items") or 0 for k in rounds], "ko", label="pairs / points made")
    ax.set_xticks(rounds)
    ax.set_xlabel("round")
    ax.set_ylabel("judgments")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title("kept vs dropped judgments", fontsize=10)
    return to_svg(fig, "kept")


def certainty_histograms(certainties: Mapping[int, Sequence[float]], threshold: float) -> str | None:
    """One histogram of judgment certainty per round, with the certainty threshold."""
    rounds = sorted(k for k, v in certainties.items() if v)
    if not rounds:
        return None
    fig = _figure(min(3.0 * len(rounds), 12.0), 2.6)
    axes = fig.subplots(1, len(rounds), sharey=True, squeeze=False)[0]
    for ax, k in zip(axes, rounds):
        ax.hist(certainties[k], bins=[i / 10 for i in range(11)], color=COLOURS[0], edgecolor="white")
        ax.axvline(threshold, color="#d62728", linestyle="--", linewidth=1)
        ax.set_title(f"round {k}", fontsize=9)
        ax.set_xlabel("certainty")
    axes[0].set_ylabel("judgments")
    return to_svg(fig, "certainty")
