"""Evaluate trained networks under the paper's test protocols.

    python scripts/evaluate.py --run results/runs/cifar10/resnet20/seed0
    python scripts/evaluate.py --run results/runs/imagenet/resnet34/seed0 [--protocols center,10crop,multiscale]
    python scripts/evaluate.py --torchvision resnet50 --weights IMAGENET1K_V1 --data-root data/imagenet

Which protocols apply to which data set:
  CIFAR-10, CIFAR-100, Fashion-MNIST: the whole test set (whatever data.limit_test the run had), each image once
    as the trainer evaluates it, for checkpoints/last.pt and checkpoints/best.pt: top-1 error. --protocols,
    --scales, --no-flip, --limit and --workers are ImageNet's and refused for these runs.
  ImageNet: center crop, 10-crop and fully-convolutional multi-scale (--protocols), of checkpoints/last.pt.

A run's results go to its eval.json and summary.json ("eval"); torchvision's to
results/imagenet_torchvision/<model>.json. Runs still in use (training) are refused; runs that are not complete
are refused, or skipped when several are given, unless --allow-incomplete.
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
from resnet_repro.engine.run_dir import is_live
from resnet_repro.errors import UserError

PAPER_SCALES_TEXT = ",".join(map(str, PAPER_SCALES))


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
    ap.add_argument("--checkpoint", help="with one --run: this checkpoint instead of checkpoints/last.pt (and best.pt)")
    ap.add_argument("--allow-incomplete", action="store_true", help="evaluate the last checkpoint of unfinished runs")
    ap.add_argument(
        "--data-root",
        help="the data set's folder (default: the run's data.root); ImageNet: the folder with val/, required with "
        "--torchvision",
    )
    ap.add_argument(
        "--protocols", help="ImageNet: comma-separated subset of " + ",".join(PROTOCOLS) + " (default: all)"
    )
    ap.add_argument("--scales", help=f"ImageNet multiscale: shorter sides (default: the paper's, {PAPER_SCALES_TEXT})")
    ap.add_argument("--no-flip", action="store_true", help="ImageNet multiscale: leave out the mirror images")
    ap.add_argument(
        "--limit", type=int, default=0, help="ImageNet: only N evenly spaced val images (recorded as eval_limited)"
    )
    ap.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    ap.add_argument(
        "--precision",
        default="run",
        choices=("run", "fp32", "bf16"),
        help="run (default): the precision the run trained and evaluated in, so its own numbers repeat; with "
        "--torchvision fp32",
    )
    ap.add_argument("--workers", type=int, help="ImageNet: DataLoader workers (default: the run's data.num_workers)")
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
        protocols=tuple(p.strip() for p in (args.protocols or ",".join(PROTOCOLS)).split(",") if p.strip()),
        scales=_ints(args.scales or PAPER_SCALES_TEXT, "--scales"),
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
    given = {
        "--protocols": args.protocols is not None,
        "--scales": args.scales is not None,
        "--no-flip": args.no_flip,
        "--limit": bool(args.limit),
        "--workers": args.workers is not None,
    }
    imagenet_flags = [flag for flag, is_given in given.items() if is_given]
    evaluated = 0
    for run in args.run:
        if len(args.run) > 1 and is_live(run):
            print(f"skip {run}: in use by another process (training)", file=sys.stderr)
            continue
        if len(args.run) > 1 and not args.allow_incomplete:
            try:
                status = read_json(f"{run}/summary.json").get("status")
            except (OSError, ValueError):
                status = None
            if status != "complete":
                print(f"skip {run}: {status or 'no summary.json'}", file=sys.stderr)
                continue
        results = evaluate_run(
            run,
            options,
            checkpoint=args.checkpoint,
            data_root=args.data_root,
            allow_incomplete=args.allow_incomplete,
            imagenet_flags=imagenet_flags,
        )
        print(f"{run}\n{format_results(results)}")
        evaluated += 1
    if not evaluated:
        raise UserError("no complete run among those given (--allow-incomplete evaluates unfinished ones)")


if __name__ == "__main__":
    main()
