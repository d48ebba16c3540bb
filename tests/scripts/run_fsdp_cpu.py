"""`dualipo ARGS` (the real CLI) in a process started by `accelerate launch --config_file fsdp.yaml` on CPU, with
FSDP set as `train_tiny.py --force-fsdp-on-cpu` does (accelerate 1.15 would run the FSDP config as plain data
parallel on CPU; the loop's own Accelerator then shares the forced state).

    run_fsdp_cpu.py [--crash-at STEP] DUALIPO ARGS...

`--crash-at STEP` stops every process just before the generator's optimizer step STEP (1-based) of the first
training stage, as an interruption would (exit code 3).
"""

import logging
import sys

import train_tiny

from dualipo.cli import main

if __name__ == "__main__":
    cli_args = sys.argv[1:]
    train_tiny._accelerator(force_fsdp=True)
    if cli_args[:1] == ["--crash-at"]:
        train_tiny._crash_at(int(cli_args[1]))
        cli_args = cli_args[2:]
    try:
        code = main(cli_args)
    except train_tiny.Crash as e:
        print(e, file=sys.stderr)
        code = 3
    logging.shutdown()
    sys.exit(code)
