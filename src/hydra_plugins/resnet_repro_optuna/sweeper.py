"""The sweeper of configs/hparams_search/: a hyperparameter search with Optuna's TPE sampler whose objective is the
validation error of data.split=paper, read from each trial's own records (the val_err of its metrics.jsonl). The test
set is never evaluated (the search files set data.evaluate_test=false), and a test error is never read: not from the
records, and not from the task's return value.

A search is one Optuna study, `study_name`, in SQLite in the sweep directory (<sweep dir>/optuna.db). Its trials are
asked in batches of `n_jobs` and sent through whatever launcher is configured (basic, launcher=slurm, launcher=ray),
each to a run directory of its own (<sweep dir>/trial<number>: Hydra's job number is the trial number). When a batch
has ended, each trial is told its objective, or FAIL with the reason (its run raised, was killed, or left no records),
and the search goes on. Re-launching the same command continues the study with `n_trials` more trials; the sampler's
seed is `seed` plus the trials so far, so that a re-launch does not repeat the random start-up trials of the first
launch. A trial left running by a search that was killed is settled when the next launch starts: from its records if
its run completed, else FAIL.

Refused before any trial, in one `error:` line (exit 2): an objective that is not a validation error; data.split=full
(no validation set: the only held-out error would be the test error); ImageNet (its val set is the paper's test set);
a searched key that changes what the validation error measures; a re-launch with other settings than the study's.

Why not hydra-optuna-sweeper: its latest release, 1.3.0 (as 1.2.0), requires optuna>=2.10,<3, i.e. optuna 2.10.1 of
2022 (beside optuna 4.x or 5.0 pip finds no solution). With hydra-core 1.3.8 and today's SQLAlchemy (2.1.9) its SQLite
storage fails at once (an AssertionError in the schema check); it runs only with SQLAlchemy and alembic downgraded
(1.4.54, 1.13.3). And by design: its objective is the task's return value (here the test error); it numbers every
launch's jobs from 0, so a re-launch's trials land in the run directories of the first launch's; its fixed seed makes
a re-launch draw the first launch's values again (both seen with a toy task); and under our launchers, which end a
batch with a failed run, one failed trial ends the search and leaves the batch's trials RUNNING in the study.
"""

# No `from __future__ import annotations`: Hydra's plugin scan runs this module outside sys.modules, where a dataclass
# cannot resolve string annotations. Optuna is imported where a search starts: the scan runs on every command.
import copy
import fcntl
import json
import logging
import math
import os
import re
import shlex
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Override
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus, configure_log
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, RunMode, TaskFunction
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict, read_write
from omegaconf.errors import OmegaConfBaseException

from resnet_repro import config as train_config
from resnet_repro.cli import USER_ERROR_EXIT, describe_config_error
from resnet_repro.engine import records
from resnet_repro.engine.run_dir import is_live
from resnet_repro.errors import UserError
from resnet_repro.io import atomic_write

log = logging.getLogger(__name__)

OBJECTIVES = {
    "final_val_err": "the validation error after the last iteration",
    "best_val_err": "the lowest validation error of the run's evaluations",
}
# What the validation error measures: the same for every trial of a study, so never searched.
VALIDATION_KEYS = ("data.name", "data.split", "data.val_size", "data.limit_test")
DB_NAME = records.SEARCH_STUDY  # the study, in the sweep directory; analysis/search.py finds searches by it
SETTINGS_NAME = "search.yaml"  # what every trial of the study shares, to refuse a re-launch with other settings
LOCK_NAME = ".search.lock"
TRAIN_SCRIPT = "python scripts/train.py"
# The final run trains the chosen setting without the search file (its shortened schedule and experiment name) and
# without a launcher (it is one run), on the full training set, under an experiment name of its own.
NOT_IN_FINAL = ("hparams_search", "launcher", "experiment_name", "data.split", "data.evaluate_test")


@dataclass
class OptunaSweeperConf:
    """hydra.sweeper with hparams_search=...; configs/hparams_search/cifar_lr_wd.yaml says what each key does."""

    _target_: str = "hydra_plugins.resnet_repro_optuna.sweeper.OptunaSweeper"
    study_name: str = "search"
    objective: str = "final_val_err"
    n_trials: int = 20
    n_jobs: int = 1
    seed: int = 0
    n_startup_trials: int = 10
    max_failures_in_a_row: int = 3
    params: dict[str, str] = field(default_factory=dict)
    enqueue: list[dict[str, Any]] = field(default_factory=list)


ConfigStore.instance().store(
    group="hydra/sweeper", name="resnet_repro_optuna", node=OptunaSweeperConf, provider="resnet_repro"
)


class TrialTask:
    """The task of every trial: the training task, whose UserError (an `error:` line and SystemExit 2) is raised
    again, which Hydra's run_job records as a failed job. A SystemExit would end the whole search under the basic
    launcher; a stop signal's exit (130 after Ctrl-C) still does, as it should."""

    def __init__(self, task: TaskFunction) -> None:
        self.task = task

    def __call__(self, cfg: DictConfig) -> Any:
        try:
            return self.task(cfg)
        except SystemExit as stop:
            if stop.code != USER_ERROR_EXIT or not isinstance(stop.__context__, UserError):
                raise
            raise stop.__context__ from None  # the UserError that cli.exit_on_user_error printed


def override_value(value: Any) -> str:
    """A sampled value as the command line writes it (floats exactly: Python's repr reads back to the same float)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, str) and not re.fullmatch(r"[\w.+\-/]+", value):
        return json.dumps(value)
    return repr(value) if isinstance(value, float) else str(value)


def overrides(fixed: Sequence[str], params: dict[str, Any]) -> list[str]:
    return [*fixed, *(f"{k}={override_value(v)}" for k, v in params.items())]


def final_overrides(trial_overrides: Sequence[str], study_name: str) -> list[str]:
    """The overrides of the run that trains a trial's setting once on the full training set and tests it once."""
    kept = [o for o in trial_overrides if _key(o) not in NOT_IN_FINAL]
    return [*kept, "data.split=full", f"experiment_name={study_name}_final"]


def command(args: Sequence[str]) -> str:
    return " ".join([TRAIN_SCRIPT, *map(shlex.quote, args)])


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


class OptunaSweeper(Sweeper):
    def __init__(self, **conf: Any) -> None:
        # Hydra checked the types against OptunaSweeperConf; params and enqueue come as OmegaConf containers.
        self.conf = OptunaSweeperConf(**{k: _plain(v) for k, v in conf.items()})

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=TrialTask(task_function), config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        try:
            import optuna
        except ImportError:
            raise UserError(
                'hparams_search needs Optuna: pip install -c requirements/constraints.txt -e ".[search]"'
            ) from None
        optuna.logging.set_verbosity(optuna.logging.WARNING)  # the search logs each trial itself
        self._check_settings()
        fixed, space = self._search_space(list(arguments))
        hydra_overrides = [o for o in self.config.hydra.overrides.hydra if _key(o) != "hydra.mode"]  # -m sets it
        self.command = command(["-m", *hydra_overrides, *arguments])
        settings = self._check_trials(fixed, space)  # before anything is written
        sweep_dir = Path(str(self.config.hydra.sweep.dir))
        with _search_lock(sweep_dir):
            self._check_same_search(sweep_dir, settings, space)
            study = self._study(sweep_dir)
            self._settle_unfinished(study, sweep_dir)
            self._search(study, fixed, space, sweep_dir)

    # ----- checks, before any trial ---------------------------------------------------------------------------------
    def _check_settings(self) -> None:
        c = self.conf
        if c.objective not in OBJECTIVES:
            choices = " or ".join(OBJECTIVES)
            if "test" in c.objective.lower():
                raise UserError(
                    f"hydra.sweeper.objective={c.objective} would choose the setting on the test set: the search "
                    f"minimizes a validation error ({choices}); the chosen setting is tested once, after it is "
                    f"trained on the full training set"
                )
            raise UserError(f"hydra.sweeper.objective={c.objective} is unknown: choose {choices}")
        for key, least in (("n_trials", 1), ("n_jobs", 1), ("max_failures_in_a_row", 1), ("n_startup_trials", 0)):
            if getattr(c, key) < least:
                raise UserError(f"hydra.sweeper.{key}={getattr(c, key)}: must be {least} or more")
        if c.seed < 0:
            raise UserError(f"hydra.sweeper.seed={c.seed}: must be 0 or more")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", c.study_name):
            raise UserError(
                f"hydra.sweeper.study_name={c.study_name!r}: use letters, digits, '_', '.' and '-' (it names the "
                f"final run's experiment)"
            )

    def _search_space(self, arguments: list[str]) -> tuple[list[str], dict[str, Any]]:
        """The overrides every trial gets (the command line's), and the searched keys with their distributions:
        hydra.sweeper.params, then the command line's sweeps (e.g. 'optim.lr=tag(log,interval(0.01,1))'). A key
        set to one value on the command line is not searched."""
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        try:
            searched = parser.parse_overrides([f"{k}={v}" for k, v in self.conf.params.items()])
            given = parser.parse_overrides(arguments)
        except HydraException as err:
            raise UserError(f"hparams_search: {describe_config_error(err)}") from None
        fixed = [text for text, o in zip(arguments, given) if not o.is_sweep_override()]
        fixed_keys = {o.key_or_group for o in given if not o.is_sweep_override()}
        space = {
            o.key_or_group: _distribution(o)
            for o in [*searched, *(o for o in given if o.is_sweep_override())]
            if o.key_or_group not in fixed_keys
        }
        if not space:
            raise UserError(
                "hparams_search: nothing to search: set hydra.sweeper.params (e.g. optim.lr: "
                "'tag(log, interval(0.01, 1.0))'; configs/hparams_search/cifar_lr_wd.yaml)"
            )
        for key in space:
            if key in VALIDATION_KEYS or key.startswith("hydra."):
                raise UserError(
                    f"hydra.sweeper.params: {key} cannot be searched: it decides what the objective measures (the "
                    f"validation set) or how the search runs, which must be the same for every trial"
                )
        for params in self.conf.enqueue:
            if unknown := sorted(set(params) - set(space) - fixed_keys):
                raise UserError(
                    f"hydra.sweeper.enqueue: {', '.join(unknown)} not searched (searched: {', '.join(space)})"
                )
        # A key fixed on the command line is fixed for the enqueued trials too; an enqueued trial outside the space
        # (narrowed on the command line) is left out: Optuna would fail on it.
        enqueue = [{k: v for k, v in params.items() if k in space} for params in self.conf.enqueue]
        self.conf.enqueue = [params for params in enqueue if all(_contains(space[k], v) for k, v in params.items())]
        for params in enqueue:
            if params not in self.conf.enqueue:
                log.warning(f"hydra.sweeper.enqueue: {params} is outside the searched space, not run first")
        return fixed, space

    def _compose(self, trial_overrides: list[str], number: int) -> DictConfig:
        """A trial's config as the launcher composes it; Hydra's job number is the trial number."""
        try:
            cfg = self.hydra_context.config_loader.load_sweep_config(self.config, list(trial_overrides))
        except (HydraException, OmegaConfBaseException) as err:
            raise UserError(describe_config_error(err)) from None
        with open_dict(cfg):
            cfg.hydra.job.id = number
            cfg.hydra.job.num = number
        return cfg

    def _check_trials(self, fixed: list[str], space: dict[str, Any]) -> train_config.TrainConfig:
        """Compose a trial (each searched key at its lowest value or first choice) and the final run; refuse what
        would choose on the test set. Returns the trial's config."""
        probe = [*fixed, *(f"{k}={override_value(_probe_value(d))}" for k, d in space.items())]
        first, second = self._compose(probe, 0), self._compose(probe, 1)
        if str(first.hydra.sweep.subdir) == str(second.hydra.sweep.subdir):
            raise UserError(
                f"hydra.sweep.subdir gives every trial the run directory {first.hydra.sweep.subdir}: name it by "
                f"the trial, e.g. hydra.sweep.subdir='trial${{hydra.job.num}}'"
            )
        # Before the config's own rules, which refuse data.evaluate_test=false with these in terms of that key.
        data = first.data
        if str(data.name) == "imagenet":
            raise UserError(
                "hparams_search on ImageNet: its val set is the paper's test set (Tables 2-4) and no part of its "
                "training set is held out here, so the search would choose on the test set; search on CIFAR-10, "
                "CIFAR-100 or Fashion-MNIST with data.split=paper"
            )
        if str(data.split) != "paper":
            raise UserError(
                f"data.split={data.split} leaves no validation set, so the search's objective would be the "
                f"test error: search with data.split=paper (the paper's 45k/5k split), then train the chosen setting "
                f"once with data.split=full (the search ends with that command)"
            )
        trial = _task_config(first)
        try:
            final_cfg = self.hydra_context.config_loader.load_configuration(
                self.config.hydra.job.config_name, final_overrides(probe, self.conf.study_name), RunMode.RUN
            )
        except (HydraException, OmegaConfBaseException) as err:
            raise UserError(f"the final run's command does not compose: {describe_config_error(err)}") from None
        final = _task_config(final_cfg)
        if (final.model.name, final.data.name) != (trial.model.name, trial.data.name):
            raise UserError(
                f"the final run would train {final.model.name} on {final.data.name}, the trials "
                f"{trial.model.name} on {trial.data.name}: the hparams_search file must not choose the model or "
                f"the data set; set them on the command line (model=..., data=...)"
            )
        return trial

    def _check_same_search(self, sweep_dir: Path, trial: train_config.TrainConfig, space: dict[str, Any]) -> None:
        """A re-launch continues the study only with the settings of its trials (the searched keys aside)."""
        path = sweep_dir / SETTINGS_NAME
        if path.exists():
            saved = records.read_config(path)
            diffs = [d for d in records.config_differences(saved, trial) if d.split(":")[0] not in space]
            if diffs:
                raise UserError(
                    f"{sweep_dir} holds study {self.conf.study_name} of a search with other settings "
                    f"({'; '.join(diffs[:3])}): re-launch it with its own settings, or give this search a directory "
                    f"of its own (experiment_name=NAME)"
                )
            return
        shared = train_config.to_dict(trial)
        for key in space:
            *parents, name = key.split(".")
            node = shared
            for parent in parents:
                node = node.get(parent, {})
            node.pop(name, None)
        header = f"# What every trial of study {self.conf.study_name} shares (searched: {', '.join(space)}).\n"
        atomic_write(path, lambda f: f.write((header + OmegaConf.to_yaml(shared)).encode()))

    # ----- the study ------------------------------------------------------------------------------------------------
    def _study(self, sweep_dir: Path) -> Any:
        import optuna

        c = self.conf
        storage = f"sqlite:///{(sweep_dir / DB_NAME).resolve()}"
        others = [name for name in optuna.get_all_study_names(storage) if name != c.study_name]
        if others:
            raise UserError(
                f"{sweep_dir} holds study {others[0]}, not {c.study_name}: their trials would share run "
                f"directories; give this search a directory of its own (experiment_name=NAME)"
            )
        study = optuna.create_study(study_name=c.study_name, storage=storage, direction="minimize", load_if_exists=True)
        if not study.trials:
            for params in c.enqueue:  # e.g. the paper's setting first, as a baseline
                study.enqueue_trial(params)
        # The seed moves on with the study: a re-launch does not repeat the random start-up trials of earlier ones.
        study.sampler = optuna.samplers.TPESampler(
            seed=c.seed + len(study.trials), n_startup_trials=c.n_startup_trials, constant_liar=True
        )
        study.set_user_attr("objective", c.objective)
        study.set_user_attr("command", self.command)
        so_far = sum(t.state.name != "WAITING" for t in study.trials)  # not those enqueued
        log.info(
            f"search {c.study_name}: {so_far} trials so far in {sweep_dir / DB_NAME}; {c.n_trials} more, {c.n_jobs} "
            f"at a time; objective {c.objective} ({OBJECTIVES[c.objective]}, data.split=paper)"
        )
        return study

    def _settle_unfinished(self, study: Any, sweep_dir: Path) -> None:
        """Trials left RUNNING by a search that ended before them (killed): told from their records."""
        import optuna

        for frozen in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            run_dir = sweep_dir / frozen.user_attrs.get("run_dir", f"trial{frozen.number}")
            if is_live(run_dir):  # a SLURM or Ray job of the killed search, still training
                log.warning(f"trial {frozen.number} still trains in {run_dir}: left running; a later launch records it")
                continue
            value, reason = self._objective(run_dir)
            trial = optuna.trial.Trial(study, frozen._trial_id)
            self._tell(study, trial, value, reason and f"{reason}; its search ended before it", run_dir)

    def _objective(self, run_dir: Path) -> tuple[float | None, str | None]:
        """The objective from the run's records (the val_err of metrics.jsonl, nothing else), or why there is none."""
        try:
            summary = records.read_json(run_dir / "summary.json")
        except FileNotFoundError:
            return None, "no run records (the run did not start)"
        except (OSError, ValueError) as err:
            return None, f"unreadable summary.json ({type(err).__name__})"
        status = summary.get("status")
        if status != "complete":
            if status == "running":
                status = "killed"  # no process holds the run (is_live); it ended without recording it
            reason = f"run {status}, {summary.get('iters')} of {summary.get('max_iters')} iterations recorded"
            return None, reason + (f": {summary['error']}" if summary.get("error") else "")
        try:
            errors = [row["val_err"] for row in records.read_metrics(run_dir / "metrics.jsonl") if "val_err" in row]
        except UserError as err:
            return None, str(err)
        if not errors or not all(math.isfinite(e) for e in errors):
            return None, "the run recorded no validation error"
        return (errors[-1] if self.conf.objective == "final_val_err" else min(errors)), None

    def _tell(self, study: Any, trial: Any, value: float | None, reason: str | None, run_dir: Path) -> None:
        import optuna

        params = " ".join(overrides([], trial.params))
        if value is not None:
            study.tell(trial, value)
            log.info(f"trial {trial.number}: {self.conf.objective} {100 * value:.2f}% ({params}); run {run_dir}")
        else:
            trial.set_user_attr("failure", reason)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            log.warning(f"trial {trial.number}: FAIL, {reason} ({params}); run {run_dir}")

    # ----- the search -----------------------------------------------------------------------------------------------
    def _search(self, study: Any, fixed: list[str], space: dict[str, Any], sweep_dir: Path) -> None:
        """Batches of n_jobs trials (the lock: no other process asks, so their numbers follow each other), each
        launched, then told."""
        c = self.conf
        asked, failed_in_a_row, last_failure, stopped = 0, 0, "", None
        while asked < c.n_trials and not stopped:
            trials = [study.ask(space) for _ in range(min(c.n_jobs, c.n_trials - asked))]
            asked += len(trials)
            jobs = [overrides(fixed, trial.params) for trial in trials]
            for trial, job in zip(trials, jobs):
                trial.set_user_attr("run_dir", str(self._compose(job, trial.number).hydra.sweep.subdir))
                trial.set_user_attr("overrides", job)
                trial.set_user_attr("final_command", command(final_overrides(job, c.study_name)))
            returns, hint, stop = [], "", None  # the launcher's JobReturns, where it gives them
            try:
                returns = list(self.launcher.launch(jobs, initial_job_idx=trials[0].number))
            except SystemExit as exit_:
                # Our SLURM and Ray launchers end a batch with a failed run this way (status 1), after naming each
                # failed run with its error and log; the records say which trials completed. Other statuses: a stop
                # signal (130: Ctrl-C).
                stop = None if exit_.code == 1 else exit_
                hint = "" if stop else "; the launcher's report names its error and log"
            except KeyboardInterrupt as interrupt:
                stop = interrupt
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)  # a job's logging set-up ends
            for trial, ret in zip_longest(trials, returns):
                run_dir = sweep_dir / trial.user_attrs["run_dir"]
                value, reason = self._objective(run_dir)
                if value is None:
                    reason = _job_error(ret, trial.number) or reason + hint
                    stop = stop or (KeyboardInterrupt() if "interrupted" in reason else None)
                    failed_in_a_row, last_failure = failed_in_a_row + 1, f"trial {trial.number}: {reason}"
                else:
                    failed_in_a_row = 0
                self._tell(study, trial, value, reason, run_dir)
            if stop is not None:
                print(
                    f"search {c.study_name} stopped: a trial was interrupted (FAIL in the study); the same command "
                    f"continues the study",
                    file=sys.stderr,
                    flush=True,
                )
                raise SystemExit(stop.code if isinstance(stop, SystemExit) and stop.code else 130)
            if failed_in_a_row >= c.max_failures_in_a_row and asked < c.n_trials:
                stopped = f"stopped after {failed_in_a_row} failed trials in a row"
        self._finish(study, sweep_dir, stopped, last_failure)

    def _finish(self, study: Any, sweep_dir: Path, stopped: str | None, last_failure: str) -> None:
        import optuna

        c = self.conf
        states = optuna.trial.TrialState
        complete, failed = (study.get_trials(deepcopy=False, states=(s,)) for s in (states.COMPLETE, states.FAIL))
        counts = f"{len(study.trials)} trials in the study ({len(complete)} complete, {len(failed)} failed)"
        if stopped or not complete:
            print(
                f"error: search {c.study_name} {stopped or 'has no complete trial'}"
                f"{f' (the last, {last_failure})' if last_failure else ''}: {counts}; "
                f"fix the cause and re-launch the same command, which continues the study",
                file=sys.stderr,
                flush=True,
            )
            raise SystemExit(1)
        best = study.best_trial
        log.info(
            f"search {c.study_name}: {counts}; best: trial {best.number}, {c.objective} {100 * best.value:.2f}% "
            f"({' '.join(overrides([], best.params))}), run {sweep_dir / best.user_attrs['run_dir']}"
        )
        log.info(
            "chosen on the validation split only; train it once on the full training set and test it once: "
            + best.user_attrs["final_command"]
        )


def _job_error(ret: JobReturn | None, number: int) -> str | None:
    """The error of a job that Hydra caught inside it (its traceback logged if it was a bug), else None."""
    if ret is None or ret.status != JobStatus.FAILED:
        return None
    # The exception itself: JobReturn.return_value would also print the job's overrides, which the log has.
    err = ret._return_value
    if isinstance(err, UserError):
        return str(err)  # its `error:` line is in the trial's output
    log.error(f"trial {number} raised {type(err).__name__}", exc_info=err)  # a bug: the search goes on
    return f"{type(err).__name__}: {err}"


def _task_config(cfg: DictConfig) -> train_config.TrainConfig:
    """The TrainConfig a job of `cfg` trains with (Hydra's run_job hands the task the config without `hydra`); its
    ranges checked as in one process (the jobs check their own process counts)."""
    task = copy.deepcopy(cfg)
    with read_write(task), open_dict(task):
        del task["hydra"]
    return train_config.load(task, processes=1)


def _distribution(override: Override) -> Any:
    """An Optuna distribution from Hydra's sweep syntax: interval(a, b) (integers if both are), tag(log, interval(a,
    b)), range(a, b[, step]) (b excluded, as Hydra's range), choice(a, b, ...)."""
    from optuna import distributions as d

    value = override.value()
    try:
        if override.is_interval_sweep():
            log_scale = "log" in value.tags
            if isinstance(value.start, int) and isinstance(value.end, int):
                return d.IntDistribution(value.start, value.end, log=log_scale)
            return d.FloatDistribution(float(value.start), float(value.end), log=log_scale)
        if override.is_range_sweep():
            values = list(override.sweep_iterator())
            if all(isinstance(v, int) for v in values) and isinstance(value.step, int):
                return d.IntDistribution(values[0], values[-1], step=value.step)
            return d.FloatDistribution(float(values[0]), float(values[-1]), step=float(value.step))
        if override.is_choice_sweep():
            return d.CategoricalDistribution(list(override.sweep_iterator()))
    except (ValueError, IndexError) as err:
        raise UserError(f"{override.input_line}: not a search range Optuna takes ({err or 'empty'})") from None
    raise UserError(
        f"{override.input_line} is one value, not a search range: use interval(a, b), tag(log, interval(a, b)), "
        f"range(a, b, step) or choice(a, b, ...); a value for every trial goes on the command line"
    )


def _contains(distribution: Any, value: Any) -> bool:
    if hasattr(distribution, "choices"):
        return value in distribution.choices
    return isinstance(value, (int, float)) and distribution.low <= value <= distribution.high


def _probe_value(distribution: Any) -> Any:
    return distribution.choices[0] if hasattr(distribution, "choices") else distribution.low


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if isinstance(value, (DictConfig, ListConfig)) else value


@contextmanager
def _search_lock(sweep_dir: Path) -> Iterator[None]:
    """One search of a study at a time (two would number their trials alike). The kernel drops the lock when the
    process ends, however it ends."""
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
        lock = open(sweep_dir / LOCK_NAME, "a+")
    except OSError as err:
        raise UserError(
            f"cannot write the search's directory {sweep_dir} ({err.strerror}): choose another run_root"
        ) from None
    with lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise UserError(
                f"a search of this study is running (process {lock.read().strip() or '?'} holds "
                f"{sweep_dir / LOCK_NAME}): wait for it to end; a search with other settings needs a directory of its "
                f"own (experiment_name=NAME)"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield
