"""Typed events yielded by every long job (sampling, predict, train, restore).

The napari thread worker, the CLI progress bar and the tests consume the same stream of
events, so there is no second code path for the GUI. Events carry copies of arrays, never
views into buffers that the job keeps mutating. This module imports neither torch nor Qt.

It sits at the top of the package, below every layer, so the engine (``engine.sampling``
yields :class:`Progress`) and the workflows share it without the engine importing workflows.
``workflows.events`` re-exports it for older imports.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Progress:
    """One unit of work finished: ``step`` of ``total`` (1-based), in stage ``stage``.

    For sampling, steps are sample-steps: one reverse-diffusion step of a group of g samples
    advances ``step`` by g, and the last event of the job has ``step == total``.
    """

    step: int
    total: int
    stage: str = ""


@dataclass(frozen=True)
class PartialResult:
    """Running reconstruction after a group of samples finished (progressive refinement).

    Arrays are float32 copies in physical units: ``mean`` and ``std`` have the output shape
    (frames stacked on leading axes as in the input); ``samples_done`` of ``samples_total``.
    """

    mean: Any
    std: Any
    samples_done: int
    samples_total: int
    frame: int = 0
    frames_total: int = 1


@dataclass(frozen=True)
class LossReport:
    """Training losses at one optimiser step: ``losses`` maps term name -> float."""

    step: int
    total: int
    losses: dict[str, float]
    lr: float = 0.0


@dataclass(frozen=True)
class Validation:
    """Validation at a training step.

    ``metrics`` maps name -> value (e.g. psnr, ssim, phase_mae); ``preview`` is an image array.
    """

    step: int
    metrics: dict[str, float]
    preview: Any = None


@dataclass(frozen=True)
class Finished:
    """The job ended normally, or after a cancel that saved its work.

    ``result`` is job-specific (a Reconstruction, a model path...).
    """

    result: Any
    cancelled: bool = False
    info: dict[str, Any] = field(default_factory=dict)
