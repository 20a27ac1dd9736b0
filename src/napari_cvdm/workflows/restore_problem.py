"""The inverse problem of one zero-shot restoration: grid, PSF, operator, noise, normalisation.

:func:`build_problem` checks the inputs (every refusal is an ``InputError`` naming the problem)
and turns an image in ADU plus optics into a :class:`Problem` in the prior's units
(docs/architecture.md, "Workflows API"):

* grid: x lives on the prior's grid (``prior_pixel_um``); the measurement's pixel size p gives
  binning f = 1 (p ≈ prior pixel) or 2 (p ≈ 2× prior pixel); other ratios first resample the
  measurement (band-limited) to the nearest of the two, whose noise variance is scaled by
  (p / p_new)² (the data term then keeps the information of the original pixels);
* PSF: the user's image (prepared, resampled to the x grid) or an Airy/Gaussian PSF from the
  optics; transfer function on the canvas (Airy: the analytic OTF), divided by the prior's
  image OTF (a Gaussian of ``target_fwhm_um``) inside its pass band when ``target_correction``;
* noise: a constant σ, camera gain/offset/read noise, or a single-image fit; the variance map
  is evaluated at the 3×3 box mean of the raw image and kept for the whole run;
* normalisation: (a, s) from the (0.1, 99.9) percentiles of a Richardson–Lucy estimate x̃,
  ``y_n = (y − offset − f²·a)/s``, ``w_n = s²/v`` (never a percentile map of y alone).

numpy + torch (imported in the functions).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..physics.forward_ops import (
    MARGIN_ENERGY,
    NoiseModel,
    airy_psf_image,
    canvas_geometry,
    effective_otf,
    energy_radius_px,
    estimate_noise,
    gaussian_psf_image,
    noise_from_camera,
    noise_from_sigma,
    prepare_psf,
    psf_otf,
)
from ..physics.psf import airy_otf, fourier_resize

__all__ = ["Optics", "Noise", "Problem", "build_problem", "choose_grid", "DEFAULT_TARGET_FWHM_UM"]

#: resolution (Gaussian FWHM) of the fluorescence prior's SIM-like training images: the
#: widefield FWHM at NA 1.49, 0.525 µm divided by 1.9 (physics/psf.py: sim_fwhm_um)
DEFAULT_TARGET_FWHM_UM = 0.095
#: largest canvas the solver accepts (prior pixels per side)
MAX_CANVAS_PX = 1280
MIN_IMAGE_PX = 16


@dataclass(frozen=True)
class Optics:
    """Where the PSF comes from: ``psf`` (an image, with ``psf_pixel_um``, default: the input's
    pixel size; ``psf_plane`` for a 3-D PSF) or ``na`` + ``wavelength_um`` (``kind`` "airy", or
    "gaussian" with ``fwhm_um`` instead)."""

    psf: Any = None
    psf_pixel_um: float | None = None
    psf_plane: int | None = None
    na: float | None = None
    wavelength_um: float | None = None
    kind: str = "airy"
    fwhm_um: float | None = None


@dataclass(frozen=True)
class Noise:
    """``sigma_adu`` (constant σ), or ``gain_adu_per_e`` (+ ``read_noise_e``) for a camera;
    nothing: estimated on the image. ``offset_adu``: the camera's dark level (None: unknown,
    then the output keeps it as part of the background)."""

    sigma_adu: float | None = None
    gain_adu_per_e: float | None = None
    read_noise_e: float = 0.0
    offset_adu: float | None = None


@dataclass
class Problem:
    """Everything the solver needs, in the prior's units (tensors float32 unless set)."""

    y: Any  # (1, 1, Y, X) normalised measurement
    weight: Any  # (1, 1, Y, X) w = s²/v
    op: Any  # BlurOperator
    x_warm: Any  # (1, 1, Yc, Xc) normalised RL estimate
    a: float
    s: float
    binning: int
    resample: float  # measurement zoom (1: none)
    pixel_um: float  # x grid
    measurement_pixel_um: float  # y grid after resampling
    y_adu: np.ndarray  # measurement (after resampling) minus the offset
    variance: np.ndarray  # ADU² on the y grid
    noise: NoiseModel
    psf: np.ndarray  # on the x grid (before the target correction)
    notes: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)


def choose_grid(
    pixel_um: float, prior_pixel_um: float, binning: int | None = None
) -> tuple[int, float]:
    """(binning f, measurement zoom) for an input of ``pixel_um`` and a prior of
    ``prior_pixel_um``: f = 1 for ratios in [0.5, 1.5), f = 2 in [1.5, 4] (or the given f);
    zoom = p / (f·prior pixel) (1 when within 1 %). Other ratios raise ``InputError``."""
    ratio = float(pixel_um) / float(prior_pixel_um)
    if not 0.5 <= ratio <= 4.0:
        raise InputError(
            f"the image's pixel size {pixel_um:g} µm is outside what the prior serves "
            f"({0.5 * prior_pixel_um:.3g}–{4 * prior_pixel_um:.3g} µm; the prior was trained "
            f"at {prior_pixel_um:g} µm): check --pixel-size, or bin/crop the image first"
        )
    f = binning if binning is not None else (1 if ratio < 1.5 else 2)
    if f not in (1, 2):
        raise InputError(f"binning must be 1 or 2, got {f}")
    zoom = ratio / f
    if abs(zoom - 1.0) <= 0.01:
        zoom = 1.0
    if not 0.5 <= zoom <= 2.5:
        raise InputError(
            f"binning {f} needs the image resampled by {zoom:.3g} (outside 0.5–2.5); "
            "choose the other binning or leave it automatic"
        )
    return f, zoom


def _check_image(image: Any) -> np.ndarray:
    a = np.asarray(image)
    while a.ndim > 2 and a.shape[0] == 1:
        a = a[0]
    if a.ndim != 2:
        raise InputError(
            f"zero-shot restoration takes one 2-D image (Y, X), got shape {a.shape}; "
            "choose one plane or frame"
        )
    if a.dtype.kind not in "biuf":
        raise InputError(f"the image must be real-valued, got dtype {a.dtype}")
    if min(a.shape) < MIN_IMAGE_PX:
        raise InputError(f"the image is {a.shape[0]}×{a.shape[1]} px; at least 16×16 are needed")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise InputError("the image contains NaN or Inf values; remove them first")
    if np.ptp(a) == 0:
        raise InputError("the image is constant; there is nothing to restore")
    return a


def _psf_on_grid(optics: Optics, pixel_um: float, input_pixel_um: float) -> tuple[np.ndarray, str]:
    if optics.psf is not None:
        psf_px = optics.psf_pixel_um or input_pixel_um
        psf = prepare_psf(optics.psf, psf_px, pixel_um, plane=optics.psf_plane)
        return psf, "image"
    if optics.kind == "gaussian":
        if optics.fwhm_um is None:
            raise InputError("a Gaussian PSF needs its FWHM in µm")
        return gaussian_psf_image(optics.fwhm_um, pixel_um), "gaussian"
    if optics.na is None or optics.wavelength_um is None:
        raise InputError(
            "the PSF is unknown: give a PSF image (--psf), or the objective NA and the "
            "emission wavelength (--na, --wavelength)"
        )
    return airy_psf_image(optics.na, optics.wavelength_um, pixel_um), "airy"


def _noise_model(noise: Noise, raw: np.ndarray) -> NoiseModel:
    if noise.sigma_adu is not None:
        return noise_from_sigma(noise.sigma_adu)
    if noise.gain_adu_per_e is not None:
        return noise_from_camera(noise.gain_adu_per_e, noise.offset_adu or 0.0, noise.read_noise_e)
    return estimate_noise(raw)


#: Richardson–Lucy iteration counts tried by the discrepancy principle
RL_CHECKPOINTS = (5, 10, 15, 20, 30, 40, 50, 75, 100, 150, 200)


def _rl_discrepancy(y: Any, op: Any, variance: np.ndarray) -> tuple[Any, int]:
    """Richardson–Lucy stopped at the first count of :data:`RL_CHECKPOINTS` whose whitened
    residual RMS is ≤ 1 (Morozov's discrepancy principle): few iterations for noisy data,
    many for clean data. Returns (estimate, iterations)."""
    import torch

    from ..engine.vml import richardson_lucy

    inv_sd = torch.as_tensor(1.0 / np.sqrt(variance), dtype=y.dtype, device=y.device)
    x, done = None, 0
    for count in RL_CHECKPOINTS:
        x = richardson_lucy(y.clamp_min(0.0), op, count - done, x_init=x)
        done = count
        rms = float(((y - op.A(x)) * inv_sd).square().mean().sqrt())
        if rms <= 1.0:
            break
    return x, done


def _measurement(
    raw: np.ndarray, pixel_um: float, noise: Noise, f: int, zoom: float, prior_pixel_um: float,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, Any]:  # fmt: skip
    """The measurement above the offset on its grid (resampled by ``zoom``), its per-pixel
    noise variance (scaled with the resampling) and the noise model; a note when resampled."""
    model = _noise_model(noise, raw)
    variance = model.variance(ndimage.uniform_filter(raw, 3, mode="reflect"))
    offset = float(noise.offset_adu or 0.0)
    y = raw - offset
    if zoom != 1.0:
        shape = tuple(max(MIN_IMAGE_PX, int(round(n * zoom))) for n in y.shape)
        q = (y.shape[0] / shape[0]) * (y.shape[1] / shape[1])  # (p / p_new)²
        y = fourier_resize(y, shape)
        variance = np.maximum(fourier_resize(variance, shape), variance.min()) * q
        notes.append(
            f"resampled the image by {shape[0] / raw.shape[0]:.3g} from {pixel_um:g} µm to "
            f"{f * prior_pixel_um:g} µm pixels (the prior's grid{' ×2' if f == 2 else ''})"
        )
    return y, variance, model


def _operator(
    y: np.ndarray, psf: np.ndarray, source: str, optics: Optics, f: int,
    prior_pixel_um: float, target_fwhm_um: float | None, device: Any,
) -> tuple[Any, Any]:  # fmt: skip
    """The canvas and the forward operator H on the prior's grid: refuses a PSF larger than the
    image and a canvas above ``MAX_CANVAS_PX``; the OTF of an Airy PSF or of the PSF image,
    corrected to the prior's own resolution when ``target_fwhm_um``."""
    from ..engine.operators import BlurOperator

    extent = 2 * energy_radius_px(psf, MARGIN_ENERGY) + 1  # the PSF's 95 %-energy diameter
    if extent > f * min(y.shape):
        raise InputError(
            f"the PSF ({extent:.0f} px across on the {prior_pixel_um:g} µm grid, 95 % of its "
            f"energy) is larger than the image ({f * y.shape[0]}×{f * y.shape[1]} px there); "
            "check the PSF's pixel size, or give a larger image"
        )
    canvas = canvas_geometry(y.shape, psf, f)
    if max(canvas.shape) > MAX_CANVAS_PX:
        raise InputError(
            f"the image needs a {canvas.shape[0]}×{canvas.shape[1]} px canvas on the prior's "
            f"grid (at most {MAX_CANVAS_PX}); crop it into smaller regions"
        )
    if source == "airy":
        otf = airy_otf(canvas.shape, prior_pixel_um, optics.na, optics.wavelength_um, rfft=True)
        otf = otf.astype(np.complex128)
    else:
        otf = psf_otf(psf, canvas.shape)
    if target_fwhm_um:
        otf = effective_otf(otf, canvas.shape, prior_pixel_um, target_fwhm_um)
    return canvas, BlurOperator(otf, canvas.shape, y.shape, canvas.margin, f).to(device)


def _warm_start(
    y: np.ndarray, op: Any, variance: np.ndarray, canvas: Any, rl_iterations: int | None,
    device: Any,
) -> tuple[Any, Any, int, float, float]:  # fmt: skip
    """The measurement tensor, the Richardson–Lucy warm start (the discrepancy principle picks
    its iterations when not given), those iterations and the normalisation (a, s) from the
    warm start's robust percentiles inside the canvas."""
    import torch

    from ..engine.vml import richardson_lucy

    yt = torch.as_tensor(y, dtype=torch.float32, device=device)[None, None]
    if rl_iterations is None:  # discrepancy principle: stop once the data are fitted to noise
        rl, rl_iterations = _rl_discrepancy(yt, op, variance)
    else:
        rl = richardson_lucy(yt.clamp_min(0.0), op, rl_iterations)
    inside = rl[0, 0][canvas.crop].detach().cpu().numpy().astype(np.float64)
    lo, hi = np.percentile(inside, [0.1, 99.9])
    a, s = 0.5 * (lo + hi), 0.5 * (hi - lo)
    if not s > 0:
        raise InputError("the image has no contrast after deconvolution; nothing to restore")
    return yt, rl, rl_iterations, a, s


def build_problem(
    image: Any,
    pixel_um: float | None,
    optics: Optics,
    noise: Noise | None = None,
    *,
    prior_pixel_um: float,
    binning: int | None = None,
    target_fwhm_um: float | None = DEFAULT_TARGET_FWHM_UM,
    rl_iterations: int | None = None,
    device: Any = "cpu",
) -> Problem:
    """Check the inputs and build the :class:`Problem` (see the module docstring): the grid
    (:func:`choose_grid`), the measurement and its noise (:func:`_measurement`), the PSF and
    the operator (:func:`_operator`), the warm start and the normalisation
    (:func:`_warm_start`)."""
    import torch

    raw = _check_image(image)
    noise = noise or Noise()
    if pixel_um is None or not np.isfinite(pixel_um) or pixel_um <= 0:
        raise InputError(
            "the image's pixel size is unknown; give it (--pixel-size, or the layer's scale) "
            "so the image can be matched to the prior's grid"
        )
    f, zoom = choose_grid(pixel_um, prior_pixel_um, binning)
    notes: list[str] = []
    y, variance, model = _measurement(raw, pixel_um, noise, f, zoom, prior_pixel_um, notes)
    if optics.psf is not None and optics.psf_pixel_um is None:
        notes.append(f"assumed the PSF image has the input's pixel size ({pixel_um:g} µm)")
    psf, source = _psf_on_grid(optics, prior_pixel_um, pixel_um)
    canvas, op = _operator(y, psf, source, optics, f, prior_pixel_um, target_fwhm_um, device)
    yt, rl, rl_iterations, a, s = _warm_start(y, op, variance, canvas, rl_iterations, device)
    y_n = (yt - f * f * a) / s
    w_n = torch.as_tensor(s * s / variance, dtype=torch.float32, device=device)[None, None]
    x_warm = (rl - a) / s
    info = {
        "binning": f,
        "resample_factor": zoom,
        "pixel_size_um": prior_pixel_um,
        "measurement_pixel_size_um": f * prior_pixel_um,
        "canvas": list(canvas.shape),
        "margin_px": canvas.margin,
        "psf_source": source,
        "psf_shape": list(psf.shape),
        "target_correction_fwhm_um": target_fwhm_um,
        "noise": model.to_dict(),
        "offset_adu": noise.offset_adu,
        "normalization": {"a": a, "s": s, "rl_iterations": rl_iterations},
        "normalised_noise_sigma_median": float(np.median(np.sqrt(variance)) / s),
    }
    return Problem(
        y=y_n,
        weight=w_n,
        op=op,
        x_warm=x_warm,
        a=float(a),
        s=float(s),
        binning=f,
        resample=zoom,
        pixel_um=prior_pixel_um,
        measurement_pixel_um=f * prior_pixel_um,
        y_adu=y,
        variance=variance,
        noise=model,
        psf=psf,
        notes=notes,
        info=info,
    )
