"""Offline phase sources for the QPI simulator (numpy/scipy, nothing is downloaded).

Four families, each returning a float64 phase map (Y, X) in rad:

* ``"cells"``: procedural cells: 1–6 ellipsoidal cells (axes 8–20 µm, height h₀ 2–8 µm,
  h = h₀·sqrt(1 − r²)), a nucleus, nucleoli and granules (0.3–1 µm); φ = (2π/λ)·Σ_j Δn_j·h_j.
* ``"fluorescence"``: a noise-free fluorescence ground truth reused as a phase map: the SR
  simulator's target (``physics.fluorescence.simulate_sr_pair``) when that module is installed,
  otherwise a small internal generator of blurred worm-like filaments and puncta.
* ``"natural"``: grayscale images shipped inside the installed scikit-image wheel (read from its
  ``skimage/data`` folder; images that scikit-image would fetch with pooch are never used), randomly
  cropped, flipped, rotated by 90° and resized.
* ``"fractal"``: random textures whose power spectrum falls as 1/|u|^β, β ~ U(1.5, 3).

:func:`random_phase` draws a family, subtracts the minimum and scales the maximum to
φ_max ~ U(1, 3.5) rad. All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import numpy as np
from scipy import ndimage

from napari_cvdm.errors import InputError

PHASE_SOURCE_FAMILIES = ("cells", "fluorescence", "natural", "fractal")

#: Grayscale-convertible images present as files in the scikit-image wheel (``skimage/data``).
#: PNG only: JPEG block artefacts become sharp phase edges that defocus contrast would show.
NATURAL_IMAGES = (
    "camera.png",
    "moon.png",
    "coins.png",
    "text.png",
    "page.png",
    "grass.png",
    "gravel.png",
    "brick.png",
    "cell.png",
    "clock_motion.png",
    "microaneurysms.png",
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
)

PHI_MAX_RANGE = (1.0, 3.5)
FRACTAL_BETA_RANGE = (1.5, 3.0)


def scale_phase(raw: np.ndarray, phi_max: float) -> np.ndarray:
    """Subtract the minimum and scale so that the maximum is ``phi_max`` rad; float64 (Y, X)."""
    raw = np.asarray(raw, dtype=np.float64)
    shifted = raw - raw.min()
    peak = shifted.max()
    if peak <= 0:
        return np.zeros_like(shifted)
    return shifted * (float(phi_max) / peak)


# --------------------------------------------------------------------------- procedural cells
def _ellipsoid_height(
    yy: np.ndarray,
    xx: np.ndarray,
    centre: tuple[float, float],
    axes: tuple[float, float],
    angle: float,
) -> np.ndarray:
    """Height profile sqrt(1 − r²) (unit peak) of an ellipse with semi-axes ``axes`` (µm)."""
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    r2 = ((c * dx + s * dy) / axes[1]) ** 2 + ((-s * dx + c * dy) / axes[0]) ** 2
    return np.sqrt(np.clip(1.0 - r2, 0.0, None))


def procedural_cells(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size_um: float,
    wavelength_um: float,
    n_cells: int | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Phase (rad) of 1–6 procedural cells on a (Y, X) grid; returns (phase float64, info)."""
    ny, nx = shape
    yy = np.arange(ny)[:, None] * pixel_size_um
    xx = np.arange(nx)[None, :] * pixel_size_um
    k = 2 * np.pi / wavelength_um
    n_cells = int(rng.integers(1, 7)) if n_cells is None else int(n_cells)
    opd = np.zeros(shape)  # Σ Δn·h in µm
    for _ in range(n_cells):
        axes = tuple(rng.uniform(8.0, 20.0, size=2) / 2)
        centre = (rng.uniform(0, ny * pixel_size_um), rng.uniform(0, nx * pixel_size_um))
        angle = rng.uniform(0, np.pi)
        h0 = rng.uniform(2.0, 8.0)
        opd += rng.uniform(0.02, 0.04) * h0 * _ellipsoid_height(yy, xx, centre, axes, angle)
        # nucleus: smaller ellipsoid near the centre, denser
        n_axes = tuple(a * rng.uniform(0.3, 0.5) for a in axes)
        off = rng.normal(0, 0.15, size=2) * np.array(axes)
        n_centre = (centre[0] + off[0], centre[1] + off[1])
        hn = h0 * rng.uniform(0.6, 0.9)
        opd += rng.uniform(0.01, 0.02) * hn * _ellipsoid_height(yy, xx, n_centre, n_axes, angle)
        for _ in range(int(rng.integers(1, 4))):  # nucleoli, 1–2.5 µm
            r = rng.uniform(0.5, 1.25)
            pos = rng.uniform(-0.5, 0.5, size=2) * np.array(n_axes)
            _add_sphere(
                opd,
                (n_centre[0] + pos[0], n_centre[1] + pos[1]),
                r,
                rng.uniform(0.01, 0.03),
                pixel_size_um,
            )
        for _ in range(int(rng.integers(20, 120))):  # granules, 0.3–1 µm, in the cytoplasm
            r = rng.uniform(0.15, 0.5)
            rho, theta = np.sqrt(rng.uniform(0.1, 0.8)), rng.uniform(0, 2 * np.pi)
            gy = centre[0] + rho * axes[0] * np.sin(theta)
            gx = centre[1] + rho * axes[1] * np.cos(theta)
            _add_sphere(opd, (gy, gx), r, rng.uniform(0.03, 0.06), pixel_size_um)
    return k * opd, {"n_cells": n_cells}


def _add_sphere(
    opd: np.ndarray, centre_um: tuple[float, float], radius_um: float, dn: float, dx: float
) -> None:
    """Add Δn·h of a sphere (h = 2·sqrt(r² − ρ²)) into ``opd`` inside a local window (in place)."""
    cy, cx = centre_um[0] / dx, centre_um[1] / dx
    rp = radius_um / dx
    y0, y1 = max(int(cy - rp) - 1, 0), min(int(cy + rp) + 2, opd.shape[0])
    x0, x1 = max(int(cx - rp) - 1, 0), min(int(cx + rp) + 2, opd.shape[1])
    if y0 >= y1 or x0 >= x1:
        return
    yy = np.arange(y0, y1)[:, None] - cy
    xx = np.arange(x0, x1)[None, :] - cx
    h = 2 * dx * np.sqrt(np.clip(rp**2 - yy**2 - xx**2, 0.0, None))
    opd[y0:y1, x0:x1] += dn * h


# --------------------------------------------------------------------------- fluorescence
def _fallback_fluorescence(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """Blurred worm-like filaments and puncta (unit-free, ≥ 0), used without the SR simulator."""
    ny, nx = shape
    img = np.zeros(shape)
    for _ in range(int(rng.integers(10, 40))):
        n_steps = int(rng.integers(100, 600))
        theta = rng.uniform(0, 2 * np.pi) + np.cumsum(rng.normal(0, 0.08, n_steps))
        y = rng.uniform(0, ny) + np.cumsum(0.5 * np.sin(theta))
        x = rng.uniform(0, nx) + np.cumsum(0.5 * np.cos(theta))
        inside = (y >= 0) & (y < ny - 1) & (x >= 0) & (x < nx - 1)
        y, x = y[inside], x[inside]
        y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
        fy, fx = y - y0, x - x0
        w = rng.uniform(0.7, 1.3)
        for oy, ox, wt in (
            (0, 0, (1 - fy) * (1 - fx)),
            (0, 1, (1 - fy) * fx),
            (1, 0, fy * (1 - fx)),
            (1, 1, fy * fx),
        ):
            np.add.at(img, (y0 + oy, x0 + ox), w * wt)
    n_dots = int(rng.integers(20, 200))
    img[rng.integers(0, ny, n_dots), rng.integers(0, nx, n_dots)] += rng.lognormal(1.0, 0.5, n_dots)
    return ndimage.gaussian_filter(img, rng.uniform(0.8, 1.5))


def fluorescence_phase(
    rng: np.random.Generator, shape: tuple[int, int], prefer_simulator: bool = True
) -> tuple[np.ndarray, dict[str, Any]]:
    """A fluorescence-like ground truth (float64 (Y, X), ≥ 0, unscaled) and its origin."""
    if prefer_simulator:
        try:
            from napari_cvdm.physics.fluorescence import simulate_sr_pair
        except ImportError:
            pass
        else:
            sample = simulate_sr_pair(rng)
            target = np.asarray(sample.target, dtype=np.float64)
            info = {"generator": "simulate_sr_pair", "structure": sample.metadata.get("structure")}
            return _fit_to_shape(rng, target, shape), info
    return _fallback_fluorescence(rng, shape), {"generator": "internal_fallback"}


# --------------------------------------------------------------------------- natural images
@functools.lru_cache(maxsize=len(NATURAL_IMAGES))
def _load_natural(name: str) -> np.ndarray:
    """Read a bundled scikit-image file as float64 grayscale in [0, 1] (read-only, cached)."""
    import skimage.data
    from skimage import color, io

    path = os.path.join(os.path.dirname(skimage.data.__file__), name)
    if not os.path.isfile(path):
        raise InputError(
            f"The scikit-image wheel has no bundled {name!r}; pick one of the natural images "
            f"available_natural_images() lists."
        )
    img = np.asarray(io.imread(path))
    if img.ndim == 3:
        if img.shape[-1] == 4:
            img = color.rgba2rgb(img)
        img = color.rgb2gray(img)
    img = img.astype(np.float64)
    img = (img - img.min()) / max(np.ptp(img), 1e-12)
    img.setflags(write=False)
    return img


def available_natural_images() -> tuple[str, ...]:
    """Names in :data:`NATURAL_IMAGES` whose files exist in the installed scikit-image wheel."""
    import skimage.data

    folder = os.path.dirname(skimage.data.__file__)
    return tuple(n for n in NATURAL_IMAGES if os.path.isfile(os.path.join(folder, n)))


def _fit_to_shape(rng: np.random.Generator, img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Random square crop (≥ half the short side), random flip/rot90, resized to ``shape``.

    Cubic-spline resizing: linear interpolation would put the curvature ∇²φ (what defocus
    contrast shows) on the source pixel grid.
    """
    side_max = min(img.shape)
    side = int(rng.integers(max(side_max // 2, 1), side_max + 1))
    y0 = int(rng.integers(0, img.shape[0] - side + 1))
    x0 = int(rng.integers(0, img.shape[1] - side + 1))
    crop = np.rot90(img[y0 : y0 + side, x0 : x0 + side], k=int(rng.integers(0, 4)))
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    zoom = (shape[0] / crop.shape[0], shape[1] / crop.shape[1])
    if min(zoom) < 1:  # anti-alias before down-sampling
        crop = ndimage.gaussian_filter(crop, [max(0.0, (1 / z - 1) / 2) for z in zoom])
    out = ndimage.zoom(crop, zoom, order=3, mode="nearest", grid_mode=True)
    return np.ascontiguousarray(out[: shape[0], : shape[1]], dtype=np.float64)


def natural_image_phase(
    rng: np.random.Generator, shape: tuple[int, int], name: str | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """A bundled grayscale image, randomly cropped and resized to ``shape``; float64 in [0, 1]."""
    if name is None:
        names = available_natural_images()
        if not names:
            raise InputError("No bundled scikit-image images were found; reinstall scikit-image.")
        name = names[int(rng.integers(0, len(names)))]
    return _fit_to_shape(rng, _load_natural(name), shape), {"image": name}


# --------------------------------------------------------------------------- fractal textures
def fractal_texture(
    rng: np.random.Generator, shape: tuple[int, int], beta: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Gaussian random field with power spectrum ∝ 1/|u|^β (β ~ U(1.5, 3)); float64 (Y, X)."""
    beta = float(rng.uniform(*FRACTAL_BETA_RANGE)) if beta is None else float(beta)
    uy = np.fft.fftfreq(shape[0])[:, None]
    ux = np.fft.rfftfreq(shape[1])[None, :]
    u = np.sqrt(uy**2 + ux**2)
    u[0, 0] = 1.0
    amplitude = u ** (-beta / 2)
    amplitude[0, 0] = 0.0
    noise = np.fft.rfft2(rng.standard_normal(shape))
    return np.fft.irfft2(noise * amplitude, s=shape), {"beta": beta}


# --------------------------------------------------------------------------- dispatcher
def random_phase(
    rng: np.random.Generator,
    shape: tuple[int, int],
    family: str | None = None,
    pixel_size_um: float = 0.21,
    wavelength_um: float = 0.521,
    phi_max: float | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Draw a phase map (float64 (Y, X), rad, min 0, max φ_max) from one source family.

    ``family`` None picks one of :data:`PHASE_SOURCE_FAMILIES` at equal odds; ``phi_max`` None
    draws U(1, 3.5) rad. Returns the map and an info dict (``source``, ``phi_max`` and the
    family's own parameters).
    """
    if family is None:
        family = PHASE_SOURCE_FAMILIES[int(rng.integers(0, len(PHASE_SOURCE_FAMILIES)))]
    if family == "cells":
        raw, info = procedural_cells(rng, shape, pixel_size_um, wavelength_um)
    elif family == "fluorescence":
        raw, info = fluorescence_phase(rng, shape)
    elif family == "natural":
        raw, info = natural_image_phase(rng, shape)
    elif family == "fractal":
        raw, info = fractal_texture(rng, shape)
    else:
        raise InputError(
            f"Unknown phase source {family!r}; use one of {', '.join(PHASE_SOURCE_FAMILIES)}."
        )
    phi_max = float(rng.uniform(*PHI_MAX_RANGE)) if phi_max is None else float(phi_max)
    return scale_phase(raw, phi_max), {"source": family, "phi_max": phi_max, **info}
