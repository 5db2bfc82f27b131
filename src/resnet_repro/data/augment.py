"""The paper's CIFAR augmentation on whole batches, on the device that trains.

Pad 4 pixels on each side, take a random 32x32 crop, flip horizontally at random (Section 4.2): done as a single
gather, so each image gets its own offsets and flip with no per-sample Python work.
"""

import torch
import torch.nn.functional as F

PAD = 4


def normalize(images_uint8: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """uint8 N,C,H,W -> float in [0, 1] minus the training set's per-pixel mean (paper: per-pixel mean subtraction)."""
    return images_uint8.float().div_(255).sub_(mean)


def random_crop_flip_params(n: int, size: int, generator: torch.Generator, device) -> tuple[torch.Tensor, ...]:
    """Per image: row and column offsets in [0, 2*PAD] and a flip flag, drawn from `generator`."""
    offsets = torch.randint(0, 2 * PAD + 1, (2, n), generator=generator, device=generator.device).to(device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=generator.device).to(device, torch.bool)
    return offsets[0], offsets[1], flips


def augment_batch(images: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Zero-pad normalized images by PAD, crop at (dy, dx), mirror where `flip`: one gather of flat indices.

    Padding is applied after mean subtraction, so padded pixels are exactly zero at the network's input.
    (index_select on flat indices, because advanced indexing runs element by element on the CPU.)
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (PAD, PAD, PAD, PAD))
    height, width = h + 2 * PAD, w + 2 * PAD
    device = images.device
    rows = dy[:, None] + torch.arange(h, device=device)  # n, h
    cols = torch.arange(w, device=device).expand(n, w)
    cols = torch.where(flip[:, None], w - 1 - cols, cols) + dx[:, None]  # n, w
    planes = torch.arange(n * c, device=device).view(n, c) * (height * width)  # start of each image's channel
    index = planes[:, :, None, None] + (rows[:, :, None] * width + cols[:, None, :])[:, None]  # n, c, h, w
    return padded.reshape(-1).index_select(0, index.reshape(-1)).view(n, c, h, w)
