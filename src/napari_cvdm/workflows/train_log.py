"""Training history: the CSV log, the loss/validation figure (CLI PNG and the Train widget).

No torch, no Qt: :func:`draw_curves` draws on any matplotlib ``Figure`` (an Agg figure for the
PNG, the widget's ``FigureCanvasQTAgg`` figure for live curves).
"""

from __future__ import annotations

import csv
import io
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .checkpoint import write_bytes_atomic

__all__ = ["TrainHistory", "draw_curves", "log_paths", "write_png"]


def _validation_keys(task: str) -> tuple[str, ...]:
    """The validation columns of a task's log: the loss and the task's validation metrics."""
    from .. import tasks

    if task not in tasks.names(trainable=True):
        return ()
    return tasks.get(task).validation_keys


def log_paths(output: str | os.PathLike) -> tuple[Path, Path]:
    """The CSV log and PNG figure next to a model file: ``M.log.csv``, ``M.curves.png``."""
    output = Path(output)
    stem = output.name.removesuffix(".safetensors")
    return output.with_name(f"{stem}.log.csv"), output.with_name(f"{stem}.curves.png")


@dataclass
class TrainHistory:
    """Per-step losses and learning rate, and validation metrics at their steps."""

    task: str
    steps: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    losses: dict[str, list[float]] = field(default_factory=dict)
    validation: dict[int, dict[str, float]] = field(default_factory=dict)

    def add_loss(self, step: int, losses: dict[str, float], lr: float) -> None:
        """Record one ``LossReport``."""
        n = len(self.steps)
        self.steps.append(int(step))
        self.lr.append(float(lr))
        for key, value in losses.items():
            self.losses.setdefault(key, [math.nan] * n).append(float(value))
        for values in self.losses.values():
            if len(values) < n + 1:
                values.append(math.nan)

    def add_validation(self, step: int, metrics: dict[str, float]) -> None:
        """Record one ``Validation``."""
        self.validation[int(step)] = {k: float(v) for k, v in metrics.items()}

    def columns(self) -> list[str]:
        """CSV header: step, lr, total, the other loss terms, then val_<metric>."""
        terms = ["total"] + sorted(k for k in self.losses if k != "total")
        vals = list(_validation_keys(self.task))
        for metrics in self.validation.values():
            vals += [k for k in metrics if k not in vals]
        return ["step", "lr", *terms, *(f"val_{k}" for k in vals)]

    def to_csv(self) -> str:
        """The whole log as CSV text (one row per step; empty cells where nothing was measured)."""
        cols = self.columns()
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(cols)
        for i, step in enumerate(self.steps):
            row: list[Any] = [step, f"{self.lr[i]:.6g}"]
            for col in cols[2:]:
                if col.startswith("val_"):
                    value = self.validation.get(step, {}).get(col[4:])
                else:
                    value = self.losses.get(col, [math.nan] * len(self.steps))[i]
                row.append("" if value is None or math.isnan(value) else f"{value:.6g}")
            writer.writerow(row)
        return buffer.getvalue()

    def write_csv(self, path: str | os.PathLike) -> None:
        """Write the log atomically."""
        write_bytes_atomic(Path(path), self.to_csv().encode())

    @classmethod
    def read_csv(
        cls, path: str | os.PathLike, task: str, up_to_step: int | None = None
    ) -> TrainHistory:
        """Read a log written by :meth:`write_csv`, keeping rows with step ≤ ``up_to_step``."""
        history = cls(task)
        with open(path, newline="") as handle:
            for row in csv.DictReader(handle):
                step = int(row["step"])
                if up_to_step is not None and step > up_to_step:
                    continue
                losses = {
                    k: float(v)
                    for k, v in row.items()
                    if k not in ("step", "lr") and not k.startswith("val_") and v not in ("", None)
                }
                history.add_loss(step, losses, float(row["lr"] or 0.0))
                vals = {k[4:]: float(v) for k, v in row.items() if k.startswith("val_") and v}
                if vals:
                    history.add_validation(step, vals)
        return history


def _smooth(values: list[float], window: int) -> list[float]:
    out, acc, count = [], 0.0, 0
    alpha = 2.0 / (window + 1)
    for v in values:
        if math.isnan(v):
            out.append(out[-1] if out else math.nan)
            continue
        acc = v if count == 0 else alpha * v + (1 - alpha) * acc
        count += 1
        out.append(acc)
    return out


def draw_curves(figure: Any, history: TrainHistory) -> None:
    """Draw the training loss (log y, raw + smoothed, with the validation loss) and the
    validation metrics against the step on ``figure`` (cleared first)."""
    figure.clear()
    ax_loss, ax_val = figure.subplots(1, 2)
    total = history.losses.get("total", [])
    if history.steps and total:
        ax_loss.plot(history.steps, total, color="0.75", linewidth=0.8, label="train (per step)")
        window = max(5, len(total) // 50)
        ax_loss.plot(history.steps, _smooth(total, window), color="C0", label="train (smoothed)")
    val_steps = sorted(history.validation)
    val_loss = [history.validation[s].get("loss", math.nan) for s in val_steps]
    if val_steps and any(not math.isnan(v) for v in val_loss):
        ax_loss.plot(val_steps, val_loss, "o-", color="C1", markersize=3, label="validation")
    if any(v > 0 for v in total if not math.isnan(v)) or any(v > 0 for v in val_loss):
        ax_loss.set_yscale("log")
    ax_loss.set_xlabel("step")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("loss")
    if history.steps:
        ax_loss.legend(fontsize="small")
    names = [k for k in _validation_keys(history.task) if k != "loss"]
    if not val_steps:
        names = []
        ax_val.text(
            0.5,
            0.5,
            "no validation yet",
            ha="center",
            va="center",
            transform=ax_val.transAxes,
            color="0.5",
        )
    for index, name in enumerate(names):
        axis = ax_val if index == 0 else ax_val.twinx()
        values = [history.validation[s].get(name, math.nan) for s in val_steps]
        axis.plot(val_steps, values, "o-", color=f"C{index + 2}", markersize=3, label=name)
        axis.set_ylabel(
            {"psnr": "PSNR (dB)", "ssim": "SSIM", "phase_mae": "phase MAE (rad)"}.get(name, name)
        )
    ax_val.set_xlabel("step")
    ax_val.set_title("validation")
    figure.tight_layout()


def write_png(path: str | os.PathLike, history: TrainHistory) -> None:
    """Render :func:`draw_curves` with Agg (no display needed) and write the PNG atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(10, 4), dpi=100)
    FigureCanvasAgg(figure)
    draw_curves(figure, history)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    write_bytes_atomic(Path(path), buffer.getvalue())
