"""Randomness without state: a generator per (seed, stream, index), so data order and augmentation are functions of
the iteration number. Resume is then exact, and any number of processes sees the same global batch as one."""

from __future__ import annotations

import torch


def stream_seed(seed: int, stream: int, index: int, position: int | None = None) -> int:
    """A 63-bit seed for one (run seed, stream, index[, position in the batch]); distinct streams never collide in
    practice (the multipliers are large primes)."""
    value = (seed * 1_000_003 + stream) * 1_000_000_007 + index
    if position is not None:
        value = value * 1_000_033 + position
    return value % 2**63


def stream_generator(seed: int, stream: int, index: int, device: torch.device | str = "cpu") -> torch.Generator:
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, index))
