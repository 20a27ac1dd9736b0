"""`napari-cvdm models`: list the available models (bundled and user-trained)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

__all__ = ["add_parser", "format_table", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list the available models",
        description=(
            "List bundled and user-trained models (name, task, size, pixel size, source). "
            "User models live in <cache>/models; NAPARI_CVDM_CACHE_DIR overrides the cache."
        ),
    )
    parser.add_argument(
        "--task",
        choices=("sr", "qpi", "prior"),
        help="only models of this task (prior: the zero-shot restore priors)",
    )
    return parser


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB" if n_bytes >= 1e5 else f"{n_bytes / 1e3:.0f} kB"


def format_table(infos: list[Any]) -> str:
    """A plain-text table of :class:`~napari_cvdm.engine.registry.ModelInfo` rows."""
    header = ("NAME", "TASK", "SIZE", "PIXEL SIZE", "SOURCE", "PATH")
    rows = [
        (
            i.name,
            i.task,
            f"{i.preset}, {_size(i.size_bytes)}",
            f"{i.pixel_size_um:.4g} µm" if i.pixel_size_um else "-",
            i.source,
            str(i.path),
        )
        for i in infos
    ]
    widths = [max(len(r[c]) for r in [header, *rows]) for c in range(len(header))]
    lines = [
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header, *rows]
    ]
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from ..engine.registry import list_models, user_models_dir
    from .predict import print_warnings

    with print_warnings(sys.stderr, "napari-cvdm models"):
        infos = list_models(getattr(args, "task", None))
    if not infos:
        task = getattr(args, "task", None)
        if task == "prior":
            print(
                "no prior models found: no zero-shot restore prior is bundled with this version; "
                f"prior model files you train or download go in {user_models_dir()}"
            )
            return 0
        what = f"no {task.upper()} models" if task else "no models"
        print(
            f"{what} found: the bundled models (sr-fluorescence-2x, qpi-2plane) are missing from "
            f"this installation — reinstall napari-cvdm; models you train go in "
            f"{user_models_dir()}"
        )
        return 0
    print(format_table(infos))
    sys.stdout.flush()
    return 0
