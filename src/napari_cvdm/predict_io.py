"""One input file of a reconstruction: read it, and write its output set.

Shared by ``napari-cvdm predict`` (:mod:`napari_cvdm.commands.predict`), the Dask tasks and the
Python API (:mod:`napari_cvdm.batch`) and the Reconstruct widget's batch mode, so each input is
read, checked and written the same way everywhere: :func:`read_input` (the array the task sees
and its pixel size), :func:`write_outputs` (``<stem>_{mean,std,schedule}`` as one
:class:`~napari_cvdm.outputset.OutputSet`, TIFF or OME-Zarr), :func:`check_output_dir`,
:func:`output_name`, :func:`output_axes` and :func:`print_warnings`. No torch here.
"""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import InputError, UserError

__all__ = [
    "OUTPUTS",
    "OUTPUT_FORMATS",
    "check_output_dir",
    "output_axes",
    "output_name",
    "print_warnings",
    "read_input",
    "write_outputs",
]

#: output kinds, in the order they are written: suffix -> Reconstruction attribute
OUTPUTS = {"mean": "mean", "std": "std", "schedule": "schedule"}
#: --output-format choices: TIFF files or OME-Zarr folders
OUTPUT_FORMATS = ("tif", "zarr")


def output_name(stem: str, suffix: str, fmt: str = "tif") -> str:
    """``<stem>_<suffix>.tif``, or ``<stem>_<suffix>.ome.zarr`` for ``fmt == "zarr"``."""
    return f"{stem}_{suffix}" + (".ome.zarr" if fmt == "zarr" else ".tif")


def check_output_dir(folder: Path) -> Path:
    """Create ``folder`` if needed and prove it is writable; raises ``UserError`` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write to the output folder {folder} ({exc.strerror or exc}); "
            "choose a folder you can write to with --output-dir"
        ) from None
    return folder


def read_input(
    path: str,
    pixel_size: float | None,
    task: str | None = None,
    raw_sim: bool | None = None,
    lazy: bool = False,
) -> tuple[Any, float | None, Any]:
    """Read and prepare one input: ``(array, pixel size in µm or None, ImageMetadata)``.
    ``lazy``: an OME-Zarr input stays a dask array (its shape is known, nothing read)."""
    from .imagekind import prepare_input
    from .io import read_image

    try:
        array, meta = read_image(path, lazy=lazy)
    except UserError:
        raise
    except Exception as exc:  # any parser failure on a damaged file is the user's file problem
        raise InputError(
            f"cannot read {path} ({type(exc).__name__}: {exc}); is it a valid image?"
        ) from None
    if pixel_size is None and meta.pixel_size_um:
        pixel_size = float(meta.pixel_size_um[-1])
    if task is not None:
        if array.ndim >= 3:  # for the note: how many raw SIM frames were averaged
            meta.extra["frames_read"] = int(array.shape[-3])
        array = prepare_input(array, meta, task, path, raw_sim)
    return array, pixel_size, meta


@contextmanager
def print_warnings(stream: Any, prefix: str) -> Iterator[None]:
    """Print warnings raised inside the block as ``prefix: warning: ...`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, UserWarning):
                    print(f"{prefix}: warning: {w.message}", file=stream)


def output_axes(axes: str | None, ndim: int, drop: int | None = None) -> str | None:
    """The axis letters of an output with ``ndim`` dimensions made from an input with ``axes``:
    the input's, without axis ``drop`` (the QPI focus axis); None when they do not fit."""
    letters = str(axes or "")
    if drop is not None and len(letters) == ndim + 1:
        letters = letters[: drop % len(letters)] + letters[drop % len(letters) + 1 :]
    return letters if len(letters) == ndim else None


def write_outputs(
    folder: Path,
    stem: str,
    result: Any,
    pixel_size: float | None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    inputs: tuple[str, ...] = (),
    fmt: str = "tif",
    axes: str | None = None,
) -> list[Path]:
    """Write ``<stem>_{mean,std,schedule}.tif`` (``fmt="zarr"``: ``.ome.zarr`` folders, with
    ``axes`` the output's axis letters) as one set (:class:`~napari_cvdm.outputset.OutputSet`):
    all three appear together or none. Existing outputs are refused unless ``overwrite``;
    outputs that are ``inputs`` always; non-finite results are refused."""
    import numpy as np

    from .io import write_tiff
    from .outputset import OutputSet
    from .zarr_io import write_ome_zarr

    for attr in OUTPUTS.values():
        if not np.isfinite(getattr(result, attr)).all():
            raise UserError(
                f"the reconstruction of {stem} contains NaN or Inf values ({attr}); nothing was "
                "written — the model file may be damaged (try another model) or the input "
                "holds extreme values"
            )
    names = [output_name(stem, suffix, fmt) for suffix in OUTPUTS]
    with OutputSet(folder, names, overwrite=overwrite, inputs=inputs, label=stem) as out:
        for name, (suffix, attr) in zip(names, OUTPUTS.items()):
            meta = {**result.metadata, **(extra or {}), "output": suffix}
            if fmt == "zarr":
                write_ome_zarr(out.path(name), getattr(result, attr), pixel_size, meta, axes)
            else:
                write_tiff(out.path(name), getattr(result, attr), pixel_size, meta)
        return out.commit()
