"""Quality metrics for super-resolution, quantitative phase and uncertainty (numpy/scipy/skimage).

Conventions (docs/physics.md (e)):

* **SR, DL-SR convention** - prediction and ground truth are each min–max normalised to [0, 1];
  PSNR = 10·log₁₀(1/MSE), SSIM (Gaussian window σ 1.5, population covariance, K1 0.01, K2 0.03,
  data_range 1), NRMSE = ‖p − g‖₂/‖g‖₂. **CVDM units** - the same images in [−1, 1]: SSIM with
  data_range 2 and NMAE = mean|p − g|/mean|g| (PSNR is identical in both conventions).
* **QPI** - piston removal (the mean phase difference is subtracted), MAE/RMSE in rad over the image
  without a 16-px border, SSIM/PSNR on the piston-aligned phase with data_range 3.5 rad.
* **Uncertainty** - Spearman ρ(|e|, s), coverage of ±k·s·sqrt(1 + 1/N), binned calibration error.
* **SR consistency** - re-blur the output with the widefield PSF, 2× sum-binning, compare with the
  input (Pearson RSP, RSE after a least-squares affine intensity fit).

Resolution (decorrelation, FRC) lives in :mod:`napari_cvdm.resolution` and is re-exported here.
No torch, Qt or napari here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError
from .physics.phase_metrics import align_piston
from .physics.phase_metrics import phase_errors as _phase_errors
from .resolution import (
    DecorrelationResult,
    FRCResult,
    decorrelation_resolution,
    fourier_ring_correlation,
)

__all__ = [
    "PHI_NORM_RAD",
    "DecorrelationResult",
    "FRCResult",
    "calibration_metrics",
    "decorrelation_resolution",
    "fourier_ring_correlation",
    "minmax01",
    "phase_errors",
    "psnr",
    "qpi_metrics",
    "sr_consistency",
    "sr_metrics",
    "ssim",
]

PHI_NORM_RAD = 3.5
"""Phase range (rad) of the QPI data_range and of the CVDM phase normalisation."""

_SSIM_MIN_SIZE = 11  # Gaussian window of σ 1.5 truncated at 3.5σ is 11 px wide


def _pair(pred: Any, target: Any, what: str = "prediction and target") -> tuple[np.ndarray, ...]:
    p = np.asarray(pred, dtype=np.float64)
    g = np.asarray(target, dtype=np.float64)
    if p.shape != g.shape:
        raise InputError(f"{what} must have the same shape; got {p.shape} and {g.shape}.")
    if p.size == 0:
        raise InputError(f"{what} are empty; pass non-empty images.")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(g))):
        raise InputError(f"{what} contain NaN or Inf values; remove or replace them first.")
    return p, g


def minmax01(image: Any) -> np.ndarray:
    """float64 copy of ``image`` mapped linearly so its minimum is 0 and its maximum 1.

    A constant image maps to zeros.
    """
    x = np.asarray(image, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return np.zeros_like(x)
    return (x - lo) / (hi - lo)


def psnr(pred: Any, target: Any, data_range: float) -> float:
    """Peak signal-to-noise ratio 10·log₁₀(data_range²/MSE) in dB; ``inf`` for identical images."""
    from skimage.metrics import peak_signal_noise_ratio

    p, g = _pair(pred, target)
    if np.array_equal(p, g):
        return float("inf")
    return float(peak_signal_noise_ratio(g, p, data_range=float(data_range)))


def ssim(pred: Any, target: Any, data_range: float) -> float:
    """SSIM (Wang et al. 2004, TensorFlow-compatible settings) of two 2-D images ≥ 11×11 px."""
    from skimage.metrics import structural_similarity

    p, g = _pair(pred, target)
    if p.ndim != 2 or min(p.shape) < _SSIM_MIN_SIZE:
        raise InputError(f"SSIM needs 2-D images of at least 11x11 pixels; got shape {p.shape}.")
    return float(
        structural_similarity(
            g,
            p,
            data_range=float(data_range),
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            K1=0.01,
            K2=0.03,
        )
    )


def sr_metrics(pred: Any, target: Any) -> dict[str, float]:
    """SR metrics of a prediction against its ground truth, both (Y, X) on the same grid.

    Returns ``psnr`` (dB), ``ssim``, ``nrmse`` in the DL-SR convention ([0, 1], data_range 1),
    and ``psnr_cvdm``, ``ssim_cvdm``, ``nmae_cvdm`` in CVDM units ([−1, 1], data_range 2).
    """
    from skimage.metrics import normalized_root_mse

    p, g = _pair(pred, target)
    p01, g01 = minmax01(p), minmax01(g)
    pm, gm = 2.0 * p01 - 1.0, 2.0 * g01 - 1.0
    if not np.any(g01):
        raise InputError("The target image is constant; SR metrics need a target with contrast.")
    mean_abs_target = float(np.mean(np.abs(gm)))
    return {
        "psnr": psnr(p01, g01, 1.0),
        "ssim": ssim(p01, g01, 1.0),
        "nrmse": float(normalized_root_mse(g01, p01, normalization="euclidean")),
        "psnr_cvdm": psnr(pm, gm, 2.0),
        "ssim_cvdm": ssim(pm, gm, 2.0),
        "nmae_cvdm": float(np.mean(np.abs(pm - gm)) / mean_abs_target)
        if mean_abs_target > 0
        else float("nan"),
    }


def _interior(array: np.ndarray, border: int) -> np.ndarray:
    if border <= 0:
        return array
    return array[..., border:-border, border:-border]


def _effective_border(shape: tuple[int, ...], border: int) -> int:
    """``border`` reduced so that at least 11×11 pixels remain (recorded in the results)."""
    border = max(0, int(border))
    while border > 0 and min(shape[-2:]) - 2 * border < _SSIM_MIN_SIZE:
        border -= 1
    return border


def phase_errors(pred: Any, target: Any, border: int = 16) -> dict[str, float]:
    """Piston-removed phase errors in rad over the image without a ``border``-px frame.

    e = (φ̂ − φ) − mean(φ̂ − φ); returns ``mae_rad`` = mean|e|, ``rmse_rad`` = sqrt(mean e²) and
    ``mae_norm`` = 2·MAE/3.5 (CVDM units). A constant phase offset changes none of them. The
    border shrinks for small images so that ≥ 11×11 px remain. Computed by
    :func:`napari_cvdm.physics.phase_metrics.phase_errors`.
    """
    p, g = _pair(pred, target)
    if p.ndim != 2:
        raise InputError(f"Phase metrics need 2-D phase maps (Y, X); got shape {p.shape}.")
    errors = _phase_errors(p, g, _effective_border(p.shape, border))
    return {"mae_rad": errors["mae"], "rmse_rad": errors["rmse"], "mae_norm": errors["mae_norm"]}


def qpi_metrics(pred: Any, target: Any, border: int = 16) -> dict[str, float]:
    """QPI metrics of a phase prediction (rad) against the true phase (rad), both (Y, X).

    Returns ``mae_rad``, ``rmse_rad``, ``mae_norm`` (see :func:`phase_errors`), ``ssim`` and
    ``psnr`` (dB) of the piston-aligned phase with data_range 3.5 rad, both over the interior,
    plus ``border_px`` (the border actually excluded) and ``data_range_rad``.
    """
    p, g = _pair(pred, target)
    if p.ndim != 2:
        raise InputError(f"Phase metrics need 2-D phase maps (Y, X); got shape {p.shape}.")
    border = _effective_border(p.shape, border)
    result: dict[str, float] = dict(phase_errors(p, g, border))
    aligned = _interior(align_piston(p, g, border), border)
    inner = _interior(g, border)
    result["ssim"] = ssim(aligned, inner, PHI_NORM_RAD)
    result["psnr"] = psnr(aligned, inner, PHI_NORM_RAD)
    result["border_px"] = float(border)
    result["data_range_rad"] = PHI_NORM_RAD
    return result


def calibration_metrics(
    mean: Any,
    std: Any,
    target: Any,
    n_samples: int | None = None,
    mask: Any = None,
    n_bins: int = 10,
    max_pixels: int = 1_000_000,
    seed: int = 0,
) -> dict[str, Any]:
    """Calibration of a per-pixel predictive std against the actual error of the posterior mean.

    Parameters
    ----------
    mean, std, target
        Arrays of one shape in the same (normalised) units; ``std`` with ddof = 1 over samples.
    n_samples
        N posterior samples behind ``mean``/``std``; the coverage interval is
        k·s·sqrt(1 + 1/N) (the mean's own error). ``None`` uses k·s.
    mask
        Optional boolean array (e.g. the foreground); only these pixels count.
    n_bins
        Equal-count bins of s for the calibration curve.
    max_pixels
        Spearman ρ uses at most this many pixels, drawn with ``numpy.random.default_rng(seed)``.

    Returns
    -------
    dict
        ``spearman_rho`` ρ(|e|, s); ``coverage_1sigma``, ``coverage_2sigma`` (ideal 0.683, 0.954);
        ``calibration_error`` Σ_b (n_b/n)·|RMSE_b − RMV_b|; ``n_pixels``; ``n_samples``; and
        ``bins`` with per-bin ``rmv`` = sqrt(mean s²), ``rmse`` = sqrt(mean e²) and ``count``.
    """
    from scipy.stats import spearmanr

    m, g = _pair(mean, target, "mean and target")
    s, _ = _pair(std, target, "std and target")
    if np.any(s < 0):
        raise InputError("The std image has negative values; pass a standard deviation (>= 0).")
    if mask is not None:
        keep = np.asarray(mask, dtype=bool)
        if keep.shape != m.shape:
            raise InputError(f"mask shape {keep.shape} differs from the image shape {m.shape}.")
        m, g, s = m[keep], g[keep], s[keep]
    e = (m - g).ravel()
    s = s.ravel()
    if e.size < n_bins:
        raise InputError(f"Calibration needs at least {n_bins} pixels; got {e.size}.")
    factor = 1.0 if not n_samples else float(np.sqrt(1.0 + 1.0 / int(n_samples)))
    abs_e = np.abs(e)

    rng = np.random.default_rng(seed)
    sub = rng.choice(e.size, size=max_pixels, replace=False) if e.size > max_pixels else slice(None)
    if np.ptp(s[sub]) > 0 and np.ptp(abs_e[sub]) > 0:
        rho = float(spearmanr(abs_e[sub], s[sub]).statistic)
    else:
        rho = float("nan")  # undefined for a constant std or error

    order = np.argsort(s, kind="stable")
    rmv, rmse, count = [], [], []
    for chunk in np.array_split(order, n_bins):
        rmv.append(float(np.sqrt(np.mean(s[chunk] ** 2))))
        rmse.append(float(np.sqrt(np.mean(e[chunk] ** 2))))
        count.append(int(chunk.size))
    weights = np.asarray(count) / e.size
    return {
        "spearman_rho": rho,
        "coverage_1sigma": float(np.mean(abs_e <= 1.0 * factor * s)),
        "coverage_2sigma": float(np.mean(abs_e <= 2.0 * factor * s)),
        "calibration_error": float(np.sum(weights * np.abs(np.subtract(rmse, rmv)))),
        "n_pixels": int(e.size),
        "n_samples": None if not n_samples else int(n_samples),
        "bins": {"rmv": rmv, "rmse": rmse, "count": count},
    }


def sr_consistency(
    prediction: Any,
    widefield: Any,
    na: float,
    wavelength_um: float,
    pixel_size_um: float,
) -> dict[str, Any]:
    """SQUIRREL-style consistency of an SR output with its widefield input.

    The prediction (Y, X) on the 2× grid (pixel ``pixel_size_um``) is blurred with the widefield
    Airy PSF (``na``, emission ``wavelength_um``) sampled on that grid, 2×2 sum-binned and compared
    with the offset-free widefield (Y/2, X/2).

    Returns ``rsp`` (Pearson correlation), ``rse`` (RMSE after the least-squares affine fit
    a·reblurred + b ≈ widefield, in widefield units), ``scale``/``offset`` of that fit and
    ``error_map`` (widefield − fit, float32 (Y/2, X/2)).
    """
    from .physics.psf import airy_otf, bin_sum  # physics is imported lazily

    pred = np.asarray(prediction, dtype=np.float64)
    wf = np.asarray(widefield, dtype=np.float64)
    if pred.ndim != 2 or wf.ndim != 2 or pred.shape != (2 * wf.shape[0], 2 * wf.shape[1]):
        raise InputError(
            f"SR consistency needs a 2-D prediction twice the widefield size; got {pred.shape} "
            f"and {wf.shape}."
        )
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(wf))):
        raise InputError("prediction and widefield contain NaN or Inf values; remove them first.")
    pad = max(1, min(pred.shape) // 4)
    padded = np.pad(pred, pad, mode="reflect")  # no wrap-around at the edges
    otf = airy_otf(padded.shape, pixel_size_um, na, wavelength_um)
    blurred = np.fft.ifft2(np.fft.fft2(padded) * otf).real[pad:-pad, pad:-pad]
    binned = bin_sum(blurred, 2)
    design = np.stack([binned.ravel(), np.ones(binned.size)], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, wf.ravel(), rcond=None)
    fitted = scale * binned + offset
    error = wf - fitted
    if np.std(binned) > 0 and np.std(wf) > 0:
        rsp = float(np.corrcoef(binned.ravel(), wf.ravel())[0, 1])
    else:
        rsp = float("nan")
    return {
        "rsp": rsp,
        "rse": float(np.sqrt(np.mean(error**2))),
        "scale": float(scale),
        "offset": float(offset),
        "error_map": error.astype(np.float32),
    }
