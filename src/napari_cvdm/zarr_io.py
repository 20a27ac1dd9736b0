"""OME-Zarr (OME-NGFF) images in and out, through the ``ome-zarr`` and ``zarr`` packages.

* :func:`open_ome_zarr` - an OME-Zarr image folder (``.zarr`` / ``.ome.zarr``; NGFF 0.1-0.5,
  zarr v2 or v3; a bioformats2raw folder opens its first series) as a lazy dask array of the
  full-resolution level (level 0) with its axes (t, c, z, y, x), pixel sizes in µm (the scale
  ``coordinateTransformations`` of level 0 and of the multiscale, units converted to µm) and the
  provenance napari-cvdm stored in it. Axes of length 1 other than Y and X are dropped, as
  tifffile does for TIFF files. Nothing but the metadata is read until the array is used.
* :func:`read_ome_zarr` - the same as ``(array, io.ImageMetadata)`` for :func:`io.read_image`.
* :func:`write_ome_zarr` - a float32 (or uint8/uint16) image as an OME-Zarr folder, NGFF
  :data:`NGFF_VERSION` (zarr v2), one resolution level, pixel sizes in the multiscales
  ``coordinateTransformations`` with unit micrometer and the provenance dict in the group
  attributes (key :data:`io.PROVENANCE_KEY`). Written into a temporary folder next to the target,
  then renamed: the folder appears complete or not at all.

The packages are optional (``pip install 'napari-cvdm[zarr]'``) and imported inside the
functions: ``import napari_cvdm`` never imports zarr. No torch, Qt or napari here.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import warnings
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError, UserError
from .pairs import ZARR_SUFFIXES

__all__ = [
    "NGFF_VERSION",
    "ZARR_SUFFIXES",
    "OmeZarrImage",
    "is_zarr_path",
    "ngff_axes",
    "open_ome_zarr",
    "read_ome_zarr",
    "require_zarr",
    "to_numpy",
    "write_ome_zarr",
    "zarr_name",
]

NGFF_VERSION = "0.4"
"""The OME-NGFF version written: 0.4 (zarr v2) is opened by most OME-Zarr readers (napari-ome-
zarr, Fiji's N5/BigDataViewer plugins, Bio-Formats-based readers); 0.5 needs zarr v3, which
fewer of them read yet. Both are read here."""

INSTALL_HINT = "pip install 'napari-cvdm[zarr]'"

#: µm per unit: the UDUNITS-2 length names NGFF uses, and the short forms of other tools
UNIT_TO_UM = {
    "micrometer": 1.0,
    "micrometre": 1.0,
    "micron": 1.0,
    "um": 1.0,
    "µm": 1.0,
    "μm": 1.0,
    "nanometer": 1e-3,
    "nanometre": 1e-3,
    "nm": 1e-3,
    "picometer": 1e-6,
    "angstrom": 1e-4,
    "å": 1e-4,
    "millimeter": 1e3,
    "millimetre": 1e3,
    "mm": 1e3,
    "centimeter": 1e4,
    "cm": 1e4,
    "meter": 1e6,
    "metre": 1e6,
    "m": 1e6,
}

#: axis letter (tifffile convention) by NGFF axis name, and by NGFF axis type for other names
_BY_NAME = {"t": "T", "time": "T", "c": "C", "channel": "C", "z": "Z", "y": "Y", "x": "X"}
_BY_TYPE = {"time": "T", "channel": "C"}
_NGFF_ORDER = "TCZYX"
_CHUNK_YX = 1024  # chunk edge in Y and X of the arrays written (one plane per chunk otherwise)


def is_zarr_path(path: str | os.PathLike) -> bool:
    """Whether ``path`` names an OME-Zarr folder by its ending (``.zarr``, ``.ome.zarr``)."""
    return Path(path).name.lower().endswith(".zarr")


def zarr_name(stem: str) -> str:
    """The output folder name of ``stem``: ``<stem>.ome.zarr``."""
    return f"{stem}{ZARR_SUFFIXES[0]}"


def require_zarr() -> None:
    """Raise one-line :class:`UserError` naming the extra to install when ome-zarr is missing."""
    try:
        import ome_zarr.writer  # noqa: F401
        import zarr  # noqa: F401
    except ImportError as exc:
        raise UserError(
            f"OME-Zarr needs the ome-zarr and zarr packages ({exc.name or exc} is not "
            f"installed): {INSTALL_HINT}"
        ) from None


@contextlib.contextmanager
def _quiet_ome_zarr() -> Iterator[None]:
    """Hold back ome-zarr's log lines (e.g. its 'version mismatch' warning on every NGFF 0.4
    folder): what matters reaches the user as our own one-line errors and notes."""
    logger = logging.getLogger("ome_zarr")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def to_numpy(array: Any) -> np.ndarray:
    """``array`` in memory; a dask array is computed with the synchronous scheduler (no thread
    pool, and never a dask.distributed client this process happens to hold)."""
    compute = getattr(array, "compute", None)
    if compute is not None and not isinstance(array, np.ndarray):
        return np.asarray(compute(scheduler="synchronous"))
    return np.asarray(array)


# ---------------------------------------------------------------- reading


@dataclass
class OmeZarrImage:
    """What :func:`open_ome_zarr` found in an OME-Zarr image folder.

    Attributes
    ----------
    data
        Level 0 as a lazy dask array, axes of length 1 (other than Y, X) dropped.
    axes
        One letter per axis of ``data``, in NGFF order (e.g. ``"YX"``, ``"ZYX"``, ``"TCZYX"``).
    scale, translate
        Per axis of ``data``: in µm for space axes with a length unit, else as stored.
    units
        Per axis: ``"micrometer"`` for space axes with a length unit, else the stored unit or None.
    pixel_size_um
        (dy, dx), or (dz, dy, dx) with a Z axis, in µm; None when Y/X have no length unit.
    extra
        ``format`` ("ome-zarr"), ``ngff_version``, ``name``, ``levels``, ``source_axes`` and
        ``source_shape`` (before dropping length-1 axes), ``pixel_size_source``, ``provenance``.
    """

    data: Any
    axes: str
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    units: tuple[str | None, ...]
    pixel_size_um: tuple[float, ...] | None
    extra: dict[str, Any] = field(default_factory=dict)


def _axes_of(multiscale: Mapping[str, Any], ndim: int, name: str) -> list[tuple[str, str, Any]]:
    """(letter, type, unit) per axis; NGFF 0.1/0.2 files have no axes: t, c, z, y, x implied."""
    axes = multiscale.get("axes")
    if axes is None:
        if ndim > 5:
            raise InputError(f"{name} has {ndim} dimensions and no axes metadata; expected ≤ 5")
        return [(letter, "", None) for letter in _NGFF_ORDER[-ndim:]]
    if not isinstance(axes, list) or len(axes) != ndim:
        raise InputError(
            f"{name}: the multiscales metadata names {len(axes) if isinstance(axes, list) else 0} "
            f"axes but level 0 has {ndim} dimensions; the OME-Zarr metadata is damaged"
        )
    out = []
    for axis in axes:
        if isinstance(axis, str):  # NGFF 0.3
            axis = {"name": axis}
        if not isinstance(axis, Mapping) or not isinstance(axis.get("name"), str):
            raise InputError(f"{name}: an axis in the multiscales metadata has no name: {axis!r}")
        label, kind = axis["name"].strip().lower(), str(axis.get("type") or "").lower()
        letter = _BY_NAME.get(label) or _BY_TYPE.get(kind)
        if letter is None:
            raise InputError(
                f"{name}: unsupported axis {axis['name']!r}"
                + (f" (type {kind!r})" if kind else "")
                + "; napari-cvdm reads images with t, c, z, y, x axes"
            )
        out.append((letter, kind, axis.get("unit")))
    letters = "".join(a[0] for a in out)
    if len(set(letters)) != len(letters) or letters[-2:] != "YX":
        names = "/".join(a["name"] if isinstance(a, Mapping) else str(a) for a in axes)
        raise InputError(
            f"{name}: unsupported axes {names}; napari-cvdm needs y and x last and each of t, "
            "c, z at most once"
        )
    return out


def _transforms(items: Any, ndim: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Compose a list of NGFF ``scale``/``translation`` transformations into (scale, offset)."""
    scale, offset = np.ones(ndim), np.zeros(ndim)
    for item in items or []:
        if not isinstance(item, Mapping):
            continue
        kind = item.get("type")
        values = item.get("scale" if kind == "scale" else "translation")
        if kind not in ("scale", "translation") or values is None:
            continue  # identity, or a transform stored in a file (path): not applied
        try:
            vector = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise InputError(f"{name}: a {kind} transformation holds non-numbers") from None
        if vector.shape != (ndim,) or not np.isfinite(vector).all():
            raise InputError(
                f"{name}: a {kind} transformation has {vector.size} values for {ndim} axes"
            )
        if kind == "scale":
            scale, offset = scale * vector, offset * vector
        else:
            offset = offset + vector
    return scale, offset


def _read_attrs(path: Path) -> dict[str, Any]:
    """The group attributes of ``path`` (NGFF 0.5 keeps ours beside its ``ome`` key)."""
    import zarr

    try:
        return dict(zarr.open_group(str(path), mode="r").attrs)
    except Exception:  # noqa: BLE001 - optional: the image opens without them
        return {}


def _is_array(path: Path) -> bool:
    """Whether ``path`` is a zarr array (v2 ``.zarray``, or v3 ``zarr.json`` of an array)."""
    if (path / ".zarray").is_file():
        return True
    try:
        return json.loads((path / "zarr.json").read_text()).get("node_type") == "array"
    except (OSError, ValueError, AttributeError):
        return False


def _locate(path: Path) -> tuple[Any, dict[str, Any], Path, str | None]:
    """(ZarrLocation, NGFF attributes, image folder, note) of the image at ``path``."""
    from ome_zarr.io import parse_url

    name = str(path)
    try:
        with _quiet_ome_zarr():
            location = parse_url(str(path), mode="r")
    except Exception as exc:  # noqa: BLE001 - damaged JSON, unreadable store: the user's file
        raise InputError(
            f"cannot read {name} as OME-Zarr ({type(exc).__name__}: {exc}); is it damaged?"
        ) from None
    if location is None and _is_array(path):
        raise InputError(
            f"{name} is a plain zarr array without OME-NGFF metadata (no multiscales, so no "
            "axes or pixel size); save it as OME-Zarr (e.g. with ome_zarr.writer.write_image)"
        )
    if location is None:
        raise InputError(
            f"{name} is not a zarr folder (no .zgroup/.zattrs or zarr.json); give an OME-Zarr "
            "image folder"
        )
    attrs = dict(location.root_attrs or {})
    if "multiscales" in attrs:
        return location, attrs, path, None
    if "bioformats2raw.layout" in attrs and (path / "0").is_dir():
        series = [p for p in path.iterdir() if p.name.isdigit() and p.is_dir()]
        inner, attrs_inner, folder, _ = _locate(path / "0")
        note = f"series 0 of {len(series)} (bioformats2raw layout)" if len(series) > 1 else None
        return inner, attrs_inner, folder, note
    if "plate" in attrs or "well" in attrs:
        kind = "an HCS plate" if "plate" in attrs else "an HCS well"
        raise InputError(
            f"{name} is {kind}; give the folder of one field's image (e.g. {name}/A/1/0)"
        )
    if location.zarray:
        raise InputError(
            f"{name} is a plain zarr array without OME-NGFF metadata (no multiscales, so no "
            "axes or pixel size); save it as OME-Zarr (e.g. with ome_zarr.writer.write_image)"
        )
    raise InputError(
        f"{name} is a zarr group without OME-NGFF 'multiscales' metadata; give an OME-Zarr "
        "image folder"
    )


def _level0(location: Any, attrs: Mapping[str, Any], folder: Path, name: str) -> tuple:
    """The first multiscale image of the metadata, its datasets and its level 0 (lazy);
    refuses empty or damaged metadata and a missing or unreadable level 0."""
    multiscales = attrs.get("multiscales")
    if (
        not isinstance(multiscales, list)
        or not multiscales
        or not isinstance(multiscales[0], Mapping)
    ):
        raise InputError(f"{name}: the 'multiscales' metadata is empty or not a list of images")
    multiscale = multiscales[0]
    datasets = multiscale.get("datasets")
    if not isinstance(datasets, list) or not datasets or not isinstance(datasets[0], Mapping):
        raise InputError(f"{name}: the multiscales metadata lists no datasets (resolution levels)")
    level0 = datasets[0].get("path")
    if not isinstance(level0, str) or not (folder / level0).is_dir():
        raise InputError(f"{name}: level 0 ({level0!r}) named in the metadata is missing")
    try:
        with _quiet_ome_zarr():
            data = location.load(level0)
    except Exception as exc:  # noqa: BLE001 - unreadable array metadata: the user's file
        raise InputError(
            f"cannot read level 0 of {name} ({type(exc).__name__}: {exc}); is it damaged?"
        ) from None
    if data.ndim < 2 or data.size == 0:
        raise InputError(f"{name} holds an empty or 1-D image (shape {tuple(data.shape)})")
    return multiscale, datasets, data


def _space(
    multiscale: Mapping[str, Any], datasets: list[Any], ndim: int, name: str
) -> tuple[str, list[float], list[float], list[str | None]]:
    """Axis letters, scale and translation per axis (µm where the axis has a length unit) and
    the units ("micrometer" for converted Z/Y/X) of level 0."""
    axes = _axes_of(multiscale, ndim, name)
    scale, offset = _transforms(
        [*(datasets[0].get("coordinateTransformations") or []),
         *(multiscale.get("coordinateTransformations") or [])],
        ndim,
        name,
    )  # fmt: skip
    letters = "".join(a[0] for a in axes)
    units: list[str | None] = []
    for i, (letter, _kind, unit) in enumerate(axes):
        factor = UNIT_TO_UM.get(str(unit).strip().lower()) if unit else None
        if letter in "ZYX" and factor is not None:
            scale[i], offset[i] = scale[i] * factor, offset[i] * factor
            units.append("micrometer")
        else:
            units.append(str(unit) if unit else None)
    return letters, scale, offset, units


def _extra(
    folder: Path, attrs: Mapping[str, Any], multiscale: Mapping[str, Any], levels: int,
    letters: str, source_shape: list[int], pixel: Any, note: str | None,
) -> dict[str, Any]:  # fmt: skip
    """``ImageMetadata.extra`` of an OME-Zarr image: format, NGFF version, name, levels, the
    source axes and shape, where the pixel size came from, a note on where the image was
    found and any stored provenance."""
    from .imagemeta import PROVENANCE_KEY

    stored = _read_attrs(folder)
    extra: dict[str, Any] = {
        "format": "ome-zarr",
        "ngff_version": str(multiscale.get("version") or attrs.get("version") or ""),
        "name": multiscale.get("name"),
        "levels": levels,
        "source_axes": letters,
        "source_shape": source_shape,
        "pixel_size_source": "ome-zarr" if pixel else None,
    }
    if note:
        extra["note"] = note
    if isinstance(stored.get(PROVENANCE_KEY), Mapping):
        extra["provenance"] = dict(stored[PROVENANCE_KEY])
    return extra


def open_ome_zarr(path: str | os.PathLike) -> OmeZarrImage:
    """Open the OME-Zarr image at ``path`` lazily; see the module docstring.

    Raises
    ------
    InputError
        Not a folder, not zarr, no ``multiscales``, HCS plates, unsupported axes, damaged
        metadata. ``UserError`` when ome-zarr is not installed.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path} does not exist; check the path.")
    if not path.is_dir():
        raise InputError(f"{path} is a file; an OME-Zarr image is a folder (name.ome.zarr).")
    require_zarr()
    location, attrs, folder, note = _locate(path)
    name = str(path)
    multiscale, datasets, data = _level0(location, attrs, folder, name)
    ndim = data.ndim
    letters, scale, offset, units = _space(multiscale, datasets, ndim, name)
    yx_known = units[-1] == "micrometer" and units[-2] == "micrometer"
    yx_known = yx_known and all(scale[i] > 0 for i in (-2, -1))
    if not yx_known:
        shown = ", ".join(f"{s:g}" for s in scale[-2:])
        warnings.warn(
            f"{path.name}: Y/X carry no length unit (or no positive scale), so their scale "
            f"({shown}) is not taken as a pixel size",
            UserWarning,
            stacklevel=2,
        )
    source_shape = [int(n) for n in data.shape]
    keep = [i for i in range(ndim) if letters[i] in "YX" or data.shape[i] != 1]
    if len(keep) != ndim:
        data = data[tuple(slice(None) if i in keep else 0 for i in range(ndim))]
    pixel = None
    if yx_known:
        pixel = (float(scale[-2]), float(scale[-1]))
        z = letters.find("Z")
        if z in keep and units[z] == "micrometer" and scale[z] > 0:
            pixel = (float(scale[z]), *pixel)
    extra = _extra(folder, attrs, multiscale, len(datasets), letters, source_shape, pixel, note)
    if note:
        warnings.warn(f"{path.name}: opened {note}", UserWarning, stacklevel=2)
    kept = "".join(letters[i] for i in keep)
    return OmeZarrImage(
        data=data,
        axes=kept,
        scale=tuple(float(scale[i]) for i in keep),
        translate=tuple(float(offset[i]) for i in keep),
        units=tuple(units[i] for i in keep),
        pixel_size_um=pixel,
        extra=extra,
    )


def read_ome_zarr(path: str | os.PathLike) -> tuple[Any, Any]:
    """``(dask array, io.ImageMetadata)`` of the OME-Zarr image at ``path`` (lazy, level 0)."""
    from .imagemeta import ImageMetadata

    image = open_ome_zarr(path)
    return image.data, ImageMetadata(image.pixel_size_um, image.axes, image.extra)


# ---------------------------------------------------------------- writing


def ngff_axes(axes: str | None, ndim: int) -> tuple[str, list[int]]:
    """NGFF axis letters for an array with ``axes`` (any order of T, C, Z, Y, X with Y, X last)
    and the transpose that puts them in NGFF order (t, c, z, y, x); by dimensionality (``YX``,
    ``ZYX``, ``TZYX``, ``TCZYX``) when ``axes`` is None or cannot be stored."""
    default = {2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}.get(ndim)
    if default is None:
        raise InputError(f"OME-Zarr holds 2-D to 5-D images; got {ndim} dimensions")
    letters = (axes or "").upper()
    if (
        len(letters) != ndim
        or not set(letters) <= set(_NGFF_ORDER)
        or len(set(letters)) != ndim
        or letters[-2:] != "YX"
    ):
        return default, list(range(ndim))
    order = sorted(range(ndim), key=lambda i: _NGFF_ORDER.index(letters[i]))
    return "".join(letters[i] for i in order), order


def write_ome_zarr(
    path: str | os.PathLike,
    array: Any,
    pixel_size_um: float | Sequence[float] | None,
    metadata: Mapping[str, Any] | None = None,
    axes: str | None = None,
    name: str | None = None,
    translate: Sequence[float] | None = None,
) -> Path:
    """Write ``array`` as an OME-Zarr image folder at ``path``, atomically.

    Parameters
    ----------
    path
        The folder to create (``<name>.ome.zarr``); an existing one is replaced (callers refuse
        existing outputs first unless the user asked to overwrite).
    array
        2-D to 5-D (numpy or dask). Floats are written as float32 (never rescaled or clipped);
        uint8/uint16 stay; other types become float32.
    pixel_size_um
        dy = dx as one number, (dy, dx) or (dz, dy, dx) in µm, written as the scale of level 0
        with unit micrometer on the space axes; ``None``: scale 1 and no unit (unknown).
    metadata
        JSON-serialisable provenance, stored in the group attributes under ``io.PROVENANCE_KEY``.
    axes
        Axis letters of ``array`` (T, C, Z, Y, X in any order, Y and X last); the data are
        transposed to NGFF order. Default by dimensionality.
    name
        The image name in the multiscales metadata (default: the folder name without ending).
    translate
        Origin per axis of ``array`` (µm on the space axes), written as the translation of
        level 0 (napari's ``translate``); default 0.

    Returns
    -------
    Path
        ``path``: written into ``.<name>.ncvdm-<host>-<pid>-<rand>.set`` next to it, then renamed.
    """
    from .fsutil import replace_path, temp_dir
    from .imagemeta import PROVENANCE_KEY, _json_default

    require_zarr()
    import zarr

    path = Path(path)
    if not is_zarr_path(path):
        raise InputError(f"{path}: an OME-Zarr output needs a name ending in .zarr")
    if not path.parent.is_dir():
        raise InputError(f"The folder {path.parent} does not exist; create it first.")
    data, letters, origin = _ngff_data(array, axes, translate, path)
    ngff = [letter.lower() for letter in letters]
    scale, units = _ngff_scale(ngff, pixel_size_um)
    provenance = json.loads(json.dumps(dict(metadata or {}), default=_json_default))
    label = name or path.name[: -len(".zarr")].removesuffix(".ome")
    staging = temp_dir(path.parent, path.name)
    try:
        root = zarr.open_group(str(staging), mode="w", zarr_format=2)
        _write_level0(root, data, ngff, scale, units, label)
        if origin is not None and any(origin):
            multiscales = root.attrs["multiscales"]
            transforms = multiscales[0]["datasets"][0]["coordinateTransformations"]
            transforms[:] = [t for t in transforms if t.get("type") != "translation"]
            transforms.append({"type": "translation", "translation": origin})
            root.attrs["multiscales"] = multiscales
        root.attrs[PROVENANCE_KEY] = provenance
        replace_path(staging, path)
    except BaseException:
        import shutil

        shutil.rmtree(staging, ignore_errors=True)
        raise
    return path


def _ngff_data(
    array: Any, axes: str | None, translate: Sequence[float] | None, path: Path
) -> tuple[Any, str, list[float] | None]:
    """``array`` as a chunked dask array in NGFF axis order (float32 unless uint8/uint16), its
    axis letters and the translation in that order (None: none given)."""
    import dask.array as da

    data = array if isinstance(array, da.Array) else np.asarray(array)
    if data.size == 0:
        raise InputError(f"Refusing to write an empty image (shape {data.shape}) to {path}.")
    letters, order = ngff_axes(axes, data.ndim)
    if order != list(range(data.ndim)):
        data = data.transpose(order)
    origin = None
    if translate is not None:
        if len(translate) != data.ndim:
            raise InputError(f"translate has {len(translate)} values for {data.ndim} axes")
        origin = [float(translate[i]) for i in order]
    if np.issubdtype(data.dtype, np.floating) or data.dtype not in (np.uint8, np.uint16):
        data = data.astype(np.float32)
    chunks = tuple(
        min(int(n), _CHUNK_YX) if letter in "YX" else 1 for letter, n in zip(letters, data.shape)
    )
    data = da.from_array(data, chunks=chunks) if not isinstance(data, da.Array) else data
    return data.rechunk(chunks), letters, origin


def _ngff_scale(
    ngff: list[str], pixel_size_um: float | Sequence[float] | None
) -> tuple[dict[str, float], dict[str, str]]:
    """Level 0's scale per NGFF axis (µm on Y, X and Z when the pixel size says; 1 otherwise)
    and the units of the axes that have one."""
    from .imagemeta import _pixel_tuple

    sizes = _pixel_tuple(pixel_size_um) if pixel_size_um is not None else None
    scale = dict.fromkeys(ngff, 1.0)
    units: dict[str, str] = {}
    if sizes is not None:
        scale.update(y=sizes[-2], x=sizes[-1])
        units.update(y="micrometer", x="micrometer")
        if "z" in scale and len(sizes) == 3:
            scale["z"] = sizes[0]
            units["z"] = "micrometer"
    return scale, units


def _write_level0(
    root: Any, data: Any, ngff: list[str], scale: dict[str, float], units: dict[str, str],
    label: str,
) -> None:  # fmt: skip
    """ome-zarr's NGFF 0.4 writer for one level, computed synchronously (no dask cluster)."""
    import dask
    from ome_zarr.format import FormatV04
    from ome_zarr.writer import write_image

    with _quiet_ome_zarr(), dask.config.set(scheduler="synchronous"):
        write_image(
            data,
            root,
            scale_factors=[],
            fmt=FormatV04(),
            axes=ngff,
            scale=scale,
            axes_units=units or None,
            name=label,
        )
