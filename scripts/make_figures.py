#!/usr/bin/env python
"""Figures and tables in the layout of the paper's Figures 1, 4, 6, 7 and Tables 2-4, 6 (on CIFAR-100: Table 6's
rows without the paper's columns), seed statistics, the peers' numbers, the loss landscapes that
scripts/loss_landscape.py computed (fig_landscape), the hyperparameter searches (their trials on the validation split,
the best trials, the final run's command) and REPORT.md, from the run records (or a W&B project). Runs of different
protocols (data set, schedule, split, test set) get separate, titled tables and figures."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from resnet_repro.analysis.common import shown_path
from resnet_repro.analysis.report import write_report
from resnet_repro.analysis.runs import find_partial_dirs, load_runs, load_wandb_runs
from resnet_repro.analysis.search import find_searches
from resnet_repro.cli import exit_on_user_error
from resnet_repro.errors import UserError
from resnet_repro.io import incomplete_without_room, writable_folder


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", default="results/runs", help="root of the run directories (default: results/runs)")
    ap.add_argument("--out", default="results", help="writes OUT/figures, OUT/tables, OUT/REPORT.md")
    ap.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead of --runs")
    ap.add_argument("--experiment", help="report only this experiment (default: all, one section per protocol)")
    ap.add_argument(
        "--search",
        action="append",
        default=[],
        metavar="DIR",
        help="also report the hyperparameter search in DIR, its sweep directory (those under --runs are found)",
    )
    args = ap.parse_args(argv)

    runs = load_wandb_runs(args.wandb) if args.wandb else load_runs(args.runs)
    source = f"W&B project {args.wandb}" if args.wandb else f"run records under {shown_path(args.runs)}"
    searches = sorted({*([] if args.wandb else find_searches(args.runs)), *map(Path, args.search)})
    if not runs and not searches:
        partial = [] if args.wandb else find_partial_dirs(args.runs)
        what = (
            f"{len(partial)} run directories without summary.json (e.g. {partial[0]})"
            if partial
            else "no run records (summary.json)"
        )
        raise UserError(
            f"{what} in {args.wandb or shown_path(args.runs)}: train first with `make reproduce-cifar` "
            f"(or `make demo` for a short run), then run this again"
        )

    out = writable_folder(Path(args.out), "--out")  # before any figure is drawn
    command = "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)]
    )
    # REPORT.md is written last: removed, it never stands over figures and tables only half replaced
    with incomplete_without_room(
        out / "REPORT.md", f"the figures and tables in {out}", "the report there is incomplete (no REPORT.md)"
    ):
        _, n_figures, n_tables = write_report(
            runs, out, command=command, source=source, experiment=args.experiment, searches=searches
        )
    print(f"make_figures: {n_figures} figures, {n_tables} tables, report in {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
