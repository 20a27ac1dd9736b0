"""Microscopy file IO: TIFF / OME-TIFF with pixel sizes, BioSR MRC, OME-Zarr, paired folders.

* :func:`read_image` - TIFF, OME-TIFF, ImageJ hyperstacks (tifffile), BioSR/rDL-SIM ``.mrc``
  (see :mod:`napari_cvdm.mrc`) and OME-Zarr folders (:mod:`napari_cvdm.zarr_io`). TIFF pixel
  sizes are read from OME-XML ``PhysicalSize*`` first, then from ImageJ metadata (``unit``,
  ``spacing``) with the X/YResolution tags, else they are unknown (``None``; plain resolution
  tags are often 72 dpi and are ignored).
* :func:`write_tiff` - float32 (or raw uint8/uint16) TIFF in ImageJ mode (resolution in px/µm,
  unit um, spacing) or OME mode (PhysicalSize* in µm plus resolution tags in px/cm), with a
  provenance dict stored as JSON (ImageJ ``Info`` / OME ``Description``). Writes are atomic.
* :func:`find_image_pairs` - ``input/`` and ``target/`` folders with matching names.
* :func:`widefield_from_raw_sim` - the BioSR rule: widefield = mean of the 9 raw SIM frames.

No torch, Qt or napari here.
"""

from __future__ import annotations

import contextlib
import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError
from .imagemeta import PROVENANCE_KEY, ImageMetadata, _json_default, _pixel_tuple
from .pairs import IMAGE_SUFFIXES, ImagePair, find_image_pairs, image_stem

__all__ = [
    "IMAGE_SUFFIXES",
    "PROVENANCE_KEY",
    "ImageMetadata",
    "ImagePair",
    "find_image_pairs",
    "image_stem",
    "read_image",
    "widefield_from_raw_sim",
    "write_tiff",
]


_UNIT_TO_UM = {
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "micron": 1.0,
    "microns": 1.0,
    "micrometer": 1.0,
    "micrometre": 1.0,
    "\\u00b5m": 1.0,
    "nm": 1e-3,
    "nanometer": 1e-3,
    "å": 1e-4,
    "angstrom": 1e-4,
    "mm": 1e3,
    "millimeter": 1e3,
    "cm": 1e4,
    "centimeter": 1e4,
    "m": 1e6,
    "meter": 1e6,
}


# ---------------------------------------------------------------- reading


def _check_array(array: np.ndarray, path: Path) -> np.ndarray:
    if array.size == 0:
        raise InputError(f"{path} holds an empty image (shape {array.shape}); choose another file.")
    if np.issubdtype(array.dtype, np.inexact) and not np.all(np.isfinite(array)):
        raise InputError(
            f"{path} contains NaN or Inf values; replace them (e.g. with 0) and try again."
        )
    return array


def _to_um(value: Any, unit: str | None) -> float | None:
    try:
        size = float(value)
    except (TypeError, ValueError):
        return None
    factor = _UNIT_TO_UM.get((unit or "µm").strip().lower())
    if factor is None or not size > 0 or not np.isfinite(size):
        return None
    return size * factor


def _parse_provenance(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if isinstance(data, dict) and isinstance(data.get(PROVENANCE_KEY), dict):
        return data[PROVENANCE_KEY]
    return None


def _ome_pixel_size(xml: str, axes: str, extra: dict[str, Any]) -> tuple[float, ...] | None:
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None
    pixels = next((el for el in root.iter() if el.tag.endswith("}Pixels")), None)
    image = next((el for el in root.iter() if el.tag.endswith("}Image")), None)
    if image is not None:
        for child in image:
            if child.tag.endswith("}Description"):
                provenance = _parse_provenance(child.text)
                if provenance is not None:
                    extra["provenance"] = provenance
    if pixels is None:
        return None
    wavelengths = [
        _to_um(ch.get("EmissionWavelength"), ch.get("EmissionWavelengthUnit", "nm"))
        for ch in pixels
        if ch.tag.endswith("}Channel") and ch.get("EmissionWavelength")
    ]
    if wavelengths:
        extra["emission_wavelength_um"] = wavelengths
    dx = _to_um(pixels.get("PhysicalSizeX"), pixels.get("PhysicalSizeXUnit"))
    dy = _to_um(pixels.get("PhysicalSizeY"), pixels.get("PhysicalSizeYUnit"))
    dz = _to_um(pixels.get("PhysicalSizeZ"), pixels.get("PhysicalSizeZUnit"))
    if dx is None and dy is None:
        return None
    dx = dx if dx is not None else dy
    dy = dy if dy is not None else dx
    if "Z" in axes and dz is not None:
        return (dz, dy, dx)
    return (dy, dx)


def _imagej_pixel_size(tif: Any, axes: str, extra: dict[str, Any]) -> tuple[float, ...] | None:
    meta = tif.imagej_metadata or {}
    extra["imagej"] = {k: v for k, v in meta.items() if k != "Info" and _jsonable(v)}
    provenance = _parse_provenance(meta.get("Info"))
    if provenance is not None:
        extra["provenance"] = provenance
    unit = meta.get("unit")
    factor = _UNIT_TO_UM.get(str(unit).strip().lower()) if unit else None
    if factor is None:
        return None
    tags = tif.pages[0].tags
    sizes = []
    for name in ("YResolution", "XResolution"):
        tag = tags.get(name)
        if tag is None:
            return None
        numerator, denominator = tag.value
        if numerator <= 0:
            return None
        sizes.append(denominator / numerator * factor)
    if "Z" in axes and meta.get("spacing"):
        dz = _to_um(meta["spacing"], str(unit))
        if dz is not None:
            return (dz, sizes[0], sizes[1])
    return (sizes[0], sizes[1])


def _jsonable(value: Any) -> bool:
    return isinstance(value, str | int | float | bool) or value is None


def _read_tiff(path: Path) -> tuple[np.ndarray, ImageMetadata]:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            series = tif.series[0]
            array = series.asarray()
            axes = series.axes
            extra: dict[str, Any] = {"format": "tiff"}
            pixel_size = None
            if tif.is_ome and tif.ome_metadata:
                extra["format"] = "ome-tiff"
                pixel_size = _ome_pixel_size(tif.ome_metadata, axes, extra)
                extra["pixel_size_source"] = "ome" if pixel_size else None
            if pixel_size is None and tif.is_imagej:
                extra["format"] = "imagej-tiff" if extra["format"] == "tiff" else extra["format"]
                pixel_size = _imagej_pixel_size(tif, axes, extra)
                extra["pixel_size_source"] = "imagej" if pixel_size else None
    except (OSError, ValueError, IndexError, KeyError, tifffile.TiffFileError) as exc:
        raise InputError(f"Could not read {path} as a TIFF file ({exc}); is it damaged?") from exc
    if pixel_size is None:
        extra["pixel_size_source"] = None
    return _check_array(array, path), ImageMetadata(pixel_size, axes, extra)


def read_image(
    path: str | os.PathLike,
    pixel_size_um: float | Sequence[float] | None = None,
    lazy: bool = False,
) -> tuple[np.ndarray, ImageMetadata]:
    """Read an image file and what it says about its geometry.

    Parameters
    ----------
    path
        ``.tif``/``.tiff``/``.ome.tif`` (tifffile; first series), ``.mrc`` (BioSR/rDL-SIM), or an
        OME-Zarr folder ``.zarr``/``.ome.zarr`` (level 0, see :mod:`napari_cvdm.zarr_io`).
    pixel_size_um
        Overrides the file's pixel size (a number for dy = dx, or a tuple); recorded in
        ``extra["pixel_size_source"] = "user"``.
    lazy
        OME-Zarr only: return the dask array (nothing read yet, and not checked for NaN/Inf)
        instead of reading it into memory.

    Returns
    -------
    array, metadata
        The pixels in the file's dtype and axis order, and an :class:`ImageMetadata`.

    Raises
    ------
    InputError
        Missing, unreadable or unsupported files, empty images, NaN/Inf values.
    """
    path = Path(path)
    lower = path.name.lower()
    if path.is_dir() and (
        lower.endswith(".zarr") or (path / ".zgroup").is_file() or (path / "zarr.json").is_file()
    ):
        from .zarr_io import read_ome_zarr, to_numpy

        array, meta = read_ome_zarr(path)
        if not lazy:
            array = _check_array(to_numpy(array), path)
    elif path.is_dir():
        raise InputError(
            f"{path} is a folder, not an image file (an OME-Zarr image is a folder named "
            "*.ome.zarr); check the path."
        )
    elif not path.is_file():
        raise InputError(f"{path} does not exist or is not a file; check the path.")
    elif lower.endswith((".tif", ".tiff")):
        array, meta = _read_tiff(path)
    elif lower.endswith(".mrc"):
        from .mrc import read_mrc

        array, meta_dict = read_mrc(path)
        array = _check_array(array, path)
        meta = ImageMetadata(meta_dict.pop("pixel_size_um"), meta_dict.pop("axes"), meta_dict)
    else:
        raise InputError(
            f"{path.name}: unsupported file type; use one of {', '.join(IMAGE_SUFFIXES)} or an "
            "OME-Zarr folder (.ome.zarr)."
        )
    if pixel_size_um is not None:
        meta.pixel_size_um = _pixel_tuple(pixel_size_um)
        meta.extra["pixel_size_source"] = "user"
    return array, meta


def widefield_from_raw_sim(frames: Any) -> np.ndarray:
    """Widefield image from raw SIM frames: the mean over the frames (axis −3).

    ``frames`` is (9, Y, X) or (..., 9, Y, X) in ADU (3 orientations × 3 phases, BioSR), or 15
    frames (3 × 5 phases, rDL-SIM); the result is float32 (Y, X) (or (..., Y, X)) in the same ADU
    scale, camera offset included.
    """
    array = np.asarray(frames)
    if array.ndim < 3 or array.shape[-3] not in (9, 15):
        raise InputError(
            "Raw SIM data must have 9 frames (3 × 3) or 15 frames (3 × 5) on the third-last "
            f"axis (9, Y, X); got {array.shape}."
        )
    return array.astype(np.float64).mean(axis=-3).astype(np.float32)


# ---------------------------------------------------------------- writing


def _default_axes(ndim: int) -> str:
    axes = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TZCYX"}.get(ndim)
    if axes is None:
        raise InputError(f"Can write 2-D to 5-D images only; got {ndim} dimensions.")
    return axes


def _atomic_target(path: Path):
    if not path.parent.is_dir():
        raise InputError(f"The folder {path.parent} does not exist; create it first.")
    from .fsutil import temp_path

    return temp_path(path, ".tmp")  # marked with our pid (swept if killed), umask respected


def write_tiff(
    path: str | os.PathLike,
    array: Any,
    pixel_size_um: float | Sequence[float] | None,
    metadata: Mapping[str, Any] | None = None,
    ome: bool = False,
    axes: str | None = None,
) -> Path:
    """Write ``array`` as a TIFF with its pixel size and a provenance dict, atomically.

    Parameters
    ----------
    path
        Output file; a name ending in ``.ome.tif(f)`` implies ``ome=True``.
    array
        2-D to 5-D. Floats are written as float32 (never rescaled or clipped); uint8/uint16 stay
        as they are; other integer types become float32 in ImageJ mode.
    pixel_size_um
        dy = dx as one number, (dy, dx) or (dz, dy, dx) in µm; ``None`` writes no pixel size.
    metadata
        JSON-serialisable provenance dict, read back as ``ImageMetadata.extra["provenance"]``.
    ome
        OME-TIFF (PhysicalSize* in µm + resolution tags in px/cm) instead of an ImageJ TIFF
        (resolution in px/µm, unit um, spacing dz).
    axes
        Axis letters; default ``YX``/``ZYX``/``TZYX``/``TZCYX`` by dimensionality.

    Returns
    -------
    Path
        ``path``. The file appears complete or not at all (temp file + ``os.replace``).
    """
    import tifffile

    path = Path(path)
    data = np.asarray(array)
    if data.size == 0:
        raise InputError(f"Refusing to write an empty image (shape {data.shape}) to {path}.")
    ome = ome or path.name.lower().endswith((".ome.tif", ".ome.tiff"))
    axes = axes or _default_axes(data.ndim)
    if len(axes) != data.ndim:
        raise InputError(f"axes {axes!r} do not match the image's {data.ndim} dimensions.")
    if np.issubdtype(data.dtype, np.floating) or data.dtype == np.float16:
        data = data.astype(np.float32, copy=False)
    elif data.dtype == bool or (not ome and data.dtype not in (np.uint8, np.uint16)):
        data = data.astype(np.float32)
    sizes = _pixel_tuple(pixel_size_um) if pixel_size_um is not None else None
    info = json.dumps({PROVENANCE_KEY: dict(metadata or {})}, default=_json_default)

    kwargs: dict[str, Any]
    if ome:
        meta: dict[str, Any] = {"axes": axes, "Description": info}
        kwargs = {"ome": True, "metadata": meta}
        if sizes is not None:
            dy, dx = sizes[-2:]
            meta.update(PhysicalSizeX=dx, PhysicalSizeXUnit="µm")
            meta.update(PhysicalSizeY=dy, PhysicalSizeYUnit="µm")
            if len(sizes) == 3:
                meta.update(PhysicalSizeZ=sizes[0], PhysicalSizeZUnit="µm")
            kwargs.update(resolution=(1e4 / dx, 1e4 / dy), resolutionunit="CENTIMETER")
    else:
        meta = {"axes": axes, "Info": info}
        kwargs = {"imagej": True, "metadata": meta}
        if sizes is not None:
            dy, dx = sizes[-2:]
            meta["unit"] = "um"
            if len(sizes) == 3:
                meta["spacing"] = sizes[0]
            kwargs["resolution"] = (1.0 / dx, 1.0 / dy)

    temp = _atomic_target(path)
    try:
        tifffile.imwrite(temp, data, **kwargs)
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temp.unlink()
        raise
    return path
