"""Learning-rate schedules by iteration: the paper's CIFAR steps (with the optional ResNet-110 warm-up) and
ImageNet's divide-on-plateau. The state is a few numbers, saved in every checkpoint."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..config import ScheduleConfig
from ..errors import UserError


@dataclass
class LRSchedule:
    cfg: ScheduleConfig
    base_lr: float
    warmup_done: bool = False
    plateau_factor: float = 1.0  # plateau: product of the divisions so far
    plateau_best: float = float("inf")
    plateau_bad_evals: int = 0
    iters_per_milestone_unit: int = 1  # milestones_unit=epochs: the data's batches per epoch

    def __post_init__(self):
        self.warmup_done = self.warmup_done or not self.cfg.warmup

    def lr(self, iteration: int) -> float:
        if not self.warmup_done:
            return self.cfg.warmup_lr
        if self.cfg.kind == "steps":
            unit = self.iters_per_milestone_unit
            return self.base_lr * self.cfg.gamma ** sum(iteration >= m * unit for m in self.cfg.milestones)
        return self.base_lr * self.plateau_factor

    def observe_train_error(self, train_err: float) -> None:
        """Paper (ResNet-110): train at warmup_lr until the training error falls below warmup_until_err."""
        if not self.warmup_done and train_err < self.cfg.warmup_until_err:
            self.warmup_done = True

    def observe_eval(self, monitored_err: float) -> None:
        """Plateau: divide by 1/gamma when the monitored error has not improved for plateau_patience evaluations."""
        if self.cfg.kind != "plateau":
            return
        if monitored_err < self.plateau_best * (1 - self.cfg.plateau_threshold):
            self.plateau_best, self.plateau_bad_evals = monitored_err, 0
            return
        self.plateau_bad_evals += 1
        if self.plateau_bad_evals >= self.cfg.plateau_patience and self.lr(0) * self.cfg.gamma >= self.cfg.min_lr:
            self.plateau_factor *= self.cfg.gamma
            self.plateau_bad_evals = 0

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k not in ("cfg", "base_lr", "iters_per_milestone_unit")}

    def load_state_dict(self, state: dict) -> None:
        for key, value in state.items():
            setattr(self, key, value)


def build_schedule(cfg: ScheduleConfig, base_lr: float, batches_per_epoch: int | None = None) -> LRSchedule:
    """milestones_unit=epochs converts the milestones to iterations with `batches_per_epoch` (the data's)."""
    if cfg.milestones_unit == "epochs" and not batches_per_epoch:
        raise UserError("schedule.milestones_unit=epochs needs the data's batches per epoch, which is unknown here")
    return LRSchedule(
        cfg, base_lr, iters_per_milestone_unit=batches_per_epoch if cfg.milestones_unit == "epochs" else 1
    )
