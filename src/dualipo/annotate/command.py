"""`dualipo annotate`: serve the labelling app, or report agreement on a labels file (registered by cli.py)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Callable

from dualipo.config import DIMENSIONS, RunConfig


def add_annotate_command(sub, config_args: Callable, load: Callable) -> None:
    p = sub.add_parser(
        "annotate", help="label videos in a browser (the human seed set: pairwise or pointwise, with reasons), or "
        "report agreement on a labels file",
        epilog="e.g. dualipo annotate --run runs/demo --out labels.jsonl   (then open the printed address); "
        "dualipo annotate --stats labels.jsonl --against oracle")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", help="a run directory: the pairs (or videos) its critic judges in --round")
    src.add_argument("--videos", help="a folder with prompts.jsonl, or a JSONL manifest of {prompt, video_a, "
                     "video_b[, dimension]} / {prompt, video[, dimension]} (paths relative to it)")
    src.add_argument("--stats", metavar="LABELS", help="report agreement between annotators (and with --against)")
    p.add_argument("--out", help="labels JSONL to append to (seed format: `critic import` / `critic cold-start` "
                   "read it); an existing file is resumed")
    p.add_argument("--round", type=int, default=1, help="with --run: the round whose samples are labelled "
                   "(default 1: the base generator's own samples)")
    p.add_argument("--mode", choices=("pairwise", "pointwise"), default=None,
                   help="default: the run's judging mode (--run), pairwise (--videos)")
    p.add_argument("--dimensions", nargs="+", choices=DIMENSIONS, default=None,
                   help="default: the run's judging dimensions (--run), overall (--videos)")
    p.add_argument("--seed", type=int, default=0, help="seed of the per-item A / B presentation order")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--token", default="", help="require this token on every request (X-Token or ?token=)")
    p.add_argument("--against", choices=("oracle", "critic"), default=None, help="with --stats: also each "
                   "annotator's agreement with the shapes world's noise-free oracle or the configured critic")
    config_args(p)
    p.set_defaults(func=lambda args: cmd_annotate(load(args), args))


def cmd_annotate(cfg: RunConfig, args: argparse.Namespace) -> None:
    if args.stats:
        return _stats(cfg, args)
    if not args.out:
        raise ValueError("annotate needs --out LABELS.jsonl (where the labels are written)")
    from dualipo.annotate.app import create_app
    from dualipo.annotate.items import items_from_run, items_from_videos
    from dualipo.annotate.store import LabelStore

    if args.run:
        root, items = items_from_run(args.run, args.round, args.seed, args.mode, args.dimensions)
    else:
        root, items = items_from_videos(args.videos, args.mode or "pairwise", tuple(args.dimensions or ("overall",)),
                                        args.seed)
    store = LabelStore(args.out)
    try:
        app = create_app(items, store, root, args.token)
        import uvicorn

        url = f"http://{args.host}:{args.port}/" + (f"?token={args.token}" if args.token else "")
        print(f"{len(items)} items from {root}; labels go to {store.path}\nopen {url}  (Ctrl+C stops; a restart "
              f"resumes)", file=sys.stderr)
        if args.host not in ("127.0.0.1", "localhost", "::1") and not args.token:
            print(f"warning: serving on {args.host} without --token: anyone who reaches this port can label",
                  file=sys.stderr)
        uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    finally:
        store.close()


def _stats(cfg: RunConfig, args: argparse.Namespace) -> None:
    from dualipo.annotate.stats import stats, stats_text

    critic = None
    if args.against == "oracle":
        from dualipo.critics.oracle import OracleCritic

        critic = OracleCritic(0.0, "comparison")  # the seed labels' noise-free pairwise oracle
    elif args.against == "critic":
        from dualipo.critics import build_critic

        critic = build_critic(cfg)
    s = stats(args.stats, critic)
    print(json.dumps(s, indent=2))
    print(stats_text(s, args.against or ""), file=sys.stderr)
