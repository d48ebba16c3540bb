"""`dualipo critic ...` subcommands (registered by cli.py): videos, seed, import, caption, cold-start, refine,
eval. The seed set's size, noise and seed, the cold start's seed file and captioning videos are config keys
(`critic_cold.seed_pairs`, `.seed_noise`, `.seed`, `.seed_file`, `.caption_videos`), not flags."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Callable

from dualipo.config import DIMENSIONS, RunConfig
from dualipo.critic_training.seed import SEED_DIMENSIONS


def cmd_videos(cfg: RunConfig, args: argparse.Namespace) -> None:
    from dualipo.critic_training.toy_seed import write_generator_samples, write_variants

    if args.generator:
        path = write_generator_samples(cfg, args.out, args.prompts, args.per_prompt, args.split, args.seed)
    else:
        path = write_variants(cfg.world, args.out, args.prompts, args.per_prompt, args.split, args.seed)
    print(f"wrote {args.prompts * args.per_prompt} videos and {path}")


def cmd_seed(cfg: RunConfig, args: argparse.Namespace) -> None:
    from dualipo.critic_training.seed import write_seed
    from dualipo.critic_training.toy_seed import oracle_seed_set

    ct = cfg.critic_cold
    recs = oracle_seed_set(args.videos, ct.seed_pairs, tuple(args.dimensions), ct.seed_noise, ct.seed, args.pointwise,
                           tie_margin=args.tie_margin, other_prompt=args.other_prompts)
    print(f"wrote {len(recs)} seed records to {write_seed(recs, args.out)}")


def cmd_import(cfg: RunConfig, args: argparse.Namespace) -> None:
    from dualipo.critic_training.seed import import_seed

    print(f"validated and wrote {import_seed(args.src, args.out)}")


def cmd_cold_start(cfg: RunConfig, args: argparse.Namespace) -> None:
    from dualipo.critic_training.cold_start import cold_start

    ct = cfg.critic_cold
    if not ct.seed_file:
        raise ValueError("critic cold-start needs the seed set: critic_cold.seed_file=SEED.jsonl")
    final = cold_start(cfg, ct.seed_file, args.out, args.heldout, resume=not args.no_resume,
                       caption_dirs=[video_dir(d, "critic_cold.caption_videos") for d in ct.caption_videos] or None)
    print(f"cold-started critic written to {final} (use critic.path={final})")


def cmd_caption(cfg: RunConfig, args: argparse.Namespace) -> None:
    from dualipo.critic_training.cold_start import caption_pretrain

    final = caption_pretrain(cfg, args.videos, args.out, args.heldout, resume=not args.no_resume)
    print(f"captioning-pretrained critic written to {final} (cold-start from it with critic.path={final})")


def cmd_eval(cfg: RunConfig, args: argparse.Namespace) -> None:
    import torch

    from dualipo.critics import build_critic
    from dualipo.critic_training.evaluate import evaluate_pairs
    from dualipo.critic_training.seed import load_seed

    if cfg.critic.backend not in ("qwen_vl", "vllm"):
        raise ValueError(f"critic eval needs critic.backend=qwen_vl or vllm, got {cfg.critic.backend!r}")
    if cfg.critic_cold.num_threads:
        torch.set_num_threads(cfg.critic_cold.num_threads)
    records = load_seed(args.pairs)[: args.limit or None]
    critic = build_critic(cfg)
    torch.manual_seed(args.seed)  # sampled votes are reproducible
    res = evaluate_pairs(critic, records, num_votes=cfg.judging.num_votes,
                         chain_of_thought=cfg.judging.chain_of_thought, progress=True,
                         judgments_out=args.judgments, certainty_threshold=cfg.judging.certainty_threshold)
    print(json.dumps(res, indent=2))
    print(calibration_text(res["calibration"]), file=sys.stderr)  # stdout stays one JSON document


def calibration_text(rows: list[dict]) -> str:
    """The calibration table (`critic_training.evaluate.calibration_table`) as aligned text."""
    fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines = ["certainty >=  kept  share  kept acc  reversed"]
    lines += [f"{r['threshold']:>11.2f}  {r['kept']:>4}  {r['kept_share']:.3f}  {fmt(r['kept_accuracy']):>8}  "
              f"{fmt(r['kept_reversed']):>8}" for r in rows]
    return "\n".join(lines)


def read_judgments(source: str, rnd: int | None) -> list:
    """The judgments `critic refine` learns from: a JSONL file (`critic eval --judgments`), or round `rnd` of a
    run directory's ledger (video paths made absolute, as the loop's own refinement reads them)."""
    from dualipo.critics.voting import Judgment, judgment_from_row
    from dualipo.jsonl import read_jsonl
    from dualipo.ledger import Ledger

    if Path(source).is_dir():
        if rnd is None:
            raise ValueError(f"--judgments {source} is a run directory: say which round's judgments with --round K")
        ledger = Ledger.open(Path(source), readonly=True)
        try:
            prompts, rows = dict(ledger.prompts()), ledger.judgments(rnd)
        finally:
            ledger.close()
        if not rows:
            raise ValueError(f"{source} holds no judgments of round {rnd} (its judge stage has not run)")
        return [judgment_from_row(r, prompts).under(source) for r in rows]
    if rnd is not None:
        raise ValueError("--round picks a round of a run directory; --judgments is a file")
    judgments = []
    for n, r in read_jsonl(source, "judgment file"):
        try:
            judgments.append(Judgment.from_dict(r))
        except (KeyError, TypeError, ValueError) as e:
            raise ValueError(f"{source}:{n}: not a judgment record ({type(e).__name__}: {e}); expected the "
                             "JSONL that `dualipo critic eval --judgments` writes, or a run directory") from None
    return judgments


def cmd_refine(cfg: RunConfig, args: argparse.Namespace) -> None:
    from dualipo.critic_training.refine import refine_critic

    judgments = read_judgments(args.judgments, args.round)
    final, counts = refine_critic(cfg, judgments, args.out, cfg.critic_refine.seed_file or None,
                                  resume=not args.no_resume)
    print(json.dumps(counts, indent=1))
    print(f"refined critic written to {final} (use critic.path={final})")


def video_dir(value: str, key: str = "") -> str:
    """argparse type of the video-directory lists (and the check of `key`'s directories)."""
    if not Path(value).is_dir():
        if key:
            raise ValueError(f"{key}: not a directory: {value}")
        raise argparse.ArgumentTypeError(f"not a directory: {value}")
    return value


def add_data_commands(cs, config_args: Callable, load: Callable) -> None:
    """videos, seed, import."""
    p = cs.add_parser("videos", help="shapes-world renders + corruptions (or --generator samples) in the "
                      "prompts.jsonl layout")
    config_args(p)
    p.add_argument("--generator", action="store_true", help="sample the configured generator instead of rendering")
    p.add_argument("--out", required=True)
    p.add_argument("--prompts", type=int, default=300)
    p.add_argument("--per-prompt", type=int, default=4)
    p.add_argument("--split", choices=("train", "eval"), default="train")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=lambda args: cmd_videos(load(args), args))
    p = cs.add_parser("seed", help="oracle-labelled seed set (JSONL) from prompts.jsonl video directories: "
                      "critic_cold.seed_pairs pairs, label noise critic_cold.seed_noise, seed critic_cold.seed")
    config_args(p)
    p.add_argument("--videos", nargs="+", type=video_dir, required=True, help="directories with prompts.jsonl + videos")
    p.add_argument("--out", required=True, help="seed JSONL to write")
    p.add_argument("--pointwise", type=int, default=0, help="also this many pointwise records")
    p.add_argument("--other-prompts", type=float, default=0.0, help="share of the pointwise records that judge "
                   "a video against another prompt of the pool")
    p.add_argument("--tie-margin", type=float, default=None,
                   help="oracle scores closer than this are a tie (default: dualipo.toy.seed_labels.TIE_MARGIN)")
    p.add_argument("--dimensions", nargs="+", default=list(SEED_DIMENSIONS), choices=DIMENSIONS)
    p.set_defaults(func=lambda args: cmd_seed(load(args), args))
    p = cs.add_parser("import", help="validate a CSV / JSONL seed set and write canonical JSONL")
    config_args(p)
    p.add_argument("src")
    p.add_argument("--out", required=True)
    p.set_defaults(func=lambda args: cmd_import(load(args), args))


def _trainer(cs, name: str, help: str, command: Callable, config_args: Callable, load: Callable):
    """A training subcommand's parser: config arguments, --out and --no-resume (it resumes from OUT/ckpt)."""
    p = cs.add_parser(name, help=f"{help} (resumes from OUT/ckpt)")
    config_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--no-resume", action="store_true")
    p.set_defaults(func=lambda args: command(load(args), args))
    return p


def add_training_commands(cs, config_args: Callable, load: Callable) -> None:
    """cold-start, caption, refine, eval."""
    p = _trainer(cs, "cold-start", "fine-tune the critic on the seed set critic_cold.seed_file, with captioning "
                 "examples of critic_cold.caption_videos", cmd_cold_start, config_args, load)
    p.add_argument("--heldout", default=None, help="labelled pairs evaluated every critic_cold.eval_every steps")
    p = _trainer(cs, "caption", "captioning pretraining: describe videos (true descriptions from the shapes-world "
                 "oracle, no preference labels) before the cold start", cmd_caption, config_args, load)
    p.add_argument("--videos", nargs="+", type=video_dir, required=True, help="directories with prompts.jsonl + videos")
    p.add_argument("--heldout", nargs="+", type=video_dir, default=None, help="directories of held-out videos "
                   "evaluated every critic_cold.eval_every steps (first critic_cold.eval_pairs videos)")
    p = _trainer(cs, "refine", "one SRPO refinement of critic.path on a judgment file: consistency filter, "
                 "certainty, then SFT (mixed with the seed set critic_refine.seed_file) or certainty-weighted DPO",
                 cmd_refine, config_args, load)
    p.add_argument("--judgments", required=True, help="JSONL of judgments (sampled paths, both orders), or a run "
                   "directory with --round")
    p.add_argument("--round", type=int, default=None, metavar="K", help="with a run directory: learn from its "
                   "round K's judgments (e.g. to re-run a round's refinement with other settings)")
    p = cs.add_parser("eval", help="accuracy, tie, abstention and position-bias rates on a labelled pair set")
    config_args(p)
    p.add_argument("--pairs", required=True, help="seed-format JSONL / CSV of labelled pairs")
    p.add_argument("--limit", type=int, default=0, help="evaluate the first N pairs only")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled votes")
    p.add_argument("--judgments", default=None, help="also write every judgment (rationales, votes) as JSONL")
    p.set_defaults(func=lambda args: cmd_eval(load(args), args))


def add_critic_commands(sub, config_args: Callable, load: Callable) -> None:
    critic = sub.add_parser("critic", help="the VLM critic: seed sets, cold start, evaluation")
    cs = critic.add_subparsers(dest="critic_cmd", required=True)
    for add in (add_data_commands, add_training_commands):
        add(cs, config_args, load)
