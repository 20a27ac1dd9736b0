"""The CLI's one progress bar on stderr, fed by workflow events (no tqdm).

:class:`ProgressBar` draws one line, redrawn in place on a terminal and printed as separate
lines otherwise (logs, tests), so logs stay short. Two layouts of the same bar:

* jobs (``predict``, ``restore``, Dask batches): ``update(step, total, stage)`` draws
  ``label [#####.....]  45%  9/20 stage``; on a terminal at most ~10 times a second (always at
  the end), in a log one line at each quarter of the work;
* training (``train``): ``train_step(step, loss)`` draws ``step 5/10 [######......] 2.1 it/s ETA
  0:00:03 loss 0.5 | val psnr 21.5`` with the rate since the first step, the smoothed loss and
  the last validation (:attr:`validation`); on a terminal every 0.25 s, in a log every 30 s.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar", "format_time"]


def format_time(seconds: float) -> str:
    """``H:MM:SS`` of a duration in seconds (negative counts as 0)."""
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class ProgressBar:
    """One progress line on ``stream`` (default stderr); see the module doc for the layouts.

    ``label`` and ``width`` (30) are the job layout's; ``total`` (optimiser steps) and ``first``
    (the step a resumed run starts after) are the training layout's, whose bar is 24 wide.
    """

    def __init__(
        self,
        label: str = "",
        stream: TextIO | None = None,
        width: int = 30,
        *,
        total: int = 0,
        first: int = 0,
    ) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.total = total
        self.first = first
        self.started = time.perf_counter()
        self.loss: float | None = None
        #: the last validation, shown after the loss (training layout)
        self.validation = ""
        self._last_draw = -1e9
        self._last_quarter = -1
        self._open = False
        self._closed = False

    def update(self, step: int, total: int, stage: str = "") -> None:
        """Job layout: ``step`` of ``total`` done, in ``stage``."""
        total = max(int(total), 1)
        fraction = min(max(step / total, 0.0), 1.0)
        filled = int(round(fraction * self.width))
        line = (
            f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] "
            f"{100 * fraction:3.0f}%  {step}/{total}" + (f"  {stage}" if stage else "")
        )
        if self.tty:
            now = time.monotonic()
            if step >= total or now - self._last_draw >= 0.1:
                self.stream.write("\r" + line)
                self.stream.flush()
                self._last_draw = now
                self._open = True
            if step >= total:
                self.close()
        else:
            quarter = int(fraction * 4)
            if quarter != self._last_quarter:
                self._last_quarter = quarter
                self.stream.write(line + "\n")
                self.stream.flush()

    def train_step(self, step: int, loss: float | None = None, force: bool = False) -> None:
        """Training layout: record optimiser step ``step`` (and its total loss, smoothed) and
        redraw when due (``force``: now)."""
        if loss is not None:
            self.loss = loss if self.loss is None else 0.95 * self.loss + 0.05 * loss
        now = time.perf_counter()
        if not force and now - self._last_draw < (0.25 if self.tty else 30.0):
            return
        self._last_draw = now
        done = step - self.first
        rate = done / max(now - self.started, 1e-9)
        eta = (self.total - step) / rate if rate > 0 else 0.0
        width = 24
        filled = int(width * step / max(self.total, 1))
        bar = "#" * filled + "." * (width - filled)
        text = (
            f"step {step}/{self.total} [{bar}] {rate:.3g} it/s ETA {format_time(eta)}"
            + (f" loss {self.loss:.4g}" if self.loss is not None else "")
            + (f" | {self.validation}" if self.validation else "")
        )
        self.stream.write(("\r" + text + "\033[K") if self.tty else text + "\n")
        self.stream.flush()
        self._open = self.tty

    def close(self) -> None:
        """End the redrawn line (idempotent); a training bar on a terminal always ends it."""
        if self._open or (self.tty and self.total and not self._closed):
            self._closed = True
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
