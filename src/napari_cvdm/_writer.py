"""napari writers: an image layer as a float32 TIFF or an OME-Zarr folder that keeps its pixel
size and CVDM provenance.

napari's built-in TIFF writer drops both. The TIFF is written by :func:`napari_cvdm.io.write_tiff`
(ImageJ TIFF, resolution in px/µm, atomic), the OME-Zarr folder (``.zarr``, ``.ome.zarr``) by
:func:`napari_cvdm.zarr_io.write_ome_zarr` (NGFF 0.4, scale and translation in µm, atomic); both
read back with :func:`napari_cvdm.io.read_image` (``metadata.extra["provenance"]``). No torch, no
Qt; zarr is imported only when a folder is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["layer_axes", "layer_ngff_axes", "layer_pixel_size_um", "write_ome_zarr", "write_tiff"]

_LENGTH_TO_UM = {
    "micrometer": 1.0,
    "µm": 1.0,
    "um": 1.0,
    "nanometer": 1e-3,
    "nm": 1e-3,
    "millimeter": 1e3,
    "mm": 1e3,
    "angstrom": 1e-4,
    "meter": 1e6,
    "m": 1e6,
}
_IMAGEJ_ORDER = "TZCYX"


def _unit_to_um(unit: Any) -> float | None:
    """µm per ``unit`` (a pint Unit or a string), or None for non-lengths such as 'pixel'."""
    if unit is None:
        return None
    return _LENGTH_TO_UM.get(str(unit).strip().lower())


def layer_axes(meta: Mapping[str, Any], ndim: int) -> str:
    """ImageJ axis letters from the layer's ``axis_labels`` (t/z/c names), else by dimensionality.

    Any label that is not t/time, z/focus or c/channel (e.g. the ``t*`` of a γ stack) maps to Z
    when that is still free; an order ImageJ cannot store falls back to ``YX``/``ZYX``/``TZYX``.
    """
    default = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}.get(ndim, "")
    labels = meta.get("axis_labels")
    if not labels or len(labels) != ndim:
        return default
    letters = []
    for label in list(labels)[:-2]:
        name = str(label).strip().lower()
        letter = {"t": "T", "time": "T", "z": "Z", "focus": "Z", "c": "C", "channel": "C"}.get(
            name, "Z"
        )
        letters.append(letter)
    axes = "".join(letters) + "YX"
    order = [_IMAGEJ_ORDER.index(a) for a in axes]
    if len(set(axes)) != len(axes) or order != sorted(order):
        return default
    return axes


def layer_ngff_axes(meta: Mapping[str, Any], ndim: int) -> str:
    """Axis letters (T, C, Z, Y, X in the layer's order) from ``axis_labels`` for an OME-Zarr
    image: t/time, c/channel, z/focus, and any other label (e.g. ``t*``) as Z; ``""`` (the
    writer's default by dimensionality) when they repeat or there are none."""
    labels = meta.get("axis_labels")
    if not labels or len(labels) != ndim:
        return ""
    letters = [
        {"t": "T", "time": "T", "z": "Z", "focus": "Z", "c": "C", "channel": "C"}.get(
            str(label).strip().lower(), "Z"
        )
        for label in list(labels)[:-2]
    ]
    axes = "".join(letters) + "YX"
    return axes if len(set(axes)) == len(axes) else ""


def layer_pixel_size_um(meta: Mapping[str, Any], axes: str) -> tuple[float, ...] | None:
    """(dy, dx) in µm, or (dz, dy, dx) when the layer has a Z axis with a length unit; ``None``
    when Y/X are in pixels (unknown pixel size)."""
    scale = meta.get("scale")
    units = meta.get("units")
    if scale is None or units is None or len(units) != len(scale):
        return None
    factors = [_unit_to_um(u) for u in units]
    if factors[-1] is None or factors[-2] is None:
        return None
    dy, dx = (float(scale[a]) * factors[a] for a in (-2, -1))
    if "Z" in axes and factors[axes.index("Z")] is not None:
        z = axes.index("Z")
        return (float(scale[z]) * factors[z], dy, dx)
    return (dy, dx)


def _jsonable(value: Any) -> Any:
    """A JSON-ready copy: numpy scalars to numbers, small arrays to lists, others to strings."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist()) if value.size <= 4096 else f"<array {value.shape}>"
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _provenance(meta: Mapping[str, Any]) -> dict[str, Any]:
    """What the writers store besides the pixels (JSON-ready)."""
    layer_meta = meta.get("metadata") or {}
    provenance = {
        "cvdm": layer_meta.get("cvdm"),
        "source_metadata": layer_meta.get("source_metadata"),
        "layer": {
            "name": meta.get("name"),
            "scale": meta.get("scale"),
            "translate": meta.get("translate"),
            "units": meta.get("units"),
            "axis_labels": meta.get("axis_labels"),
        },
    }
    return _jsonable(provenance)


def write_tiff(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer for image layers (``.tif``/``.tiff``).

    Writes float32 (never rescaled or clipped) with the Y/X pixel size in µm and a provenance
    dict: the layer's ``metadata["cvdm"]``, its ``source_metadata``, and its name, scale,
    translate, units and axis labels. Returns ``[path]``.
    """
    from .io import write_tiff as io_write_tiff

    if isinstance(data, list | tuple):  # multiscale: the full-resolution level
        data = data[0]
    array = np.asarray(data, dtype=np.float32)
    axes = layer_axes(meta, array.ndim)
    written = io_write_tiff(
        path,
        array,
        layer_pixel_size_um(meta, axes),
        _provenance(meta),
        axes=axes or None,
    )
    return [str(written)]


def write_ome_zarr(path: str, data: Any, meta: dict) -> list[str]:
    """npe2 single-layer writer for image layers (``.zarr``, ``.ome.zarr``).

    Writes an OME-Zarr folder (NGFF 0.4, one level): float32 values (never rescaled or
    clipped), the axes from the layer's ``axis_labels``, the pixel size of the space axes in µm
    (unit micrometer) and their translation in µm, and the same provenance dict as the TIFF
    writer in the group attributes. Returns ``[path]``.
    """
    from .zarr_io import write_ome_zarr as zarr_write

    if isinstance(data, list | tuple):  # multiscale: the full-resolution level
        data = data[0]
    ndim = len(np.shape(data))
    axes = layer_ngff_axes(meta, ndim)
    pixel = layer_pixel_size_um(meta, axes or {2: "YX", 3: "ZYX"}.get(ndim, ""))
    translate = None
    if pixel is not None and meta.get("translate") is not None and meta.get("units"):
        factors = [_unit_to_um(u) for u in meta["units"]]
        translate = [float(t) * (f or 1.0) for t, f in zip(meta["translate"], factors)]
    data = data if hasattr(data, "dask") else np.asarray(data, dtype=np.float32)
    written = zarr_write(
        path, data, pixel, _provenance(meta), axes=axes or None, translate=translate
    )
    return [str(written)]
