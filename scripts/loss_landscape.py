#!/usr/bin/env python
"""Loss landscapes of trained runs (Li et al. 2018): the loss along the straight line from checkpoints/init.pt to
checkpoints/last.pt, and the surface around the final weights along two random filter-normalized directions, on a
fixed subset of the training images, in eval mode after BN's running statistics are recomputed for the weights of
each point on those images. Writes <run>/landscape/{surface,line}.csv and landscape.json; `make figures` draws them
(fig_landscape). A result already made with the same options and checkpoint is kept."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from resnet_repro.analysis.common import shown_path
from resnet_repro.analysis.landscape import Options, compute, run_configs
from resnet_repro.cli import exit_on_user_error
from resnet_repro.engine.distributed import resolve_device
from resnet_repro.errors import UserError
from resnet_repro.io import incomplete_without_room, writable_folder


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    defaults = Options()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument(
        "--run",
        nargs="+",
        required=True,
        metavar="DIR",
        help="run directories (with config.yaml and "
        "checkpoints/); several share one image subset where their data configs agree",
    )
    ap.add_argument(
        "--grid", type=int, default=defaults.grid, help=f"points per axis of the surface, odd (default {defaults.grid})"
    )
    ap.add_argument(
        "--span",
        type=float,
        default=defaults.span,
        help=f"the surface covers [-SPAN, SPAN]^2 (default {defaults.span:g})",
    )
    ap.add_argument(
        "--line-points",
        type=int,
        default=defaults.line_points,
        help=f"points from the initial to the final weights (default {defaults.line_points})",
    )
    ap.add_argument(
        "--images",
        type=int,
        default=defaults.images,
        help=f"training images in the fixed subset (default {defaults.images})",
    )
    ap.add_argument("--seed", type=int, default=defaults.direction_seed, help="seed of the random directions")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--data-root", help="default: each run's own data.root")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--out", help="output folder (one --run only; default: <run>/landscape)")
    ap.add_argument("--force", action="store_true", help="recompute even where an up-to-date result exists")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    if args.out and len(args.run) > 1:
        raise UserError("--out takes one --run: with several runs each result goes to <run>/landscape")
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: choose 1 or more")

    options = Options(
        grid=args.grid, span=args.span, line_points=args.line_points, images=args.images, direction_seed=args.seed
    )
    command = "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)]
    )
    # Every run and every output folder before the first (long) computation; nothing is made for a run that is not one.
    for run in args.run:
        run_configs(Path(run))
    outs = {run: writable_folder(args.out or os.path.join(run, "landscape"), "--out") for run in args.run}
    cache: dict = {}
    for run in args.run:
        # landscape.json is written last and marks a whole result: without it the next run computes it again
        with incomplete_without_room(
            outs[run] / "landscape.json", f"the loss landscape in {outs[run]}", "the result there is incomplete"
        ):
            meta, computed = compute(
                run,
                options,
                out_dir=outs[run],
                device=device,
                batch_size=args.batch_size,
                data_root=args.data_root,
                command=command,
                force=args.force,
                subset_cache=cache,
            )
        where = shown_path(outs[run])
        if not computed:
            print(f"loss_landscape: {where} is up to date (same options and checkpoint; --force recomputes)")
            continue
        points = f"{options.grid}x{options.grid} surface" + (
            f" and {options.line_points}-point line" if meta["init"] else " (no line: " + meta["line"] + ")"
        )
        print(
            f"loss_landscape: {meta['model']} seed {meta['seed']}: {points} on {options.images} training images "
            f"in {meta['wall_s']:.0f} s on {meta['device']} -> {where}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
