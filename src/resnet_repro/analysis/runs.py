"""Find and load run records (summary.json, metrics.jsonl, config.yaml) into one in-memory structure.

A run whose status is not "complete" is kept and labelled, never dropped silently: figures draw it dotted,
tables leave it out of the statistics and name it in a note. Whether a run is still going is decided by its
directory's lock (`engine.run_dir.is_live`), not by the last status written: a process killed with SIGKILL leaves
"running" in summary.json, and such a run is shown as "stopped (no process)".
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from omegaconf import OmegaConf

from ..engine import records
from ..engine.run_dir import is_live
from ..errors import UserError
from .protocol import Protocol, paper_shortcut, protocol_of

METRIC_KEYS = (
    "iter",
    "epoch",
    "lr",
    "train_loss",
    "train_err",
    "test_loss",
    "test_err",
    "val_loss",
    "val_err",
    "test_top5_err",
    "img_per_s",
    "wall_s",
)
STOPPED = "stopped (no process)"  # summary.json says "running" but no process holds the run's lock
# Experiment names of older configs: ResNet-34 B and C had experiments of their own, and Table 3 was split in three.
OLD_EXPERIMENTS = {"imagenet_shortcutB": "imagenet", "imagenet_shortcutC": "imagenet"}


@dataclass
class Run:
    summary: dict
    config: dict = field(default_factory=dict)  # nested, as in config.yaml
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    path: Path | None = None
    live: bool | None = None  # a process held the run's lock when it was loaded; None: not known (W&B records)

    @property
    def model(self) -> str:
        return self.summary.get("model") or self.cfg("model.name", "?")

    @property
    def seed(self) -> int:
        return int(self.summary.get("seed", self.cfg("seed", 0)))

    @property
    def status(self) -> str:
        """The status a reader is shown: the recorded one, corrected by the lock where the lock is known."""
        recorded = self.summary.get("status", "unknown")
        if self.live is None or recorded == "complete":
            return recorded
        if self.live:
            return "running"  # also a resume that has not yet rewritten an "interrupted" summary
        return STOPPED if recorded == "running" else recorded

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def family(self) -> str:
        fam = self.summary.get("family") or self.cfg("model.family", "auto")
        if fam in ("cifar", "imagenet"):
            return fam
        return "imagenet" if self.depth in (18, 34, 50, 101, 152) and self.dataset == "imagenet" else "cifar"

    @property
    def depth(self) -> int:
        return int(self.summary.get("depth") or re.sub(r"\D", "", self.model) or 0)

    @property
    def dataset(self) -> str:
        return self.summary.get("dataset") or self.cfg("data.name", "?")

    @property
    def experiment(self) -> str:
        exp = self.cfg("experiment")  # older configs: a string; now a Hydra config group, the name in experiment_name
        name = (
            self.summary.get("experiment")
            or self.cfg("experiment_name")
            or (exp if isinstance(exp, str) else "default")
        )
        return OLD_EXPERIMENTS.get(name, name)

    @property
    def shortcut(self) -> str | None:
        return self.summary.get("shortcut") or self.cfg("model.shortcut")

    @property
    def net(self) -> str:
        """The model, with its shortcut option where that is not the paper's main one for it ('resnet34B' beside
        'resnet34'): ResNet-34 A, B and C of Table 3 are three nets, never seeds of one."""
        sc = self.shortcut
        if not self.model.startswith("resnet") or not sc or sc == paper_shortcut(self.family, self.depth):
            return self.model
        return f"{self.model}{sc}"

    @property
    def label(self) -> str:
        """e.g. 'resnet110 seed 2: stopped (no process) at 12000/64000 iters' for notes under figures and tables."""
        s = f"{self.net} seed {self.seed}"
        if not self.complete:
            it, mx = self.summary.get("iters"), self.summary.get("max_iters") or self.cfg("trainer.max_iters")
            s += f": {self.status}" + (f" at {it}/{mx} iters" if it is not None else "")
        return s

    @property
    def protocol(self) -> Protocol:
        return protocol_of(self)

    def cfg(self, dotted: str, default=None):
        node = self.config
        for k in dotted.split("."):
            if not isinstance(node, dict) or k not in node:
                return default
            node = node[k]
        return node


def find_run_dirs(root: str | Path) -> list[Path]:
    """Every directory under root holding a summary.json, except the trials of a hyperparameter search (below a
    folder holding its study: analysis/search.py reports them, never as seeds of one protocol)."""
    searches = {p.parent for p in Path(root).rglob(records.SEARCH_STUDY)}
    return sorted(p.parent for p in Path(root).rglob("summary.json") if not searches.intersection(p.parents))


def find_partial_dirs(root: str | Path) -> list[Path]:
    """Directories with metrics.jsonl or config.yaml but no summary.json (a trainer that died at start-up)."""
    dirs = {p.parent for pat in ("metrics.jsonl", "config.yaml") for p in Path(root).rglob(pat)}
    return sorted(d for d in dirs if not (d / "summary.json").exists())


def read_metrics(path: Path) -> pd.DataFrame:
    """metrics.jsonl as a frame sorted by iteration (records.read_metrics: a half-written last line is left out)."""
    df = pd.DataFrame(records.read_metrics(path))
    if len(df) and "test_err" not in df:  # data.evaluate_test=false: no test error to draw or tabulate
        df["test_err"] = float("nan")
    return df.sort_values("iter").reset_index(drop=True) if "iter" in df else df


def load_run(run_dir: str | Path) -> Run:
    d = Path(run_dir)
    # The lock before the summary: a trainer that writes "complete" and exits in between is then read as complete,
    # not as a "running" summary without a process.
    live = is_live(d)
    summary = json.loads((d / "summary.json").read_text())
    config = OmegaConf.to_container(OmegaConf.load(d / "config.yaml")) if (d / "config.yaml").exists() else {}
    return Run(summary=summary, config=config, metrics=read_metrics(d / "metrics.jsonl"), path=d, live=live)


def load_runs(root: str | Path) -> list[Run]:
    runs = [load_run(d) for d in find_run_dirs(root)]
    return sorted(runs, key=lambda r: (r.experiment, r.family, r.model.rstrip("0123456789"), r.depth, r.net, r.seed))


@dataclass
class Group:
    """Runs that share one Protocol: one set of tables and figures. `suffix` goes into their file names
    (fig1{suffix}.png): empty for the primary group of a family, so that a run root with one protocol keeps the
    plain names."""

    protocol: Protocol
    runs: list[Run]
    suffix: str = ""

    @property
    def family(self) -> str:
        return self.protocol.family


def _primary_key(g: Group):
    # the paper's protocol first, then the group with the most complete runs
    return (g.protocol.matches_paper, sum(r.complete for r in g.runs), g.protocol.experiment in ("cifar10", "imagenet"))


def group_runs(runs: list[Run], experiment: str | None = None) -> tuple[list[Group], list[str]]:
    """Runs split by protocol (never pooled across two), CIFAR-style families first, each family's primary group first;
    with `experiment`, only that experiment's groups, and the names of the experiments left out."""
    left_out = sorted({r.experiment for r in runs if experiment is not None and r.experiment != experiment})
    by_protocol: dict[Protocol, list[Run]] = {}
    for r in runs:
        if experiment is None or r.experiment == experiment:
            by_protocol.setdefault(r.protocol, []).append(r)
    groups: list[Group] = []
    for family in ("cifar", "imagenet"):
        fam = [Group(p, rs) for p, rs in by_protocol.items() if p.family == family]
        fam.sort(key=lambda g: g.protocol.slug)
        fam.sort(key=_primary_key, reverse=True)
        used = {""}
        for i, g in enumerate(fam):
            if i:
                g.suffix = "-" + g.protocol.slug
                n = 2
                while g.suffix in used:  # two protocols with the same experiment, data set and length
                    g.suffix, n = f"-{g.protocol.slug}-{n}", n + 1
            used.add(g.suffix)
        groups += fam
    return groups, left_out


def single_protocol(runs: list[Run]) -> Protocol | None:
    """The one protocol of `runs`; records of two protocols are an error (their errors must never be averaged)."""
    protocols = {r.protocol for r in runs}
    if len(protocols) > 1:
        raise ValueError(
            f"records of {len(protocols)} protocols ({'; '.join(sorted(p.heading for p in protocols))}): "
            "split them with runs.group_runs; their errors are never pooled"
        )
    return next(iter(protocols), None)


def by_model(runs: list[Run]) -> dict[str, tuple[list[Run], list[Run]]]:
    """net (Run.net: the model, and its shortcut where it is not the paper's) -> (complete runs, other runs)."""
    out: dict[str, tuple[list[Run], list[Run]]] = {}
    for r in runs:
        out.setdefault(r.net, ([], []))[0 if r.complete else 1].append(r)
    return out


def incomplete_note(runs: list[Run]) -> str:
    bad = [r.label for r in runs if not r.complete]
    return ("Not complete (shown dotted, left out of statistics): " + "; ".join(bad)) if bad else ""


# --- Weights & Biases -------------------------------------------------------------------------------------

_WANDB_STATE = {
    "finished": "complete",
    "running": "running",
    "crashed": "failed",
    "failed": "failed",
    "killed": "interrupted",
    "preempted": "interrupted",
}


def _nest(flat: dict) -> dict:
    """W&B may hold the config flattened ('data.name': ...) and wraps values as {'value': v} in some exports."""
    out: dict = {}
    for k, v in flat.items():
        if k.startswith("_"):
            continue
        if isinstance(v, dict) and set(v) == {"value"}:
            v = v["value"]
        node = out
        *head, last = k.split(".")
        for h in head:
            node = node.setdefault(h, {})
        node[last] = _nest(v) if isinstance(v, dict) else v
    return out


def run_from_wandb(wrun) -> Run:
    """Convert a wandb.apis.public.Run (attributes .config .summary .history() .state .name .group) to a Run."""
    config = _nest(dict(wrun.config))
    ws = {k: v for k, v in dict(wrun.summary).items() if not k.startswith("_")}
    hist = wrun.history()
    hist = hist.rename(columns=lambda c: c.replace("/", "_"))  # 'test/err' and 'test_err' both accepted
    if "iter" not in hist and "_step" in hist:
        hist = hist.rename(columns={"_step": "iter"})
    hist = hist[[c for c in METRIC_KEYS if c in hist]].dropna(subset=["iter"]).sort_values("iter")
    run = Run(summary={}, config=config, metrics=hist.reset_index(drop=True), path=None)
    # W&B's summary holds those of summary.json's fields that are not dicts (engine/wandb_logger.py) and the last
    # value of each logged metric, which is not a field of the run's summary. Where the summary lacks a field, Run's
    # properties read the config (model, seed, shortcut, data set); the experiment is the W&B group.
    summary = {k: v for k, v in ws.items() if k not in METRIC_KEYS or k == "wall_s"}
    summary.setdefault("experiment", wrun.group or run.experiment)
    summary.setdefault("max_iters", run.cfg("trainer.max_iters"))
    if "final_test_err" not in summary and "test_err" in hist and len(hist.test_err.dropna()):
        summary["final_test_err"] = float(hist.test_err.dropna().iloc[-1])
    if "iters" not in summary and len(hist):
        summary["iters"] = int(hist["iter"].iloc[-1])
    summary["status"] = ws.get("status") or _WANDB_STATE.get(wrun.state, wrun.state)
    summary["wandb_name"] = wrun.name
    run.summary = summary
    return run


def load_wandb_runs(path: str) -> list[Run]:
    """All runs of ENTITY/PROJECT through the public API (needs network and credentials)."""
    import wandb

    from ..engine.wandb_logger import check_mode_variable, has_wandb_credentials

    check_mode_variable()
    instead = "or read the local run records instead (make figures, or --runs DIR)"
    if not has_wandb_credentials():
        raise UserError(
            f"reading W&B project {path} needs W&B credentials: run `wandb login` (or set WANDB_API_KEY), {instead}"
        )
    try:
        return [run_from_wandb(r) for r in wandb.Api().runs(path)]
    except (wandb.errors.Error, ValueError) as err:  # no network, no such project, a key W&B refuses
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(
            f"cannot read W&B project {path} ({reason}): check ENTITY/PROJECT and the network, {instead}"
        ) from None
