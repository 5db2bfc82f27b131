"""Error counts of a batch of class scores: one definition for the trainer's evaluations and the ImageNet protocols."""

from __future__ import annotations

import torch


def top1_top5_wrong(scores: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """How many rows of `scores` (logits or probabilities, N,K) miss `labels` at top-1 and at top-5 (on the device)."""
    top5 = scores.topk(min(5, scores.shape[1]), dim=1).indices
    return (top5[:, 0] != labels).sum(), (top5 != labels[:, None]).all(1).sum()
