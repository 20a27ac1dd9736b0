"""The typed header of a model file (numpy/torch-free: listing models never imports torch).

:class:`ModelHeader` is the validated JSON header of a ``.safetensors`` model file
(:mod:`~napari_cvdm.engine.modelfile`), as fields: the task, its name and description, the
network (``architecture``), the normalisation rule, the physics, the std calibration, the
weights digest and the training history with its provenance. It is read by
:func:`napari_cvdm.engine.registry.header` and carried by every
:class:`~napari_cvdm.engine.modelfile.LoadedModel` (``loaded.header``); the plain dict stays
available as ``loaded.metadata`` and ``ModelHeader.to_dict()``.
"""

from __future__ import annotations

import math
from typing import Any

__all__ = ["std_scale"]


def std_scale(metadata: dict[str, Any], raw: bool = False) -> float:
    """The factor to apply to a model's std outputs: its calibration scale (header
    ``calibration.scale``, fitted by ``workflows.calibration``), or 1 when ``raw`` or when the
    model has none."""
    if raw:
        return 1.0
    record = metadata.get("calibration") or {}
    scale = record.get("scale", 1.0)
    ok = isinstance(scale, int | float) and not isinstance(scale, bool) and scale > 0
    return float(scale) if ok and math.isfinite(scale) else 1.0
