#!/usr/bin/env python
"""Figure 7: std of each 3x3 layer's response on the test set for plain-20/56 and ResNet-20/56/110.

Uses one run per net (the complete run with the lowest seed) and its checkpoints/last.pt; one figure per protocol
(data set, schedule, split), with the same file names as make_figures.py gives that protocol's other figures.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path

import pandas as pd

from resnet_repro.analysis.common import save, shown_path
from resnet_repro.analysis.provenance import machine
from resnet_repro.analysis.responses import (
    FIG7_MODELS,
    figure7,
    layer_responses,
    load_trained_model,
    normalized_test_set,
    pick_fig7_runs,
    responses_frame,
)
from resnet_repro.analysis.runs import group_runs, load_runs
from resnet_repro.cli import exit_on_user_error
from resnet_repro.engine.distributed import resolve_device
from resnet_repro.errors import UserError


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", default="results/runs")
    ap.add_argument("--out", default="results", help="writes OUT/tables/fig7_responses.csv and OUT/figures/fig7.*")
    ap.add_argument("--data-root", help="default: each run's own data.root")
    ap.add_argument("--dataset", help="only runs on this data set (default: any; the runs' own test set is used)")
    ap.add_argument("--batch-size", type=int, default=500)
    ap.add_argument("--experiment", help="only this experiment (default: all; one Figure 7 per protocol)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument(
        "--skip-if-none",
        action="store_true",
        help="no run to draw Figure 7 from is a note, not an error (make figures: e.g. ImageNet runs only)",
    )
    args = ap.parse_args(argv)
    device = resolve_device(args.device)

    groups, _ = group_runs(load_runs(args.runs), args.experiment)
    groups = [g for g in groups if g.family == "cifar" and args.dataset in (None, g.protocol.dataset)]
    chosen_by_group = [(g, chosen) for g in groups if (chosen := pick_fig7_runs(g.runs))]
    if not chosen_by_group:
        missing = (
            f"no complete {args.dataset or 'CIFAR-style'} run of {', '.join(FIG7_MODELS)} under "
            f"{shown_path(args.runs)}: train them first (`make reproduce-cifar`)"
        )
        if not args.skip_if_none:
            raise UserError(missing)
        print(f"layer_responses: Figure 7 skipped: {missing}")
        return 0

    out = Path(args.out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    command = "python " + " ".join(
        shlex.quote(a) for a in [os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)]
    )
    test_sets = {}
    for group, chosen in chosen_by_group:  # one Figure 7 per protocol: responses of two protocols are never mixed
        missing = [m for m in FIG7_MODELS if m not in chosen]
        if missing:
            print(
                f"layer_responses: {group.protocol.heading}: no complete run of {', '.join(missing)}; "
                f"Figure 7 will lack them.",
                file=sys.stderr,
            )
        t0 = time.time()
        frames = []
        for model_name, run in chosen.items():
            # the per-pixel mean is that of the run's own training split; runs with the same split share it
            data_root = args.data_root or run.cfg("data.root")
            key = (
                run.dataset,
                data_root,
                run.cfg("data.split"),
                run.cfg("data.val_size"),
                run.cfg("data.limit_train"),
                run.cfg("data.limit_test"),
            )
            if key not in test_sets:
                test_sets[key] = normalized_test_set(run, data_root, run.dataset)
            images = test_sets[key]
            model = load_trained_model(run, device=device)
            frames.append(responses_frame(model_name, run.seed, layer_responses(model, images, args.batch_size)))
            print(f"layer_responses: {model_name} seed {run.seed}: {len(frames[-1])} layers")
        df = pd.concat(frames, ignore_index=True)
        df.to_csv(out / "tables" / f"fig7_responses{group.suffix}.csv", index=False)
        meta = {
            "command": command,
            "group": group.protocol.slug,
            "protocol": group.protocol.title,
            "runs": {m: shown_path(r.path) for m, r in chosen.items()},
            "device": str(device),
            "hardware": machine(device),
            "wall_s": time.time() - t0,
            "test_images": len(images),
        }
        (out / "tables" / f"fig7_responses{group.suffix}.json").write_text(json.dumps(meta, indent=2) + "\n")
        save(
            figure7(df, f"std of layer responses on the test set\n{group.protocol.title}"),
            out / "figures",
            f"fig7{group.suffix}",
        )
        print(
            f"layer_responses: wrote {out / 'tables' / f'fig7_responses{group.suffix}.csv'} and "
            f"{out / 'figures' / f'fig7{group.suffix}.png'}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
