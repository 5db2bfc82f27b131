"""The paper's CIFAR augmentation on whole batches, on the device that trains.

Pad 4 pixels on each side, take a random 32x32 crop, flip horizontally at random (Section 4.2), then subtract the
per-pixel mean. Each image gets its own offsets and flip with no per-sample Python work, and a batch costs one
gather of 32-pixel rows plus one float pass (see CropFlipImages).
"""

import torch
import torch.nn.functional as F

PAD = 4


def normalize(images_uint8: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """uint8 N,C,H,W -> float in [0, 1] minus the training set's per-pixel mean (paper: per-pixel mean subtraction)."""
    return torch.add(-mean, images_uint8, alpha=1 / 255)  # one pass: the uint8 -> float conversion is fused


def random_crop_flip_params(n: int, generator: torch.Generator, device) -> tuple[torch.Tensor, ...]:
    """Per image: row and column offsets in [0, 2*PAD] and a flip flag, drawn from `generator`."""
    offsets = torch.randint(0, 2 * PAD + 1, (2, n), generator=generator, device=generator.device).to(device)
    flips = torch.randint(0, 2, (n,), generator=generator, device=generator.device).to(device, torch.bool)
    return offsets[0], offsets[1], flips


def _row_windows(t: torch.Tensor, width: int) -> torch.Tensor:
    """Every run of `width` consecutive elements of contiguous `t`, as rows of an overlapping view (no copy)."""
    flat = t.view(-1)
    return flat.as_strided((flat.numel() - width + 1, width), (1, 1))


class CropFlipImages:
    """A uint8 image set prepared so that pad + random crop + random flip + mean subtraction of any batch is cheap.

    The images are stored zero-padded and next to their mirror images. A cropped, possibly mirrored output row is
    then a run of `size` consecutive stored bytes, so one index_select over a view of overlapping row windows
    fetches the whole batch: one index per row instead of per pixel, and no float work on padded pixels. The
    padded per-pixel mean is fetched with the same row indices, so padding stays exactly zero after the mean is
    subtracted (padding after mean subtraction, as the paper's zero padding). Memory: 2 x (size+8)^2/size^2 of the
    uint8 set (480 MB for CIFAR-10).
    """

    def __init__(self, images: torch.Tensor, mean: torch.Tensor):
        n, self.channels, size, width = images.shape
        if size != width:
            raise ValueError(f"square images expected, got {size}x{width}")
        self.size, self.padded = size, size + 2 * PAD
        # Written in place into the zeroed store (N, mirrored, C, H, W): half the memory traffic of pad-and-stack.
        self._images = torch.zeros(
            n, 2, self.channels, self.padded, self.padded, dtype=images.dtype, device=images.device
        )
        inner = self._images[..., PAD:-PAD, PAD:-PAD]
        inner[:, 0] = images
        inner[:, 1] = images.flip(-1)
        neg_mean = F.pad(-mean, (PAD,) * 4)
        self._neg_mean = torch.stack([neg_mean, neg_mean.flip(-1)]).contiguous()  # mirrored, C, H, W
        self._image_rows, self._mean_rows = _row_windows(self._images, size), _row_windows(self._neg_mean, size)
        device = images.device
        self._channel = torch.arange(self.channels, device=device)[None, :, None]
        self._row = torch.arange(size, device=device)

    def batch(self, index: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
        """Images `index`, each cropped at (dy, dx) of its padded version, mirrored where `flip`, mean subtracted."""
        c, p = self.channels, self.padded
        # In the mirrored copy the crop that starts at column dx starts at column 2*PAD - dx.
        start = torch.where(flip, 2 * PAD - dx, dx)
        plane_row = (flip.long()[:, None, None] * c + self._channel) * p + dy[:, None, None] + self._row  # n, C, size
        within_image = plane_row * p + start[:, None, None]  # first stored element of each output row
        image_base = index * (2 * c * p * p)
        pixels = self._image_rows.index_select(0, (within_image + image_base[:, None, None]).view(-1))
        neg_mean = self._mean_rows.index_select(0, within_image.view(-1))
        return torch.add(neg_mean, pixels, alpha=1 / 255).view(len(index), c, self.size, self.size)

    def center(self, index: torch.Tensor) -> torch.Tensor:
        """Images `index` unaugmented (the crop at the padding's offset, not mirrored), mean subtracted."""
        offset = torch.full_like(index, PAD)
        return self.batch(index, offset, offset, torch.zeros_like(index, dtype=torch.bool))
