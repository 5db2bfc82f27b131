"""StopSignals across DDP processes: every process stops at the same iteration, whenever the signal lands."""

from __future__ import annotations

import signal
import socket

import torch.distributed as dist
import torch.multiprocessing as mp

from resnet_repro.engine.distributed import DistInfo
from resnet_repro.engine.signals import StopSignals

SIGNALLED_RANK, SIGNALLED_AFTER_SYNC_AT = 1, 10


def _stop_iteration(rank: int, world_size: int, port: int, stops) -> None:
    """Step a loop of 50 iterations; the signal reaches one process just after the flag's all-reduce at iteration 10,
    before should_stop returns (the worst moment: the others have already seen "no signal")."""
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    signals = StopSignals(DistInfo(rank, world_size, rank))
    all_reduce = dist.all_reduce

    def all_reduce_then_maybe_signal(tensor, *args, **kwargs):
        work = all_reduce(tensor, *args, **kwargs)
        if rank == SIGNALLED_RANK and iteration == SIGNALLED_AFTER_SYNC_AT:
            signals._handle(signal.SIGUSR2, None)  # what the installed handler does when SIGUSR2 arrives here
        return work

    dist.all_reduce = all_reduce_then_maybe_signal
    stopped_at = None
    try:
        for iteration in range(50):
            if signals.should_stop(iteration):
                stopped_at = iteration
                break
            dist.barrier()  # stands for the training step's collectives: a process that left alone breaks them
    finally:
        dist.all_reduce = all_reduce
    stops[rank] = (stopped_at, signals.received)
    dist.destroy_process_group()


def test_a_signal_landing_just_after_the_agreement_stops_every_process_together():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with mp.Manager() as manager:
        stops = manager.dict()
        mp.spawn(_stop_iteration, args=(2, port, stops), nprocs=2, join=True)
        stops = dict(stops)
    # Not at 10 (only one process had seen the signal), but at the next agreement, all of them.
    assert stops == {0: (20, signal.SIGUSR2), 1: (20, signal.SIGUSR2)}
