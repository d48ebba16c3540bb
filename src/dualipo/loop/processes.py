"""The processes of a run (`accelerate launch`, or one process). Every process runs the same loop; the main process
alone reads and writes the ledger, decides what is left to do and broadcasts it (`from_main`). Work units are
dealt round-robin (`shard`); each process writes its own files, and the main process records them once complete.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence, TypeVar

from tqdm.auto import tqdm

log = logging.getLogger(__name__)
T = TypeVar("T")


class Processes:
    def __init__(self, mixed_precision: str = "no"):
        import torch
        from accelerate import Accelerator

        # without CUDA, processes started by `accelerate launch --multi_gpu` (torchrun) join a gloo CPU group
        self.accelerator = Accelerator(cpu=not torch.cuda.is_available(), mixed_precision=mixed_precision)
        self._computing = False

    @property
    def main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def count(self) -> int:
        return self.accelerator.num_processes

    def wait(self) -> None:
        self.accelerator.wait_for_everyone()

    def from_main(self, compute: Callable[[], T]) -> T:
        """`compute()` on the main process (which owns the ledger), broadcast to every process. An error on the main
        process is raised on every process, so none waits forever. `compute` must not call `from_main` itself (the
        other processes would take the inner broadcast for this one)."""
        if self.count == 1:
            return self._compute(compute)
        from accelerate.utils import broadcast_object_list

        box: list[Any] = [None]
        error = None
        if self.main:
            try:
                box[0] = ("ok", self._compute(compute))
            except Exception as e:  # re-raised below, after the other processes have been told
                box[0], error = ("error", f"{type(e).__name__}: {e}"), e
        broadcast_object_list(box)
        if error is not None:
            raise error
        status, value = box[0]
        if status == "error":
            raise ValueError(f"the main process failed: {value}")
        return value

    def _compute(self, compute: Callable[[], T]) -> T:
        if self._computing:  # one process too, so the tests catch it
            raise RuntimeError("from_main inside from_main: the other processes would take the inner broadcast")
        self._computing = True
        try:
            return compute()
        finally:
            self._computing = False

    def shard(self, units: Sequence[Any], work: Callable[[Any], list], commit: Callable[[Any], None], desc: str,
              unit: str) -> None:
        """Deal `units` round-robin (step s: process r does unit s * P + r); after each step the results are
        gathered on the main process, which commits them in order. Only the main process shows progress."""
        p, r = self.count, self.accelerator.process_index
        bar = tqdm(total=len(units), desc=desc, unit=unit, disable=not self.main or not units)
        mine = 0
        for start in range(0, len(units), p):
            mine += start + r < len(units)
            results = work(units[start + r]) if start + r < len(units) else []
            if p > 1:
                from accelerate.utils import gather_object

                results = gather_object(results)
            if self.main:
                for res in results:
                    commit(res)
            bar.update(min(p, len(units) - start))
        bar.close()
        if p > 1:
            log.debug("%s: process %d of %d did %d of %d units (%s)", desc, r, p, mine, len(units), unit)
        self.wait()
