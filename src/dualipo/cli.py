"""The `dualipo` command line. Each subcommand loads the config (preset -> file -> dotted overrides) and calls
one library function. Heavy imports stay inside the handlers so `dualipo --help` is instant.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from pathlib import Path
from typing import Callable

from dualipo.config import ConfigError, RunConfig, build_config, save_config, to_dict

log = logging.getLogger("dualipo")
PRESET_NAMES = "tiny | small | full-cogvideox-2b | full-cogvideox-5b | full-wan-1.3b (full = full-cogvideox-2b)"
OVERRIDE = re.compile(r"[A-Za-z_]\w*(\.\w+)*=")  # a dotted config key, then =


class Parser(argparse.ArgumentParser):
    """Options and KEY=VALUE overrides in any order in every subcommand: a word `dotted.key=value` is an override
    wherever it stands (after a list option such as `--seeds 2 3` too), unless it is the value of a one-value
    option (`--token abc=`)."""

    def parse_known_args(self, args=None, namespace=None):
        if "overrides" not in {a.dest for a in self._actions}:  # the top level, `critic`, `world`: no overrides
            return super().parse_known_args(args, namespace)
        args = list(sys.argv[1:] if args is None else args)
        one_value = {s for a in self._actions if a.nargs is None for s in a.option_strings}
        is_override = [bool(OVERRIDE.match(w)) and (i == 0 or args[i - 1] not in one_value) for i, w in enumerate(args)]
        ns, rest = super().parse_known_args([w for w, o in zip(args, is_override) if not o], namespace)
        ns.overrides = [w for w, o in zip(args, is_override) if o] + ns.overrides  # strays fail as overrides
        return ns, rest


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="small", help=f"{PRESET_NAMES} (default: small)")
    p.add_argument("--config", dest="config_file", default=None, help="YAML or JSON file with config values")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. train.beta=2500")


def _load(args: argparse.Namespace) -> RunConfig:
    return build_config(args.preset, args.config_file, args.overrides)


def cmd_config(args: argparse.Namespace) -> None:
    import json

    print(json.dumps(to_dict(_load(args)), indent=2))


def cmd_world_sample(args: argparse.Namespace) -> None:
    from dualipo.jsonl import read_jsonl
    from dualipo.toy.sample import caption_table, sample_world

    cfg = _load(args)
    out = Path(args.out)
    save_config(cfg, out / "config.json")
    path = sample_world(cfg.world, out, n=args.n, split=args.split, seed=args.seed)
    print(caption_table([rec for _, rec in read_jsonl(path)]))
    print(f"wrote {args.n} videos, {path} and {out / 'index.html'} (renders beside their web captions and true "
          f"prompts; * = the web caption names something wrong)")


def cmd_pretrain(args: argparse.Namespace) -> None:
    from dualipo.pretrain import pretrain

    cfg = _load(args)
    target = pretrain(cfg, args.out)
    print(f"generator written to {target}")


def cmd_train(args: argparse.Namespace) -> None:
    from dualipo.trainer import train_from_pair_file

    adapter = train_from_pair_file(_load(args), args.pairs, args.out)
    print(f"wrote {adapter} and {Path(args.out) / 'metrics.jsonl'}")


def cmd_sample(args: argparse.Namespace) -> None:
    from dualipo.generators.evaluate import write_samples
    from dualipo.toy.world import prompt_pools

    cfg = _load(args)
    prompts = args.prompt or prompt_pools(cfg.world)[1][:args.num_prompts]
    path = write_samples(cfg, args.out, prompts, args.seeds)
    print(f"wrote {len(prompts) * len(args.seeds)} videos and {path}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from dualipo.generators.evaluate import evaluate_prompts
    from dualipo.ledger import atomic_write_text
    from dualipo.loop.prompts import read_prompt_file

    cfg = _load(args)
    prompts = read_prompt_file(Path(args.prompts), "--prompts")
    for lora in args.lora:
        if not Path(lora).exists():
            raise ValueError(f"--lora: {lora} does not exist")
    result = evaluate_prompts(cfg, prompts, list(cfg.eval.seeds), args.lora)
    result["prompts_file"] = args.prompts
    atomic_write_text(Path(args.out), json.dumps(result, indent=2) + "\n")
    mean = result["mean"]
    print(f"wrote {args.out}: {result['num_videos']} videos; " + ", ".join(
        f"{k} {v:.4f}" for k, v in mean.items() if isinstance(v, float)))


def cmd_report(args: argparse.Namespace) -> None:
    from dualipo.report import write_report

    path = write_report(args.run_dir, args.out, num_prompts=args.num_prompts, num_judgments=args.num_judgments)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB); open it in a browser, no server needed")


def _quiet_model_loaders() -> None:
    """Keep the loop's own progress bars and log lines; drop the loaders' bars and notices (shown with -v)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    for lib in (diffusers_logging, transformers_logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def cmd_run(args: argparse.Namespace) -> None:
    from dualipo.loop.setup import recorded_config
    from dualipo.rounds import run_rounds

    if not args.verbose:
        _quiet_model_loaders()

    if args.resume and args.preset is None and args.config_file is None and not args.overrides:
        cfg = recorded_config(args.out)  # resume with the config the run was started with
    else:
        cfg = build_config(args.preset or "small", args.config_file, args.overrides)
    table = run_rounds(cfg, args.out, resume=args.resume)
    if table:
        print(table)


def cmd_ablate(args: argparse.Namespace) -> None:
    import shlex

    from dualipo.ablate import run_arms

    if not args.verbose:
        _quiet_model_loaders()
    md = run_arms(args.preset, args.config_file, args.overrides, args.out, args.arms, args.seeds,
                  "dualipo " + shlex.join(args.argv), table_only=args.table_only, arms_file=args.arms_file,
                  references=args.reference)
    print(md.read_text())
    print(f"wrote {md}, {md.with_suffix('.html')} and {md.with_suffix('.json')}")


def cmd_export(args: argparse.Namespace) -> None:
    from dualipo.export import export_preferences

    path, n = export_preferences(args.run_dir, args.format, args.out)
    print(f"wrote {n} records to {path}")


def cmd_accelerate_config(args: argparse.Namespace) -> None:
    from dualipo.accelerate_configs import accelerate_config

    print(accelerate_config(args.name))


def add_loop_commands(sub) -> None:
    """run, ablate, export."""
    p = sub.add_parser("run", help="the Dual-IPO loop: rounds of sample -> judge -> pairs -> train -> refine -> "
                       "evaluate, recorded in OUT/ledger.sqlite; --resume continues an interrupted run")
    p.add_argument("--preset", default=None, help=f"{PRESET_NAMES} (default: small; with --resume and "
                   "no config arguments: the run's recorded config)")
    p.add_argument("--config", dest="config_file", default=None, help="YAML or JSON file with config values")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. rounds.num_rounds=2")
    p.add_argument("--out", required=True, help="run directory (videos, ledger, metrics, adapters)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from what its ledger records")
    p.set_defaults(func=cmd_run)
    from dualipo.ablate import ARM_NAMES, EPILOG as ABLATE_EPILOG

    p = sub.add_parser("ablate", help="the paper's comparison in miniature: Dual-IPO, IPO, the ablations and two "
                       "equal-compute controls, each a full run in OUT/ARM/seedS (resumed when interrupted); writes "
                       "OUT/ablation.md, .html and .json",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=ABLATE_EPILOG)
    _config_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--arms", nargs="+", default=None, metavar="ARM", help="arms to run (default: every arm of "
                   f"--arms-file, else every built-in arm): {', '.join(ARM_NAMES)} or an --arms-file arm")
    p.add_argument("--arms-file", default=None, metavar="TOML", help="custom arms, one table per arm (see below)")
    p.add_argument("--reference", nargs="+", default=[], metavar="ARM", help="add a gain column and, per named "
                   "arm, the paired difference to it and the share of its gain (the JSON: rows' `vs`)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], metavar="SEED", help="one run per arm and seed")
    p.add_argument("--table-only", action="store_true", help="run nothing: write the table of the runs under "
                   "--out that have finished (e.g. while other arms still run in another process)")
    p.set_defaults(func=cmd_ablate)
    p = sub.add_parser("export", help="write a run's preference data in TRL conventions (prompt/chosen/rejected or "
                       "prompt/completion/label) with provenance columns")
    p.add_argument("run_dir", help="a run directory written by `dualipo run`")
    p.add_argument("--format", choices=("jsonl", "parquet"), default="jsonl")
    p.add_argument("--out", required=True, help="output file")
    p.set_defaults(func=cmd_export)


def add_eval_commands(sub) -> None:
    """evaluate, report, config."""
    p = sub.add_parser("evaluate", help="sample a generator (generator.path: a local diffusers pipeline directory, "
                       "or 'shipped') on a prompt file with fixed seeds (eval.seeds) and write the weight-free video "
                       "metrics (and oracle scores for shapes-world prompts) as JSON")
    _config_args(p)
    p.add_argument("--lora", action="append", default=[], help="generator_lora.safetensors to load and merge "
                   "(repeatable, in order: a run's rounds 1..k give round k's generator)")
    p.add_argument("--prompts", required=True, help="JSONL ({'prompt', 'id'}) or text file, one prompt per line")
    p.add_argument("--out", required=True, help="output JSON file")
    p.set_defaults(func=cmd_evaluate)
    p = sub.add_parser("report", help="write a run's static HTML report (tables, plots, videos, critic judgments); "
                       "one self-contained file that opens from disk")
    p.add_argument("run_dir", help="a run directory written by `dualipo run`")
    p.add_argument("--out", default=None, help="output file (default: RUN_DIR/report.html)")
    p.add_argument("--num-prompts", type=int, default=4, help="held-out prompts in the video grid")
    p.add_argument("--num-judgments", type=int, default=3, help="critic judgments shown per round")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("config", help="print the resolved config")
    _config_args(p)
    p.set_defaults(func=cmd_config)


def add_model_commands(sub) -> None:
    """world sample, pretrain, sample, train, accelerate-config."""
    world = sub.add_parser("world", help="the procedural shapes world").add_subparsers(dest="world_cmd", required=True)
    p = world.add_parser("sample", help="render N prompts as mp4 files plus prompts.jsonl with oracle scores")
    _config_args(p)
    p.add_argument("--n", type=int, default=8, help="number of videos")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--split", choices=("train", "eval"), default="train", help="prompt pool to draw from")
    p.add_argument("--seed", type=int, default=0, help="first render seed")
    p.set_defaults(func=cmd_world_sample)
    p = sub.add_parser("pretrain", help="train the small generator (VAE, then transformer) on the shapes world; "
                       "resumes from OUT's checkpoints")
    _config_args(p)
    p.add_argument("--out", required=True, help="output directory (checkpoints, metrics.jsonl, generator/)")
    p.set_defaults(func=cmd_pretrain)
    p = sub.add_parser("sample", help="sample videos with explicit seeds (mp4 + PNG strips + samples.jsonl with "
                       "oracle scores); default prompts: the world's held-out pool")
    _config_args(p)
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--prompt", action="append", default=None, help="a prompt (repeatable)")
    p.add_argument("--num-prompts", type=int, default=8, help="held-out prompts used when no --prompt is given")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="one video per prompt and seed")
    p.set_defaults(func=cmd_sample)
    p = sub.add_parser("train", help="train the generator (LoRA, DPO/KTO) on a TRL-style pair file; resumes")
    _config_args(p)
    p.add_argument("--pairs", required=True, help="JSONL with prompt, chosen, rejected (video paths)")
    p.add_argument("--out", required=True, help="output directory (adapter, metrics.jsonl, checkpoints)")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("accelerate-config", help="print the path of a shipped accelerate config file: `accelerate "
                       "launch --config_file $(dualipo accelerate-config fsdp) --num_processes 8 -m dualipo run ...`")
    p.add_argument("name", help="ddp | fsdp | zero2 (DeepSpeed ZeRO-2) | zero3 (DeepSpeed ZeRO-3)")
    p.set_defaults(func=cmd_accelerate_config)


def build_parser() -> argparse.ArgumentParser:
    from dualipo.annotate.command import add_annotate_command
    from dualipo.cli_critic import add_critic_commands
    from dualipo.plan import add_plan_command

    parser = Parser(prog="dualipo", description="Dual-IPO post-training for text-to-video models")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)  # every subcommand's parser is a `Parser`
    for add in (add_loop_commands, add_eval_commands, add_model_commands):
        add(sub)
    for add_with_config in (add_critic_commands, add_annotate_command, add_plan_command):
        add_with_config(sub, _config_args, _load)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except (ConfigError, ValueError, FileNotFoundError) as e:
        print(f"dualipo: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
