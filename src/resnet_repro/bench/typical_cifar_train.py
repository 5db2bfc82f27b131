"""A typical CIFAR-10 training script, as common ResNet repositories write it: the baseline of whole_command_resnet20.

    python typical_cifar_train.py --root data/cifar10 --iters 300 --workers 2

torchvision's CIFAR10 dataset, a DataLoader with per-sample PIL transforms (RandomCrop(32, padding=4),
RandomHorizontalFlip, ToTensor, Normalize) in worker processes, eager fp32, `.item()` every step, then one
evaluation on the whole test set (batch 100, the same transforms' test half). The model is this repository's
ResNet-20, so that both commands do the same arithmetic and differ only in everything around it.

The benchmark runs this file as a process of its own and times it from start to exit; the last line printed is a
JSON summary (iterations, test images, test error) that says the work was done.
"""

from __future__ import annotations

import argparse
import json

import torch
import torch.nn as nn
import torchvision
import torchvision.transforms as transforms

from resnet_repro.models import build_model

MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)


def main() -> None:
    parser = argparse.ArgumentParser(description="ResNet-20 on CIFAR-10, the usual way")
    parser.add_argument("--root", default="data/cifar10")
    parser.add_argument("--iters", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)

    transform_train = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(MEAN, STD),
        ]
    )
    transform_test = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    trainset = torchvision.datasets.CIFAR10(root=args.root, train=True, download=False, transform=transform_train)
    trainloader = torch.utils.data.DataLoader(
        trainset, batch_size=args.batch_size, shuffle=True, num_workers=args.workers, pin_memory=device.type == "cuda"
    )
    testset = torchvision.datasets.CIFAR10(root=args.root, train=False, download=False, transform=transform_test)
    testloader = torch.utils.data.DataLoader(testset, batch_size=100, shuffle=False, num_workers=args.workers)

    net = build_model("resnet20").to(device)
    criterion = nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)

    iteration = 0
    net.train()
    while iteration < args.iters:
        train_loss, correct, total = 0.0, 0, 0
        for batch, (inputs, targets) in enumerate(trainloader, 1):
            inputs, targets = inputs.to(device), targets.to(device)
            optimizer.zero_grad()
            outputs = net(inputs)
            loss = criterion(outputs, targets)
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
            _, predicted = outputs.max(1)
            total += targets.size(0)
            correct += predicted.eq(targets).sum().item()
            iteration += 1
            if iteration % 100 == 0:
                print(f"iter {iteration} loss {train_loss / batch:.3f} acc {correct / total:.3f}", flush=True)
            if iteration == args.iters:
                break

    net.eval()
    test_loss, correct, total = 0.0, 0, 0
    with torch.no_grad():
        for inputs, targets in testloader:
            inputs, targets = inputs.to(device), targets.to(device)
            outputs = net(inputs)
            test_loss += criterion(outputs, targets).item()
            _, predicted = outputs.max(1)
            total += targets.size(0)
            correct += predicted.eq(targets).sum().item()
    print(json.dumps({"iters": iteration, "test_images": total, "test_err": 1 - correct / total}))


if __name__ == "__main__":
    main()
