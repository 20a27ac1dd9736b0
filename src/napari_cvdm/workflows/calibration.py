"""Calibration of the multi-sample std (the uncertainty layer), numpy only, no torch at import.

A diffusion model's spread over N samples is rarely the size of its error: the shipped SR model's
raw std covered only 13 % of the errors at ±1σ. A per-model scale fixes the size while keeping
the ranking (Spearman is unchanged by a scale). It is fitted as a split-conformal quantile on a
held-out *validation* set (never the test set)::

    s = quantile_q( |μ − GT| / (σ·sqrt(1 + 1/N)) ) / k        with q = 0.954, k = 2

so that ±2σ of the calibrated std covers 95.4 % of the validation errors. The model file stores
``{"method": "conformal_std_scale", "scale": s, ...}`` under its optional ``calibration`` header;
every std output (GUI and CLI) is multiplied by ``s`` unless the raw std is asked for.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..engine.header import std_scale  # re-exported: the factor lives with the header
from ..errors import InputError

__all__ = ["COVERAGE", "calibration_record", "fit_model_calibration", "fit_std_scale", "std_scale"]

#: the ±2σ coverage a calibrated std should reach (normal 2σ)
COVERAGE = 0.954
_K = 2.0


def fit_std_scale(
    errors: np.ndarray, stds: np.ndarray, n_samples: int, coverage: float = COVERAGE
) -> float:
    """Scale ``s`` with ``P(|e| ≤ 2·s·σ·sqrt(1 + 1/N)) = coverage`` on the given pixels.

    ``errors`` = mean − ground truth and ``stds`` (ddof = 1) of any equal shapes, in the same
    units; pixels with σ = 0 are ignored. Returns a positive float.
    """
    e = np.abs(np.asarray(errors, np.float64)).ravel()
    s = np.asarray(stds, np.float64).ravel()
    if e.shape != s.shape:
        raise InputError(f"errors {e.shape} and stds {s.shape} differ in shape")
    if n_samples < 2:
        raise InputError("calibration needs at least 2 samples per image (a std)")
    keep = (s > 0) & np.isfinite(s) & np.isfinite(e)
    if keep.sum() < 100:
        raise InputError("calibration needs at least 100 pixels with a positive std")
    ratio = e[keep] / (s[keep] * np.sqrt(1.0 + 1.0 / n_samples))
    scale = float(np.quantile(ratio, coverage)) / _K
    if not (np.isfinite(scale) and scale > 0):
        raise InputError("the fitted std scale is not a positive number")
    return scale


def calibration_record(
    scale: float, n_samples: int, steps: int, fitted_on: str, images: int
) -> dict[str, Any]:
    """The JSON-ready ``calibration`` header of a model file."""
    return {
        "method": "conformal_std_scale",
        "scale": float(scale),
        "coverage": COVERAGE,
        "n_samples": int(n_samples),
        "steps": int(steps),
        "fitted_on": str(fitted_on),
        "images": int(images),
    }


def fit_model_calibration(
    model: Any,
    pairs: list[tuple[np.ndarray, np.ndarray]],
    n_samples: int = 8,
    steps: int = 16,
    seed: int = 0,
    border: int = 8,
) -> tuple[float, dict[str, np.ndarray]]:
    """Fit a model's std scale on validation ``pairs`` of (input, ground truth).

    Each input is reconstructed with ``n_samples`` × ``steps`` (raw std), its mean and std are
    put on the ground truth's scale by the least-squares affine map of the mean to the ground
    truth (SR intensities are relative), and :func:`fit_std_scale` is fitted on all pixels
    except a ``border``. Returns the scale and the pooled ``errors``/``stds`` (1-D float64).
    """
    from ..events import Finished
    from .predict import ReconstructionParams, reconstruct

    params = ReconstructionParams(
        n_samples=n_samples, steps=steps, seed=seed, device="cpu", raw_std=True
    )
    errors, stds = [], []
    for image, truth in pairs:
        result = None
        for event in reconstruct(image, model, params):
            if isinstance(event, Finished):
                result = event.result
        mean, std = result.mean.astype(np.float64), result.std.astype(np.float64)
        gt = np.asarray(truth, np.float64)
        crop = (slice(border, -border or None), slice(border, -border or None))
        mean, std, gt = mean[crop], std[crop], gt[crop]
        a, c = np.polyfit(mean.ravel(), gt.ravel(), 1)
        errors.append((a * mean + c - gt).ravel())
        stds.append((abs(a) * std).ravel())
    e, s = np.concatenate(errors), np.concatenate(stds)
    return fit_std_scale(e, s, n_samples), {"errors": e, "stds": s}
