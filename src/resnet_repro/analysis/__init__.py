"""Figures, tables and the report from run records (results/runs/<experiment>/<model>/seed<k>/)."""

from .runs import Group, Run, find_run_dirs, group_runs, load_run, load_runs, run_from_wandb

__all__ = ["Group", "Run", "find_run_dirs", "group_runs", "load_run", "load_runs", "run_from_wandb"]
