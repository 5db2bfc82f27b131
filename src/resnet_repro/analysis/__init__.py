"""Figures, tables and the report from run records (results/runs/<experiment>/<model>/seed<k>/)."""

from .runs import Run, find_run_dirs, load_run, load_runs, run_from_wandb

__all__ = ["Run", "find_run_dirs", "load_run", "load_runs", "run_from_wandb"]
