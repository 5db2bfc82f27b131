"""A run's records: config.yaml, metrics.jsonl (one line per evaluation), summary.json. Figures and tables read
these."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..config import TrainConfig, to_dict
from ..errors import UserError
from ..io import append_bytes, atomic_write

# Keys that may differ between the run that made a directory and a later command that resumes it.
RESUMABLE_KEYS = {
    "trainer.resume",
    "trainer.progress",
    "trainer.device",
    "trainer.checkpoint_every",
    "data.root",
    "data.download",
    "data.num_workers",
    "data.eval_batch_size",
    "logger.kind",
    "logger.mode",
    "logger.project",
    "logger.entity",
    "run_dir",
    "run_root",
}
# A hyperparameter search's Optuna study, in its sweep directory (hydra_plugins/resnet_repro_optuna): the run
# directories below it are the search's trials.
SEARCH_STUDY = "optuna.db"


def write_json(path: Path, obj: Any, make_folder: bool = True) -> None:
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()), make_folder=make_folder)


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_config(path: Path, cfg: TrainConfig) -> None:
    """config.yaml, written atomically (a killed process never leaves half a config that a resume would misread), in
    the run directory (never made again here), and only where it changes: a resume writes nothing it need not."""
    text = OmegaConf.to_yaml(to_dict(cfg)).encode()
    if not (Path(path).exists() and Path(path).read_bytes() == text):
        atomic_write(Path(path), lambda f: f.write(text), make_folder=False)


def read_config(path: Path) -> DictConfig:
    try:
        return OmegaConf.load(path)
    except Exception as err:  # YAML errors of several types
        raise UserError(
            f"{path} is unreadable ({type(err).__name__}): restore it, or move the run directory away and "
            f"start a new run"
        ) from None


def _flatten(cfg: dict, prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in cfg.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_differences(saved: DictConfig, current: TrainConfig) -> list[str]:
    """Keys whose values differ between a run directory's config.yaml and the current command, ignoring RESUMABLE_KEYS.

    A key that the saved config lacks (written before the schema had it) is no difference while the current value
    is the schema's default: the run was made with that default."""
    a = _flatten(OmegaConf.to_container(saved, resolve=True))
    b = _flatten(to_dict(current))
    defaults = _flatten(to_dict(TrainConfig()))
    missing = object()
    return [
        f"{k}: {a.get(k)!r} -> {b.get(k)!r}"
        for k in sorted(a.keys() | b.keys())
        if k not in RESUMABLE_KEYS
        and a.get(k) != b.get(k)
        and not (k not in a and k in defaults and b.get(k, missing) == defaults[k])
    ]


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """The rows of metrics.jsonl. A last line cut short (a process killed while appending it, or a full disk) is
    left out: it has no newline yet, and the run that resumes drops it and writes it again."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")
    complete, partial = lines[:-1], lines[-1]  # `partial` is "" when the file ends with a newline
    rows = []
    for number, line in enumerate(complete, 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                raise UserError(
                    f"{path} line {number} is not JSON: restore the file, or delete that line (its "
                    f"evaluation is then missing from figures and tables)"
                ) from None
    if partial.strip():
        try:
            rows.append(json.loads(partial))
        except json.JSONDecodeError:
            pass
    return rows


def truncate_metrics(path: Path, last_iter: int) -> None:
    """Drop evaluations made after the checkpoint a run resumes from (they will be made again, identically), and a
    last line cut short; a file with nothing to drop is left as it is."""
    path = Path(path)
    if not path.exists():
        return
    rows = [r for r in read_metrics(path) if r["iter"] <= last_iter]
    text = "".join(json.dumps(r) + "\n" for r in rows).encode()
    if path.read_bytes() != text:
        atomic_write(path, lambda f: f.write(text), make_folder=False)


def append_metrics(path: Path, row: dict[str, Any]) -> None:
    """One line of metrics.jsonl, all of it or (a full disk) none of it."""
    append_bytes(path, (json.dumps(row) + "\n").encode())


CHECKOUT = Path(__file__).resolve().parents[3]  # the repository this code runs from


def git_state(repo: Path = CHECKOUT) -> tuple[str | None, bool | None]:
    """The commit of the code that runs and whether the work tree had uncommitted changes. Changes under results/
    do not count: the reports and figures written there are outputs (make demo rewrites tracked ones before its
    report is made), not code. `repo`: this checkout."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10)
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None, None
    if commit.returncode:
        return None, None
    return commit.stdout.strip(), bool(status.stdout.strip())


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else what the platform module says."""
    import platform

    try:
        return next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        return platform.processor() or "unknown CPU"


def command_line() -> str:
    """The command that makes this run alone: the training script with this job's own overrides (the same inside a
    sweep or a SLURM job, whose sys.argv is the sweep's or submitit's), else the process's command line."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        return " ".join(["python scripts/train.py", *map(shlex.quote, HydraConfig.get().overrides.task)])
    return " ".join(["python", *map(shlex.quote, sys.argv)]) if sys.argv and sys.argv[0] else ""


def summary(
    cfg: TrainConfig,
    metrics: Path,
    status: str,
    iteration: int,
    wall_s: float,
    model_info: dict[str, Any],
    device,
    world_size: int,
    precision: str,
    precision_reason: str,
) -> dict[str, Any]:
    """summary.json: what the run is, how far it got, its headline errors, and where and with what code it ran."""
    import torch

    rows = read_metrics(metrics)
    commit, dirty = git_state()
    test_errs = [r["test_err"] for r in rows if "test_err" in r]  # none with data.evaluate_test=false
    val_errs = [r["val_err"] for r in rows if "val_err" in r]
    return {
        "model": cfg.model.name,
        "family": model_info["family"],
        "depth": model_info["depth"],
        "shortcut": str(cfg.model.shortcut),
        "dataset": str(cfg.data.name),
        "split": str(cfg.data.split),
        "seed": cfg.seed,
        "experiment": cfg.experiment_name,
        "params": model_info["params"],
        "flops": model_info["flops"],
        "final_test_err": test_errs[-1] if test_errs else None,
        "best_test_err": min(test_errs, default=None),
        "best_val_err": min(val_errs, default=None),
        "iters": iteration,
        "max_iters": cfg.trainer.max_iters,
        "wall_s": wall_s,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "cpu": f"{cpu_name()}, {torch.get_num_threads()} threads",
        "world_size": world_size,
        "precision": precision,
        "precision_reason": precision_reason,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "git_commit": commit,
        "git_dirty": dirty,
        "status": status,
        "command": command_line(),
    }
