"""BioSR / rDL-SIM ``.mrc`` reading: mrcfile (permissive) with an in-house fallback for old headers.

Priism-style MRC: a 1024-byte header of 256 32-bit words (1–3: nx, ny, sections; 4: mode, 0 int8,
1 int16, 2 float32, 4 complex64, 6 uint16, 12 float16; 11–13: cell size; 24: extended-header
bytes), big-endian when the words do not make sense read little-endian; then (sections, ny, nx)
data after both headers.

Header pixel sizes of BioSR files are unreliable (BioSR stores µm where MRC expects Å, or nothing),
so :func:`read_mrc` reports the BioSR geometry instead - 0.0626 µm for raw SIM / widefield data,
0.0313 µm for SIM ground truths (file name containing ``gt`` or ``sim``) - and keeps the header's
value in ``header_cell``. Pass ``pixel_size_um`` to :func:`napari_cvdm.io.read_image` to override.
No torch, Qt or napari here.
"""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "BIOSR_GT_PIXEL_UM",
    "BIOSR_WF_PIXEL_UM",
    "read_mrc",
    "read_mrc_fallback",
]

BIOSR_WF_PIXEL_UM = 0.0626
"""Widefield / raw-SIM pixel size of the BioSR Multi-SIM camera (µm)."""

BIOSR_GT_PIXEL_UM = 0.0313
"""SIM ground-truth pixel size of BioSR (µm)."""

_HEADER_BYTES = 1024
_MODES = {0: "i1", 1: "i2", 2: "f4", 4: "c8", 6: "u2", 12: "f2"}
_MAX_DIM = 1 << 20


def _header_words(raw: bytes, order: str) -> np.ndarray:
    return np.frombuffer(raw, dtype=f"{order}i4", count=256)


def _plausible(words: np.ndarray) -> bool:
    nx, ny, nz, mode = (int(v) for v in words[:4])
    return all(0 < n < _MAX_DIM for n in (nx, ny, nz)) and mode in _MODES


def read_mrc_fallback(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read an MRC file with the in-house Priism-header parser (no mrcfile).

    Returns the (sections, ny, nx) array in native byte order and a header dict with ``nx``,
    ``ny``, ``nz``, ``mode``, ``extended_header_bytes``, ``byte_order`` and ``cell``.
    """
    path = Path(path)
    with open(path, "rb") as fh:
        raw = fh.read(_HEADER_BYTES)
        if len(raw) < _HEADER_BYTES:
            raise InputError(f"{path} is too short to be an MRC file (no 1024-byte header).")
        order = "<"
        words = _header_words(raw, order)
        if not _plausible(words):
            order = ">"
            words = _header_words(raw, order)
            if not _plausible(words):
                raise InputError(
                    f"{path} does not have a readable MRC header (sizes or mode out of range)."
                )
        nx, ny, nz, mode = (int(v) for v in words[:4])
        extended = int(words[23])
        if extended < 0:
            raise InputError(f"{path} has a negative extended-header size; the file is damaged.")
        dtype = np.dtype(order + _MODES[mode])
        count = nx * ny * nz
        fh.seek(_HEADER_BYTES + extended)
        data = np.fromfile(fh, dtype=dtype, count=count)
    if data.size != count:
        raise InputError(
            f"{path} is truncated: the header announces {nz}x{ny}x{nx} values, found {data.size}."
        )
    cell = np.frombuffer(raw, dtype=f"{order}f4", count=13)[10:13]
    header = {
        "nx": nx,
        "ny": ny,
        "nz": nz,
        "mode": mode,
        "extended_header_bytes": extended,
        "byte_order": "little" if order == "<" else "big",
        "cell": [float(c) for c in cell],
    }
    return data.reshape(nz, ny, nx).astype(dtype.newbyteorder("="), copy=False), header


def _read_with_mrcfile(path: Path) -> tuple[np.ndarray, dict[str, Any]] | None:
    import mrcfile

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            with mrcfile.open(path, permissive=True) as mrc:
                if mrc.data is None:
                    return None
                data = np.array(mrc.data)
                h = mrc.header
                header = {
                    "nx": int(h.nx),
                    "ny": int(h.ny),
                    "nz": int(h.nz),
                    "mode": int(h.mode),
                    "extended_header_bytes": int(h.nsymbt),
                    "cell": [float(h.cella.x), float(h.cella.y), float(h.cella.z)],
                }
        except (OSError, ValueError):
            return None
    header["warnings"] = sorted({str(w.message) for w in caught})
    if data.ndim == 2:
        data = data[None]
    return data, header


def _biosr_pixel_size(path: Path) -> float:
    name = path.stem.lower()
    if re.search(r"(^|[^a-z])(gt|sim)([^a-z]|$)", name.replace("_", " ")):
        return BIOSR_GT_PIXEL_UM
    return BIOSR_WF_PIXEL_UM


def read_mrc(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Read a BioSR/rDL-SIM MRC file.

    Returns
    -------
    array
        (sections, Y, X) in the file's dtype (uint16 for raw SIM frames), or (Y, X) for a single
        section. MT.mrc of rDL-SIM reads as (9, 256, 256) uint16.
    metadata
        ``pixel_size_um`` (dy, dx) from the BioSR defaults, ``axes`` (``"YX"`` or ``"IYX"``:
        sections are frames, not focal planes), ``format`` = ``"mrc"``, ``reader`` (``mrcfile``
        or ``fallback``), ``pixel_size_source`` = ``"biosr-default"``, ``raw_sim_frames`` (True for
        9 sections), ``header_cell`` and the MRC header fields.
    """
    path = Path(path)
    result = _read_with_mrcfile(path)
    reader = "mrcfile"
    if result is None:
        result = read_mrc_fallback(path)
        reader = "fallback"
    data, header = result
    pixel = _biosr_pixel_size(path)
    metadata: dict[str, Any] = {
        "pixel_size_um": (pixel, pixel),
        "axes": "IYX",
        "format": "mrc",
        "reader": reader,
        "pixel_size_source": "biosr-default",
        "raw_sim_frames": data.shape[0] in (9, 15),  # 3 angles × 3 or 5 phases
        "header_cell": header.pop("cell"),
        "mrc_header": header,
    }
    if data.shape[0] == 1:
        data = data[0]
        metadata["axes"] = "YX"
    return data, metadata
