"""Evaluate ImageNet networks under the paper's test protocols (center crop, 10-crop, fully-convolutional multi-scale).

    python scripts/evaluate.py --run results/runs/imagenet/resnet34/seed0 [--protocols center,10crop,multiscale]
    python scripts/evaluate.py --torchvision resnet50 --weights IMAGENET1K_V1 --data-root data/imagenet

A run's results go to its eval.json and summary.json ("eval"); torchvision's to
results/imagenet_torchvision/<model>.json.
The protocols and their details: src/resnet_repro/engine/evaluate.py.
"""

import argparse
import logging
import sys

from resnet_repro.cli import exit_on_user_error
from resnet_repro.engine.evaluate import (
    PAPER_SCALES,
    PROTOCOLS,
    TORCHVISION_DEFAULT_WEIGHTS,
    TORCHVISION_MODELS,
    TORCHVISION_OUT,
    EvalOptions,
    evaluate_run,
    evaluate_torchvision,
    format_results,
)
from resnet_repro.engine.records import read_json
from resnet_repro.errors import UserError


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = ap.add_mutually_exclusive_group(required=True)
    what.add_argument(
        "--run",
        nargs="+",
        metavar="DIR",
        help="run directories (config.yaml + checkpoints/); runs that "
        "are not complete are skipped when several are given",
    )
    what.add_argument(
        "--torchvision",
        choices=TORCHVISION_MODELS,
        metavar="MODEL",
        help=f"evaluate torchvision's released weights of MODEL ({', '.join(TORCHVISION_MODELS)})",
    )
    ap.add_argument(
        "--weights",
        default=TORCHVISION_DEFAULT_WEIGHTS,
        help="with --torchvision: a saved state_dict file, or a torchvision weights name (downloaded; "
        f"default {TORCHVISION_DEFAULT_WEIGHTS}, the classic recipe; DEFAULT is V2 for resnet50+)",
    )
    ap.add_argument("--checkpoint", help="with one --run: this checkpoint instead of checkpoints/last.pt")
    ap.add_argument("--allow-incomplete", action="store_true", help="evaluate the last checkpoint of unfinished runs")
    ap.add_argument(
        "--data-root", help="ImageNet folder with val/ (default: the run's data.root; required with --torchvision)"
    )
    ap.add_argument("--protocols", default=",".join(PROTOCOLS), help="comma-separated subset of " + ",".join(PROTOCOLS))
    ap.add_argument(
        "--scales", default=",".join(map(str, PAPER_SCALES)), help="multiscale: shorter sides (paper's default)"
    )
    ap.add_argument("--no-flip", action="store_true", help="multiscale: leave out the mirror images")
    ap.add_argument("--limit", type=int, default=0, help="only N evenly spaced val images (recorded as eval_limited)")
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    ap.add_argument("--workers", type=int, help="DataLoader workers (default: the run's data.num_workers)")
    ap.add_argument("--batch-size", type=int, help="images per batch (default: the run's data.eval_batch_size)")
    ap.add_argument("--out", default=str(TORCHVISION_OUT), help="with --torchvision: folder of <model>.json")
    ap.add_argument(
        "--data",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="with --torchvision: data option overrides, e.g. --data scale_min=256 (integers only)",
    )
    return ap.parse_args(argv)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise UserError(f"{what} must be comma-separated integers, got {text!r}") from None


@exit_on_user_error
def main(argv=None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    options = EvalOptions(
        protocols=tuple(p.strip() for p in args.protocols.split(",") if p.strip()),
        scales=_ints(args.scales, "--scales"),
        flip=not args.no_flip,
        limit=args.limit,
        device=args.device,
        precision=args.precision,
        num_workers=args.workers,
        batch_size=args.batch_size,
    )
    if args.torchvision:
        if not args.data_root:
            raise UserError("--torchvision needs --data-root (the ImageNet folder holding val/)")
        overrides = {}
        for item in args.data:
            key, _, value = item.partition("=")
            overrides[key] = int(_ints(value, f"--data {key}")[0])
        out = evaluate_torchvision(args.torchvision, args.weights, args.data_root, options, args.out, overrides)
        print(f"{args.torchvision} ({out['weights']}) -> {out['path']}\n{format_results(out['eval'])}")
        return
    if args.checkpoint and len(args.run) > 1:
        raise UserError("--checkpoint goes with a single --run")
    evaluated = 0
    for run in args.run:
        if len(args.run) > 1 and not args.allow_incomplete:
            try:
                status = read_json(f"{run}/summary.json").get("status")
            except (OSError, ValueError):
                status = None
            if status != "complete":
                print(f"skip {run}: {status or 'no summary.json'}", file=sys.stderr)
                continue
        results = evaluate_run(
            run, options, checkpoint=args.checkpoint, data_root=args.data_root, allow_incomplete=args.allow_incomplete
        )
        print(f"{run}\n{format_results(results)}")
        evaluated += 1
    if not evaluated:
        raise UserError("no complete run among those given (--allow-incomplete evaluates unfinished ones)")


if __name__ == "__main__":
    main()
