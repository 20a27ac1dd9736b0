"""Through-focus brightfield (QPI) simulator: phase map → defocused intensity stack.

Recipe QPI-A (physics.md §c): a phase source from :mod:`~napari_cvdm.physics.phase_sources`
(φ_max ~ U(1, 3.5) rad), field U₀ = A·e^{iφ} (A ≡ 1, or a weak absorber A = e^{−μ},
μ = a·φ/φ_max), Fresnel propagation (angular spectrum optional) with ×2 edge padding to the plane
offsets z = [−dz, +dz] (or {−k, …, k}·dz for 3 or 5 planes), intensities |U_z|² normalised to a
background of 1, then Poisson noise at a background of N₀ e⁻/px plus Gaussian read noise and
division by the (noise-free) flat field N₀.

With the defaults (λ 0.521 µm, Δx 0.21 µm, dz 1 µm) the dimensionless defocus is
D = λ·dz/Δx² ≈ 11.8 (CVDM's setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_cvdm.errors import InputError
from napari_cvdm.physics.phase_sources import PHASE_SOURCE_FAMILIES, random_phase
from napari_cvdm.physics.propagation import (
    PAD_MODES,
    PROPAGATION_METHODS,
    defocus_number,
    propagate_planes,
)

__all__ = ["QPI_DEFAULTS", "QPISample", "plane_offsets", "simulate_qpi_stack"]

#: Recipe QPI-A defaults; every key can be overridden in :func:`simulate_qpi_stack`.
QPI_DEFAULTS: dict[str, Any] = {
    "size": 256,  # px, square field of view
    "wavelength_um": 0.521,  # illumination wavelength in the medium
    "pixel_size_um": 0.21,
    "dz_um": 1.0,  # plane spacing; ignored when "defocus" (D) is given
    "defocus": None,  # D = λ·dz/Δx²; when set, dz_um = D·Δx²/λ
    "planes": 2,  # 2 → [−dz, +dz]; 3 or 5 → {−k, …, k}·dz
    "method": "fresnel",  # or "angular_spectrum"
    "pad": "edge",  # ×2 padding mode: "edge" or "mean" ("none": periodic)
    "na": None,  # detection pupil circ(|u| ≤ NA/λ); None → no pupil
    "source": None,  # one of PHASE_SOURCE_FAMILIES; None → equal odds
    "phi_max": None,  # rad; None → U(1, 3.5)
    "phase": None,  # a given phase map (Y, X) in rad, used as is (overrides source/phi_max)
    "absorption": 0.0,  # weak absorber strength a (μ = a·φ/φ_max); "random" → U(0, 0.1)
    "noise": "poisson",  # or "none"
    "photons": None,  # background N₀ in e⁻/px; None → log-U[300, 1e4]
    "read_noise_e": 1.5,
}

PHOTON_RANGE = (300.0, 1.0e4)
ABSORPTION_RANGE = (0.0, 0.1)


@dataclass
class QPISample:
    """One simulated QPI example.

    stack: float32 (Z, Y, X) intensities normalised to a background of 1, Z from −dz to +dz.
    phase: float32 (Y, X) ground-truth phase in rad.
    metadata: JSON-serialisable parameters (wavelength_um, dz_um, z_offsets_um, pixel_size_um,
    na, D, phi_max, source, noise, photons, ...).
    """

    stack: np.ndarray
    phase: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)


def plane_offsets(planes: int, dz_um: float) -> list[float]:
    """Plane offsets in µm: 2 → [−dz, +dz]; odd n = 2k + 1 → [−k·dz, …, +k·dz]."""
    planes = int(planes)
    if planes == 2:
        return [-float(dz_um), float(dz_um)]
    if planes >= 3 and planes % 2 == 1:
        k = planes // 2
        return [float(j * dz_um) for j in range(-k, k + 1)]
    raise InputError(f"planes={planes} is not supported; use 2 ([−dz, +dz]), 3 or 5.")


def _resolve(overrides: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(overrides) - set(QPI_DEFAULTS))
    if unknown:
        raise InputError(
            f"Unknown QPI simulator option(s) {unknown}; valid options: {sorted(QPI_DEFAULTS)}."
        )
    p = {**QPI_DEFAULTS, **overrides}
    for key in ("wavelength_um", "pixel_size_um"):
        if not float(p[key]) > 0:
            raise InputError(f"{key} must be > 0 (µm), got {p[key]!r}.")
    if p["method"] not in PROPAGATION_METHODS:
        raise InputError(f"method must be one of {PROPAGATION_METHODS}, got {p['method']!r}.")
    if p["pad"] not in PAD_MODES:
        raise InputError(f"pad must be one of {PAD_MODES}, got {p['pad']!r}.")
    if p["noise"] not in ("poisson", "none"):
        raise InputError(f"noise must be 'poisson' or 'none', got {p['noise']!r}.")
    if p["source"] is not None and p["source"] not in PHASE_SOURCE_FAMILIES:
        raise InputError(f"source must be one of {PHASE_SOURCE_FAMILIES}, got {p['source']!r}.")
    if p["photons"] is not None and not float(p["photons"]) > 0:
        raise InputError(f"photons (background N₀, e⁻/px) must be > 0, got {p['photons']!r}.")
    return p


def simulate_qpi_stack(rng: np.random.Generator, **overrides: Any) -> QPISample:
    """Simulate one through-focus stack and its phase (recipe QPI-A; see :data:`QPI_DEFAULTS`).

    Returns a :class:`QPISample` with ``stack`` float32 (Z, Y, X) normalised to background 1 and
    ``phase`` float32 (Y, X) in rad. The same generator state gives the same sample.
    """
    p = _resolve(overrides)
    lam, dx = float(p["wavelength_um"]), float(p["pixel_size_um"])
    dz = float(p["dz_um"]) if p["defocus"] is None else float(p["defocus"]) * dx**2 / lam
    z_offsets = plane_offsets(p["planes"], dz)

    if p["phase"] is not None:
        phase = np.asarray(p["phase"], dtype=np.float64)
        if phase.ndim != 2 or not np.all(np.isfinite(phase)):
            raise InputError("phase must be a finite 2-D (Y, X) array in rad.")
        info: dict[str, Any] = {"source": "given", "phi_max": float(np.ptp(phase))}
    else:
        shape = (int(p["size"]), int(p["size"]))
        phase, info = random_phase(rng, shape, p["source"], dx, lam, p["phi_max"])

    a = p["absorption"]
    a = float(rng.uniform(*ABSORPTION_RANGE)) if a == "random" else float(a)
    phi_max = info["phi_max"]
    mu = a * phase / phi_max if (a > 0 and phi_max > 0) else 0.0
    field0 = np.exp(-mu + 1j * phase)

    planes = propagate_planes(field0, lam, z_offsets, dx, p["method"], p["pad"], p["na"])
    clean = np.abs(planes) ** 2

    photons = None
    if p["noise"] == "poisson":
        photons = float(
            np.exp(rng.uniform(*np.log(PHOTON_RANGE))) if p["photons"] is None else p["photons"]
        )
        counts = rng.poisson(clean * photons).astype(np.float64)
        counts += rng.normal(0.0, float(p["read_noise_e"]), size=counts.shape)
        stack = counts / photons  # divide by the noise-free flat field (background N₀)
    else:
        stack = clean

    metadata = {
        "task": "qpi",
        "wavelength_um": lam,
        "dz_um": dz,
        "z_offsets_um": z_offsets,
        "pixel_size_um": dx,
        "na": None if p["na"] is None else float(p["na"]),
        "D": defocus_number(lam, dz, dx),
        "planes": len(z_offsets),
        "method": p["method"],
        "pad": p["pad"],
        "absorption": a,
        "noise": p["noise"],
        "photons": photons,
        "read_noise_e": float(p["read_noise_e"]) if photons is not None else None,
        **info,
    }
    return QPISample(stack.astype(np.float32), phase.astype(np.float32), metadata)
