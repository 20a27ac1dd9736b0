"""`napari-cvdm models`: list the available models (bundled and user-trained), or install one
from a bioimage.io package exported by napari-cvdm (``--import FILE.zip``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_parser", "format_table", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "models",
        help="list the available models, or import one from a bioimage.io package",
        description=(
            "List bundled and user-trained models (name, task, size, pixel size, source). "
            "User models live in <cache>/models; NAPARI_CVDM_CACHE_DIR overrides the cache. "
            "--import FILE.zip installs the model of a package written by "
            "`napari-cvdm export-bioimageio` there."
        ),
    )
    parser.add_argument(
        "--task",
        choices=("sr", "qpi", "prior"),
        help="only models of this task (prior: the zero-shot restore priors)",
    )
    parser.add_argument(
        "--import",
        dest="import_package",
        type=Path,
        metavar="FILE.zip",
        help="install the model of a bioimage.io package exported by napari-cvdm",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="with --import: replace a user model of the same name",
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


def _import(args: argparse.Namespace) -> int:
    from ..workflows.bioimageio_import import import_package
    from .predict import print_warnings

    with print_warnings(sys.stderr, "napari-cvdm models"):
        report = import_package(args.import_package, overwrite=args.overwrite)
    if report.already_bundled:
        print(
            f"{report.name} is bundled with napari-cvdm (the same file, sha256 "
            f"{report.sha256[:12]}…); nothing to install"
        )
    else:
        verb = "replaced" if report.replaced else "installed"
        print(
            f"{verb} {report.name} from {args.import_package} as {report.path} (sha256 "
            f"{report.sha256[:12]}…); use it with --model {report.name}"
        )
    sys.stdout.flush()
    return 0


def run(args: argparse.Namespace) -> int:
    from .. import tasks
    from ..engine.registry import list_models, user_models_dir
    from .predict import print_warnings

    if getattr(args, "import_package", None) is not None:
        return _import(args)
    if getattr(args, "overwrite", False):
        from ..errors import InputError

        raise InputError("--overwrite goes with --import FILE.zip")

    with print_warnings(sys.stderr, "napari-cvdm models"):
        infos = list_models(getattr(args, "task", None))
    if not infos:
        task = getattr(args, "task", None)
        note = tasks.get(task).models_missing_note if task else None
        if note:
            print(note.format(user_dir=user_models_dir()))
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
