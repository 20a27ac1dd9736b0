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
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ModelHeader", "std_scale"]


@dataclass(frozen=True)
class ModelHeader:
    """A model file's validated header, as fields (build it with :meth:`from_dict`).

    ``task``: the model-file task ("sr", "qpi", "prior"), whose :mod:`napari_cvdm.tasks` entry
    says what the fields mean; ``architecture``: the network's config dict; ``normalization``:
    the task's rule (model units ↔ physical units); ``physics``: the optics of the training
    data (µm, dimensionless); ``calibration``: the std calibration ({} without one);
    ``training``: the training record (data, steps, validation, provenance: code version,
    command, date, base model); ``weights``: dtype and digests.
    """

    task: str
    name: str
    description: str
    architecture: dict[str, Any]
    normalization: dict[str, Any]
    physics: dict[str, Any]
    training: dict[str, Any]
    calibration: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    format_version: int = 1
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_dict(cls, meta: dict[str, Any]) -> ModelHeader:
        """The header of a validated metadata dict (``modelfile.validate_metadata``)."""
        return cls(
            task=meta["task"],
            name=meta["name"],
            description=meta["description"],
            architecture=meta["architecture"],
            normalization=meta["normalization"],
            physics=meta["physics"],
            training=meta["training"],
            calibration=meta.get("calibration") or {},
            weights=meta.get("weights") or {},
            format_version=int(meta.get("format_version", 1)),
            raw=meta,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON header dict (the one it was made from)."""
        return self.raw

    @property
    def untrained(self) -> bool:
        """A random-weight model for demos and tests (``training.untrained``)."""
        return bool(self.training.get("untrained", False))

    @property
    def provenance(self) -> dict[str, Any]:
        """Where the weights come from: code version, command, date, data, base model."""
        keys = ("code_version", "command", "date", "data", "base_model", "base_model_sha256")
        return {k: self.training[k] for k in keys if k in self.training}

    @property
    def history(self) -> dict[str, float]:
        """Optimiser steps and wall time (s) over every run the weights went through (older
        files record only their own run's ``steps`` and ``wall_time_s``)."""

        def number(key: str, fallback: str) -> float:
            value = self.training.get(key, self.training.get(fallback, 0))
            ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
            return float(value) if ok else 0.0

        return {
            "cumulative_steps": number("cumulative_steps", "steps"),
            "cumulative_wall_time_s": number("cumulative_wall_time_s", "wall_time_s"),
        }

    def std_scale(self, raw: bool = False) -> float:
        """:func:`std_scale` of this header."""
        return std_scale(self.raw or {"calibration": self.calibration}, raw=raw)


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
