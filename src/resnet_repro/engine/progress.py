"""What a person watching a run sees: a tqdm bar on a terminal, plain log lines at each evaluation otherwise."""

from __future__ import annotations

import logging
import sys
from typing import Any

log = logging.getLogger("resnet_repro.train")


class Progress:
    def __init__(self, style: str, start: int, total: int, enabled: bool = True):
        """style: auto (bar on a terminal, else log) | bar | log | none; `enabled` is False on all but process 0."""
        if not enabled:
            style = "none"
        elif style == "auto":
            style = "bar" if sys.stderr.isatty() else "log"
        self.style, self.bar = str(style), None
        if self.style == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="it", dynamic_ncols=True, file=sys.stderr)

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def report(self, row: dict[str, Any]) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"lr {row['lr']:.3g} loss {row['train_loss']:.3f} {row['img_per_s']:.0f} img/s")
        elif self.style == "log":
            text = (
                f"iter {row['iter']} epoch {row['epoch']:.1f} lr {row['lr']:.4g} loss {row['train_loss']:.3f} "
                f"train_err {100 * row['train_err']:.2f}%"
                + (f" test_err {100 * row['test_err']:.2f}%" if "test_err" in row else "")
                + f" {row['img_per_s']:.0f} img/s"
            )
            if "val_err" in row:
                text += f" val_err {100 * row['val_err']:.2f}%"
            log.info(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
