"""Figures a microscopist can read: every image panel has a scale bar in µm and a colour bar
labelled with its unit (ADU, relative intensity, rad, dimensionless λ).

Used by `napari-cvdm demo` and the documentation figures. matplotlib only (Agg); no torch, Qt
or napari.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Panel", "figure_of", "nice_length_um", "save_panels"]

#: lengths a scale bar may take, in µm
_NICE_UM = (0.1, 0.2, 0.25, 0.5, 1, 2, 2.5, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000)


@dataclass(frozen=True)
class Panel:
    """One image panel: ``image`` (Y, X), its title, colormap, the unit of its values (the
    colour bar's label) and the field of view's width in µm (None: no scale bar)."""

    title: str
    image: Any
    cmap: str = "gray"
    unit: str = ""
    field_um: float | None = None


def nice_length_um(field_um: float, fraction: float = 0.25) -> float:
    """The largest 'round' length (1, 2, 2.5, 5 × 10ⁿ µm) not above ``fraction`` of the field."""
    target = fraction * float(field_um)
    fitting = [v for v in _NICE_UM if v <= target]
    return float(fitting[-1] if fitting else _NICE_UM[0])


def _label(length_um: float) -> str:
    return f"{length_um:g} µm"


def add_scale_bar(ax: Any, field_um: float, width_px: int, height_px: int) -> float:
    """Draw a white bar with its length in µm in the lower left of ``ax``; returns the length."""
    from matplotlib.patches import Rectangle

    length = nice_length_um(field_um)
    px = length / (field_um / width_px)
    x0, y0 = 0.05 * width_px, 0.92 * height_px
    bar_h = max(1.0, 0.015 * height_px)
    ax.add_patch(Rectangle((x0, y0), px, bar_h, color="white", ec="black", lw=0.5))
    ax.text(
        x0 + px / 2,
        y0 - 0.02 * height_px,
        _label(length),
        color="white",
        ha="center",
        va="bottom",
        fontsize=8,
        fontweight="bold",
        path_effects=_outline(),
    )
    return length


def _outline() -> list[Any]:
    from matplotlib import patheffects

    return [patheffects.withStroke(linewidth=1.5, foreground="black")]


def figure_of(panels: list[Panel], title: str) -> Any:
    """A row of panels with colour bars (labelled with the unit) and scale bars, as a Figure."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3.2 * len(panels), 3.6), layout="constrained")
    FigureCanvasAgg(fig)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, panel in zip(axes, panels):
        data = np.asarray(panel.image, dtype=np.float32)
        finite = data[np.isfinite(data)]
        lo, hi = np.percentile(finite, [0.5, 99.5]) if finite.size else (0.0, 1.0)
        shown = ax.imshow(
            data, cmap=panel.cmap, vmin=lo, vmax=hi if hi > lo else lo + 1, interpolation="nearest"
        )
        ax.set_title(panel.title, fontsize=10)
        ax.set_axis_off()
        bar = fig.colorbar(shown, ax=ax, shrink=0.75)
        bar.set_label(panel.unit, fontsize=9)
        if panel.field_um:
            add_scale_bar(ax, panel.field_um, data.shape[-1], data.shape[-2])
    fig.suptitle(title, fontsize=10)
    return fig


def save_panels(path: str | os.PathLike, panels: list[Panel], title: str) -> Path:
    """Write :func:`figure_of` as a PNG (a temporary file renamed into place; umask honoured)."""
    from .fsutil import temp_path

    path = Path(path)
    fig = figure_of(panels, title)
    tmp = temp_path(path, ".png")
    try:
        fig.savefig(tmp, dpi=110)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
