"""`make bench`: our training path against the usual way, side by side, on the same model and batch.

Every case times the baseline and ours in alternating rounds and reports the median of each, so that the ratio
holds on a shared, noisy machine. Results (JSON and a Markdown table) go to results/bench/. What each case compares
is in cases.py.

    harness.py              settings, the result row, alternating rounds, steps per second
    inputs.py               CIFAR-10 or random images of its shape made in memory, synthetic JPEGs, the ImageNet
                            loader's rate
    cifar_files.py          a generated CIFAR-10 in the official on-disk format, and torchvision made to accept it
    baselines.py            the usual way: DataLoader with PIL transforms, the plain training loop, the eager fp32 step
    typical_cifar_train.py  a typical CIFAR repository's training script, run as a file by whole_command_resnet20
    ours.py                 run configs as dataclasses, trainers set up as train() sets them up, on in-memory data
    cases.py                the cases and the plan that runs them
    accuracy.py             bf16 against fp32: final training and test errors of short runs over seeds
    report.py               host facts, the JSON and the Markdown table
    cli.py                  the arguments, the settings they make, the run
    gpu_check.py            `make gpu-check`: every GPU measurement in one budgeted job (scripts/gpu_check.py)
"""


def main(argv: list[str] | None = None):
    """The bench's command line (cli.main), imported on call: importing this package (cifar_files in a subprocess
    of the whole-command case) must not import torch."""
    from .cli import main as cli_main

    return cli_main(argv)


__all__ = ["main"]
