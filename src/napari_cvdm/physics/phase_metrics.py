"""Quantitative-phase metrics and physical outputs (pure numpy functions).

* Phase errors after piston removal: e = (φ̂ − φ) − mean(φ̂ − φ) over the interior (a ``border``-px
  frame excluded, 16 px by default); MAE = mean|e|, RMSE = sqrt(mean e²) in rad; CVDM units
  MAE_norm = 2·MAE/3.5.
* Optical path difference OPD = φλ/(2π) (µm; nm for display).
* Dry-mass surface density σ_m = φλ/(2πα) in pg/µm², α = 0.19 µm³/pg (specific refraction
  increment, 0.18–0.21); region dry mass M = Δx²·Σ_region σ_m (pg) after setting the median of a
  background region to 0.
"""

from __future__ import annotations

import numpy as np

from napari_cvdm.errors import InputError

__all__ = [
    "DRY_MASS_ALPHA_UM3_PER_PG",
    "PHI_NORM",
    "align_piston",
    "dry_mass_density",
    "opd_nm",
    "opd_um",
    "phase_errors",
    "phase_mae",
    "phase_rmse",
    "region_dry_mass",
]

PHI_NORM = 3.5  # rad, the fixed phase normalisation (x = 2φ/φ_norm − 1)
DRY_MASS_ALPHA_UM3_PER_PG = 0.19


def _interior(a: np.ndarray, border: int) -> np.ndarray:
    if a.ndim != 2:
        raise InputError(f"Expected a 2-D phase map (Y, X), got shape {a.shape}.")
    b = int(border)
    if b < 0 or min(a.shape) <= 2 * b:
        raise InputError(
            f"A {b}-px border leaves nothing of a {a.shape} image; use a smaller border."
        )
    return a[b : a.shape[0] - b, b : a.shape[1] - b] if b else a


def _pair(pred: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred = np.asarray(pred, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    if pred.shape != target.shape:
        raise InputError(f"Prediction {pred.shape} and target {target.shape} differ in shape.")
    return pred, target


def align_piston(pred: np.ndarray, target: np.ndarray, border: int = 16) -> np.ndarray:
    """``pred`` shifted by a constant so that its interior mean matches the target's; float64."""
    pred, target = _pair(pred, target)
    offset = np.mean(_interior(pred - target, border))
    return pred - offset


def phase_errors(pred: np.ndarray, target: np.ndarray, border: int = 16) -> dict[str, float]:
    """Piston-removed phase errors over the interior: ``mae``, ``rmse`` (rad), ``mae_norm``."""
    pred, target = _pair(pred, target)
    e = _interior(pred - target, border)
    e = e - e.mean()
    mae = float(np.mean(np.abs(e)))
    return {"mae": mae, "rmse": float(np.sqrt(np.mean(e**2))), "mae_norm": 2 * mae / PHI_NORM}


def phase_mae(pred: np.ndarray, target: np.ndarray, border: int = 16) -> float:
    """Piston-removed mean absolute phase error (rad), ``border`` px excluded."""
    return phase_errors(pred, target, border)["mae"]


def phase_rmse(pred: np.ndarray, target: np.ndarray, border: int = 16) -> float:
    """Piston-removed root-mean-square phase error (rad), ``border`` px excluded."""
    return phase_errors(pred, target, border)["rmse"]


def opd_um(phase: np.ndarray, wavelength_um: float) -> np.ndarray:
    """Optical path difference φλ/(2π) in µm (float32, same shape as ``phase``)."""
    return (np.asarray(phase, dtype=np.float64) * wavelength_um / (2 * np.pi)).astype(np.float32)


def opd_nm(phase: np.ndarray, wavelength_um: float) -> np.ndarray:
    """Optical path difference φλ/(2π) in nm, for display (float32)."""
    return (opd_um(phase, wavelength_um).astype(np.float64) * 1e3).astype(np.float32)


def dry_mass_density(
    phase: np.ndarray, wavelength_um: float, alpha_um3_per_pg: float = DRY_MASS_ALPHA_UM3_PER_PG
) -> np.ndarray:
    """Dry-mass surface density σ_m = φλ/(2πα) in pg/µm² (float32, same shape as ``phase``)."""
    phase = np.asarray(phase, dtype=np.float64)
    return (phase * wavelength_um / (2 * np.pi * alpha_um3_per_pg)).astype(np.float32)


def region_dry_mass(
    phase: np.ndarray,
    region: np.ndarray,
    background: np.ndarray,
    wavelength_um: float,
    pixel_size_um: float,
    alpha_um3_per_pg: float = DRY_MASS_ALPHA_UM3_PER_PG,
) -> float:
    """Dry mass (pg) of a boolean ``region`` after setting the median phase of ``background`` to 0.

    M = Δx²·Σ_region σ_m with σ_m from :func:`dry_mass_density`; masks are (Y, X) booleans.
    """
    phase = np.asarray(phase, dtype=np.float64)
    region = np.asarray(region, dtype=bool)
    background = np.asarray(background, dtype=bool)
    if region.shape != phase.shape or background.shape != phase.shape:
        raise InputError("The region and background masks must have the phase map's shape (Y, X).")
    if not background.any():
        raise InputError("The background mask is empty; mark a cell-free area as background.")
    shifted = phase - np.median(phase[background])
    sigma = shifted[region] * wavelength_um / (2 * np.pi * alpha_um3_per_pg)
    return float(pixel_size_um**2 * sigma.sum())
