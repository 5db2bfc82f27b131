"""The training loop, top to bottom: set up, resume, train by iterations, evaluate, checkpoint, write the records.

The loop never waits for the GPU except at evaluations and checkpoints: running sums of loss and errors stay on
the device until then.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import random
import signal
import sys
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any, Generator

import numpy as np
import torch
import torch.nn.functional as F
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError

from ..config import TrainConfig
from ..data import build_data
from ..errors import UserError
from ..models import CifarNet, build_model
from . import records
from .checkpoint import kill_point, load_checkpoint, remove_stale_temporaries, save_checkpoint
from .distributed import DistInfo, all_reduce_sum, init_distributed, resolve_device
from .schedule import build_schedule
from .wandb_logger import RunLogger

log = logging.getLogger("resnet_repro.train")
WARMUP_CHECK_EVERY = 100  # iterations between checks of the warm-up's training-error condition (one sync each)
OPTIMIZER_IMPLS = ("auto", "foreach", "fused", "loop")


class RunDirectory:
    """The paths of one run, and an exclusive lock so that two processes never write the same run."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.config = self.path / "config.yaml"
        self.metrics = self.path / "metrics.jsonl"
        self.summary = self.path / "summary.json"
        self.checkpoints = self.path / "checkpoints"
        self.last = self.checkpoints / "last.pt"
        self.best = self.checkpoints / "best.pt"
        self._lock_file = None

    def lock(self) -> None:
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_file = open(self.path / ".lock", "a+")
        except OSError as err:
            raise UserError(f"output directory {self.path} is not writable ({err.strerror}): choose another hydra.run.dir or run_root") from None
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.seek(0)
            holder = self._lock_file.read().strip()
            self.unlock()
            who = f"process {holder}" if holder.isdigit() else "another process"
            raise UserError(f"run directory {self.path} is in use by {who} (it holds {self.path / '.lock'}): wait for it "
                            f"to finish, or use another hydra.run.dir") from None
        for folder in (self.path, self.checkpoints):  # fail now, not at the first checkpoint
            try:
                if folder.is_dir():
                    tempfile.NamedTemporaryFile(dir=folder, prefix=".probe.", suffix=".tmp").close()
            except OSError as err:
                self.unlock()
                raise UserError(f"run directory {folder} is not writable ({err.strerror}): make it writable, or choose "
                                f"another hydra.run.dir or run_root") from None
        self._lock_file.truncate(0)
        self._lock_file.write(f"{os.getpid()}\n")
        self._lock_file.flush()
        # Temporary files of atomic writes whose process was killed: nobody else writes here while we hold the lock.
        remove_stale_temporaries(self.path)
        remove_stale_temporaries(self.checkpoints)

    def unlock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def build_optimizer(model: torch.nn.Module, cfg: DictConfig, device: torch.device) -> torch.optim.SGD:
    impl = cfg.optim.impl
    if impl not in OPTIMIZER_IMPLS:
        raise UserError(f"unknown optim.impl {impl!r}: choose one of {', '.join(OPTIMIZER_IMPLS)}")
    if impl == "auto":
        impl = "fused" if device.type in ("cuda", "cpu") else "foreach"  # fused: one kernel; on CPU 5x foreach's speed
    flags = {"fused": {"fused": True}, "foreach": {"foreach": True}, "loop": {"foreach": False}}[impl]
    return torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum,
                           weight_decay=cfg.optim.weight_decay, nesterov=cfg.optim.nesterov, **flags)


def resolve_precision(requested: str, device: torch.device) -> str:
    if requested == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    if requested not in ("bf16", "fp32"):
        raise UserError(f"unknown trainer.precision {requested!r}: choose auto, bf16 or fp32")
    return requested


class PreemptionSignals:
    """SIGTERM/SIGUSR2 (SLURM's warning before a time limit or preemption) ask the loop to checkpoint and stop.

    The loop asks `should_stop` between iterations; after the checkpoint, a handler installed earlier (submitit's,
    which requeues the job) is called, so requeue works as submitit intends. With several processes (DDP) the signal
    reaches each at a different point of its loop, and one that stops alone would leave the others' collectives
    unmatched: `should_stop` then agrees across processes every SYNC_EVERY iterations (one tiny all-reduce of a
    CPU tensor over the gloo control group: no host-device synchronisation).
    """

    SIGNALS = (signal.SIGTERM, signal.SIGUSR2)
    SYNC_EVERY = 10

    def __init__(self, dist: DistInfo | None = None):
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._dist = dist

    def should_stop(self, iteration: int) -> bool:
        """True if a signal came (with several processes: to any of them), at the same iteration in every process."""
        if self._dist is None or self._dist.world_size <= 1:
            return self.received is not None
        if iteration % self.SYNC_EVERY:
            return False
        flag = torch.tensor([self.received or 0], dtype=torch.int32)
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX, group=self._dist.control_group)
        # Decide on the agreed flag only: a signal that lands after the all-reduce is seen by all at the next one.
        agreed = int(flag.item())
        if agreed and self.received is None:
            self.received = agreed  # stop with the others, as if the signal had come here too
        return agreed != 0

    def _handle(self, signum, frame):
        self.received = signum

    @contextmanager
    def installed(self):
        for sig in self.SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, handler in self._previous.items():
                signal.signal(sig, handler)

    def hand_over(self) -> None:
        """After checkpointing: let the previous handler act (submitit requeues), else exit like a killed process."""
        previous = self._previous.get(self.received)
        if callable(previous):
            previous(self.received, None)
        raise SystemExit(128 + self.received)


class Trainer:
    def __init__(self, cfg: DictConfig, run_dir: Path):
        self.cfg = cfg
        self.dirs = RunDirectory(run_dir)
        device_kind = "cuda" if cfg.trainer.device == "cuda" or (cfg.trainer.device == "auto" and torch.cuda.is_available()) else "cpu"
        self.dist: DistInfo = init_distributed(device_kind)
        if cfg.data.batch_size % self.dist.world_size:
            raise UserError(f"data.batch_size={cfg.data.batch_size} is not divisible by the {self.dist.world_size} "
                            f"processes: choose a multiple of {self.dist.world_size}, or another number of processes")
        self.device = resolve_device(cfg.trainer.device, self.dist)
        self.precision = resolve_precision(cfg.trainer.precision, self.device)
        self.is_main = self.dist.is_main

    # ----- set-up ---------------------------------------------------------------------------------------------
    def _check_run_directory(self) -> bool:
        """Refuse a directory made by a different config; return True if the run there is already complete."""
        if self.dirs.config.exists():
            diffs = records.config_differences(records.read_config(self.dirs.config), self.cfg)
            if diffs:
                raise UserError(
                    f"run directory {self.dirs.path} holds a run with a different config ({'; '.join(diffs[:3])}): "
                    f"start a new run with another hydra.run.dir (or seed/experiment), or delete that directory"
                )
        if self.dirs.summary.exists():
            return records.read_json(self.dirs.summary).get("status") == "complete"
        return False

    def _build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        if cfg.trainer.deterministic:
            torch.use_deterministic_algorithms(True)
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 where the precision is fp32 on Ampere and later
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = not cfg.trainer.deterministic
        self.data = build_data(cfg.data, self.device, cfg.seed, self.dist.rank, self.dist.world_size)
        try:
            self.model = build_model(cfg.model.name, num_classes=cfg.model.num_classes or self.data.num_classes,
                                     shortcut=cfg.model.shortcut, stride_in_1x1=cfg.model.stride_in_1x1,
                                     family=cfg.model.family)
        except ValueError as err:
            raise UserError(f"{err} (set model=... or model.name=...)") from None
        self.model_info = {"params": self.model.num_params(), "flops": self.model.flops(),
                           "family": "cifar" if isinstance(self.model, CifarNet) else "imagenet", "depth": self.model.depth}
        memory_format = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
        self.memory_format = memory_format
        self.model.to(self.device, memory_format=memory_format)
        self.optimizer = build_optimizer(self.model, cfg, self.device)
        self.schedule = build_schedule(cfg.schedule, cfg.optim, self.data.batches_per_epoch)
        self.forward = self.model
        if self.dist.world_size > 1:
            self.forward = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        if cfg.trainer.compile:
            self.forward = torch.compile(self.forward)

    def _autocast(self):
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return nullcontext()

    def _checkpoint_state(self, iteration: int, train_sums: torch.Tensor, warm_sums: torch.Tensor) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(), "iteration": iteration, "rng": rng_state(),
            # Data order and crops are functions of (seed, iteration): the iteration is the data-order state.
            "data_state": {"iteration": iteration, "seed": self.cfg.seed, "batch_size": self.cfg.data.batch_size},
            "train_sums": train_sums.cpu(), "warm_sums": warm_sums.cpu(), "best": self.best,
            "config": OmegaConf.to_container(self.cfg, resolve=True),
            "wall_s": self.wall() if hasattr(self, "t_start") else None,
        }

    def wall(self) -> float:
        """Training time of the run so far, over all the processes that worked on it (killed ones included)."""
        return self.previous_wall + time.perf_counter() - self.t_start

    def _resume(self) -> tuple[int, torch.Tensor, torch.Tensor]:
        zeros = (torch.zeros(3, device=self.device, dtype=torch.float64),
                 torch.zeros(2, device=self.device, dtype=torch.float64))
        mode = self.cfg.trainer.resume
        if mode == "never":
            if self.dirs.last.exists():
                raise UserError(f"{self.dirs.last} exists and trainer.resume=never would overwrite it: use another hydra.run.dir, or trainer.resume=auto to continue")
            return (0, *zeros)
        path = self.dirs.last if mode == "auto" else Path(mode)
        self._finite_until, self._last_good = 0, None  # for the message if the loss diverges
        if mode == "auto" and not path.exists():
            return (0, *zeros)
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            set_rng_state(state["rng"])
            self.best = state["best"]
            start = int(state["iteration"])
            train_sums, warm_sums = state["train_sums"].to(self.device), state["warm_sums"].to(self.device)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(f"checkpoint {path} does not fit this run ({first_line}): it was written for another "
                            f"model or trainer version; resume from a checkpoint of this run, or start a new run") from None
        self._finite_until, self._last_good = start, (path, start)
        self.resumed_wall = state.get("wall_s")
        log.info("resumed from %s at iteration %d", path, start)
        return start, train_sums, warm_sums

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One SGD step; returns (loss sum, errors, images) on the device, float64, without waiting for it."""
        with self._autocast():
            logits = self.forward(images.contiguous(memory_format=self.memory_format))
            loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        wrong = (logits.argmax(1) != labels).sum()
        # torch.full, not torch.tensor(..., device=): copying a host number to the GPU would wait for it every step.
        return torch.stack([loss.detach() * len(labels), wrong, torch.full((), len(labels), device=self.device)]).double()

    # ----- evaluation ---------------------------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        self.model.eval()
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # loss, top-1 wrong, top-5 wrong, count
        for images, labels in self.data.eval_batches(split):
            with self._autocast():
                logits = self.forward(images.contiguous(memory_format=self.memory_format))
            logits = logits.float()
            top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
            sums += torch.stack([
                F.cross_entropy(logits, labels, reduction="sum"),
                (top5[:, 0] != labels).sum(),
                (top5 != labels[:, None]).all(1).sum(),
                torch.tensor(len(labels), device=self.device),
            ]).double()
        self.model.train()
        loss, wrong, wrong5, count = all_reduce_sum(sums, self.dist).tolist()
        result = {f"{split}_loss": loss / count, f"{split}_err": wrong / count}
        if getattr(self.data, "report_top5", False):
            result[f"{split}_top5_err"] = wrong5 / count
        return result

    # ----- records --------------------------------------------------------------------------------------------
    def _summary(self, status: str, iteration: int, wall_s: float) -> dict[str, Any]:
        rows = records.read_metrics(self.dirs.metrics)
        commit, dirty = records.git_state()
        test_errs = [r["test_err"] for r in rows]
        val_errs = [r["val_err"] for r in rows if "val_err" in r]
        return {
            "model": self.cfg.model.name, "family": self.model_info["family"], "depth": self.model_info["depth"],
            "shortcut": self.cfg.model.shortcut, "dataset": self.cfg.data.name, "split": self.cfg.data.split,
            "seed": self.cfg.seed, "experiment": self.cfg.experiment_name,
            "params": self.model_info["params"], "flops": self.model_info["flops"],
            "final_test_err": test_errs[-1] if test_errs else None, "best_test_err": min(test_errs, default=None),
            "best_val_err": min(val_errs, default=None), "iters": iteration, "max_iters": self.cfg.trainer.max_iters,
            "wall_s": wall_s, "device": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else "cpu",
            "world_size": self.dist.world_size, "precision": self.precision, "torch": torch.__version__,
            "cuda": torch.version.cuda, "git_commit": commit, "git_dirty": dirty, "status": status,
            "command": records.command_line(),
        }

    def _write_summary(self, status: str, iteration: int, wall_s: float) -> dict[str, Any]:
        summary = self._summary(status, iteration, wall_s)
        if self.is_main:
            records.write_json(self.dirs.summary, summary)
        return summary

    # ----- the loop -------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        return run_to_end(self.fit_steps())

    def fit_steps(self) -> Generator[int, None, dict[str, Any]]:
        """fit() an iteration at a time: yields after each one, returns the summary (engine/multiseed.py steps several
        runs in lockstep this way)."""
        cfg, tcfg = self.cfg, self.cfg.trainer
        if self.is_main:
            self.dirs.lock()
        try:
            if self._check_run_directory():
                log.info("run in %s is already complete; nothing to do", self.dirs.path)
                return records.read_json(self.dirs.summary)
            self._build()
            self.best = math.inf
            start_iter, train_sums, warm_sums = self._resume()
            previous_wall = getattr(self, "resumed_wall", None)
            if previous_wall is None:
                previous_wall = 0.0
                if start_iter and self.dirs.summary.exists():
                    previous_wall = records.read_json(self.dirs.summary).get("wall_s") or 0.0
            # Before anything is written: a logger that cannot start (W&B online without credentials) changes nothing.
            self.logger = RunLogger(cfg, self.dirs.path, enabled=self.is_main)
            if self.is_main:
                records.write_config(self.dirs.config, self.cfg)
                records.truncate_metrics(self.dirs.metrics, start_iter)
            return (yield from self._loop(start_iter, train_sums, warm_sums, previous_wall))
        finally:
            self.dirs.unlock()

    def _loop(self, start_iter: int, train_sums: torch.Tensor, warm_sums: torch.Tensor,
              previous_wall: float) -> Generator[int, None, dict[str, Any]]:
        cfg, tcfg = self.cfg, self.cfg.trainer
        iteration, max_iters = start_iter, tcfg.max_iters
        t_start = self.t_start = time.perf_counter()
        self.previous_wall = previous_wall
        window_start, eval_time, images_in_window = time.perf_counter(), 0.0, 0
        self._write_summary("running", iteration, previous_wall)
        progress = make_progress(tcfg.progress, start_iter, max_iters, enabled=self.is_main)
        signals = PreemptionSignals(self.dist)
        self.model.train()
        batches = self.data.train_batches(iteration)
        try:
            with signals.installed():
                while iteration < max_iters:
                    if signals.should_stop(iteration):
                        self._save(iteration, train_sums, warm_sums)
                        self._write_summary("interrupted", iteration, previous_wall + time.perf_counter() - t_start)
                        log.info("signal %d: checkpoint written at iteration %d", signals.received, iteration)
                        self.logger.finish({}, exit_code=1)
                        signals.hand_over()
                    lr = self.schedule.lr(iteration)
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    images, labels = next(batches)
                    step_sums = self.train_step(images, labels)
                    train_sums += step_sums
                    iteration += 1
                    images_in_window += len(labels) * self.dist.world_size
                    progress.update(1)

                    if not self.schedule.warmup_done:
                        warm_sums += step_sums[1:]
                        if iteration % WARMUP_CHECK_EVERY == 0:
                            wrong_w, count_w = all_reduce_sum(warm_sums.clone(), self.dist).tolist()
                            self.schedule.observe_train_error(wrong_w / count_w)
                            warm_sums.zero_()
                            if self.schedule.warmup_done:
                                log.info("warm-up done at iteration %d (training error %.1f%%)", iteration, 100 * wrong_w / count_w)

                    last = iteration == max_iters
                    if iteration % tcfg.eval_every == 0 or last:
                        t_eval = time.perf_counter()
                        loss_sum, wrong_sum, count = all_reduce_sum(train_sums.clone(), self.dist).tolist()
                        train_window_s = t_eval - window_start
                        self._check_finite(loss_sum, iteration)
                        row = {"iter": iteration, "epoch": iteration / self.data.batches_per_epoch, "lr": lr,
                               "train_loss": loss_sum / count, "train_err": wrong_sum / count}
                        for split in self.data.eval_sets:
                            row.update(self.evaluate(split))
                            kill_point("eval", iteration)  # tests only: SIGKILL in the middle of an evaluation
                        row["img_per_s"] = images_in_window / train_window_s
                        row["wall_s"] = previous_wall + time.perf_counter() - t_start
                        self.schedule.observe_eval(row.get("val_err", row["test_err"]))
                        monitored = row.get("val_err", row["train_err"])  # never select on the test set
                        if self.is_main:
                            records.append_metrics(self.dirs.metrics, row)
                            self.logger.log(row)
                        progress.report(row)
                        train_sums.zero_()
                        images_in_window = 0
                        if monitored < self.best:
                            self.best = monitored
                            if self.is_main:
                                save_checkpoint(self._checkpoint_state(iteration, train_sums, warm_sums), self.dirs.best)
                        window_start = time.perf_counter()
                    if iteration % tcfg.checkpoint_every == 0 or last:
                        self._save(iteration, train_sums, warm_sums)
                    yield iteration
        except UserError:
            self._write_summary("failed", iteration, previous_wall + time.perf_counter() - t_start)
            self.logger.finish({}, exit_code=1)
            raise
        finally:
            progress.close()
        summary = self._write_summary("complete", iteration, previous_wall + time.perf_counter() - t_start)
        self.logger.finish(summary)
        return summary

    def _check_finite(self, loss_sum: float, iteration: int, what: str = "the training loss") -> None:
        """Stop with the iteration window where `what` stopped being finite; checked at evaluations and checkpoints."""
        since = getattr(self, "_finite_until", 0)
        if not math.isfinite(loss_sum):
            last_good = getattr(self, "_last_good", None)
            kept = f"the last good checkpoint, {last_good[0]} (iteration {last_good[1]}), is kept" if last_good \
                else "no checkpoint was written"
            raise UserError(f"{what} became {loss_sum} between iterations {since} and {iteration}: training stopped; "
                            f"{kept}; lower optim.lr (or the schedule's) or check the data")
        self._finite_until = iteration

    def _save(self, iteration: int, train_sums: torch.Tensor, warm_sums: torch.Tensor) -> None:
        # Never let a diverged model replace the last good checkpoint: the loss since the last evaluation and every
        # weight and buffer must be finite (one wait for the device, at checkpoints only).
        tensors = [t for t in self.model.state_dict().values() if t.is_floating_point()]
        weights_finite = torch.stack([torch.isfinite(t).all() for t in tensors]).all() if tensors \
            else torch.ones((), dtype=torch.bool, device=self.device)
        loss_sum = all_reduce_sum(train_sums.clone(), self.dist)[0]
        loss_value, weights_ok = torch.stack([loss_sum, weights_finite.to(loss_sum.dtype)]).tolist()
        if math.isfinite(loss_value) and not weights_ok:
            self._check_finite(math.nan, iteration, what="a weight of the model")
        self._check_finite(loss_value, iteration)
        if self.is_main:
            save_checkpoint(self._checkpoint_state(iteration, train_sums, warm_sums), self.dirs.last)
        self._last_good = (self.dirs.last, iteration)


class Progress:
    """A tqdm bar on a terminal; plain log lines at each evaluation otherwise."""

    def __init__(self, style: str, start: int, total: int):
        self.style, self.bar = style, None
        if style == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def report(self, row: dict[str, Any]) -> None:
        text = f"iter {row['iter']} epoch {row['epoch']:.1f} lr {row['lr']:.4g} loss {row['train_loss']:.3f} " \
               f"train_err {100 * row['train_err']:.2f}% test_err {100 * row['test_err']:.2f}% {row['img_per_s']:.0f} img/s"
        if "val_err" in row:
            text += f" val_err {100 * row['val_err']:.2f}%"
        if self.bar is not None:
            self.bar.set_postfix_str(f"lr {row['lr']:.3g} loss {row['train_loss']:.3f} {row['img_per_s']:.0f} img/s")
        elif self.style == "log":
            log.info(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def make_progress(style: str, start: int, total: int, enabled: bool) -> Progress:
    if not enabled:
        style = "none"
    elif style == "auto":
        style = "bar" if sys.stderr.isatty() else "log"
    if style not in ("bar", "log", "none"):
        raise UserError(f"unknown trainer.progress {style!r}: choose auto, bar, log or none")
    return Progress(style, start, total)


def check_schema(cfg: DictConfig) -> None:
    """Hydra lets `+key=value` add a key that the schema (config.py) does not have; nothing would read it."""
    try:
        OmegaConf.merge(OmegaConf.structured(TrainConfig), OmegaConf.to_container(cfg, resolve=True))
    except ConfigKeyError as err:
        key = getattr(err, "full_key", None) or str(err).splitlines()[0]
        raise UserError(f"unknown config key {key}: no such setting (the keys are in src/resnet_repro/config.py "
                        f"and `python scripts/train.py --cfg job` prints them)") from None


def run_to_end(steps: Generator[Any, None, Any]) -> Any:
    """Run a generator such as Trainer.fit_steps() to its end; what it returns."""
    while True:
        try:
            next(steps)
        except StopIteration as stop:
            return stop.value


def train(cfg: DictConfig, run_dir: str | Path) -> dict[str, Any]:
    """Train (or resume, or skip if complete) the run in `run_dir`; return its summary."""
    check_schema(cfg)
    if cfg.trainer.get("seeds_per_job", 1) > 1 or cfg.trainer.get("cuda_graphs", False):
        from .multiseed import MultiSeedTrainer  # several seeds in one job, and/or CUDA-graphed steps

        return MultiSeedTrainer(cfg, Path(run_dir)).fit()
    return Trainer(cfg, Path(run_dir)).fit()
