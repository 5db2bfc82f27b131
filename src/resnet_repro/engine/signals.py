"""Signals that ask a run to checkpoint and stop between two iterations.

- SIGTERM and SIGUSR2: SLURM's warning before a time limit or a preemption. After the checkpoint the handler that
  was there before (submitit's, which requeues the job) is called, so requeue works as submitit intends.
- SIGINT (Ctrl-C): the run checkpoints at the current iteration, says how to resume in one line and exits with 130.
  A second Ctrl-C exits at once (the default handler is back after the first).

With several processes (DDP) a signal reaches each at a different point of its loop, and a process that stopped
alone would leave the others' collectives unmatched: `should_stop` then agrees across processes every SYNC_EVERY
iterations (one tiny all-reduce of a CPU tensor over the gloo control group: no host-device synchronisation).
"""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from typing import Any

import torch

from .distributed import DistInfo

INTERRUPTED_EXIT = 128 + signal.SIGINT


class StopSignals:
    SIGNALS = (signal.SIGTERM, signal.SIGUSR2, signal.SIGINT)
    SYNC_EVERY = 10

    def __init__(self, dist: DistInfo | None = None):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._dist = dist

    def should_stop(self, iteration: int) -> bool:
        """True if a signal came (with several processes: to any of them), at the same iteration in every process."""
        if self._dist is None or self._dist.world_size <= 1:
            return self.received is not None
        if iteration % self.SYNC_EVERY:
            return False
        flag = torch.tensor([self.received or 0], dtype=torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self._dist.control_group)
        # Decide on the agreed flag only: a signal that lands after the all-reduce is seen by all at the next one.
        agreed = int(flag.item())
        if agreed and self.received is None:
            self.received = agreed  # stop with the others, as if the signal had come here too
        return agreed != 0

    def _handle(self, signum, frame) -> None:
        self.received = signum
        if signum == signal.SIGINT:
            signal.signal(signal.SIGINT, signal.SIG_DFL)  # a second Ctrl-C ends the process at once

    @contextmanager
    def installed(self):
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

    def hand_over(self, iteration: int) -> None:
        """After the checkpoint: Ctrl-C exits with 130 and a line on how to resume; SLURM's signals go to the handler
        that was there before (submitit requeues), else the process exits like one killed by the signal."""
        if self.received == signal.SIGINT:
            print(
                f"interrupted at iteration {iteration}: run the same command again to resume",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(INTERRUPTED_EXIT)
        previous = self._previous.get(self.received)
        if callable(previous):
            previous(self.received, None)
        raise SystemExit(128 + self.received)
