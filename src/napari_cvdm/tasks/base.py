"""What a task *is*: the :class:`Task` every task module (``sr.py``, ``qpi.py``, ``restore.py``)
fills in, so that the rest of the package asks the task instead of comparing its name.

A task owns everything task-specific: which network its model files hold and how their header
is checked (channels, physics, the normalisation rule), how an input is validated and turned into
model units and back (its adapter), the assumptions it prints, how the simulator makes a
training pair and what the training target is, its classical baselines and metrics, and the
names, colour maps and units of its outputs. Attributes are plain values; methods take arrays
in the units their docstrings give. No torch and no napari here (methods that need them import
them inside).

Shared by the task modules: :class:`PreparedFrame` (one frame in model units and the way back),
:class:`PreparedPair` (one training pair in model units) and :func:`check_image` (the input
checks every adapter makes first).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError

__all__ = [
    "MIN_SIZE",
    "BioimageioText",
    "Example",
    "OutputText",
    "PreparedFrame",
    "PreparedPair",
    "Task",
    "check_image",
    "json_number",
]

#: smallest accepted Y/X size of an input frame (pixels)
MIN_SIZE = 8


@dataclass
class PreparedFrame:
    """One frame ready for sampling: ``condition`` (C_x, H, W) float32 in model units on the
    target grid; ``to_physical`` maps samples (S, H, W) in model units to physical units (the
    residual's base added back); ``norm`` the JSON-ready normalisation of this frame."""

    condition: np.ndarray
    to_physical: Callable[[np.ndarray], np.ndarray]
    norm: dict[str, Any]


@dataclass(frozen=True)
class PreparedPair:
    """One whole training frame pair in model units: ``condition`` (C_x, H, W) on the target
    grid and ``target`` (C_y, H, W), float32 (the trainer forms the residual)."""

    condition: np.ndarray
    target: np.ndarray
    name: str = ""


@dataclass(frozen=True)
class OutputText:
    """How a task's images are named and labelled in figures and layers: the unit of the
    mean/std, the input panel's label and units (any intensity scale, and a simulated one),
    the ground truth's label and unit, and the mean's colour map."""

    value_unit: str
    input_label: str
    input_unit: str
    simulated_input_unit: str
    truth_label: str
    truth_unit: str
    mean_colormap: str = "gray"
    #: the mean layer takes the input layer's colour map (intensities) instead of ``mean_colormap``
    mean_colormap_of_input: bool = False


@dataclass(frozen=True)
class BioimageioText:
    """What a bioimage.io package says about a task's tensors: input channel names, the
    output channel, the input's description, the outputs' value and the package tags."""

    input_channels: tuple[str, ...]
    output_channel: str
    input_description: str
    output_value: str
    tags: tuple[str, ...]


@dataclass(frozen=True)
class Example:
    """A simulated input of a task at a model's optics (``demo``, the bioimage.io test input):
    ``image`` as ``predict`` reads it (SR widefield (Y, X) ADU; QPI stack (Z, Y, X)),
    ``truth`` on the output grid, pixel sizes (µm), the adapter ``options`` that describe it,
    the simulator's ``metadata`` and ``what`` it is in words."""

    image: np.ndarray
    truth: np.ndarray
    input_pixel_um: float
    output_pixel_um: float
    options: dict[str, Any]
    metadata: dict[str, Any]
    what: str


def json_number(value: Any, where: str) -> float:
    """``value`` of a JSON header field ``where`` as a float; ``ValueError`` unless it is a
    finite number (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def check_image(image: Any, min_ndim: int, what: str) -> np.ndarray:
    """``image`` as an array after the checks every input gets: real numbers, at least
    ``min_ndim`` dimensions, not empty, at least :data:`MIN_SIZE` pixels in Y and X, finite;
    raises :class:`InputError` naming the problem (``what``: "widefield image", ...)."""
    arr = np.asarray(image)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"the {what} has dtype {arr.dtype}; give a real-valued numeric image")
    if arr.ndim < min_ndim:
        raise InputError(
            f"the {what} must have at least {min_ndim} dimensions, got shape {arr.shape}"
        )
    if arr.size == 0:
        raise InputError(f"the {what} is empty (shape {arr.shape}); give a non-empty image")
    if min(arr.shape[-2:]) < MIN_SIZE:
        raise InputError(
            f"the {what} is too small ({arr.shape[-2]}×{arr.shape[-1]} pixels in Y, X); "
            f"give at least {MIN_SIZE}×{MIN_SIZE} pixels"
        )
    if np.issubdtype(arr.dtype, np.inexact) and not np.isfinite(arr).all():
        raise InputError(
            f"the {what} contains NaN or Inf values; replace them (e.g. with the background) first"
        )
    return arr


class Task:
    """One task. Subclasses set the attributes and implement the methods they need; the
    defaults describe a task that neither reconstructs nor trains.

    The groups below are what the rest of the package asks: the model header (engine), the
    input and its reconstruction (workflows.predict, commands.predict, the widgets), display
    (figures, layers), training (workflows.train and its data), the simulator (simulate, demo),
    baselines and metrics (baseline, evaluate, validation).
    """

    # ------------------------------------------------------------------ identity
    #: the model-file ``task`` value ("sr", "qpi", "prior")
    name: str = ""
    #: upper-case label in messages and titles ("SR", "QPI")
    label: str = ""
    #: the network family its model files hold: "cvdm" (conditional) or "edm_prior"
    network: str = "cvdm"
    #: ``predict``/``reconstruct``/``demo``/``export-bioimageio`` can run its models
    reconstructs: bool = False
    #: ``train`` (CVDM training) can make its models
    trainable: bool = False
    #: zero-shot ``restore`` can use its models as the prior
    restores: bool = False
    #: the preferred bundled model
    default_model: str = ""
    #: `napari-cvdm models --task NAME` with no model installed ({user_dir}: the user folder);
    #: None: the generic line
    models_missing_note: str | None = None

    # ------------------------------------------------------------------ model header
    #: (condition, target) channels every model of the task has; None: from the rule
    fixed_channels: tuple[int | None, int | None] = (None, None)
    #: physical parameters its model headers must record (positive numbers)
    physics_keys: tuple[str, ...] = ()
    #: the recipe's nominal physics (µm, dimensionless) when the data do not say
    default_physics: dict[str, float] = {}

    # ------------------------------------------------------------------ reconstruction
    #: the output grid is this much finer than the input's (1: the same grid)
    upscale: float = 1.0

    #: the input adapter class: ``adapter(image, metadata, **options)`` validates an input at
    #: once and has ``frames``, ``output_shape``, ``prepare(index) -> PreparedFrame``,
    #: ``output_pixel_size(px)`` and ``provenance()`` (None: the task does not reconstruct)
    adapter: Any = None
    #: optics (``wavelength_um``, ``dz_um``) taken from a file's own provenance when no option
    #: gives them (``imagemeta.file_optics``); () : from the options, else the model
    optics_from_file: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    def validate_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        """Check a normalisation rule of this task (``rule["task"]`` already matches); returns
        it or raises ``ValueError`` naming the bad field."""
        raise NotImplementedError

    def condition_channels_needed(self, rule: dict[str, Any]) -> tuple[int, str] | None:
        """The condition channels a model with ``rule`` takes and the phrase that names its
        prior ("with an RL prior"), or None when :attr:`fixed_channels` says it all."""
        return None
