"""`dualipo report RUN_DIR`: one self-contained static HTML page of a run, read from what the run recorded.

Sources: the ledger (config, stages, metrics, eval and training videos, judgments with every sampled rationale),
`round_k/train/metrics.jsonl` (the generator trainer's per-step metrics) and `round_k/critic/metrics.jsonl`
(`CRITIC_METRICS`: the critic refinement's per-step `loss`, when the run refined its critic). Figures are inline
SVG (`report_plots`); videos are embedded as base64 `data:` URIs of the run's H.264 mp4 files (re-encoded smaller
when a side exceeds `MAX_SIDE`), so the page opens from disk with no server and no network. The template
(`templates/report.html.j2`) autoescapes everything: prompts and rationales are shown as text, never as HTML.
"""

from __future__ import annotations

import base64
import datetime
import json
import tempfile
from pathlib import Path

import numpy as np

from dualipo.ledger import Ledger, atomic_write_text

TRAIN_METRICS = "train/metrics.jsonl"
CRITIC_METRICS = "critic/metrics.jsonl"
MAX_SIDE = 256  # px: larger videos are downscaled before embedding, to keep the page small
STAGE_ORDER = ("evaluate", "sample", "judge", "pairs", "train", "refine")
ROUND_CURVES = ("oracle_overall", "critic_win_rate", "critic_accuracy", "video_motion_smoothness",
                "video_frame_consistency", "video_dynamic_degree")


# ------------------------------------------------------------------------------------------ ledger views

def metric_table(ledger: Ledger) -> tuple[list[int], list[dict]]:
    """(rounds, rows): one row per (stage, metric) with a cell per round; `delta` = value - round 0's value
    when round 0 recorded the metric (the evaluation metrics)."""
    values: dict[tuple[str, str], dict[int, float | None]] = {}
    for r in ledger.metrics():
        values.setdefault((r["stage"], r["name"]), {})[r["round"]] = r["value"]
    rounds = sorted({k for v in values.values() for k in v})
    order = {s: i for i, s in enumerate(STAGE_ORDER)}
    rows = []
    for (stage, name), per in sorted(values.items(), key=lambda kv: order.get(kv[0][0], len(order))):
        base = per.get(0)
        cells = [{"value": per.get(k), "delta": None if base is None or per.get(k) is None or k == 0
                  else per[k] - base} for k in rounds]
        rows.append({"stage": stage, "name": name, "cells": cells})
    return rounds, rows


def stage_table(ledger: Ledger) -> tuple[list[int], list[dict]]:
    """Wall seconds and status per stage and round, with the notes of skipped stages."""
    stages = ledger.stages()
    rounds = sorted({s["round"] for s in stages})
    by = {(s["round"], s["stage"]): s for s in stages}
    rows = []
    for name in [n for n in STAGE_ORDER if any(s["stage"] == n for s in stages)]:
        cells = [by.get((k, name)) for k in rounds]
        rows.append({"stage": name, "cells": [None if c is None else {"wall_s": c["wall_s"], "status": c["status"],
                                                                      "note": c["note"]} for c in cells]})
    return rounds, rows


def round_series(rows: list[dict], rounds: list[int], names=ROUND_CURVES) -> dict[str, dict[int, float]]:
    """Per evaluation metric in `names`, {round: value} (None values left out)."""
    out = {}
    for row in rows:
        if row["stage"] == "evaluate" and row["name"] in names:
            out[row["name"]] = {k: c["value"] for k, c in zip(rounds, row["cells"]) if c["value"] is not None}
    return {n: out[n] for n in names if n in out}


def per_step(run_dir: Path, rounds: list[int], rel: str) -> dict[int, list[dict]]:
    """The per-step records of `round_k/<rel>` for every round that has the file."""
    from dualipo.jsonl import read_jsonl
    from dualipo.loop.setup import round_dir

    out = {}
    for k in rounds:
        path = round_dir(run_dir, k) / rel
        if path.is_file():
            out[k] = [rec for _, rec in read_jsonl(path, "metrics file")]
    return out


def pair_counts(rows: list[dict], rounds: list[int]) -> dict[int, dict[str, float]]:
    """The pairs stage's kept / dropped_* / items counts per round."""
    out: dict[int, dict[str, float]] = {}
    for row in rows:
        if row["stage"] == "pairs" and (row["name"] in ("kept", "items") or row["name"].startswith("dropped_")):
            for k, c in zip(rounds, row["cells"]):
                if c["value"] is not None:
                    out.setdefault(k, {})[row["name"]] = c["value"]
    return out


# ------------------------------------------------------------------------------------------ videos

class VideoEmbedder:
    """`data:` URIs of run videos (cached by path); None for a missing or unreadable file."""

    def __init__(self, run_dir: Path, max_side: int = MAX_SIDE):
        self.run_dir, self.max_side, self._cache = run_dir, max_side, {}

    def __call__(self, rel: str) -> str | None:
        if rel not in self._cache:
            self._cache[rel] = self._encode(self.run_dir / rel)
        return self._cache[rel]

    def _encode(self, path: Path) -> str | None:
        import cv2

        from dualipo.video import Video, VideoReadError, read_video, write_video

        try:
            video = read_video(path)
        except VideoReadError:
            return None
        data = path.read_bytes()
        scale = self.max_side / max(video.height, video.width)
        if scale < 1:
            size = (max(2, round(video.width * scale)), max(2, round(video.height * scale)))
            small = Video(np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in video.frames]),
                          video.fps)
            with tempfile.TemporaryDirectory() as tmp:
                data = write_video(Path(tmp) / "v.mp4", small, crf=28).read_bytes()
        return "data:video/mp4;base64," + base64.b64encode(data).decode("ascii")


def video_grid(ledger: Ledger, cfg, rounds: list[int], embed: VideoEmbedder, num_prompts: int) -> list[dict]:
    """The first `num_prompts` held-out prompts (first seed each): their evaluation video of every round."""
    from dualipo.loop.prompts import eval_prompt_id
    from dualipo.toy.world import prompt_pools

    texts = {eval_prompt_id(i): p for i, p in enumerate(prompt_pools(cfg.world)[1][:cfg.eval.num_prompts])}
    per_round = {k: {(v["prompt_id"], v["seed"]): v["path"] for v in ledger.videos(k, "eval")} for k in rounds}
    chosen: dict[str, int] = {}
    for pid, seed in per_round.get(0, {}):
        chosen.setdefault(pid, seed)
    rows = []
    for pid, seed in list(chosen.items())[:num_prompts]:
        cells = [{"round": k, "path": per_round[k].get((pid, seed))} for k in rounds]
        rows.append({"prompt": texts.get(pid, pid), "seed": seed,
                     "cells": [{**c, "src": embed(c["path"]) if c["path"] else None} for c in cells]})
    return rows


def judgment_samples(ledger: Ledger, rounds: list[int], embed: VideoEmbedder, per_round: int,
                     threshold: float) -> list[dict]:
    """Per round, `per_round` judgments spread evenly over the ledger's order: prompt, both videos, every sampled
    rationale with its verdict, the votes, the majority and whether the certainty filter kept it."""
    from dualipo.critics.voting import judgment_from_row
    from dualipo.preferences import drop_reason

    prompts = dict(ledger.prompts())
    out = []
    for k in rounds:
        rows = ledger.judgments(k)
        if not rows or per_round < 1:
            continue
        picks = sorted({int(i) for i in np.linspace(0, len(rows) - 1, min(per_round, len(rows))).round()})
        items = []
        for i in picks:
            j = judgment_from_row(rows[i], prompts)
            reason = drop_reason(j, threshold)
            items.append({"prompt": j.prompt, "dimension": j.dimension, "mode": j.mode,
                          "videos": [{"label": "AB"[n] if j.mode == "pairwise" else "", "src": embed(v), "path": v}
                                     for n, v in enumerate(j.videos)],
                          "samples": j.samples, "votes": j.votes, "abstentions": j.abstentions,
                          "verdict": j.verdict, "certainty": j.certainty,
                          "status": "kept" if reason is None else f"dropped ({reason.replace('_', ' ')})"})
        out.append({"round": k, "total": len(rows), "shown": items})
    return out


# ------------------------------------------------------------------------------------------ the page

def build_context(run_dir: Path, ledger: Ledger, num_prompts: int, num_judgments: int) -> dict:
    from dualipo import report_plots as plots
    from dualipo.config import RunConfig, from_dict

    config = ledger.config()
    cfg = from_dict(RunConfig, config)
    meta = ledger.meta()
    rounds, rows = metric_table(ledger)
    stage_rounds, stage_rows = stage_table(ledger)
    embed = VideoEmbedder(run_dir)
    critic_steps = per_step(run_dir, rounds, CRITIC_METRICS)
    certainties = {k: [r["certainty"] for r in ledger.judgments(k)] for k in rounds}
    return {
        "title": f"dualipo report: {run_dir.resolve().name}", "run_dir": str(run_dir), "config": cfg, "config_json":
            json.dumps(config, indent=2, sort_keys=True), "upper_bound": meta.get("upper_bound") == "1",
        "finished": bool(meta.get("finished")),
        "created": datetime.datetime.fromtimestamp(float(meta["created"])).isoformat(timespec="seconds"),
        "generated": datetime.datetime.now().isoformat(timespec="seconds"),
        "rounds": rounds, "metric_rows": rows, "stage_rounds": stage_rounds, "stage_rows": stage_rows,
        "refine_notes": sorted({s["note"] for s in ledger.stages() if s["stage"] == "refine" and s["note"]}),
        "plots": {"rounds": plots.round_metrics(round_series(rows, rounds)),
                  "training": plots.training_curves(per_step(run_dir, rounds, TRAIN_METRICS)),
                  "critic": plots.critic_curve(critic_steps),
                  "kept": plots.kept_dropped(pair_counts(rows, rounds)),
                  "certainty": plots.certainty_histograms(certainties, cfg.judging.certainty_threshold)},
        "critic_metrics_path": f"round_NN/{CRITIC_METRICS}",
        "grid": video_grid(ledger, cfg, rounds, embed, num_prompts),
        "judgments": judgment_samples(ledger, [k for k in rounds if k > 0], embed, num_judgments,
                                      cfg.judging.certainty_threshold),
    }


def render(context: dict) -> str:
    """The page from `templates/report.html.j2`; autoescaped, the SVG figures marked safe."""
    from jinja2 import Environment, PackageLoader, StrictUndefined
    from markupsafe import Markup

    env = Environment(loader=PackageLoader("dualipo", "templates"), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _num
    plots = {k: None if v is None else Markup(v) for k, v in context["plots"].items()}
    return env.get_template("report.html.j2").render(**{**context, "plots": plots})


def _num(v, digits: int = 4, signed: bool = False) -> str:
    """A table number: '-' for None, integers without decimals, `signed` for deltas ('0' when it rounds to 0)."""
    if v is None:
        return "-"
    if signed:
        return "0" if abs(v) < 0.5 * 10 ** -digits else f"{v:+.{digits}f}"
    return str(int(v)) if float(v).is_integer() else f"{v:.{digits}f}"


def write_report(run_dir: str | Path, out: str | Path | None = None, num_prompts: int = 4,
                 num_judgments: int = 3) -> Path:
    """Write the report of `run_dir` to `out` (default RUN_DIR/report.html); returns its path."""
    if num_prompts < 0 or num_judgments < 0:
        raise ValueError(f"--num-prompts and --num-judgments must be >= 0, got {num_prompts} and {num_judgments}")
    run_dir = Path(run_dir)
    ledger = Ledger.open(run_dir, readonly=True)
    try:
        context = build_context(run_dir, ledger, num_prompts, num_judgments)
    finally:
        ledger.close()
    return atomic_write_text(Path(out) if out else run_dir / "report.html", render(context))
