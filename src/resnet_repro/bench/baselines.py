"""The usual way, written here as common CIFAR ResNet repositories write it: what every case compares ours against."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from ..data.small_images import ImageArrays
from ..models import build_model
from .harness import BATCH, Settings, fixed_batch, sync
from .inputs import cifar_available

CIFAR_MEAN, CIFAR_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


class PILImages(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per sample: a PIL image from the uint8 HWC array, then the transform."""

    def __init__(self, images_hwc: np.ndarray, labels: list[int], transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def usual_dataset(settings: Settings, train: ImageArrays):
    """The usual CIFAR-10 training set: torchvision's class, or the same per-sample work on `train` without CIFAR-10."""
    import torchvision
    import torchvision.transforms as T

    transform = T.Compose(
        [T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(CIFAR_MEAN, CIFAR_STD)]
    )
    if cifar_available(settings.cifar_root):
        return torchvision.datasets.CIFAR10(settings.cifar_root, train=True, transform=transform)
    return PILImages(train.images.permute(0, 2, 3, 1).contiguous().numpy(), train.labels.tolist(), transform)


def usual_loader(dataset, settings: Settings) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=BATCH,
        shuffle=True,
        num_workers=settings.workers,
        drop_last=True,
        pin_memory=settings.device.type == "cuda",
    )


def usual_sgd(model: torch.nn.Module) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)


def reference_loop(settings: Settings, dataset, iters: int, warmup: int) -> float:
    """Iterations/s of a CIFAR training loop as common ResNet repositories write it (timed after `warmup`)."""
    device = settings.device
    torch.manual_seed(0)
    model = build_model("resnet20").to(device)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = usual_sgd(model)
    model.train()
    train_loss, correct, total = 0.0, 0, 0
    t = None
    for i, (inputs, targets) in enumerate(usual_loader(dataset, settings)):
        if i == warmup:
            sync(device)
            t = time.perf_counter()
        if i == warmup + iters:
            break
        inputs, targets = inputs.to(device), targets.to(device)
        outputs = model(inputs)
        loss = criterion(outputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        train_loss += loss.item()
        _, predicted = outputs.max(1)
        total += targets.size(0)
        correct += predicted.eq(targets).sum().item()
    sync(device)
    return iters / (time.perf_counter() - t)


def eager_fp32_step(model_name: str, device: torch.device) -> tuple[torch.nn.Module, Callable[[], None]]:
    """One SGD step on a fixed batch: eager fp32, contiguous, torch's default SGD."""
    torch.manual_seed(0)
    model = build_model(model_name).to(device)
    optimizer = usual_sgd(model)
    images, labels = fixed_batch(device)

    def step():
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    return model, step
