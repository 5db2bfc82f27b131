"""`make bench`: our training path against the usual way, side by side in one process, on the same model and batch.

Every case times the baseline and ours in alternating rounds and reports the median of each, so that the ratio
holds on a shared, noisy machine. Results (JSON and a Markdown table) go to results/bench/. What each case compares
is in cases.py.

    harness.py    settings, the result row, alternating rounds, steps per second
    inputs.py     CIFAR-10 or random images of its shape made in memory, synthetic JPEGs, the ImageNet loader's rate
    baselines.py  the usual way: DataLoader with PIL transforms, the plain training loop, the eager fp32 step
    ours.py       run configs as dataclasses, trainers set up as train() sets them up, on in-memory data
    cases.py      the cases and the plan that runs them
    report.py     host facts, the JSON and the Markdown table
    cli.py        the arguments, the settings they make, the run
"""

from .cli import main

__all__ = ["main"]
