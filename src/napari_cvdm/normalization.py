"""Normalisation between physical units and the model's diffusion units (numpy only, no torch).

One set of functions serves training and inference (docs/architecture.md, physics.md (b), (c)):

* **SR input** (widefield, ADU): subtract the camera offset, map the frame's percentiles
  (``p_low``, ``p_high``) = (1, 99.8) to [0, 1], then ×2 − 1; never clipped. The percentiles are
  computed once per *frame* (never per tile) and kept in a :class:`PercentileNorm`, whose inverse
  maps model outputs back to the input's ADU-above-offset scale (relative intensities).
* **SR prior** (optional, rule ``prior.kind = "rl"``): Richardson–Lucy of the whole frame with
  the model's nominal optics (binning in the forward model, re-apodised to the nominal SIM OTF),
  on the target grid, mapped by the *same* percentile map (×4: a GT pixel is a quarter of a
  widefield pixel). It is condition channel 0 and the residual base: the model learns the
  correction of RL, and its input still holds the up-sampled widefield as channel 1.
* **SR target** (ground truth, training only): ``a·GT + c`` fitted so that the ground truth blurred
  to the widefield resolution matches the up-sampled input (:func:`normalize_target_to_condition`);
  models before it used min–max to [−1, 1] (DL-SR convention).
* **QPI input**: flat-field contrast ``I / I_bg − 1`` (unclipped) of the two planes, preceded by a
  **TIE prior** channel: the Tikhonov TIE phase of the same planes (global Poisson solve, so it
  carries the low spatial frequencies a patch-sized network cannot see), floored at its 1st
  percentile and mapped like the target. QPI models are residual: they learn target − prior.
  A rule may add ``extra_alphas``: TIE priors of the same planes at other Tikhonov weights, as
  channels after the first (``[TIE(α), TIE(α₁), …, c−, c+]``). No single α suits every noise
  level and scene (low noise and large cells want a weak one, noise and fine texture a strong
  one); with the set the network can pick per region what a global solve gets right.
  **QPI target**: the fixed map ``2 φ / φ_norm − 1`` with ``φ_norm = 3.5`` rad, never per image.

These are the numeric maps. Which of them a task uses, in what order, and the rule every model
file stores under ``normalization`` (``tasks.sr.rule``, ``tasks.qpi.rule``, checked by
``tasks.validate_rule``) belong to the task (:mod:`napari_cvdm.tasks`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "DEFAULT_PHI_NORM",
    "PercentileNorm",
    "defocus_number",
    "denormalize",
    "denormalize_scale",
    "fit_input_norm",
    "model_to_phase",
    "normalize_input",
    "normalize_target_minmax",
    "normalize_target_to_condition",
    "phase_to_model",
    "qpi_contrast",
    "qpi_tie_prior",
    "sr_rl_prior",
    "upsample_condition",
]

#: fixed phase scale of QPI models (rad): φ = (y + 1) · φ_norm / 2
DEFAULT_PHI_NORM = 3.5
#: Tikhonov weight of the TIE prior channel (pixel units): the TIE α tuned on the QPI-A
#: validation set, the same at all three noise levels (benchmarks/results/baselines.json)
QPI_TIE_ALPHA = 1e-6
#: the extra TIE prior channels of a multi-α QPI model (rule ``prior.extra_alphas``): a decade
#: apart around :data:`QPI_TIE_ALPHA`, spanning the α that suits σ = 0.003–0.1 of I₀ on QPI-B
QPI_TIE_EXTRA_ALPHAS = (1e-7, 1e-5, 1e-4)
#: the prior is shifted so this percentile is 0 (the recipes' phase maps start at 0 rad)
QPI_TIE_FLOOR_PERCENTILE = 1.0
#: Richardson–Lucy iterations of the SR prior channel: the network corrects the remaining
#: noise and mismatch, so fewer than the 150–200 tuned for RL alone on SR-B (and half the cost)
SR_RL_ITERATIONS = 100


@dataclass(frozen=True)
class PercentileNorm:
    """The input map of one frame: ``x' = 2 (x − offset − low) / (high − low) − 1``.

    ``low``/``high`` are the ``p_low``/``p_high`` percentiles of the offset-subtracted frame
    (ADU above offset); ``offset_adu`` is the camera offset that was subtracted.
    """

    offset_adu: float
    low: float
    high: float
    p_low: float = 1.0
    p_high: float = 99.8

    @property
    def scale(self) -> float:
        """``high − low`` in ADU (> 0)."""
        return self.high - self.low

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict (plain floats)."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PercentileNorm:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {"offset_adu", "low", "high", "p_low", "p_high"}
        if unknown:
            raise ValueError(f"unknown PercentileNorm keys: {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in data.items()})


def _finite_frame(frame: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.size == 0:
        raise InputError(f"the {what} is empty (shape {arr.shape}); give a non-empty image")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"the {what} has dtype {arr.dtype}; give a real-valued numeric image")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(
            f"the {what} contains NaN or Inf values; replace them (e.g. with the background) first"
        )
    return arr


def fit_input_norm(
    frame: np.ndarray, offset_adu: float = 0.0, p_low: float = 1.0, p_high: float = 99.8
) -> PercentileNorm:
    """Fit the SR input map of one whole frame (any shape, ADU including the camera offset).

    When the two percentiles coincide (e.g. a sparse image that is > 99 % background) the
    frame's min and max are used instead. Raises :class:`InputError` for an empty, non-finite
    or constant frame.
    """
    if not 0.0 <= p_low < p_high <= 100.0:
        raise InputError(
            f"percentiles must satisfy 0 <= p_low < p_high <= 100, got {p_low}, {p_high}"
        )
    arr = _finite_frame(frame, "input frame") - float(offset_adu)
    low, high = np.percentile(arr, [p_low, p_high])
    if not high > low:
        low, high = float(arr.min()), float(arr.max())
    if not high > low:
        raise InputError(
            f"the input frame is constant (every pixel is {low + offset_adu:g}); "
            "there is nothing to reconstruct — check that the right image or plane was chosen"
        )
    return PercentileNorm(float(offset_adu), float(low), float(high), float(p_low), float(p_high))


def normalize_input(frame: np.ndarray, norm: PercentileNorm) -> np.ndarray:
    """Frame in ADU (with offset) → diffusion units, float32, unclipped; same shape."""
    arr = np.asarray(frame, dtype=np.float64)
    out = 2.0 * (arr - norm.offset_adu - norm.low) / norm.scale - 1.0
    return out.astype(np.float32)


def upsample_condition(condition: Any) -> Any:
    """Bicubic ×2 of the last two axes, ``interpolate(mode="bicubic", align_corners=False)``.

    Accepts a numpy array or a torch tensor (..., Y, X) and returns the same kind, float32
    (..., 2Y, 2X). The one function used for SR conditions in training and inference (torch
    is imported here, on first use).
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


def denormalize(values: np.ndarray, norm: PercentileNorm) -> np.ndarray:
    """Inverse input map: diffusion units → ADU above the camera offset, float32.

    The offset is *not* added back: SR outputs are relative intensities on the input's
    ADU-above-offset scale. A standard deviation maps with :func:`denormalize_scale`.
    """
    arr = np.asarray(values, dtype=np.float64)
    return ((arr + 1.0) * 0.5 * norm.scale + norm.low).astype(np.float32)


def denormalize_scale(values: np.ndarray, norm: PercentileNorm) -> np.ndarray:
    """Map a spread (e.g. a std) from diffusion units to ADU: multiply by ``(high − low) / 2``."""
    return (np.asarray(values, dtype=np.float64) * 0.5 * norm.scale).astype(np.float32)


def normalize_target_minmax(target: np.ndarray) -> np.ndarray:
    """Ground truth → [−1, 1] by its own min and max (float32, same shape).

    A constant target (a blank patch) maps to −1 everywhere, i.e. "all at the minimum".
    """
    arr = _finite_frame(target, "target")
    lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        return np.full(arr.shape, -1.0, dtype=np.float32)
    return (2.0 * (arr - lo) / (hi - lo) - 1.0).astype(np.float32)


#: σ (target-grid px) of the Gaussian that takes an SR-A ground truth (SIM PSF, σ ≈ 1.28 px) to
#: about the widefield resolution (σ ≈ 2.36 px): sqrt(2.36² − 1.28²) ≈ 2
SR_TARGET_BLUR_PX = 2.0


def normalize_target_to_condition(
    target: np.ndarray, condition_up: np.ndarray, blur_px: float = SR_TARGET_BLUR_PX
) -> np.ndarray:
    """Ground truth (2Y, 2X) → the input's diffusion units: ``a·GT + c`` (float32).

    ``a`` and ``c`` are the least-squares fit of the up-sampled condition (model units, same
    shape) by the ground truth blurred to about the widefield resolution (Gaussian ``blur_px``).
    The target then has the local intensity scale of the input, so the network learns a local
    sharpening; a per-frame min–max map instead ties every patch's scale to the brightest pixel
    of the whole frame, which a patch cannot see. Falls back to min–max when the fit is
    degenerate (constant or anti-correlated ground truth).
    """
    from scipy.ndimage import gaussian_filter

    gt = _finite_frame(target, "target").astype(np.float64)
    x = np.asarray(condition_up, dtype=np.float64)
    if x.shape != gt.shape:
        raise InputError(f"target {gt.shape} and up-sampled condition {x.shape} differ in shape")
    blurred = gaussian_filter(gt, float(blur_px), mode="reflect")
    design = np.stack([blurred.ravel(), np.ones(blurred.size)], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, x.ravel(), rcond=None)
    if not (np.isfinite(scale) and scale > 0):
        return normalize_target_minmax(target)
    return (scale * gt + offset).astype(np.float32)


def sr_rl_prior(
    frame_adu: np.ndarray,
    norm: PercentileNorm,
    *,
    pixel_size_um: float,
    na: float,
    wavelength_um: float,
    iterations: int = SR_RL_ITERATIONS,
) -> np.ndarray:
    """Richardson–Lucy estimate of one widefield frame (Y, X) ADU in model units (2Y, 2X).

    RL with 2×2 binning in the forward model and the nominal (Airy) optics ``na``,
    ``wavelength_um`` at the widefield pixel ``pixel_size_um``, re-apodised to the nominal SIM
    OTF (:func:`~napari_cvdm.physics.sr_baselines.richardson_lucy_iterates`), computed on the
    whole frame; intensities per GT pixel ×4 plus the estimated constant background are mapped
    by ``norm`` like the widefield, so the prior and the up-sampled input share units. float32.
    """
    from .physics.sr_baselines import estimate_background, richardson_lucy_iterates

    frame = _finite_frame(frame_adu, "widefield frame")
    background = estimate_background(frame - norm.offset_adu)  # ADU per widefield pixel
    rl = richardson_lucy_iterates(
        frame,
        pixel_size_um=float(pixel_size_um),
        na=float(na),
        wavelength_um=float(wavelength_um),
        checkpoints=[int(iterations)],
        offset_adu=norm.offset_adu,
        gain_adu_per_e=1.0,  # RL is scale-equivariant: ADU in, ADU per GT pixel out
        background_e=background,
    )[int(iterations)]
    # per widefield-pixel area, background added back: the units of the up-sampled widefield
    out = 2.0 * (4.0 * rl.astype(np.float64) + background - norm.low) / norm.scale - 1.0
    return out.astype(np.float32)


def qpi_contrast(stack: np.ndarray, background: float | np.ndarray | None = None) -> np.ndarray:
    """Flat-field contrast ``I / I_bg − 1`` of a through-focus stack (..., Z, Y, X), float32.

    ``background`` is the flat-field intensity (scalar or broadcastable array); when omitted
    it is estimated as the median of the whole stack. Unclipped.
    """
    arr = _finite_frame(stack, "through-focus stack")
    if background is None:
        bg: float | np.ndarray = float(np.median(arr))
    else:
        bg = np.asarray(background, dtype=np.float64)
    if np.any(np.asarray(bg) <= 0) or not np.all(np.isfinite(bg)):
        raise InputError(
            "the background (flat-field) intensity must be positive and finite; "
            "give intensities above the camera offset, or pass the flat field explicitly"
        )
    return (arr / bg - 1.0).astype(np.float32)


def defocus_number(wavelength_um: float, dz_um: float, pixel_size_um: float) -> float:
    """Dimensionless defocus ``D = λ·dz/Δx²`` (physics.md (c)): all a Fresnel pair depends on."""
    return float(wavelength_um) * float(dz_um) / float(pixel_size_um) ** 2


def qpi_tie_prior(
    contrast: np.ndarray,
    defocus_D: float,
    alpha: float | tuple[float, ...] = QPI_TIE_ALPHA,
    phi_norm: float = DEFAULT_PHI_NORM,
    floor_percentile: float = QPI_TIE_FLOOR_PERCENTILE,
) -> np.ndarray:
    """TIE phase of a contrast pair (2, Y, X) [−dz, +dz] in model units: (Y, X) float32.

    FFT-Tikhonov TIE with mirror boundaries in pixel units, where only ``D = λ·dz/Δx²``
    matters; the result is shifted so its ``floor_percentile`` is 0 rad, then mapped by
    :func:`phase_to_model`. Computed on the whole frame, never per tile or patch. A tuple of
    ``alpha`` gives one prior per weight, stacked: (len(alpha), Y, X).
    """
    from .physics.tie import tie_fft

    planes = _finite_frame(contrast, "QPI contrast").astype(np.float64) + 1.0
    if planes.ndim != 3 or planes.shape[0] != 2:
        raise InputError(f"the TIE prior needs two planes (2, Y, X), got shape {planes.shape}")
    alphas = alpha if isinstance(alpha, tuple) else (alpha,)
    priors = []
    for a in alphas:
        phi = tie_fft(planes, 1.0, float(defocus_D), 1.0, alpha=float(a), boundary="mirror")
        phi = phi - np.percentile(phi, floor_percentile)
        priors.append(phase_to_model(phi, phi_norm))
    return np.stack(priors) if isinstance(alpha, tuple) else priors[0]


def phase_to_model(phi: np.ndarray, phi_norm: float = DEFAULT_PHI_NORM) -> np.ndarray:
    """Phase in rad → model units ``2 φ / φ_norm − 1`` (float32)."""
    return (2.0 * np.asarray(phi, dtype=np.float64) / phi_norm - 1.0).astype(np.float32)


def model_to_phase(values: np.ndarray, phi_norm: float = DEFAULT_PHI_NORM) -> np.ndarray:
    """Model units → phase in rad ``(y + 1) · φ_norm / 2`` (float32)."""
    return ((np.asarray(values, dtype=np.float64) + 1.0) * phi_norm * 0.5).astype(np.float32)
