"""What a group of runs was trained and tested on, read from their records, and whether that is the paper's protocol.

Runs are grouped by Protocol: two data sets, two schedules or two test sets under one run root make separate tables
and figures, never one average. A number is compared with the paper's only where `matches_paper` holds. The report
states each group's protocol once, in protocol_block, with the settings that differ from the paper's (deviations).
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

# The paper's settings, read against each run's config; those that a Protocol states in words (data set, split, batch,
# subsets, length, schedule: PROTOCOL_KEYS) are said there, the others are listed under the protocol as they are.
CIFAR_PROTOCOL = {  # key: (paper value, what the paper says)
    "data.name": ("cifar10", "CIFAR-10"),
    "data.split": ("full", "train on all 50k images (Table 6); split=paper holds 5k out for validation"),
    "data.batch_size": (128, "mini-batch 128"),
    "data.augment": (True, "pad-4 crop and flip augmentation"),
    "data.limit_train": (0, "the whole training set"),
    "data.limit_test": (0, "the whole test set"),
    "trainer.max_iters": (64000, "64k iterations"),
    "schedule.kind": ("steps", "lr divided by 10 at fixed iterations"),
    "schedule.milestones": ([32000, 48000], "lr / 10 at 32k and 48k"),
    "optim.lr": (0.1, "lr 0.1"),
    "optim.momentum": (0.9, "momentum 0.9"),
    "optim.weight_decay": (1e-4, "weight decay 1e-4"),
    "optim.nesterov": (False, "plain momentum"),
    "model.shortcut": ("A", "option A (identity, zero-padded) shortcuts"),
}
IMAGENET_PROTOCOL = {
    "data.name": ("imagenet", "ImageNet"),
    "data.split": ("full", "train on the full training set"),
    "data.batch_size": (256, "mini-batch 256"),
    "data.normalize": ("mean_pixel", "per-pixel mean subtraction"),
    "data.scale_min": (256, "shorter side in [256, 480]"),
    "data.scale_max": (480, "shorter side in [256, 480]"),
    "data.crop_size": (224, "224x224 crops"),
    "data.pca_lighting": (0.1, "PCA colour augmentation"),
    "data.limit_train": (0, "the whole training set"),
    "data.limit_test": (0, "the whole val set"),
    "trainer.max_iters": (600000, "up to 60e4 iterations"),
    "schedule.kind": ("plateau", "lr / 10 when the error plateaus"),
    "optim.lr": (0.1, "lr 0.1"),
    "optim.momentum": (0.9, "momentum 0.9"),
    "optim.weight_decay": (1e-4, "weight decay 1e-4"),
    "model.stride_in_1x1": (True, "stride 2 on the first 1x1 of a bottleneck"),
}
# The fields of a Protocol that the paper's protocol fixes, and the config keys they are read from.
PROTOCOL_KEYS = {
    "dataset": "data.name",
    "split": "data.split",
    "batch_size": "data.batch_size",
    "limit_train": "data.limit_train",
    "limit_test": "data.limit_test",
    "max_iters": "trainer.max_iters",
    "schedule": "schedule.kind",
    "milestones": "schedule.milestones",
}
# The paper's protocols (Section 4.2 for CIFAR-10, Section 3.4 for ImageNet), in the fields of a Protocol.
PAPER = {
    family: {field: settings[key][0] for field, key in PROTOCOL_KEYS.items() if key in settings}
    for family, settings in (("cifar", CIFAR_PROTOCOL), ("imagenet", IMAGENET_PROTOCOL))
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
        return PAPER[self.family]

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
        if self.limit_train:
            return f"the first {self.limit_train} training images"
        if self.split == "full":
            return "the full training set"
        return f"the training set minus {self.val_size} held out for validation"

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
        if self.dataset == self.paper["dataset"]:
            return self.training_mismatches()
        return [
            f"{dataset_name(self.dataset)} (paper: {dataset_name(self.paper['dataset'])})",
            *self.training_mismatches(),
        ]

    def training_mismatches(self) -> list[str]:
        """mismatches() without the data set: how training and testing differ from the paper's protocol."""
        paper, out = self.paper, []
        if self.max_iters != paper["max_iters"]:
            out.append(f"{_k(self.max_iters) if self.max_iters else '?'} iterations (paper: {_k(paper['max_iters'])})")
        if self.schedule != paper["schedule"]:
            out.append(f"schedule {self.schedule} (paper: {paper['schedule']})")
        elif "milestones" in paper and (self.milestones, self.milestones_unit) != (tuple(paper["milestones"]), "iters"):
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


def deviations(run) -> list[str]:
    """Differences between a run's config/summary and the paper's protocol, each as 'key=value (paper: ...)'."""
    out = []
    protocol = IMAGENET_PROTOCOL if run.family == "imagenet" else CIFAR_PROTOCOL
    for key, (want, says) in protocol.items():
        if key == "model.shortcut" and not run.model.startswith("resnet"):
            continue
        if key == "model.stride_in_1x1" and run.depth < 50:
            continue
        have = run.cfg(key)
        if have is not None and have != want:
            out.append(f"{key}={have} (paper: {says})")
    if run.family == "imagenet" and run.model.startswith("resnet"):
        want_sc = paper_shortcut(run.family, run.depth)
        if run.shortcut and run.shortcut != want_sc:
            out.append(f"model.shortcut={run.shortcut} (paper's main nets: option {want_sc}; Table 3 compares A/B/C)")
    if run.family == "cifar":
        warm = bool(run.cfg("schedule.warmup", False))
        if run.depth == 110 and run.model.startswith("resnet") and not warm:
            out.append("schedule.warmup=False (paper: lr 0.01 until training error < 80% for ResNet-110)")
        elif warm and run.depth not in (110, 1202):
            out.append("schedule.warmup=True (paper warms up ResNet-110 only)")
    if run.summary.get("precision") == "bf16":
        out.append("precision=bf16 autocast (paper: fp32)")
    if run.summary.get("git_dirty"):
        out.append("code had uncommitted changes (git_dirty)")
    return out


def other_deviations(runs: list) -> list[str]:
    """The runs' deviations beyond their Protocol's fields, each once, with the runs it applies to (or all runs)."""
    seen: dict[str, list[str]] = {}
    for r in runs:
        for d in deviations(r):
            if (
                "=" in d and d.split("=")[0] not in PROTOCOL_KEYS.values()
            ):  # uncommitted code: flagged in the provenance
                seen.setdefault(d, []).append(f"{r.net}/s{r.seed}")
    return [f"{d}: " + ("all runs" if len(who) == len(runs) else ", ".join(who)) for d, who in seen.items()]


def protocol_block(g) -> str:
    """What the runs of one section were trained and tested on, and how that differs from the paper: stated once,
    under the section's heading."""
    p = g.protocol
    if p.dataset == "cifar100":
        verdict = "the paper reports no CIFAR-100 numbers, so none is compared with the paper's; " + (
            "the runs follow its CIFAR-10 protocol, and other repositories' published CIFAR-100 numbers stand "
            "beside them in a table of their own"
            if p.follows_paper_protocol
            else "not the paper's CIFAR protocol either:"
        )
        reasons = p.training_mismatches()
    elif p.matches_paper:
        verdict, reasons = "the paper's protocol: its numbers are compared with the paper's", []
    else:
        verdict = "not the paper's protocol, so no number is compared with the paper's (the layout only):"
        reasons = p.mismatches()
    batch = f"; batch {p.batch_size}" if p.batch_size else ""
    items = [
        f"- data set: {dataset_name(p.dataset)}",
        f"- training: {p.training_text}{batch}",
        f"- training split: {p.split_text}",
        f"- test set: {p.test_text}",
        f"- against the paper: {verdict}",
        *(f"  - {x}" for x in reasons),
    ]
    if others := other_deviations(g.runs):
        items += ["- other settings than the paper's (the runs' configs):", *(f"  - {x}" for x in others)]
    return f"Protocol of these {len(g.runs)} runs:\n\n" + "\n".join(items) + "\n"
