"""What an image file says besides its pixels, shared by the TIFF/MRC reader (:mod:`.io`) and
the OME-Zarr reader and writer (:mod:`.zarr_io`), so neither imports the other for it.
numpy only; re-exported by :mod:`napari_cvdm.io`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["PROVENANCE_KEY", "ImageMetadata"]

PROVENANCE_KEY = "napari_cvdm_provenance"
"""Key of the JSON object that carries the provenance dict inside a TIFF."""


@dataclass
class ImageMetadata:
    """What :func:`read_image` knows about an image besides its pixels.

    Attributes
    ----------
    pixel_size_um
        Pixel size per spatial axis in µm: (dy, dx), or (dz, dy, dx) when the image has a Z axis
        with a known spacing; ``None`` when the file does not say (ask the user).
    axes
        One letter per array axis (tifffile convention, e.g. ``"YX"``, ``"ZYX"``, ``"TZCYX"``).
    extra
        Everything else: ``format``, ``pixel_size_source``, ``provenance`` (the dict written by
        :func:`write_tiff`), ImageJ/OME/MRC details.
    """

    pixel_size_um: tuple[float, ...] | None
    axes: str
    extra: dict[str, Any] = field(default_factory=dict)


def file_optics(extra: dict[str, Any] | None) -> dict[str, Any]:
    """The optics a file states in its own provenance (``extra["provenance"]["simulation"]``,
    as ``napari-cvdm simulate`` writes it): e.g. ``wavelength_um``, ``dz_um`` (the stack's
    defocus step), ``z_offsets_um``, ``na``; {} when it states none."""
    provenance = (extra or {}).get("provenance") or {}
    simulation = provenance.get("simulation") if isinstance(provenance, dict) else None
    return simulation if isinstance(simulation, dict) else {}


def _pixel_tuple(pixel_size_um: float | Sequence[float]) -> tuple[float, ...]:
    values = (
        (float(pixel_size_um),) * 2
        if np.isscalar(pixel_size_um)
        else tuple(float(v) for v in pixel_size_um)  # type: ignore[union-attr]
    )
    if len(values) not in (2, 3) or not all(v > 0 and np.isfinite(v) for v in values):
        raise InputError(
            f"pixel_size_um must be a positive number, (dy, dx) or (dz, dy, dx); got "
            f"{pixel_size_um!r}."
        )
    return values


def _json_default(value: Any) -> Any:
    """JSON form of numpy values in provenance dicts (large arrays are summarised)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        if value.size <= 1024:
            return value.tolist()
        return f"<array shape={list(value.shape)} dtype={value.dtype}>"
    if isinstance(value, Path):
        return str(value)
    return repr(value)
