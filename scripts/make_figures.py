#!/usr/bin/env python
"""Figures 1, 6, 7, 4, Table 6, ImageNet Tables 2-4 and REPORT.md from the run records (or a W&B project)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

import pandas as pd

from resnet_repro.analysis import curves, responses, tables
from resnet_repro.analysis.report import build_report
from resnet_repro.analysis.runs import find_partial_dirs, load_runs, load_wandb_runs, pick_experiment
from resnet_repro.cli import exit_on_user_error


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", default="results/runs", help="root of the run directories (default: results/runs)")
    ap.add_argument("--out", default="results", help="writes OUT/figures, OUT/tables, OUT/REPORT.md")
    ap.add_argument("--wandb", metavar="ENTITY/PROJECT", help="read the runs from W&B instead of --runs")
    ap.add_argument("--experiment", help="CIFAR experiment to plot (default: the one with the most complete runs)")
    args = ap.parse_args(argv)

    runs = load_wandb_runs(args.wandb) if args.wandb else load_runs(args.runs)
    source = f"W&B project {args.wandb}" if args.wandb else f"run records under {args.runs}"
    if not runs:
        partial = [] if args.wandb else find_partial_dirs(args.runs)
        what = (f"{len(partial)} run directories without summary.json (e.g. {partial[0]})" if partial
                else "no run records (summary.json)")
        print(f"make_figures: {what} in {args.wandb or args.runs}; train first with `make reproduce-cifar` "
              f"(or `make demo` for a short run), then run this again.", file=sys.stderr)
        return 1

    out = Path(args.out)
    figs, tabs, notes = {}, {}, []
    cifar, others = pick_experiment(runs, "cifar", args.experiment)
    if others:
        notes.append(f"CIFAR figures and Table 6 show experiment '{cifar[0].experiment}'; left out: {', '.join(others)}.")
    if cifar:
        curves.save(curves.figure1(cifar), out / "figures", "fig1")
        curves.save(curves.figure6(cifar), out / "figures", "fig6")
        figs["Figure 1: plain-20 vs plain-56 on CIFAR-10"] = "figures/fig1.png"
        figs["Figure 6: training on CIFAR-10 (dashed: training error, bold: test error)"] = "figures/fig6.png"
        df = tables.table6(cifar)
        md = tables.table6_markdown(df, cifar)
        tables.write_table(df, md, out / "tables", "table6")
        tabs["Table 6: CIFAR-10 test error"] = md

    resp_csv = out / "tables" / "fig7_responses.csv"
    if resp_csv.exists():
        curves.save(responses.figure7(pd.read_csv(resp_csv)), out / "figures", "fig7")
        figs["Figure 7: std of layer responses on CIFAR-10 (top: original order, bottom: sorted)"] = "figures/fig7.png"
    elif cifar:
        notes.append("Figure 7 not made: run `python scripts/layer_responses.py` first (it writes tables/fig7_responses.csv).")

    imagenet = [r for r in runs if r.family == "imagenet"]
    if imagenet:
        curves.save(curves.figure4(imagenet), out / "figures", "fig4")
        figs["Figure 4: training on ImageNet (thin: training error, bold: validation error)"] = "figures/fig4.png"
        for t, df in tables.imagenet_tables(imagenet).items():
            md = tables.imagenet_markdown(df)
            tables.write_table(df, md, out / "tables", f"table{t}")
            tabs[f"Table {t}: ImageNet"] = md

    command = "python " + " ".join(shlex.quote(a) for a in [os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)])
    build_report(cifar + imagenet, out, tables=tabs, figures=figs, notes=notes, command=command, source=source)
    print(f"make_figures: {len(figs)} figures, {len(tabs)} tables, report in {out / 'REPORT.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
