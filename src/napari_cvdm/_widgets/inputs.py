"""What the Reconstruct form reads from a layer and a model file to pre-fill its fields.

Pure helpers on napari layers (duck-typed: ``scale``, ``units``, ``metadata``, ``data``) and a
small cache of model headers. No Qt, no torch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "ModelHeaders",
    "dz_from_layer",
    "implied_task",
    "metadata_number",
    "metadata_offset",
    "pixel_size_um",
]


def metadata_number(metadata: Any, key: str) -> float | None:
    """``metadata[key]`` when it is a positive number, else None."""
    value = (metadata or {}).get(key)
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    return None


def metadata_offset(metadata: Any) -> float | None:
    """The camera offset ``metadata["offset_adu"]`` when it is a number >= 0 (0 is a real
    offset), else None."""
    raw = (metadata or {}).get("offset_adu")
    if isinstance(raw, int | float) and not isinstance(raw, bool) and raw >= 0:
        return float(raw)
    return None


def _axis_um(layer: Any, axis: int) -> float | None:
    """The layer's scale on ``axis`` in µm, when that axis has a length unit."""
    units = getattr(layer, "units", None)
    if units is None:
        return None
    unit = units[axis]
    if str(getattr(unit, "dimensionality", "")) != "[length]":
        return None
    return float((float(layer.scale[axis]) * unit).to("micrometer").magnitude)


def pixel_size_um(layer: Any) -> float | None:
    """The layer's X pixel size in µm, when its X unit is a length (None for 'pixel')."""
    return _axis_um(layer, -1)


def dz_from_layer(layer: Any, axis: int, lower: int, upper: int) -> float | None:
    """Defocus dz (µm) of planes ``lower``/``upper`` on ``axis``: half their distance.

    From ``z_offsets_um`` in the layer metadata, else from a length unit on the focus axis, else
    the metadata's ``dz_um``; None when the layer does not say.
    """
    meta = layer.metadata or {}
    offsets = meta.get("z_offsets_um")
    if isinstance(offsets, list | tuple) and len(offsets) == layer.data.shape[axis]:
        return abs(float(offsets[upper]) - float(offsets[lower])) / 2
    step = _axis_um(layer, axis)
    if step is not None:
        return abs(upper - lower) * step / 2
    return metadata_number(meta, "dz_um")


def implied_task(layer: Any) -> tuple[str | None, str]:
    """The mode a layer's metadata (or shape) calls for, and why in a few words.

    ``("qpi", ...)`` for a layer whose metadata says ``task: qpi`` or holds the defocus of its
    planes (``z_offsets_um``, ``defocus_D``) — a through-focus stack, which an SR model would
    wrongly treat as separate widefield frames; ``("sr", ...)`` for ``task: sr`` metadata or a
    2-D image (QPI needs planes); ``(None, "")`` when nothing says (e.g. a plain z-stack of
    fluorescence, which SR reconstructs plane by plane).
    """
    from .. import tasks

    meta = getattr(layer, "metadata", None) or {}
    task = meta.get("task")
    if isinstance(task, str) and task in tasks.names(reconstructs=True):
        return task, f"its metadata says task {task}"
    if layer.ndim >= 3 and any(key in meta for key in ("z_offsets_um", "defocus_D")):
        return "qpi", "its metadata gives the defocus of its planes"
    if layer.ndim == 2:
        return "sr", "it is a 2-D image"
    return None, ""


class ModelHeaders:
    """Validated model headers by path, cached by modification time; a header that cannot be
    read is cached as its ``ModelFileError``."""

    def __init__(self) -> None:
        self._cache: dict[tuple[str, float], Any] = {}

    def get(self, path: str | Path | None) -> dict[str, Any] | Exception | None:
        from ..engine.modelfile import read_metadata
        from ..errors import ModelFileError

        if path is None:
            return None
        path = Path(path)
        try:
            key = (str(path), path.stat().st_mtime)
        except OSError:
            key = (str(path), -1.0)
        if key not in self._cache:
            try:
                self._cache[key] = read_metadata(path)
            except ModelFileError as exc:
                self._cache[key] = exc
        return self._cache[key]
