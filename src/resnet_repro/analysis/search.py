"""Hyperparameter searches (hydra_plugins/resnet_repro_optuna) in the report: for each search, the trials plot (the
objective, a validation error, against each searched parameter, one panel per parameter) and the table of the best
trials, titled with what the trials were (data set, schedule, the validation split); then the final run, the chosen
setting trained once on the full training set and tested once, with its exact command and, once it has run, its test
error.

A search is a folder holding its Optuna study (records.SEARCH_STUDY, one study); its trials are the run directories
below it, which runs.load_runs leaves out (they are not seeds of one protocol, to be averaged). Only the trials'
validation errors are shown. Trials evaluate no test set (data.evaluate_test=false in the search files); where a
search was run with it on, the trials' test errors are in their records, but nothing here reads them, as the search
did not.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..engine.records import SEARCH_STUDY
from . import tables
from .common import STYLE, TEXT_IN, markdown, save, shown_path, titled
from .protocol import dataset_name
from .provenance import Provenance, provenance
from .runs import Run, load_run

BEST_SHOWN = 5  # rows of the best-trials table
OBJECTIVE_TEXT = {
    "final_val_err": "validation error after the last iteration",
    "best_val_err": "lowest validation error of the run's evaluations",
}
AXIS_LABEL = {"final_val_err": "final validation error", "best_val_err": "best validation error"}


def find_searches(root: str | Path) -> list[Path]:
    """Every search (a folder holding its study) under root, or root itself."""
    root = Path(root)
    return sorted({p.parent for p in root.rglob(SEARCH_STUDY)}) if root.is_dir() else []


@dataclass
class Search:
    """One study: its trials (Optuna's FrozenTrials, in order) and the records of those that have a run directory."""

    path: Path
    name: str
    objective: str
    command: str  # the search's command (its latest launch)
    trials: list[Any]
    runs: dict[int, Run] = field(default_factory=dict)

    def state(self, trial) -> str:
        return trial.state.name  # COMPLETE, FAIL, RUNNING, WAITING

    @property
    def complete(self) -> list[Any]:
        return sorted((t for t in self.trials if self.state(t) == "COMPLETE"), key=lambda t: (t.value, t.number))

    @property
    def failed(self) -> list[Any]:
        return [t for t in self.trials if self.state(t) == "FAIL"]

    @property
    def params(self) -> dict[str, Any]:
        """Searched key -> its distribution (the latest trial's, where a re-launch changed it)."""
        out: dict[str, Any] = {}
        for t in self.trials:
            out.update(t.distributions)
        return out

    def provenance(self) -> Provenance:
        """Of the trials' runs; their commands differ by the searched values alone, so the search's command stands
        for them."""
        p = provenance(list(self.runs.values()))
        p.commands = Counter({self.command: p.n})
        return p

    @property
    def slug(self) -> str:
        return "search_" + "".join(c if c.isalnum() or c in "_.-" else "_" for c in self.name)

    def title(self) -> str:
        """What the trials were: e.g. 'Fashion-MNIST, 40 iterations, lr ÷10 at 20, 30; batch 32; trained on the
        first 512 of the training images left after holding out 500; objective: validation error after the last
        iteration on 128 held-out training images (data.split=paper); test set not evaluated'."""
        runs = [self.runs[t.number] for t in self.trials if t.number in self.runs]
        if not runs:
            return f"objective: {OBJECTIVE_TEXT.get(self.objective, self.objective)} (data.split=paper)"
        protocols = Counter(r.protocol for r in runs)
        p = protocols.most_common(1)[0][0]
        if p.limit_train:
            trained = f"the first {p.limit_train} of the training images left after holding out {p.val_size}"
        else:
            trained = f"the training set minus {p.val_size} images held out for validation"
        held_out = min(p.val_size, p.limit_test) if p.limit_test else p.val_size
        batch = f"; batch {p.batch_size}" if p.batch_size else ""
        tested = {bool(r.config.get("data", {}).get("evaluate_test", True)) for r in runs}
        test_text = "test set not evaluated" if tested == {False} else "no test error read"
        text = (
            f"{dataset_name(p.dataset)}, {p.training_text}{batch}; trained on {trained}; "
            f"objective: {OBJECTIVE_TEXT.get(self.objective, self.objective)} on {held_out} held-out training "
            f"images (data.split=paper); {test_text}"
        )
        return text + ("; the trials differ in data set, schedule or split" if len(protocols) > 1 else "")


def load_search(path: str | Path) -> list[Search] | str:
    """The studies in a search folder (normally one), or why they cannot be read."""
    try:
        import optuna
    except ImportError:
        return 'reading a search needs Optuna: pip install -c requirements/constraints.txt -e ".[search]"'
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(path)
    storage = f"sqlite:///{(path / SEARCH_STUDY).resolve()}"
    found = []
    for name in optuna.get_all_study_names(storage):
        study = optuna.load_study(study_name=name, storage=storage)
        attrs = study.user_attrs
        search = Search(path, name, attrs.get("objective", "final_val_err"), attrs.get("command", "?"), study.trials)
        for t in search.trials:
            run_dir = path / t.user_attrs.get("run_dir", f"trial{t.number}")
            if (run_dir / "summary.json").exists():
                search.runs[t.number] = load_run(run_dir)
        found.append(search)
    return found


def _value_text(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def best_table(search: Search) -> pd.DataFrame:
    """The complete trials, best first: rank, trial, objective (%), each searched value, its run."""
    rows = []
    for rank, t in enumerate(search.complete, 1):
        run = search.runs.get(t.number)
        rows.append(
            {
                "rank": rank,
                "trial": t.number,
                "val_err_pct": 100 * t.value,
                **{key: t.params.get(key) for key in search.params},
                "iters": run.summary.get("iters") if run else None,
                "wall_s": run.summary.get("wall_s") if run else None,
                "run_dir": t.user_attrs.get("run_dir", ""),
            }
        )
    return pd.DataFrame(rows)


def best_markdown(search: Search, df: pd.DataFrame) -> str:
    shown = [
        {
            "rank": str(r["rank"]),
            "trial": str(r["trial"]),
            f"{search.objective} (%)": f"{r['val_err_pct']:.2f}",
            **{key: _value_text(r[key]) for key in search.params},
            "iterations": "—" if pd.isna(r["iters"]) else str(int(r["iters"])),
            "run": f"`{r['run_dir']}`",
        }
        for r in df.head(BEST_SHOWN).to_dict("records")
    ]
    md = markdown(pd.DataFrame(shown))
    others = len(df) - min(len(df), BEST_SHOWN)
    notes = [f"{others} more complete trials in tables/{search.slug}.csv." if others else ""]
    if search.failed:
        reasons = "; ".join(f"trial {t.number}: {t.user_attrs.get('failure', '?')}" for t in search.failed[:5])
        notes.append(f"Failed (FAIL in the study, not drawn): {reasons}" + ("; ..." if len(search.failed) > 5 else ""))
    if running := [t.number for t in search.trials if search.state(t) in ("RUNNING", "WAITING")]:
        notes.append(f"Not finished: trials {', '.join(map(str, running))}.")
    return md + "".join(f"\n{n}\n" for n in notes if n)


def trials_figure(search: Search):
    """One panel per searched parameter: each complete trial's objective against its value, the best starred; a
    failed trial is a cross on the top edge (it has no validation error)."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    params = list(search.params.items())
    if not params or not search.complete:
        return None
    done = search.complete
    values = [100 * t.value for t in done]
    top = max(values) * 1.05 + 0.5
    bottom = max(0.0, min(values) - 0.05 * (top - min(values)) - 0.5)
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(
            1,
            len(params),
            figsize=(min(TEXT_IN, 2.2 * len(params) + 0.4), 2.1),
            sharey=True,
            squeeze=False,
            constrained_layout=True,
        )
        for ax, (key, dist) in zip(axes[0], params):
            choices = getattr(dist, "choices", None)

            def x(trial, key=key, choices=choices):
                value = trial.params.get(key)
                return choices.index(value) if choices is not None and value in choices else value

            ax.scatter([x(t) for t in done], values, s=10, color="C0", zorder=3, label="complete")
            best = done[0]
            ax.scatter([x(best)], [100 * best.value], s=40, marker="*", color="C3", zorder=4, label="best")
            failed = [x(t) for t in search.failed if t.params.get(key) is not None]
            if failed:
                ax.scatter(failed, [top] * len(failed), s=14, marker="x", color="0.4", clip_on=False, label="failed")
            if choices is not None:
                ax.set_xticks(range(len(choices)), [str(c) for c in choices])
            elif getattr(dist, "log", False):
                # Ticks at 1, 2 and 5 of each decade, as plain numbers: a range within one decade still has labels,
                # and matplotlib's 2x10^-2 ... labels between decades would overlap.
                ax.set_xscale("log")
                ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1, 2, 5)))
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
                ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xlabel(key)
            ax.set_ylim(bottom, top)
        axes[0][0].set_ylabel(AXIS_LABEL.get(search.objective, search.objective) + " (%)")
        axes[0][-1].legend(loc="upper right")
    counts = f"{len(search.trials)} trials: {len(done)} complete, {len(search.failed)} failed"
    what = f"Hyperparameter search {search.name} (Optuna TPE; {counts}): objective per trial"
    return titled(fig, f"{what}\n{search.title()}", [search.provenance().short()])


def _final_run_text(search: Search, best, runs: Sequence[Run]) -> str:
    """Where the final run stands: not made yet, made (its test error), or made with other values than the best's."""
    experiment = f"{search.name}_final"
    made = [r for r in runs if r.experiment == experiment]
    if not made:
        return f"Not run yet (its records will be under experiment `{experiment}`)."
    lines = []
    for r in made:
        other = {k: r.cfg(k) for k, v in best.params.items() if not _same(r.cfg(k), v)}
        if other:
            values = ", ".join(f"{k}={_value_text(v)}" for k, v in other.items())
            lines.append(
                f"The run in `{shown_path(r.path)}` used other values ({values}) than trial {best.number}: it is not "
                f"the final run of this search's best setting; run the command above under another experiment_name."
            )
        elif r.complete and tables.final_err(r) is not None:
            lines.append(
                f"Done: {r.model} seed {r.seed}, final test error {100 * tables.final_err(r):.2f}% on the "
                f"{r.protocol.test_text}; the only test error of this search, also in the section of experiment "
                f"{experiment} above (its protocol there)."
            )
        else:
            lines.append(f"{r.label}: not complete yet.")
    return " ".join(lines)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9)
    return a == b


def search_blocks(searches: Sequence[Path], out: Path, runs: Sequence[Run]) -> tuple[list[str], int, int]:
    """The report's blocks of every search (one section), and the numbers of figures and tables written."""
    blocks, n_figures, n_tables = [], 0, 0
    for path in searches:
        found = load_search(path)
        if isinstance(found, str):
            blocks.append(f"Search in `{shown_path(path)}` not shown: {found}.\n")
            continue
        for search in found:
            blocks.append(f"### Search {search.name}\n\nIn `{shown_path(search.path)}`. Trials: {search.title()}.\n")
            fig = trials_figure(search)
            if fig is not None:
                save(fig, out / "figures", search.slug)
                blocks.append(f"![trials of {search.name}](figures/{search.slug}.png)\n\n{search.provenance().line()}")
                n_figures += 1
            df = best_table(search)
            if not len(df):
                blocks.append(f"No complete trial yet ({len(search.trials)} trials).\n")
                continue
            md = best_markdown(search, df)
            tables.write_table(df, md, out / "tables", search.slug)
            blocks.append(f"Best trials (of {len(search.trials)}):\n\n{md}")
            n_tables += 1
            best = search.complete[0]
            blocks.append(
                f"Order of use: (1) the search chose the setting on the validation split only (data.split=paper; "
                f"no trial's test error was read); (2) the chosen setting, trial {best.number}'s, is trained once "
                f"on the full training set (data.split=full) and (3) tested once, at the end of that run:\n\n"
                f"```\n{best.user_attrs.get('final_command', '?')}\n```\n\n{_final_run_text(search, best, runs)}\n"
            )
    if not blocks:
        return [], 0, 0
    intro = (
        "## Hyperparameter searches (validation split only)\n\n"
        "Each trial trained on the training split and was scored on the held-out validation split; the study and "
        "the trials' records are in the search's folder.\n"
    )
    return [intro + "\n" + "\n".join(blocks)], n_figures, n_tables
