"""Through-focus brightfield (QPI) simulator: phase map → defocused intensity stack.

Two recipes (physics.md §c; ``recipe=`` selects, QPI-B is the default):

* **QPI-B** (cell-like objects, true optics ≠ nominal). Phase: 87 % cell scenes from
  :func:`~napari_cvdm.physics.cell_phase.cell_scene` (cell bodies 5–25 µm with nucleus,
  nucleoli, granules, vesicles and lamellipodia, clusters of touching cells, debris; peak phase
  0.3–6 rad), 13 % the old 1/f^β fractal textures (φ_max ~ U(1, 3.5) rad). Optics: the metadata
  keep the *nominal* λ, dz and plane offsets a user would state; the stack is formed with a true
  wavelength λ·(1 ± 2 %), a true spacing dz·(1 ± 5 %) and a focus offset of ± 5 % of dz. The
  object is an optical path OPD = φ·λ_nominal/(2π) (the ground truth is the phase at the nominal
  wavelength), so the field is exp(−μ + i·2π·OPD/λ_true), μ = a·(φ − φ_min)/ptp(φ),
  a ~ U(0, 0.1). Noise: shot noise at a background of N₀ ~ log-U[1000, 30000] e⁻/px plus
  Gaussian read noise of σ ~ log-U[0.003, 0.1] of the background I₀, per plane.
* **QPI-A** (the previous recipe, kept by name and reproducing its earlier samples exactly): a
  phase source from :mod:`~napari_cvdm.physics.phase_sources` at equal odds (φ_max ~ U(1, 3.5)
  rad), nominal = true optics, A ≡ 1 (or a weak absorber μ = a·φ/φ_max), Poisson noise at N₀ ~
  log-U[300, 10⁴] e⁻/px plus 1.5 e⁻ read noise.

Both: Fresnel propagation (angular spectrum optional) with ×2 edge padding to the plane offsets
z = [−dz, +dz] (or {−k, …, k}·dz for 3 or 5 planes), intensities |U_z|² normalised to a
background of 1 (noisy frames are divided by the noise-free flat field N₀).

With the defaults (λ 0.521 µm, Δx 0.21 µm, dz 1 µm) the dimensionless defocus is
D = λ·dz/Δx² ≈ 11.8 (CVDM's setting).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_cvdm.errors import InputError
from napari_cvdm.physics.cell_phase import cell_scene
from napari_cvdm.physics.phase_sources import (
    PHASE_SOURCE_FAMILIES,
    random_phase,
    scale_phase,
)
from napari_cvdm.physics.propagation import (
    PAD_MODES,
    PROPAGATION_METHODS,
    defocus_number,
    propagate_planes,
)

__all__ = [
    "QPI_DEFAULTS",
    "QPI_RECIPES",
    "QPISample",
    "draw_source",
    "plane_offsets",
    "simulate_qpi_stack",
]

QPI_RECIPES = ("QPI-A", "QPI-B")

#: Recipe defaults; every key can be overridden in :func:`simulate_qpi_stack`. Keys after
#: "read_noise_e" apply to recipe QPI-B only; ``(lo, hi)`` pairs are drawn per sample.
QPI_DEFAULTS: dict[str, Any] = {
    "recipe": "QPI-B",  # or "QPI-A"
    "size": 256,  # px, square field of view
    "wavelength_um": 0.521,  # nominal illumination wavelength in the medium
    "pixel_size_um": 0.21,
    "dz_um": 1.0,  # nominal plane spacing; ignored when "defocus" (D) is given
    "defocus": None,  # D = λ·dz/Δx²; when set, dz_um = D·Δx²/λ
    "planes": 2,  # 2 → [−dz, +dz]; 3 or 5 → {−k, …, k}·dz
    "method": "fresnel",  # or "angular_spectrum"
    "pad": "edge",  # ×2 padding mode: "edge" or "mean" ("none": periodic)
    "na": None,  # detection pupil circ(|u| ≤ NA/λ); None → no pupil
    "source": None,  # one of PHASE_SOURCE_FAMILIES; None → "source_odds" (QPI-A: equal odds)
    "phi_max": None,  # rad; None → QPI-A: U(1, 3.5); QPI-B: the drawn cell phases
    "phase": None,  # a given phase map (Y, X) in rad, used as is (overrides source/phi_max)
    "absorption": None,  # weak absorber a; "random" → U(0, 0.1); None → A: 0, B: "random"
    "noise": "poisson",  # or "none" (QPI-B: shot noise plus Gaussian read noise)
    "photons": None,  # background N₀ in e⁻/px; None → A: log-U[300, 1e4]; B: "photons_range"
    "read_noise_e": 1.5,  # QPI-A read noise in e⁻
    # ---- QPI-B only
    "source_odds": {"cells": 0.87, "fractal": 0.13},
    "photons_range": (1000.0, 30000.0),  # log-uniform
    "read_noise": None,  # Gaussian σ as a fraction of I₀; None → log-U("read_noise_range")
    "read_noise_range": (0.003, 0.1),
    "wavelength_jitter": (-0.02, 0.02),  # true λ = nominal·(1 + jitter)
    "dz_jitter": (-0.05, 0.05),  # true plane offsets = nominal·(1 + jitter) + focus offset
    "focus_offset_fraction": (-0.05, 0.05),  # focus offset as a fraction of dz
    "scene": None,  # keyword overrides of cell_phase.cell_scene (CELL_SCENE_DEFAULTS)
}

#: Keys only recipe QPI-B reads (setting one with recipe QPI-A is an error).
QPI_B_ONLY = (
    "source_odds",
    "photons_range",
    "read_noise",
    "read_noise_range",
    "wavelength_jitter",
    "dz_jitter",
    "focus_offset_fraction",
    "scene",
)

PHOTON_RANGE = (300.0, 1.0e4)
ABSORPTION_RANGE = (0.0, 0.1)


@dataclass
class QPISample:
    """One simulated QPI example.

    stack: float32 (Z, Y, X) intensities normalised to a background of 1, Z from −dz to +dz.
    phase: float32 (Y, X) ground-truth phase in rad (QPI-B: at the nominal wavelength).
    metadata: JSON-serialisable parameters (recipe, wavelength_um, dz_um, z_offsets_um,
    pixel_size_um, na, D, phi_max, source, noise, photons, ...; the nominal optics, and for
    QPI-B the optics the stack was formed with in ``true_optics``).
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
    if p["recipe"] not in QPI_RECIPES:
        raise InputError(f"recipe must be one of {QPI_RECIPES}, got {p['recipe']!r}.")
    b_only = sorted(k for k in QPI_B_ONLY if k in overrides)
    if p["recipe"] == "QPI-A" and b_only:
        raise InputError(f"Option(s) {b_only} apply to recipe QPI-B only, not QPI-A.")
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
    if p["read_noise"] is not None and not float(p["read_noise"]) >= 0:
        raise InputError(f"read_noise (σ / I₀) must be >= 0, got {p['read_noise']!r}.")
    odds = p["source_odds"]
    if not isinstance(odds, dict) or not odds or set(odds) - set(PHASE_SOURCE_FAMILIES):
        raise InputError(f"source_odds must map names of {PHASE_SOURCE_FAMILIES} to odds.")
    if min(float(v) for v in odds.values()) < 0 or sum(float(v) for v in odds.values()) <= 0:
        raise InputError(f"source_odds must be >= 0 with a positive sum, got {odds!r}.")
    return p


def draw_source(rng: np.random.Generator, odds: dict[str, float]) -> str:
    """One phase-source family drawn with the given odds (normalised to sum 1)."""
    names = list(odds)
    weights = np.asarray([float(odds[n]) for n in names])
    return names[int(rng.choice(len(names), p=weights / weights.sum()))]


def _draw(rng: np.random.Generator, value: Any) -> float:
    """A ``(lo, hi)`` pair → uniform draw; a number → itself."""
    if isinstance(value, tuple | list):
        return float(rng.uniform(float(value[0]), float(value[1])))
    return float(value)


def _draw_log(rng: np.random.Generator, value: Any) -> float:
    """A ``(lo, hi)`` pair → log-uniform draw; a number → itself."""
    if isinstance(value, tuple | list):
        return float(np.exp(rng.uniform(np.log(float(value[0])), np.log(float(value[1])))))
    return float(value)


def _given_phase(p: dict[str, Any]) -> tuple[np.ndarray, dict[str, Any]]:
    phase = np.asarray(p["phase"], dtype=np.float64)
    if phase.ndim != 2 or not np.all(np.isfinite(phase)):
        raise InputError("phase must be a finite 2-D (Y, X) array in rad.")
    return phase, {"source": "given", "phi_max": float(np.ptp(phase))}


def simulate_qpi_stack(rng: np.random.Generator, **overrides: Any) -> QPISample:
    """Simulate one through-focus stack and its phase (recipe QPI-B unless ``recipe="QPI-A"``).

    ``overrides``: any key of :data:`QPI_DEFAULTS`. Returns a :class:`QPISample` with ``stack``
    float32 (Z, Y, X) normalised to background 1 and ``phase`` float32 (Y, X) in rad. The same
    generator state gives the same sample.
    """
    p = _resolve(overrides)
    lam, dx = float(p["wavelength_um"]), float(p["pixel_size_um"])
    dz = float(p["dz_um"]) if p["defocus"] is None else float(p["defocus"]) * dx**2 / lam
    z_offsets = plane_offsets(p["planes"], dz)
    if p["recipe"] == "QPI-A":
        return _simulate_a(rng, p, lam, dx, dz, z_offsets)
    return _simulate_b(rng, p, lam, dx, dz, z_offsets)


def _simulate_a(
    rng: np.random.Generator,
    p: dict[str, Any],
    lam: float,
    dx: float,
    dz: float,
    z_offsets: list[float],
) -> QPISample:
    """Recipe QPI-A (the draws and their order are those of its first implementation)."""
    if p["phase"] is not None:
        phase, info = _given_phase(p)
    else:
        shape = (int(p["size"]), int(p["size"]))
        phase, info = random_phase(rng, shape, p["source"], dx, lam, p["phi_max"])

    a = 0.0 if p["absorption"] is None else p["absorption"]
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
        "recipe": "QPI-A",
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


def _phase_b(
    rng: np.random.Generator, p: dict[str, Any], lam: float, dx: float
) -> tuple[np.ndarray, dict[str, Any]]:
    """QPI-B phase map (Y, X) rad: a cell scene or another family, drawn by ``source_odds``."""
    if p["phase"] is not None:
        return _given_phase(p)
    shape = (int(p["size"]), int(p["size"]))
    family = p["source"] if p["source"] is not None else draw_source(rng, p["source_odds"])
    if family != "cells":
        return random_phase(rng, shape, family, dx, lam, p["phi_max"])
    phase, info = cell_scene(rng, shape, dx, **(p["scene"] or {}))
    if p["phi_max"] is not None and info["phi_max"] > 0:  # rescale the whole scene
        factor = float(p["phi_max"]) / info["phi_max"]
        phase = scale_phase(phase, float(p["phi_max"]))
        for cell in info["cells"]:
            cell["peak_rad"] = cell["peak_rad"] * factor
        info["phi_max"] = float(phase.max())
    return phase, {"source": "cells", **info}


def _simulate_b(
    rng: np.random.Generator,
    p: dict[str, Any],
    lam: float,
    dx: float,
    dz: float,
    z_offsets: list[float],
) -> QPISample:
    """Recipe QPI-B: cell scenes, true optics jittered around the nominal, shot + read noise."""
    phase, info = _phase_b(rng, p, lam, dx)

    # the optics the stack is formed with; the metadata's nominal values are what users state
    lam_true = lam * (1.0 + _draw(rng, p["wavelength_jitter"]))
    stretch = 1.0 + _draw(rng, p["dz_jitter"])
    focus = dz * _draw(rng, p["focus_offset_fraction"])
    z_true = [z * stretch + focus for z in z_offsets]

    a = "random" if p["absorption"] is None else p["absorption"]
    a = float(rng.uniform(*ABSORPTION_RANGE)) if a == "random" else float(a)
    span = float(np.ptp(phase))
    mu = a * (phase - phase.min()) / span if (a > 0 and span > 0) else 0.0
    # fixed optical path OPD = φ·λ/(2π): the phase at the true wavelength is φ·λ/λ_true
    field0 = np.exp(-mu + 1j * phase * (lam / lam_true))
    planes = propagate_planes(field0, lam_true, z_true, dx, p["method"], p["pad"], p["na"])
    clean = np.abs(planes) ** 2

    photons = sigma = total = None
    if p["noise"] == "poisson":
        photons = float(p["photons"]) if p["photons"] is not None else None
        photons = _draw_log(rng, p["photons_range"]) if photons is None else photons
        sigma = p["read_noise"]
        sigma = _draw_log(rng, p["read_noise_range"]) if sigma is None else float(sigma)
        stack = rng.poisson(clean * photons) / photons  # shot noise, flat field N₀ divided out
        stack += rng.normal(0.0, sigma, size=stack.shape)  # read noise, σ in units of I₀
        total = float(np.hypot(sigma, photons**-0.5))  # noise σ of the background
    else:
        stack = clean

    metadata = {
        "recipe": "QPI-B",
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
        "true_optics": {
            "wavelength_um": lam_true,
            "dz_um": dz * stretch,
            "focus_offset_um": focus,
            "z_offsets_um": z_true,
            "D": defocus_number(lam_true, dz * stretch, dx),
        },
        "noise": p["noise"],
        "photons": photons,
        "read_noise": sigma,  # Gaussian σ as a fraction of the background I₀
        "read_noise_e": None if photons is None else sigma * photons,
        "noise_sigma_background": total,
        **info,
    }
    return QPISample(stack.astype(np.float32), phase.astype(np.float32), metadata)
