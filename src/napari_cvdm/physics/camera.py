"""Poisson–Gaussian sCMOS camera and the widefield background model (numpy/scipy).

Camera (physics.md (b)): scale the clean image to a foreground mean of N_fg photo-electrons,
add the background b (e⁻), draw n ~ Poisson, then ``y = round(offset + g·(n + N(0, σ_r²)))``
clipped to the uint16 range. Photon transfer: ``Var(y) = g·(E[y] − offset) + g²σ_r² (+1/12)``.
The quantum efficiency is folded into N_fg.

Foreground: pixels of the clean, background-free widefield image above 20 % of its 99th
percentile.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy import ndimage

from ..errors import InputError

UINT16_MAX = 65535


@dataclass(frozen=True)
class CameraModel:
    """sCMOS parameters: offset (ADU), gain (ADU per e⁻), read noise (e⁻ rms)."""

    offset_adu: float = 100.0
    gain_adu_per_e: float = 2.0
    read_noise_e: float = 1.5

    def to_metadata(self) -> dict[str, float]:
        """The ``camera`` metadata dict (physics.md (a) names)."""
        return {k: float(v) for k, v in asdict(self).items()}

    def electrons(self, adu: np.ndarray) -> np.ndarray:
        """Convert raw ADU to photo-electrons: (adu − offset)/gain (float64, may be < 0)."""
        return (np.asarray(adu, dtype=np.float64) - self.offset_adu) / self.gain_adu_per_e


def foreground_mask(
    clean: np.ndarray, fraction: float = 0.2, percentile: float = 99.0
) -> np.ndarray:
    """Boolean mask of ``clean > fraction·percentile(clean)`` (the N_fg foreground), (Y, X)."""
    level = float(np.percentile(clean, percentile))
    if level <= 0:
        return np.zeros(clean.shape, dtype=bool)
    return clean > fraction * level


def photon_scale(clean: np.ndarray, photons: float) -> float:
    """Factor that brings the foreground mean of the clean, background-free image to ``photons``.

    Returns 0 for an empty image (no foreground), so it renders as background only.
    """
    mask = foreground_mask(clean)
    if not mask.any():
        return 0.0
    return float(photons / clean[mask].mean())


def smooth_noise(
    rng: np.random.Generator, shape: tuple[int, int], correlation_px: float
) -> np.ndarray:
    """Smooth random field with unit amplitude (max |n| = 1), float64 (Y, X).

    Gaussian-filtered white noise with σ = ``correlation_px``; drawn on a coarse grid (σ/4 px)
    and bicubic-zoomed up, so the cost does not grow with σ.
    """
    step = max(1, int(correlation_px // 4))
    coarse = tuple(int(np.ceil(n / step)) + 2 for n in shape)
    field = ndimage.gaussian_filter(rng.standard_normal(coarse), correlation_px / step, mode="wrap")
    field = ndimage.zoom(field, step, order=1, grid_mode=True, mode="nearest")[
        : shape[0], : shape[1]
    ]
    peak = np.abs(field).max()
    return field / peak if peak > 0 else field


def background_map(
    rng: np.random.Generator,
    shape: tuple[int, int],
    level_e: float,
    variation: float = 0.3,
    correlation_px: float = 24.0,
    blurred_signal_e: np.ndarray | None = None,
    beta: float = 0.0,
) -> np.ndarray:
    """Background b (e⁻ per pixel), (Y, X) float64.

    ``b = level·(1 + variation·n_s) + β·blurred_signal`` with ``n_s`` smooth unit-amplitude noise
    and ``blurred_signal`` the signal blurred by a wide Gaussian (out-of-focus haze, in e⁻).
    """
    b = level_e * (1.0 + variation * smooth_noise(rng, shape, correlation_px))
    if blurred_signal_e is not None and beta > 0:
        b = b + beta * blurred_signal_e
    return np.clip(b, 0.0, None)


def expose(rng: np.random.Generator, expected_e: np.ndarray, camera: CameraModel) -> np.ndarray:
    """Simulate one sCMOS frame from the expected photo-electrons per pixel.

    Returns float32 (Y, X) in ADU with integer values in [0, 65535] (offset included).
    """
    lam = np.asarray(expected_e, dtype=np.float64)
    if not np.all(np.isfinite(lam)) or lam.min(initial=0.0) < 0:
        raise InputError("Expected photo-electrons must be finite and ≥ 0.")
    n = rng.poisson(lam)
    read = rng.standard_normal(lam.shape) * camera.read_noise_e
    adu = np.rint(camera.offset_adu + camera.gain_adu_per_e * (n + read))
    return np.clip(adu, 0, UINT16_MAX).astype(np.float32)
