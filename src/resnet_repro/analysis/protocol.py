"""What a group of runs was trained and tested on, read from their records, and whether that is the paper's protocol.

Runs are grouped by Protocol: two data sets, two schedules or two test sets under one run root make separate tables
and figures, never one average. A number is compared with the paper's only where `matches_paper` holds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

DATASET_NAMES = {
    "cifar10": "CIFAR-10",
    "cifar100": "CIFAR-100",
    "fashion_mnist": "Fashion-MNIST",
    "imagenet": "ImageNet",
}

# The paper's protocols (Section 4.2 for CIFAR-10, Section 3.4 for ImageNet), in the fields of a Protocol.
PAPER_CIFAR = {
    "dataset": "cifar10",
    "split": "full",
    "limit_train": 0,
    "limit_test": 0,
    "batch_size": 128,
    "max_iters": 64000,
    "schedule": "steps",
    "milestones": (32000, 48000),
    "milestones_unit": "iters",
}
PAPER_IMAGENET = {
    "dataset": "imagenet",
    "split": "full",
    "limit_train": 0,
    "limit_test": 0,
    "batch_size": 256,
    "max_iters": 600000,
    "schedule": "plateau",
}


def dataset_name(name: str) -> str:
    return DATASET_NAMES.get(name, name)


def paper_shortcut(family: str, depth: int) -> str:
    """The shortcut option of the paper's main nets: A on CIFAR and for ResNet-18/34, B for the bottleneck nets."""
    return "B" if family == "imagenet" and depth >= 50 else "A"


@lru_cache(maxsize=1)
def _defaults() -> dict:
    """The config schema's defaults, for records that lack a key (older or hand-written configs)."""
    from omegaconf import OmegaConf

    from ..config import TrainConfig

    return OmegaConf.to_container(OmegaConf.structured(TrainConfig), resolve=True, enum_to_str=True)


def _get(run, dotted: str):
    value = run.cfg(dotted)
    if value is None:
        node = _defaults()
        for key in dotted.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        value = node
    return value


def _k(n: int) -> str:
    """64000 -> '64k', 600 -> '600', 32500 -> '32.5k'."""
    return f"{n / 1000:g}k" if n >= 1000 and n % 100 == 0 else str(n)


@dataclass(frozen=True)
class Protocol:
    """The fields that decide whether two runs' errors may be pooled, or compared with the paper's."""

    experiment: str
    dataset: str
    split: str
    val_size: int | None
    limit_train: int
    limit_test: int
    batch_size: int | None
    max_iters: int | None
    schedule: str
    milestones: tuple[int, ...]
    milestones_unit: str

    @property
    def family(self) -> str:
        return "imagenet" if self.dataset == "imagenet" else "cifar"

    @property
    def paper(self) -> dict:
        return PAPER_IMAGENET if self.family == "imagenet" else PAPER_CIFAR

    @property
    def schedule_text(self) -> str:
        """The lr drops the runs made ('lr ÷10 at 400, 500'; 'constant lr' where none was reached)."""
        if self.schedule == "plateau":
            return "lr ÷10 on plateaus"
        if not self.milestones:
            return "constant lr"
        unit = " epochs" if self.milestones_unit == "epochs" else ""
        return "lr ÷10 at " + ", ".join(_k(m) for m in self.milestones) + unit

    @property
    def iters_text(self) -> str:
        if self.max_iters is None:
            return "? iterations"
        return f"{self.max_iters} iteration" + ("" if self.max_iters == 1 else "s")

    @property
    def training_text(self) -> str:
        """e.g. '600 iterations, lr ÷10 at 400, 500'; '20 iterations, constant lr'."""
        return f"{self.iters_text}, {self.schedule_text}"

    @property
    def split_text(self) -> str:
        train = (
            "the full training set"
            if self.split == "full"
            else f"the training set minus {self.val_size} held out for validation"
        )
        if self.limit_train:
            train = f"the first {self.limit_train} training images"
        return train

    @property
    def test_text(self) -> str:
        what = "val" if self.dataset == "imagenet" else "test"
        return f"full {what} set" if not self.limit_test else f"first {self.limit_test} {what} images"

    @property
    def title(self) -> str:
        """One line for a figure's title or a CSV column, e.g. 'Fashion-MNIST, 600 iterations, lr ÷10 at 400, 500;
        batch 128; trained on the full training set; first 1000 test images'."""
        batch = f"; batch {self.batch_size}" if self.batch_size else ""
        return (
            f"{dataset_name(self.dataset)}, {self.training_text}{batch}; trained on {self.split_text}; {self.test_text}"
        )

    @property
    def heading(self) -> str:
        """The report's heading of the protocol's section, e.g. 'Experiment demo: Fashion-MNIST, 600 iterations'."""
        return f"Experiment {self.experiment}: {dataset_name(self.dataset)}, {self.iters_text}"

    @property
    def slug(self) -> str:
        """A file-name part: 'demo-fashion_mnist-600it'."""
        raw = f"{self.experiment}-{self.dataset}-{self.max_iters}it"
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", raw)

    def mismatches(self) -> list[str]:
        """Why this is not the paper's protocol, one short reason per field, e.g. '600 iterations (paper: 64k)';
        [] when it is the paper's."""
        paper = self.paper
        out = (
            []
            if self.dataset == paper["dataset"]
            else [f"{dataset_name(self.dataset)} (paper: {dataset_name(paper['dataset'])})"]
        )
        return out + self.training_mismatches()

    def training_mismatches(self) -> list[str]:
        """mismatches() without the data set: how training and testing differ from the paper's protocol."""
        paper, out = self.paper, []
        if self.max_iters != paper["max_iters"]:
            out.append(f"{_k(self.max_iters) if self.max_iters else '?'} iterations (paper: {_k(paper['max_iters'])})")
        if self.schedule != paper["schedule"]:
            out.append(f"schedule {self.schedule} (paper: {paper['schedule']})")
        elif "milestones" in paper and (self.milestones, self.milestones_unit) != (paper["milestones"], "iters"):
            out.append(f"{self.schedule_text} (paper: at {', '.join(_k(m) for m in paper['milestones'])})")
        if self.batch_size != paper["batch_size"]:
            out.append(f"batch {self.batch_size} (paper: {paper['batch_size']})")
        if self.split != paper["split"]:
            out.append(f"split {self.split}, {self.val_size} held out (paper: the full training set)")
        if self.limit_train:
            out.append(f"first {self.limit_train} training images (paper: all)")
        if self.limit_test:
            out.append(f"first {self.limit_test} test images (paper: the full test set)")
        return out

    @property
    def matches_paper(self) -> bool:
        """The paper's data set and protocol: only then is a number compared with the paper's."""
        return not self.mismatches()

    @property
    def follows_paper_protocol(self) -> bool:
        """The paper's training and test protocol on any data set (e.g. CIFAR-100 trained as the paper trains
        CIFAR-10): such runs may stand beside other repositories' numbers, never beside the paper's."""
        return not self.training_mismatches()

    @property
    def not_comparable(self) -> str:
        """The text of a cell that would compare with the paper: '' when comparable."""
        return "" if self.matches_paper else "not comparable: " + "; ".join(self.mismatches())


def protocol_of(run) -> Protocol:
    """The run's Protocol from its config.yaml (summary fields where the config lacks them, e.g. W&B exports)."""
    kind = str(getattr(k := _get(run, "schedule.kind"), "name", k))
    split = run.summary.get("split") or _get(run, "data.split")
    max_iters = run.cfg("trainer.max_iters") or run.summary.get("max_iters") or _get(run, "trainer.max_iters")
    unit = str(getattr(u := _get(run, "schedule.milestones_unit"), "name", u))
    # fields that do not act under this split or schedule are left out, so that they do not split a group; so are
    # milestones the run's length never reaches (a 20-iteration run with the default schedule has a constant lr)
    milestones = (_get(run, "schedule.milestones") or []) if kind != "plateau" else []
    last = _milestone_limit(run, max_iters, unit)
    return Protocol(
        experiment=run.experiment,
        dataset=run.dataset,
        split=split,
        val_size=_get(run, "data.val_size") if split != "full" else None,
        limit_train=int(_get(run, "data.limit_train") or 0),
        limit_test=int(_get(run, "data.limit_test") or 0),
        batch_size=_get(run, "data.batch_size"),
        max_iters=max_iters,
        schedule=kind,
        milestones=tuple(int(m) for m in milestones if last is None or m < last),
        milestones_unit=unit,
    )


def _milestone_limit(run, max_iters: int | None, unit: str) -> float | None:
    """The run's length in the milestones' unit (None: not known); an lr drop at or after it never happens."""
    if max_iters is None:
        return None
    if unit != "epochs":
        return max_iters
    m = run.metrics
    if not {"iter", "epoch"} <= set(m.columns) or not (m.epoch > 0).any():
        return None
    last = m[m.epoch > 0].iloc[-1]
    return max_iters * float(last.epoch) / float(last["iter"])  # epochs per iteration, as the run counted them
