"""A tiny text progress bar on stderr, fed by workflow ``Progress`` events (no tqdm)."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``update(step, total, stage)`` redraws ``label [#####.....]  45%  9/20 stage``.

    On a terminal the line is redrawn in place (at most ~10 times a second, always at the end);
    otherwise (logs, tests) one line is printed at each quarter of the work, so logs stay short.
    """

    def __init__(self, label: str, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last_draw = 0.0
        self._last_quarter = -1
        self._open = False

    def update(self, step: int, total: int, stage: str = "") -> None:
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

    def close(self) -> None:
        """End the redrawn line (idempotent)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False
