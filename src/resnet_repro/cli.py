"""What the scripts share: one-line errors for what a user can fix, and the training entry point under Hydra."""

from __future__ import annotations

import functools
import logging
import sys

from .errors import UserError

log = logging.getLogger("resnet_repro")


def exit_on_user_error(main):
    """Print a UserError as one line on stderr and exit with status 2; everything else is a bug and keeps its traceback."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None

    return wrapper
