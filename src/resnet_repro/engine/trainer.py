"""The Trainer: one run, from its run directory to its records, by iterations.

    fit():  open()                      lock the run directory, build data, model, optimizer; resume; write config
            while not done: step()      lr, batch, SGD step; evaluate, record and checkpoint when due
            finish()                    summary.json "complete"

The loop never waits for the GPU except at evaluations and checkpoints: running sums of loss and errors stay on
the device until then. Several seeds in one job call open/step/finish of one Trainer per seed (multiseed.py).
"""

from __future__ import annotations

import errno
import functools
import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..config import TrainConfig, to_dict
from ..data import build_data
from ..errors import ANOTHER_PLACE, UserError
from ..io import NO_ROOM, WriteFailed, writing
from ..models import CifarNet, build_model_from_config
from . import records
from .checkpoint import kill_point, load_checkpoint, save_checkpoint
from .cuda_graph import GraphedStep
from .distributed import all_reduce_sum, device_kind, init_distributed, resolve_device
from .metrics import top1_top5_wrong
from .progress import Progress
from .run_dir import RunDirectory
from .schedule import build_schedule
from .setup import (
    StartupClock,
    autocast,
    build_optimizer,
    emulates_bf16,
    resolve_precision,
    rng_state,
    seed_everything,
    set_backend_flags,
    set_rng_state,
)
from .signals import StopSignals
from .wandb_logger import RunLogger

log = logging.getLogger("resnet_repro.train")
WARMUP_CHECK_EVERY = 100  # iterations between checks of the warm-up's training-error condition (one sync each)
CPU_EVAL_CHUNK = 128  # images per forward pass of an evaluation on a CPU (Trainer.eval_logits)


def reports_write_failures(method):
    """A record or checkpoint that cannot be written (a full disk, a read-only or vanished folder) ends `method` with
    a UserError saying so, what is kept and what to do (Trainer.write_failure)."""

    @functools.wraps(method)
    def wrapped(self: Trainer, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except WriteFailed as err:
            raise UserError(self.write_failure(err)) from None

    return wrapped


@dataclass
class LoopState:
    """Everything the loop carries from one iteration to the next; saved whole in every checkpoint ("loop")."""

    iteration: int
    train_sums: torch.Tensor  # loss sum, wrong, images since the last evaluation (float64, on the device)
    warm_sums: torch.Tensor  # wrong, images since the last warm-up check (float64, on the device)
    best: float = math.inf  # the lowest monitored error so far (validation error, else training error)
    wall_s: float = 0.0  # training time of the run before this process started (in a checkpoint: up to it)

    @classmethod
    def fresh(cls, device: torch.device) -> LoopState:
        return cls(
            0, torch.zeros(3, device=device, dtype=torch.float64), torch.zeros(2, device=device, dtype=torch.float64)
        )

    @classmethod
    def from_checkpoint(cls, state: dict[str, Any], device: torch.device) -> LoopState:
        loop = state.get("loop") or state  # checkpoints from before LoopState kept these entries at the top level
        return cls(
            int(loop["iteration"]),
            loop["train_sums"].to(device),
            loop["warm_sums"].to(device),
            float(loop["best"]),
            float(loop.get("wall_s") or 0.0),
        )

    def to_checkpoint(self, wall_s: float) -> dict[str, Any]:
        return {
            **asdict(self),
            "train_sums": self.train_sums.cpu(),
            "warm_sums": self.warm_sums.cpu(),
            "wall_s": wall_s,
        }


class Trainer:
    def __init__(self, cfg: TrainConfig, run_dir: Path, data=None):
        """`data`: the data object to train on (benchmarks pass images made in memory); default: cfg.data's."""
        self.cfg = cfg
        self.data = data
        self.startup = StartupClock()
        self.run_dir = RunDirectory(run_dir)
        self.dist = init_distributed(device_kind(cfg.trainer.device))
        self.device = resolve_device(cfg.trainer.device, self.dist.local_rank)
        self.precision, self.precision_reason = resolve_precision(cfg.trainer.precision, self.device, cfg.model.name)
        self.is_main = self.dist.is_main
        self.use_cuda_graphs = cfg.trainer.cuda_graphs and self.device.type == "cuda"
        if cfg.trainer.cuda_graphs and not self.use_cuda_graphs:
            log.info("trainer.cuda_graphs is for GPUs: training on %s without", self.device)
        self.graphed_step: GraphedStep | None = None
        self.state = LoopState.fresh(self.device)
        self.finite_since, self.last_good = 0, None  # for the message if the loss diverges or a write fails
        self.logger: RunLogger | None = None

    # ----- the loop ---------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train (or resume) to trainer.max_iters and return the summary; a complete run is left as it is."""
        if not self.open():
            return records.read_json(self.run_dir.summary)
        signals = StopSignals(self.dist)
        try:
            with signals.installed():
                while not self.done:
                    if signals.should_stop(self.state.iteration):
                        self.stop(signals.received)
                        signals.hand_over(self.state.iteration)
                    self.step()
            return self.finish()
        except UserError as err:
            self.fail(str(err))
            raise
        finally:
            self.close()

    @property
    def done(self) -> bool:
        return self.state.iteration >= self.cfg.trainer.max_iters

    @reports_write_failures
    def step(self) -> None:
        """One iteration; then the warm-up check, the evaluation and the checkpoint when they are due."""
        state, tcfg = self.state, self.cfg.trainer
        lr = self.set_lr(state.iteration)
        images, labels = next(self.batches)
        step_sums = self.graphed(images, labels) if self.use_cuda_graphs else self.train_step(images, labels)
        state.train_sums += step_sums
        state.iteration += 1
        self.images_in_window += len(labels) * self.dist.world_size
        self.progress.update(1)
        if not self.schedule.warmup_done:
            self.check_warmup(step_sums)
        last = self.done
        if state.iteration % tcfg.eval_every == 0 or last:
            self.evaluate_and_record(lr)
        if state.iteration % tcfg.checkpoint_every == 0 or last:
            self.save()

    def set_lr(self, iteration: int) -> float:
        lr = self.schedule.lr(iteration)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """One SGD step; returns (loss sum, errors, images) on the device, float64, without waiting for it."""
        with autocast(self.precision, self.device):
            logits = self.model(images.contiguous(memory_format=self.memory_format))
            loss = F.cross_entropy(logits.float(), labels)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        wrong = (logits.argmax(1) != labels).sum()
        # torch.full, not torch.tensor(..., device=): copying a host number to the GPU would wait for it every step.
        return torch.stack(
            [loss.detach() * len(labels), wrong, torch.full((), len(labels), device=self.device)]
        ).double()

    def graphed(self, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """train_step as a CUDA-graph replay, captured at the first call."""
        if self.graphed_step is None:
            self.graphed_step = GraphedStep(self, images, labels)
        return self.graphed_step(images, labels)

    def check_warmup(self, step_sums: torch.Tensor) -> None:
        """Paper (ResNet-110): leave the warm-up lr once the training error is below the threshold."""
        self.state.warm_sums += step_sums[1:]
        if self.state.iteration % WARMUP_CHECK_EVERY:
            return
        wrong, count = all_reduce_sum(self.state.warm_sums.clone(), self.dist).tolist()  # a sync point
        self.schedule.observe_train_error(wrong / count)
        self.state.warm_sums.zero_()
        if self.schedule.warmup_done:
            log.info("warm-up done at iteration %d (training error %.1f%%)", self.state.iteration, 100 * wrong / count)

    def evaluate_and_record(self, lr: float) -> None:
        """A line of metrics.jsonl: training loss and error since the last one, each held-out split's errors."""
        state = self.state
        t_eval = time.perf_counter()
        loss_sum, wrong_sum, count = all_reduce_sum(state.train_sums.clone(), self.dist).tolist()  # a sync point
        train_window_s = t_eval - self.window_start
        self.check_finite(loss_sum)
        row = {
            "iter": state.iteration,
            "epoch": state.iteration / self.data.batches_per_epoch,
            "lr": lr,
            "train_loss": loss_sum / count,
            "train_err": wrong_sum / count,
        }
        for split in self.data.eval_sets:
            row.update(self.evaluate(split))
            kill_point("eval", state.iteration)  # tests only: SIGKILL in the middle of an evaluation
        row["img_per_s"] = self.images_in_window / train_window_s
        row["wall_s"] = self.wall()
        self.schedule.observe_eval(row["val_err"] if "val_err" in row else row["test_err"])
        monitored = row.get("val_err", row["train_err"])  # never select on the test set
        if self.is_main:
            records.append_metrics(self.run_dir.metrics, row)
            self.logger.log(row)
        self.progress.report(row)
        state.train_sums.zero_()
        self.images_in_window = 0
        if monitored < state.best:
            state.best = monitored
            if self.is_main:
                save_checkpoint(self.checkpoint(), self.run_dir.best, make_folder=False)
        self.window_start = time.perf_counter()

    @torch.no_grad()
    def evaluate(self, split: str) -> dict[str, float]:
        self.model.eval()
        sums = torch.zeros(4, device=self.device, dtype=torch.float64)  # loss, top-1 wrong, top-5 wrong, count
        for images, labels in self.data.eval_batches(split):
            logits = self.eval_logits(images)
            wrong1, wrong5 = top1_top5_wrong(logits, labels)
            sums += torch.stack(
                [
                    F.cross_entropy(logits, labels, reduction="sum"),
                    wrong1,
                    wrong5,
                    torch.tensor(len(labels), device=self.device),
                ]
            ).double()
        self.model.train()
        loss, wrong, wrong5, count = all_reduce_sum(sums, self.dist).tolist()
        result = {f"{split}_loss": loss / count, f"{split}_err": wrong / count}
        if self.data.report_top5:
            result[f"{split}_top5_err"] = wrong5 / count
        return result

    def eval_logits(self, images: torch.Tensor) -> torch.Tensor:
        """The model's float logits for an evaluation batch. On a CPU the forward pass runs CPU_EVAL_CHUNK images at a
        time: the activations of a whole batch (1000 images) overflow the caches, and ResNet-20 evaluates 1.7x faster
        in chunks of 128 on 2 cores. Each image's logits are the same bits either way (tests/test_speed.py), and the
        loss and errors are taken over the whole batch as before."""
        images = images.contiguous(memory_format=self.memory_format)
        with autocast(self.precision, self.device):
            if self.device.type != "cpu" or len(images) <= CPU_EVAL_CHUNK:
                return self.model(images).float()
            return torch.cat([self.model(chunk) for chunk in images.split(CPU_EVAL_CHUNK)]).float()

    def wall(self) -> float:
        """Training time of the run so far, over all the processes that worked on it (killed ones included)."""
        return self.state.wall_s + time.perf_counter() - self.t_start

    # ----- opening and closing a run --------------------------------------------------------------------------------
    def open(self) -> bool:
        """Lock the run directory, set everything up and resume; False (and unlocked) if the run is complete."""
        if self.is_main:
            self.run_dir.lock()
        try:
            if self.check_run_directory():
                log.info("run in %s is already complete; nothing to do", self.run_dir.path)
                self.run_dir.unlock()
                return False
            level = logging.WARNING if emulates_bf16(self.precision, self.device) else logging.INFO
            log.log(
                level,
                "%s on %s, precision %s (%s)",
                self.cfg.model.name,
                self.device,
                self.precision,
                self.precision_reason,
            )
            self.build()
            self.resume()
            # Before anything is written: a logger that cannot start (W&B online without credentials) changes nothing.
            self.logger = RunLogger(self.cfg, self.run_dir.path, enabled=self.is_main)
            self.t_start = self.window_start = time.perf_counter()
            self.images_in_window = 0
            if self.is_main:
                records.write_config(self.run_dir.config, self.cfg)
                records.truncate_metrics(self.run_dir.metrics, self.state.iteration)
                with writing(self.run_dir.checkpoints):
                    self.run_dir.checkpoints.mkdir(exist_ok=True)  # not its parents: a removed run is not made again
            if self.is_main and self.state.iteration == 0:  # the start of the path a loss landscape follows
                save_checkpoint(self.checkpoint(), self.run_dir.init, make_folder=False)
            self.write_summary("running")
        except WriteFailed as err:
            error = self.write_failure(err)
            self.fail(error)
            self.run_dir.unlock()
            raise UserError(error) from None
        except BaseException:
            self.run_dir.unlock()
            raise
        self.progress = Progress(
            self.cfg.trainer.progress, self.state.iteration, self.cfg.trainer.max_iters, enabled=self.is_main
        )
        self.model.train()
        self.batches = self.data.train_batches(self.state.iteration)
        self.startup.mark()  # ready for the first step: the start-up ends here
        return True

    def check_run_directory(self) -> bool:
        """Refuse a directory made by a different config; True if the run there is already complete."""
        if self.run_dir.config.exists():
            diffs = records.config_differences(records.read_config(self.run_dir.config), self.cfg)
            if diffs:
                raise UserError(
                    f"run directory {self.run_dir.path} holds a run with a different config ({'; '.join(diffs[:3])}): "
                    f"choose {ANOTHER_PLACE} for the new run, or delete that directory"
                )
        return self.run_dir.summary.exists() and records.read_json(self.run_dir.summary).get("status") == "complete"

    def build(self) -> None:
        cfg = self.cfg
        seed_everything(cfg.seed)
        set_backend_flags(cfg.trainer.deterministic)
        if self.data is None:
            self.data = build_data(cfg.data, self.device, cfg.seed, self.dist.rank, self.dist.world_size)
        self.startup.mark()
        self.raw_model = build_model_from_config(cfg.model, self.data.num_classes)
        self.model_info = {
            "params": self.raw_model.num_params(),
            "flops": self.raw_model.flops(),
            "family": "cifar" if isinstance(self.raw_model, CifarNet) else "imagenet",
            "depth": self.raw_model.depth,
        }
        self.memory_format = torch.channels_last if cfg.trainer.channels_last else torch.contiguous_format
        self.raw_model.to(self.device, memory_format=self.memory_format)
        self.optimizer = build_optimizer(self.raw_model.parameters(), cfg.optim)
        self.startup.mark()
        self.schedule = build_schedule(cfg.schedule, cfg.optim.lr, self.data.batches_per_epoch)
        self.model = self.raw_model  # what the forward pass calls: wrapped for DDP and compile
        if self.dist.world_size > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        if cfg.trainer.compile:
            self.model = torch.compile(self.model)

    def resume(self) -> None:
        mode = self.cfg.trainer.resume
        if mode == "never":
            if self.run_dir.last.exists():
                raise UserError(
                    f"{self.run_dir.last} exists and trainer.resume=never would overwrite it: choose {ANOTHER_PLACE}, "
                    f"or trainer.resume=auto to continue"
                )
            return
        path = self.run_dir.last if mode == "auto" else Path(mode)
        if mode == "auto" and not path.exists():
            return
        state = load_checkpoint(path, map_location=self.device)
        try:
            self.raw_model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.schedule.load_state_dict(state["schedule"])
            set_rng_state(state["rng"])
            self.state = LoopState.from_checkpoint(state, self.device)
        except (KeyError, RuntimeError, ValueError, TypeError) as err:
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise UserError(
                f"checkpoint {path} does not fit this run ({first_line}): it was written for another "
                f"model or trainer version; resume from a checkpoint of this run, or start a new run"
            ) from None
        if not self.state.wall_s and self.run_dir.summary.exists():  # a checkpoint without its wall time
            self.state.wall_s = records.read_json(self.run_dir.summary).get("wall_s") or 0.0
        self.finite_since, self.last_good = self.state.iteration, (path, self.state.iteration)
        log.info("resumed from %s at iteration %d", path, self.state.iteration)

    @reports_write_failures
    def stop(self, signum: int) -> None:
        """Stop signal `signum`: checkpoint at the current iteration and record the run as interrupted."""
        self.save()
        self.write_summary("interrupted")
        log.info("signal %d: checkpoint written at iteration %d", signum, self.state.iteration)
        self.logger.finish({}, exit_code=1)

    @reports_write_failures
    def finish(self) -> dict[str, Any]:
        summary = self.write_summary("complete")
        self.logger.finish(summary)
        return summary

    def fail(self, error: str) -> None:
        """summary.json says `failed` with the error where it can still be written. Where it cannot (a full disk), it
        still says `running`: the run directory's lock, released when this process ends, tells readers that no
        process holds the run (run_dir.is_live)."""
        try:
            self.write_summary("failed", error=error)
        except WriteFailed as err:
            log.debug("summary.json not updated: %s", err)
        if self.logger is not None:
            self.logger.finish({}, exit_code=1)

    def close(self) -> None:
        self.progress.close()
        self.run_dir.unlock()

    # ----- checkpoints and records ------------------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        return {
            "model": self.raw_model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "schedule": self.schedule.state_dict(),
            "rng": rng_state(),
            "loop": self.state.to_checkpoint(self.wall()),
            "iteration": self.state.iteration,
            # Data order and crops are functions of (seed, iteration): the iteration is the data-order state.
            "data_state": {
                "iteration": self.state.iteration,
                "seed": self.cfg.seed,
                "batch_size": self.cfg.data.batch_size,
            },
            "config": to_dict(self.cfg),
        }

    def save(self) -> None:
        """checkpoints/last.pt, never from a diverged model: the loss since the last evaluation and every weight and
        buffer must be finite (one wait for the device, at checkpoints only)."""
        tensors = [t for t in self.raw_model.state_dict().values() if t.is_floating_point()]
        weights_finite = (
            torch.stack([torch.isfinite(t).all() for t in tensors]).all()
            if tensors
            else torch.ones((), dtype=torch.bool, device=self.device)
        )
        loss_sum = all_reduce_sum(self.state.train_sums.clone(), self.dist)[0]
        loss_value, weights_ok = torch.stack([loss_sum, weights_finite.to(loss_sum.dtype)]).tolist()
        if math.isfinite(loss_value) and not weights_ok:
            self.check_finite(math.nan, what="a weight of the model")
        self.check_finite(loss_value)
        if self.is_main:
            save_checkpoint(self.checkpoint(), self.run_dir.last, make_folder=False)
        self.last_good = (self.run_dir.last, self.state.iteration)

    def check_finite(self, loss_sum: float, what: str = "the training loss") -> None:
        """Stop with the iteration window where `what` stopped being finite; checked at evaluations and checkpoints."""
        iteration = self.state.iteration
        if not math.isfinite(loss_sum):
            kept = (
                f"the last good checkpoint, {self.last_good[0]} (iteration {self.last_good[1]}), is kept"
                if self.last_good
                else "no checkpoint was written"
            )
            raise UserError(
                f"{what} became {loss_sum} between iterations {self.finite_since} and {iteration}: "
                f"training stopped; {kept}; lower optim.lr (or the schedule's) or check the data"
            )
        self.finite_since = iteration

    def write_summary(self, status: str, error: str | None = None) -> dict[str, Any]:
        """summary.json; a failed run also records its error (the `error:` line the command printed)."""
        summary = records.summary(
            self.cfg,
            self.run_dir.metrics,
            status=status,
            iteration=self.state.iteration,
            wall_s=self.wall(),
            model_info=self.model_info,
            device=self.device,
            world_size=self.dist.world_size,
            precision=self.precision,
            precision_reason=self.precision_reason,
        )
        summary["startup_s"] = self.startup.seconds()
        if error is not None:
            summary["error"] = error
        if self.is_main:
            records.write_json(self.run_dir.summary, summary, make_folder=False)
        return summary

    def write_failure(self, err: WriteFailed) -> str:
        """The one line for a write that failed: what happened to which file, what is kept, and what to do."""
        file, run = err.filename, self.run_dir.path
        if self.run_dir.removed() or err.errno == errno.ENOENT:
            folder = f"run directory {run}" if self.run_dir.removed() else f"folder {Path(file).parent}"
            return (
                f"{folder} was removed while the run was going (writing {file} failed), its checkpoints with it: "
                f"run the same command to start the run again, or choose, out of the cleaner's reach, {ANOTHER_PLACE}"
            )
        if self.last_good:
            kept, again = f"the last good checkpoint is at iteration {self.last_good[1]}", "resume"
        else:
            kept, again = "no checkpoint was written yet", "start again"
        if err.errno in NO_ROOM:
            what, fix = NO_ROOM[err.errno]
            return f"{what} writing {file}; {kept}; {fix} and run the same command to {again}"
        return (
            f"cannot write {file} ({err.strerror}); {kept}; make {Path(file).parent} writable and run the same "
            f"command to {again}"
        )
