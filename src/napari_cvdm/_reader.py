"""napari reader: an OME-Zarr image folder as a lazy image layer with its pixel size in µm.

Opens the full-resolution level (level 0) of ``*.zarr`` / ``*.ome.zarr`` folders that carry
OME-NGFF ``multiscales`` metadata (or a bioformats2raw layout) as a dask array, so napari reads
only the planes it shows and the Reconstruct widget only the frames it reconstructs. Each layer
gets ``scale``/``translate`` in µm on the space axes (unit ``micrometer``), ``axis_labels``
(t, c, z, y, x) and the metadata keys the widgets read (``pixel_size_um``), plus ``ome_zarr``
(version, name, levels, stored axes and shape) and the CVDM ``provenance`` of folders napari-cvdm
wrote. A channel axis with more than one channel gives one layer per channel. Other zarr folders
are left to other readers. No torch or Qt here; zarr is imported only when a folder is read.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["get_reader", "read_ome_zarr_layers"]

LayerData = tuple[Any, dict[str, Any], str]

#: attribute keys that mark a zarr group as an OME-Zarr image (0.5 keeps them under "ome")
_OME_KEYS = ("multiscales", "bioformats2raw.layout")


def _attributes(folder: Path) -> dict[str, Any]:
    """The group attributes from ``.zattrs`` (zarr v2) or ``zarr.json`` (v3), without zarr."""
    try:
        if (folder / ".zattrs").is_file():
            return json.loads((folder / ".zattrs").read_text())
        if (folder / "zarr.json").is_file():
            attrs = json.loads((folder / "zarr.json").read_text()).get("attributes") or {}
            return {**attrs, **(attrs.get("ome") or {})}
    except (OSError, ValueError, AttributeError):
        return {}
    return {}


def _is_ome_zarr(folder: Path) -> bool:
    return isinstance(attrs := _attributes(folder), dict) and any(k in attrs for k in _OME_KEYS)


def get_reader(path: str | list[str]) -> Callable[[Any], list[LayerData]] | None:
    """npe2 ``get_reader``: :func:`read_ome_zarr_layers` for one OME-Zarr image folder, else
    None (plain zarr arrays, HCS plates and other folders are left to other readers)."""
    if isinstance(path, list | tuple):
        if len(path) != 1:
            return None
        path = path[0]
    folder = Path(str(path))
    if not folder.is_dir() or not folder.name.lower().endswith(".zarr"):
        return None
    if not _is_ome_zarr(folder):
        return None
    return read_ome_zarr_layers


def _channel_names(folder: Path, count: int) -> list[str] | None:
    omero = _attributes(folder).get("omero") or {}
    labels = [c.get("label") for c in omero.get("channels") or [] if isinstance(c, dict)]
    if len(labels) == count and all(isinstance(s, str) and s for s in labels):
        return labels
    return None


def read_ome_zarr_layers(path: str | list[str]) -> list[LayerData]:
    """The image layer(s) of one OME-Zarr folder: ``[(dask array, layer kwargs, "image"), ...]``.

    Raises ``InputError`` (one line) for folders that are not OME-Zarr images or use axes other
    than t, c, z, y, x, and ``UserError`` when ome-zarr is not installed.
    """
    from .zarr_io import open_ome_zarr

    if isinstance(path, list | tuple):
        path = path[0]
    folder = Path(str(path))
    image = open_ome_zarr(folder)
    base = folder.name
    for suffix in (".ome.zarr", ".zarr"):
        if base.lower().endswith(suffix):
            base = base[: -len(suffix)]
            break
    info = {
        key: image.extra.get(key)
        for key in ("ngff_version", "name", "levels", "source_axes", "source_shape", "note")
        if image.extra.get(key) is not None
    }
    metadata: dict[str, Any] = {"source_path": str(folder), "ome_zarr": info}
    if image.pixel_size_um:
        metadata["pixel_size_um"] = float(image.pixel_size_um[-1])
    if "provenance" in image.extra:
        metadata["provenance"] = image.extra["provenance"]
    labels = [letter.lower() for letter in image.axes]
    units = [u if u == "micrometer" else "pixel" for u in image.units]
    kwargs = {
        "name": base,
        "scale": list(image.scale),
        "translate": list(image.translate),
        "units": units,
        "axis_labels": labels,
        "metadata": metadata,
    }
    c = image.axes.find("C")
    if c < 0 or image.data.shape[c] == 1:
        return [(image.data, kwargs, "image")]
    count = int(image.data.shape[c])
    names = _channel_names(folder, count) or [f"c{i}" for i in range(count)]
    layers = []
    for i, label in enumerate(names):
        index = tuple(i if axis == c else slice(None) for axis in range(image.data.ndim))
        keep = [axis for axis in range(image.data.ndim) if axis != c]
        layer = {
            **kwargs,
            "name": f"{base} [{label}]",
            "scale": [kwargs["scale"][a] for a in keep],
            "translate": [kwargs["translate"][a] for a in keep],
            "units": [units[a] for a in keep],
            "axis_labels": [labels[a] for a in keep],
            "metadata": {**metadata, "channel": i, "channel_label": label},
        }
        layers.append((image.data[index], layer, "image"))
    return layers
