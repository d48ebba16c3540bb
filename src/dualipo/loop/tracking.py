"""Metrics of every stage: always the ledger and `RUN_DIR/metrics.jsonl` (one line per round and stage, rewritten
atomically from the ledger, so the file never disagrees with it), and TensorBoard or Weights & Biases when
`rounds.tracker` asks (optional extra `tracking`; off by default). Main process only."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Mapping

from dualipo.ledger import Ledger, atomic_write_text

log = logging.getLogger(__name__)
METRICS = "metrics.jsonl"


def check_tracker(tracker: str) -> None:
    """Fail before any work if the asked tracker is not installed."""
    match tracker:
        case "none":
            return
        case "tensorboard":
            module = "tensorboard"
        case "wandb":
            module = "wandb"
        case other:
            raise ValueError(f"rounds.tracker: unknown tracker {other!r}")
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise ValueError(f"rounds.tracker={tracker} needs the {module} package: pip install 'dualipo[tracking]'")


class Metrics:
    def __init__(self, run_dir: Path, ledger: Ledger, tracker: str = "none", config: Mapping[str, Any] | None = None):
        self.run_dir, self.ledger, self.tracker = run_dir, ledger, tracker
        self._sink = None
        match tracker:
            case "tensorboard":
                from torch.utils.tensorboard import SummaryWriter

                self._sink = SummaryWriter(str(run_dir / "tensorboard"))
            case "wandb":
                import wandb

                run_id = f"{run_dir.name}-{ledger.meta()['config_hash'][:8]}"  # the same run when resumed
                self._sink = wandb.init(project="dualipo", dir=str(run_dir), name=run_dir.name,
                                        config=dict(config or {}), resume="allow", id=run_id)

    def log(self, rnd: int, stage: str, values: Mapping[str, float | None]) -> None:
        clean = {k: (None if v is None else float(v)) for k, v in values.items()}
        self.ledger.add_metrics(rnd, stage, clean)
        self.write_jsonl()
        numbers = {f"{stage}/{k}": v for k, v in clean.items() if v is not None}
        match self.tracker:
            case "tensorboard":
                for key, v in numbers.items():
                    self._sink.add_scalar(key, v, global_step=rnd)
                self._sink.flush()
            case "wandb":
                self._sink.log({**numbers, "round": rnd})

    def write_jsonl(self) -> Path:
        path = self.run_dir / METRICS
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in self.ledger.metric_records()))
        return path

    def close(self) -> None:
        match self.tracker:
            case "tensorboard":
                self._sink.close()
            case "wandb":
                self._sink.finish()
