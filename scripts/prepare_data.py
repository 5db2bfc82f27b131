"""Download and verify a data set once, before a sweep: python scripts/prepare_data.py cifar10 --root data/cifar10."""

import argparse

from resnet_repro.cli import exit_on_user_error
from resnet_repro.data.small_images import CIFAR_FILES, DOWNLOAD_TIMEOUT_S, load_cifar
from resnet_repro.errors import UserError


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("dataset", choices=sorted(CIFAR_FILES))
    parser.add_argument("--root", required=True, help="directory that will hold the unpacked archive")
    parser.add_argument(
        "--root-setting",
        default="--root ",
        help="how the command that was typed sets the root, for its error messages (make passes CIFAR_ROOT=)",
    )
    parser.add_argument(
        "--download-timeout",
        type=float,
        default=DOWNLOAD_TIMEOUT_S,
        metavar="SECONDS",
        help=f"how long the download waits for the network at each step (default {DOWNLOAD_TIMEOUT_S:g})",
    )
    args = parser.parse_args()
    if args.download_timeout <= 0:
        raise UserError(f"--download-timeout {args.download_timeout:g}: give a positive number of seconds")
    for train in (True, False):
        arrays = load_cifar(
            args.dataset,
            args.root,
            train=train,
            download=True,
            root_setting=args.root_setting,
            download_timeout_s=args.download_timeout,
        )
        print(f"{args.dataset} {'train' if train else 'test'}: {len(arrays)} images verified in {args.root}")


if __name__ == "__main__":
    main()
