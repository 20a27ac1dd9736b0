"""Live training curves for the Train widget: matplotlib in Qt, at most ~5 redraws per second.

Events only mark the plot dirty; a Qt timer redraws when something changed and at least
``REDRAW_S`` passed since the last draw, so a fast trainer never floods the GUI thread.
No torch here.
"""

from __future__ import annotations

import time
from typing import Any

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QVBoxLayout, QWidget

from ..workflows.train_log import TrainHistory, draw_curves

__all__ = ["REDRAW_S", "LossPlot"]

REDRAW_S = 0.2  # at most 5 redraws per second


class LossPlot(QWidget):
    """Training loss (log y) and validation metrics of one run, drawn with ``draw_curves``."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(5, 2.2), dpi=90)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumHeight(200)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.canvas)
        self.history = TrainHistory("sr")
        self.redraws = 0
        self._dirty = False
        self._last_draw = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(int(REDRAW_S * 1000))
        self._timer.timeout.connect(self._redraw_if_due)

    def start(self, task: str) -> None:
        """Clear the curves for a new run of ``task`` and start the redraw timer."""
        self.history = TrainHistory(task)
        self._dirty = True
        self._timer.start()

    def stop(self) -> None:
        """Stop the timer and draw the final state."""
        self._timer.stop()
        self.redraw()

    def add_loss(self, step: int, losses: dict[str, float], lr: float) -> None:
        self.history.add_loss(step, losses, lr)
        self._dirty = True

    def add_validation(self, step: int, metrics: dict[str, float]) -> None:
        self.history.add_validation(step, metrics)
        self._dirty = True

    def _redraw_if_due(self, *_: Any) -> None:
        if self._dirty and time.monotonic() - self._last_draw >= REDRAW_S:
            self.redraw()

    def redraw(self) -> None:
        """Draw the curves now."""
        draw_curves(self.figure, self.history)
        self.canvas.draw_idle()
        self._dirty = False
        self._last_draw = time.monotonic()
        self.redraws += 1
