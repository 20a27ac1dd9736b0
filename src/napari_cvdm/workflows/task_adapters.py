"""Task adapters: physical images → model conditions, and model samples → physical units.

One adapter per task, built once per input (validation happens at construction, so a bad input
raises :class:`~napari_cvdm.errors.InputError` before any work starts):

* :class:`SRAdapter` — raw widefield ``(..., Y, X)`` in ADU; every leading plane is a frame.
  Per frame: optional resampling to the model's PSF width in pixels, percentile normalisation
  (one fit per whole frame), bicubic ×2 onto the target grid. Output: relative intensity in the
  input's ADU-above-offset scale, on a grid twice as fine (``(..., 2Y', 2X')``).
* :class:`QPIAdapter` — through-focus stack ``(..., Z, Y, X)``; the ``planes`` at −dz and +dz
  (default the first and last) become the contrast ``I/I_bg − 1``. Output: phase in rad (Y, X).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputError
from ..normalization import (
    DEFAULT_PHI_NORM,
    defocus_number,
    denormalize,
    fit_input_norm,
    model_to_phase,
    qpi_condition,
    qpi_contrast,
    sr_condition,
)

__all__ = [
    "MIN_SIZE",
    "PreparedFrame",
    "QPIAdapter",
    "SRAdapter",
    "make_adapter",
    "upsample_condition",
]

#: smallest accepted Y/X size of an input frame (pixels)
MIN_SIZE = 8
#: resampling factors closer to 1 than this are skipped
_RESAMPLE_TOLERANCE = 0.02


def upsample_condition(condition: Any) -> Any:
    """Bicubic ×2 of the last two axes, ``interpolate(mode="bicubic", align_corners=False)``.

    Accepts a numpy array or a torch tensor (..., Y, X) and returns the same kind, float32
    (..., 2Y, 2X). The one function used for SR conditions in training and inference.
    """
    import torch
    import torch.nn.functional as F

    is_numpy = isinstance(condition, np.ndarray)
    t = torch.from_numpy(np.ascontiguousarray(condition, np.float32)) if is_numpy else condition
    lead = t.shape[:-2]
    flat = t.reshape(-1, 1, *t.shape[-2:]).float()
    up = F.interpolate(flat, scale_factor=2, mode="bicubic", align_corners=False)
    up = up.reshape(*lead, *up.shape[-2:])
    return up.numpy() if is_numpy else up


@dataclass
class PreparedFrame:
    """One frame ready for sampling: ``condition`` (C_x, H, W) float32 in model units on the
    target grid; ``norm`` the JSON-ready normalisation of this frame."""

    condition: np.ndarray
    to_physical: (
        Any  # samples (S, H, W) model units -> physical units (x_up added back if residual)
    )
    norm: dict[str, Any]


def _check_image(image: Any, min_ndim: int, what: str) -> np.ndarray:
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


class SRAdapter:
    """Widefield (..., Y, X) in ADU → SR frames; see the module docstring.

    ``pixel_size_um``, ``na``, ``wavelength_um``: the image's optics; when a pixel size is given
    the image is resampled to the model's PSF width in pixels (missing NA/λ default to the
    model's). ``offset_adu``: camera offset (default: the model's training offset).
    """

    task = "sr"

    def __init__(
        self,
        image: Any,
        metadata: dict[str, Any],
        *,
        pixel_size_um: float | None = None,
        na: float | None = None,
        wavelength_um: float | None = None,
        offset_adu: float | None = None,
        resample_method: str = "fourier",
    ) -> None:
        self.image = _check_image(image, 2, "widefield image")
        self.physics = metadata["physics"]
        rule = metadata["normalization"]["input"]
        self.offset = float(rule["offset_adu"] if offset_adu is None else offset_adu)
        self.percentiles = (float(rule["p_low"]), float(rule["p_high"]))
        self.resample_method = resample_method
        self.residual = bool(metadata["architecture"].get("residual", False))
        self.rule = metadata["normalization"]
        self.lead = self.image.shape[:-2]
        self.factor = 1.0
        self.optics: dict[str, Any] = {
            "pixel_size_um": pixel_size_um,
            "na": na,
            "wavelength_um": wavelength_um,
        }
        if pixel_size_um is not None:
            self.factor = self._resample_factor(pixel_size_um, na, wavelength_um)
        h, w = self.image.shape[-2:]
        self.frame_shape = (max(1, round(h * self.factor)), max(1, round(w * self.factor)))
        if self.factor != 1.0:  # the exact factor realised by the integer output size
            self.factor = self.frame_shape[-1] / w
        self.output_shape = (*self.lead, 2 * self.frame_shape[0], 2 * self.frame_shape[1])
        self.norms = [self._fit(idx) for idx in np.ndindex(*self.lead)]  # validates every frame

    def _resample_factor(
        self, pixel_size_um: float, na: float | None, wavelength_um: float | None
    ) -> float:
        from ..physics.psf import psf_width_px, resample_factor_for_model

        p = self.physics
        na = float(na) if na is not None else float(p["na"])
        lam = float(wavelength_um) if wavelength_um is not None else float(p["wavelength_um"])
        self.optics.update(na=na, wavelength_um=lam, pixel_size_um=float(pixel_size_um))
        r0 = psf_width_px(float(p["na"]), float(p["wavelength_um"]), float(p["pixel_size_um"]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            factor = resample_factor_for_model(float(pixel_size_um), na, lam, r0)
        for w in caught:
            warnings.warn(str(w.message), w.category, stacklevel=4)
        return 1.0 if abs(factor - 1.0) < _RESAMPLE_TOLERANCE else factor

    def _frame(self, idx: tuple[int, ...]) -> np.ndarray:
        frame = np.asarray(self.image[idx], dtype=np.float64)
        if self.factor != 1.0:
            from ..physics.psf import resample_image

            frame = resample_image(frame, self.factor, self.resample_method).astype(np.float64)
        return frame

    def _fit(self, idx: tuple[int, ...]) -> Any:
        try:
            return fit_input_norm(np.asarray(self.image[idx]), self.offset, *self.percentiles)
        except InputError as exc:
            where = f" (frame {idx})" if idx else ""
            raise InputError(f"{exc}{where}") from None

    @property
    def frames(self) -> int:
        return math.prod(self.lead)

    def prior_optics(self) -> dict[str, float]:
        """Optics of the (resampled) frames for the RL prior: the stated NA/λ (else the model's)
        at the pixel size the frames have after resampling (else the model's)."""
        p = self.physics
        px = self.optics.get("pixel_size_um")
        return {
            "pixel_size_um": float(px) / self.factor if px else float(p["pixel_size_um"]),
            "na": float(self.optics.get("na") or p["na"]),
            "wavelength_um": float(self.optics.get("wavelength_um") or p["wavelength_um"]),
        }

    def prepare(self, index: int) -> PreparedFrame:
        """Frame ``index`` (C order over the leading axes) as a model condition (C_x, 2Y', 2X'):
        ``[widefield ×2]``, or ``[RL prior, widefield ×2]`` for models with the RL prior."""
        idx = np.unravel_index(index, self.lead) if self.lead else ()
        idx = tuple(int(i) for i in idx)
        norm = self.norms[index]
        # percentiles come from the original frame: resampling is linear, so the map is the same
        optics = self.prior_optics() if self.rule.get("prior") else None
        condition = sr_condition(self._frame(idx), norm, self.rule, optics)
        x_up = condition[0] if self.residual else 0.0

        def to_physical(samples: np.ndarray) -> np.ndarray:
            return denormalize(np.asarray(samples, np.float64) + x_up, norm)

        return PreparedFrame(condition, to_physical, norm.to_dict())

    def output_pixel_size(self, pixel_size_um: float | None) -> float | None:
        """Output pixel (µm) for an input pixel ``pixel_size_um``: Δx / (2 · factor)."""
        return None if pixel_size_um is None else pixel_size_um / (2.0 * self.factor)

    def provenance(self) -> dict[str, Any]:
        return {
            "sr_factor": 2.0 * self.factor,
            "resample_factor": self.factor,
            "resample_method": self.resample_method if self.factor != 1.0 else None,
            "offset_adu": self.offset,
            "optics": {k: v for k, v in self.optics.items() if v is not None},
            "output_pixel_size_um": self.output_pixel_size(self.optics.get("pixel_size_um")),
        }


class QPIAdapter:
    """Through-focus stack (..., Z, Y, X) → QPI frames; see the module docstring.

    ``focus_axis``: the Z axis (default the axis before Y); ``planes``: indices (i_minus, i_plus)
    of the −dz and +dz planes (default first and last); ``background``: flat-field intensity
    (default: median of the two planes). ``wavelength_um``, ``dz_um``, ``pixel_size_um`` are
    recorded, and compared with the model's dimensionless defocus D = λ·dz/Δx².
    """

    task = "qpi"

    def __init__(
        self,
        image: Any,
        metadata: dict[str, Any],
        *,
        focus_axis: int | None = None,
        planes: Sequence[int] | None = None,
        background: float | None = None,
        wavelength_um: float | None = None,
        dz_um: float | None = None,
        pixel_size_um: float | None = None,
    ) -> None:
        arr = np.asarray(image)
        if arr.ndim < 3:
            raise InputError(
                f"QPI needs a through-focus stack (Z, Y, X) with planes at −dz and +dz, got a "
                f"{arr.ndim}-D image of shape {arr.shape}; choose a stack or switch to SR mode"
            )
        axis = arr.ndim - 3 if focus_axis is None else int(focus_axis)
        if not -arr.ndim <= axis < arr.ndim or axis % arr.ndim >= arr.ndim - 2:
            raise InputError(
                f"focus axis {focus_axis} is not a valid axis before Y, X of shape {arr.shape}"
            )
        arr = np.moveaxis(arr, axis, -3)
        self.image = _check_image(arr, 3, "through-focus stack")
        self.focus_axis = axis % arr.ndim
        nz = self.image.shape[-3]
        planes = (0, nz - 1) if planes is None else tuple(int(p) for p in planes)
        if (
            nz < 2
            or len(planes) != 2
            or planes[0] == planes[1]
            or not all(-nz <= p < nz for p in planes)
        ):
            raise InputError(
                f"QPI needs two distinct planes (−dz, +dz) of the {nz}-plane focus axis, got "
                f"planes={planes}; give planes=(i, j) with 0 <= i, j < {nz}"
            )
        self.planes = tuple(p % nz for p in planes)
        self.background = background
        self.rule = metadata["normalization"]
        self.phi_norm = float(self.rule["target"].get("phi_norm", DEFAULT_PHI_NORM))
        self.residual = bool(metadata["architecture"].get("residual", False))
        physics = metadata["physics"]
        trained_D = (self.rule.get("prior") or {}).get("defocus_D")
        self.model_defocus_D = (
            float(trained_D)
            if trained_D
            else defocus_number(
                physics["wavelength_um"], physics["dz_um"], physics["pixel_size_um"]
            )
        )  # the D of the prior in training: used when the stack's optics are not given
        self.lead = self.image.shape[:-3]
        self.output_shape = (*self.lead, *self.image.shape[-2:])
        self.optics = {
            "wavelength_um": wavelength_um,
            "dz_um": dz_um,
            "pixel_size_um": pixel_size_um,
        }
        self.defocus_D = self._check_defocus()
        for index in range(self.frames):  # validate every frame before any work
            self._contrast(index)

    def _check_defocus(self) -> float | None:
        lam, dz, dx = (self.optics[k] for k in ("wavelength_um", "dz_um", "pixel_size_um"))
        if None in (lam, dz, dx):
            return None
        d_user = defocus_number(lam, dz, dx)
        d_train = self.model_defocus_D
        if not 0.5 <= d_user / d_train <= 2.0:
            warnings.warn(
                f"the defocus number D = λ·dz/Δx² = {d_user:.1f} of this stack is far from the "
                f"model's {d_train:.1f}; pick planes with a closer dz or resample the stack",
                UserWarning,
                stacklevel=3,
            )
        return d_user

    @property
    def frames(self) -> int:
        return math.prod(self.lead)

    def _contrast(self, index: int) -> np.ndarray:
        idx = tuple(int(i) for i in np.unravel_index(index, self.lead)) if self.lead else ()
        two = np.asarray(self.image[idx][list(self.planes)], dtype=np.float64)
        if float(two.max()) == float(two.min()):
            raise InputError(
                f"the planes {self.planes} of frame {idx} are constant; there is no phase "
                "contrast to reconstruct — check the focus axis and planes"
            )
        return qpi_contrast(two, self.background)

    def prepare(self, index: int) -> PreparedFrame:
        """Frame ``index`` as a model condition: (3, Y, X) ``[TIE prior, c−, c+]`` (or the
        contrast pair (2, Y, X) for models without a prior). The prior uses the stack's
        defocus number D when its optics are known, else the model's."""
        phi_norm = self.phi_norm
        defocus_D = self.defocus_D or self.model_defocus_D
        condition = qpi_condition(self._contrast(index), defocus_D, self.rule)
        prior = condition[0] if self.residual else 0.0

        def to_physical(samples: np.ndarray) -> np.ndarray:
            return model_to_phase(np.asarray(samples, np.float64) + prior, phi_norm)

        info = {
            "contrast": "I/I_bg-1",
            "background": self.background or "median",
            "phi_norm": phi_norm,
        }
        if self.rule.get("prior"):
            info["tie_prior"] = {**self.rule["prior"], "defocus_D": defocus_D}
        return PreparedFrame(condition, to_physical, info)

    def output_pixel_size(self, pixel_size_um: float | None) -> float | None:
        return pixel_size_um

    def provenance(self) -> dict[str, Any]:
        return {
            "planes": list(self.planes),
            "focus_axis": self.focus_axis,
            "defocus_D": self.defocus_D,
            "optics": {k: v for k, v in self.optics.items() if v is not None},
        }


def make_adapter(task: str, image: Any, metadata: dict[str, Any], **options: Any) -> Any:
    """The adapter for ``task`` ("sr"/"qpi"); unknown options raise ``InputError``."""
    cls = {"sr": SRAdapter, "qpi": QPIAdapter}.get(task)
    if cls is None:
        raise InputError(
            f"models of task {task!r} cannot reconstruct images; use an SR or QPI model"
        )
    try:
        return cls(image, metadata, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise InputError(f"unknown option for {task.upper()} reconstruction: {exc}") from None
        raise
