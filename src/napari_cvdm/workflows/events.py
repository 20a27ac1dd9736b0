"""The job events, re-exported: they live in :mod:`napari_cvdm.events` (below every layer, so
the engine can yield them without importing the workflows)."""

from ..events import Finished, LossReport, PartialResult, Progress, Validation

__all__ = ["Finished", "LossReport", "PartialResult", "Progress", "Validation"]
