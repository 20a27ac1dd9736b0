"""Cell-like phase scenes for the QPI simulator, recipe QPI-B (numpy/scipy, nothing downloaded).

:func:`cell_scene` returns a float64 phase map (Y, X) in rad of a field of view holding
isolated cells, clusters of touching cells and small debris, the way a brightfield QPI field
of cultured or suspended cells looks:

* **Bodies** 5–25 µm across: a smooth irregular star-convex outline, an ellipse whose axes
  d·sqrt(a) and d/sqrt(a) both lie in 5–25 µm, modulated by exp(Σ_k c_k·cos(kθ + ψ_k)), k = 2…7,
  and rescaled to the drawn equivalent-area diameter d. Two kinds: *rounded*
  (suspension-like, d 5–15 µm, dome profile (1 − ρ²)^0.5, peak 1.5–6 rad) and *spread*
  (adherent, d 10–25 µm, flatter profile (1 − ρ²)^p with p 0.8–1.6, peak 0.3–2.5 rad). ρ is
  the distance from the centre divided by the outline radius in that direction.
* **Inside** (relative optical path, body peak 1): a nucleus (an irregular dome of 0.35–0.7 of
  the body's diameter, +0.3–0.8), 1–4 nucleoli (spheres of 0.4–1 µm radius, +0.1–0.25), granules
  (0.1–0.5 per µm² of body, radius 0.15–0.4 µm, +0.04–0.12), vesicles (2–30, radius 0.3–1 µm,
  70 % of lower index −0.05…−0.15, 30 % lipid-like +0.1…+0.3) and a smooth cytoplasm texture
  (±2–8 %). Sphere profiles are sqrt(1 − r²/R²) (the chord through a sphere). The map is cut to
  the outline, blurred by a Gaussian of ``blur_px`` and scaled so its maximum is the cell's peak
  phase: φ = (2π/λ)·Σ Δn·h, with the absolute scale drawn as the peak (equivalently Δn·h₀).
* **Lamellipodia** (70 % of spread cells): 1–3 fans of 1–5 µm beyond the outline with a ruffled
  edge, a flat sheet of 0.03–0.15 rad (0.1–0.3 µm at Δn ≈ 0.03, λ 0.52 µm).
* **Layout**: Poisson numbers of clusters (mean 0.8 per (53.76 µm)² field, 2–8 cells of one kind
  grown by placing each new cell against a random member at (0.75–0.95)·(R_i + R_j)) and of
  single cells (mean 1.5), at least one cell; touching cells meet at the larger of their phases.
* **Debris**: Poisson(U(0, 15) per field) blobs of 0.4–3 µm, 0.05–0.8 rad, on the background,
  30 % as clumps of 2–4 blobs.

The background is exactly 0 rad. All randomness comes from the ``numpy.random.Generator``
passed in: the same state gives the same scene. Every range can be overridden by keyword
(:data:`CELL_SCENE_DEFAULTS`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from .points import resolve_params

__all__ = ["CELL_SCENE_DEFAULTS", "REFERENCE_FIELD_UM", "cell_scene", "star_outline"]

#: The field the per-field means refer to: 256 px of 0.21 µm (53.76 µm square).
REFERENCE_FIELD_UM = 256 * 0.21

#: Ranges ``(lo, hi)`` are drawn uniformly per cell/scene; integers ranges include both ends.
CELL_SCENE_DEFAULTS: dict[str, Any] = {
    "round_probability": 0.4,  # share of clusters/single cells that are rounded
    "round_diameter_um": (5.0, 15.0),  # equivalent-area diameter of a rounded body
    "spread_diameter_um": (10.0, 25.0),
    "extent_um": (5.0, 25.0),  # both axes of the body ellipse lie in this range
    "round_aspect": (1.0, 1.25),
    "spread_aspect": (1.0, 2.2),
    "round_roughness": 0.04,  # σ of the outline harmonics c_k·k^1.5
    "spread_roughness": 0.2,
    "round_phase_rad": (1.5, 6.0),  # peak phase of one cell
    "spread_phase_rad": (0.3, 2.5),
    "spread_profile_power": (0.8, 1.6),
    "nucleus_fraction_round": (0.5, 0.7),  # nucleus diameter / body diameter
    "nucleus_fraction_spread": (0.35, 0.55),
    "nucleus_height": (0.3, 0.8),  # relative to the body peak
    "nucleoli": (1, 4),
    "nucleolus_radius_um": (0.4, 1.0),
    "nucleolus_height": (0.1, 0.25),
    "granule_density_per_um2": (0.1, 0.5),
    "granule_radius_um": (0.15, 0.4),
    "granule_height": (0.04, 0.12),
    "vesicles": (2, 30),
    "vesicle_radius_um": (0.3, 1.0),
    "vesicle_dark_probability": 0.7,  # lower index than the cytoplasm (vacuoles, endosomes)
    "vesicle_dark_height": (0.05, 0.15),
    "vesicle_bright_height": (0.1, 0.3),  # lipid-droplet-like
    "texture": (0.02, 0.08),
    "texture_sigma_um": 0.4,
    "lamellipodia_probability": 0.7,  # of spread cells
    "lamellipodia": (1, 3),
    "lamellipodium_length_um": (1.0, 5.0),
    "lamellipodium_width_rad": (0.3, 1.0),
    "lamellipodium_phase_rad": (0.03, 0.15),
    "clusters": None,  # None: Poisson(clusters_per_field · area); an int: exactly that many
    "clusters_per_field": 0.8,
    "cluster_size": (2, 8),
    "singles": None,  # None: Poisson(singles_per_field · area); an int: exactly that many
    "singles_per_field": 1.5,
    "debris": None,  # None: Poisson(U(debris_per_field) · area); an int: exactly that many
    "debris_per_field": (0.0, 15.0),
    "debris_diameter_um": (0.4, 3.0),
    "debris_phase_rad": (0.05, 0.8),
    "debris_clump_probability": 0.3,
    "blur_px": 0.5,  # Gaussian σ applied to every object (no aliasing of sharp edges)
}

_TABLE = 256  # samples of an outline r(θ), θ = −π + 2πk/_TABLE


def _u(rng: np.random.Generator, pair: tuple[float, float]) -> float:
    return float(rng.uniform(pair[0], pair[1]))


def _i(rng: np.random.Generator, pair: tuple[int, int]) -> int:
    return int(rng.integers(int(pair[0]), int(pair[1]) + 1))


def star_outline(
    rng: np.random.Generator,
    radius_px: float,
    aspect: float,
    angle: float,
    roughness: float,
    n: int = _TABLE,
) -> np.ndarray:
    """Radius r(θ) (px, float64 (n,)) of a smooth star-convex outline at θ = −π + 2πk/n.

    An ellipse of axis ratio ``aspect`` (major axis at ``angle`` rad) times
    exp(Σ_{k=2..7} c_k·cos(kθ + ψ_k)), c_k ~ N(0, roughness/k^1.5), rescaled so that the enclosed
    area ½∮r²dθ equals π·radius_px² (equivalent-area radius ``radius_px``).
    """
    theta = -np.pi + 2 * np.pi * np.arange(n) / n
    a, b = np.sqrt(aspect), 1.0 / np.sqrt(aspect)
    t = theta - angle
    r = 1.0 / np.sqrt((np.cos(t) / a) ** 2 + (np.sin(t) / b) ** 2)
    k = np.arange(2, 8)
    c = rng.normal(0.0, 1.0, k.size) * roughness / k**1.5
    psi = rng.uniform(0.0, 2 * np.pi, k.size)
    r = r * np.exp((c[:, None] * np.cos(k[:, None] * theta[None, :] + psi[:, None])).sum(0))
    area = 0.5 * np.sum(r**2) * (2 * np.pi / n)
    return r * (radius_px * np.sqrt(np.pi / area))


def _lookup(table: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """Periodic linear interpolation of an outline table at angles ``theta`` (rad)."""
    n = table.size
    pos = (theta + np.pi) * (n / (2 * np.pi))
    i0 = np.floor(pos)
    f = pos - i0
    i0 = i0.astype(np.int64) % n
    return table[i0] * (1.0 - f) + table[(i0 + 1) % n] * f


def _add_spheres(
    out: np.ndarray, centres: np.ndarray, radii: np.ndarray, heights: np.ndarray
) -> None:
    """Add heights·sqrt(1 − r²/R²) for spheres at ``centres`` (N, 2) px, radii px (in place)."""
    ny, nx = out.shape
    for (cy, cx), rad, h in zip(centres, radii, heights, strict=True):
        y0, y1 = max(int(cy - rad), 0), min(int(cy + rad) + 2, ny)
        x0, x1 = max(int(cx - rad), 0), min(int(cx + rad) + 2, nx)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = (np.arange(y0, y1)[:, None] - cy) ** 2
        xx = (np.arange(x0, x1)[None, :] - cx) ** 2
        out[y0:y1, x0:x1] += h * np.sqrt(np.clip(1.0 - (yy + xx) / rad**2, 0.0, None))


def _points_in(
    rng: np.random.Generator, table: np.ndarray, centre: tuple[float, float], n: int, rho_max: float
) -> np.ndarray:
    """``n`` points (N, 2) px uniform in area inside ρ < rho_max of an outline around ``centre``."""
    theta = rng.uniform(-np.pi, np.pi, n)
    rho = rho_max * np.sqrt(rng.uniform(0.0, 1.0, n))
    r = rho * _lookup(table, theta)
    return np.stack([centre[0] + r * np.sin(theta), centre[1] + r * np.cos(theta)], axis=1)


def _add_organelles(
    rng: np.random.Generator, rel: np.ndarray, cell: dict[str, Any], dx: float,
    p: dict[str, Any], body: tuple[np.ndarray, tuple[float, float]],
    nucleus: tuple[np.ndarray, tuple[float, float]],
) -> None:  # fmt: skip
    """Add the nucleoli (inside the nucleus), granules and vesicles (dark or bright) of one cell
    to its relative height map ``rel`` in place. ``body``: the cell's outline table and centre
    in window pixels; ``nucleus``: the nucleus's table and its offset from that centre."""
    table, local = body
    n_table, (ny_c, nx_c) = nucleus
    n_local = (local[0] + ny_c, local[1] + nx_c)
    k = _i(rng, p["nucleoli"])
    _add_spheres(
        rel,
        _points_in(rng, n_table, n_local, k, 0.55),
        rng.uniform(*p["nucleolus_radius_um"], k) / dx,
        rng.uniform(*p["nucleolus_height"], k),
    )
    area_um2 = np.pi * (cell["diameter_um"] / 2) ** 2
    k = min(int(rng.poisson(_u(rng, p["granule_density_per_um2"]) * area_um2)), 400)
    _add_spheres(
        rel,
        _points_in(rng, table, local, k, 0.9),
        rng.uniform(*p["granule_radius_um"], k) / dx,
        rng.uniform(*p["granule_height"], k),
    )
    k = _i(rng, p["vesicles"])
    dark = rng.random(k) < p["vesicle_dark_probability"]
    heights = np.where(
        dark,
        -rng.uniform(*p["vesicle_dark_height"], k),
        rng.uniform(*p["vesicle_bright_height"], k),
    )
    _add_spheres(
        rel,
        _points_in(rng, table, local, k, 0.8),
        rng.uniform(*p["vesicle_radius_um"], k) / dx,
        heights,
    )


def _render_cell(
    rng: np.random.Generator, cell: dict[str, Any], dx: float, p: dict[str, Any]
) -> tuple[int, int, np.ndarray]:
    """One cell as (y0, x0, patch): phase (rad) on a local window whose top-left is (y0, x0)."""
    rounded = cell["kind"] == "round"
    r_eq = cell["diameter_um"] / 2 / dx
    table = cell["outline"]
    lam_table = cell.get("lamella")
    reach = float((table if lam_table is None else lam_table).max())
    half = int(np.ceil(reach + 4 * p["blur_px"] + 2))
    cy, cx = cell["centre_px"]
    y0, x0 = int(np.floor(cy)) - half, int(np.floor(cx)) - half
    size = 2 * half + 2
    yy = np.arange(y0, y0 + size)[:, None] - cy
    xx = np.arange(x0, x0 + size)[None, :] - cx
    dist = np.hypot(yy, xx)
    theta = np.arctan2(yy, xx)
    rho = dist / _lookup(table, theta)
    power = 0.5 if rounded else _u(rng, p["spread_profile_power"])
    body = np.clip(1.0 - rho**2, 0.0, None) ** power
    inside = body > 0

    # nucleus: an irregular dome inside the body, off-centre in spread cells
    frac = _u(rng, p["nucleus_fraction_round" if rounded else "nucleus_fraction_spread"])
    n_table = star_outline(rng, frac * r_eq, _u(rng, (1.0, 1.3)), rng.uniform(0, np.pi), 0.05)
    room = max(0.85 * float(table.min()) - float(n_table.max()), 0.0)
    off = room * np.sqrt(rng.uniform(0.0, 1.0 if not rounded else 0.3))
    phi = rng.uniform(-np.pi, np.pi)
    ny_c, nx_c = off * np.sin(phi), off * np.cos(phi)
    n_rho = np.hypot(yy - ny_c, xx - nx_c) / _lookup(n_table, np.arctan2(yy - ny_c, xx - nx_c))
    rel = body + _u(rng, p["nucleus_height"]) * np.sqrt(np.clip(1.0 - n_rho**2, 0.0, None))

    # small organelles, in window pixel coordinates
    local = (cy - y0, cx - x0)
    _add_organelles(rng, rel, cell, dx, p, (table, local), (n_table, (ny_c, nx_c)))
    sigma = max(float(p["texture_sigma_um"]) / dx, 0.5)
    texture = ndimage.gaussian_filter(rng.standard_normal(rel.shape), sigma)
    texture /= max(float(texture.std()), 1e-12)
    rel *= 1.0 + _u(rng, p["texture"]) * texture
    rel = np.where(inside, np.clip(rel, 0.0, None), 0.0)
    if p["blur_px"] > 0:
        rel = ndimage.gaussian_filter(rel, float(p["blur_px"]))
    patch = rel * (cell["peak_rad"] / float(rel.max()))

    if lam_table is not None:  # a thin flat sheet out to r_L(θ), only where the fans reach
        r_l = _lookup(lam_table, theta)
        reach_w = np.clip((r_l - _lookup(table, theta)) * dx / 1.0, 0.0, 1.0)
        edge = np.clip((r_l - dist) / max(0.4 / dx, 1.0), 0.0, 1.0)
        sheet = cell["lamella_rad"] * reach_w * np.sqrt(edge)
        if p["blur_px"] > 0:
            sheet = ndimage.gaussian_filter(sheet, float(p["blur_px"]))
        patch = np.maximum(patch, sheet)
    return y0, x0, patch


def _lamella_table(
    rng: np.random.Generator, table: np.ndarray, dx: float, p: dict[str, Any]
) -> np.ndarray:
    """Outer radius r_L(θ) (px) of 1–3 lamellipodial fans with a ruffled leading edge."""
    theta = -np.pi + 2 * np.pi * np.arange(table.size) / table.size
    ext = np.zeros_like(table)
    for _ in range(_i(rng, p["lamellipodia"])):
        centre, width = rng.uniform(-np.pi, np.pi), _u(rng, p["lamellipodium_width_rad"])
        d = np.angle(np.exp(1j * (theta - centre)))
        ext += _u(rng, p["lamellipodium_length_um"]) / dx * np.exp(-(d**2) / (2 * width**2))
    k = np.arange(6, 17)
    ruffle = (
        rng.normal(0, 0.08, k.size)[:, None]
        * np.cos(k[:, None] * theta + rng.uniform(0, 6.3, k.size)[:, None])
    ).sum(0)
    return table + ext * np.exp(ruffle)


def _new_cell(rng: np.random.Generator, kind: str, dx: float, p: dict[str, Any]) -> dict[str, Any]:
    """Geometry and peak phase of one cell of ``kind`` ("round" or "spread"), centre unset."""
    rounded = kind == "round"
    d = _u(rng, p["round_diameter_um" if rounded else "spread_diameter_um"])
    lo, hi = p["extent_um"]
    # axes d·sqrt(a) and d/sqrt(a) stay within [lo, hi]
    a_hi = min(p["round_aspect" if rounded else "spread_aspect"][1], (hi / d) ** 2, (d / lo) ** 2)
    a_lo = min(p["round_aspect" if rounded else "spread_aspect"][0], a_hi)
    aspect = _u(rng, (a_lo, max(a_lo, a_hi)))
    rough = p["round_roughness" if rounded else "spread_roughness"]
    table = star_outline(rng, d / 2 / dx, aspect, rng.uniform(0, np.pi), rough)
    cell: dict[str, Any] = {
        "kind": kind,
        "diameter_um": d,
        "aspect": aspect,
        "outline": table,
        "peak_rad": _u(rng, p["round_phase_rad" if rounded else "spread_phase_rad"]),
        "lamellipodia": False,
    }
    if not rounded and rng.random() < p["lamellipodia_probability"]:
        cell["lamella"] = _lamella_table(rng, table, dx, p)
        cell["lamella_rad"] = _u(rng, p["lamellipodium_phase_rad"])
        cell["lamellipodia"] = True
    return cell


def _count(rng: np.random.Generator, given: int | None, mean: float) -> int:
    return int(rng.poisson(mean)) if given is None else int(given)


def _layout(
    rng: np.random.Generator, shape: tuple[int, int], dx: float, p: dict[str, Any]
) -> list[dict[str, Any]]:
    """Cells with centres (px): clusters of touching cells, then single cells."""
    ny, nx = shape
    area = ny * nx * dx**2 / REFERENCE_FIELD_UM**2
    n_clusters = _count(rng, p["clusters"], p["clusters_per_field"] * area)
    n_singles = _count(rng, p["singles"], p["singles_per_field"] * area)
    if n_clusters + n_singles == 0:
        n_singles = 1
    cells: list[dict[str, Any]] = []

    def free(c: tuple[float, float], r: float, factor: float) -> bool:
        return all(
            np.hypot(c[0] - o["centre_px"][0], c[1] - o["centre_px"][1])
            >= factor * (r + o["diameter_um"] / 2 / dx)
            for o in cells
        )

    for g in range(n_clusters):
        kind = "round" if rng.random() < p["round_probability"] else "spread"
        members: list[dict[str, Any]] = []
        for _ in range(_i(rng, p["cluster_size"])):
            cell = _new_cell(rng, kind, dx, p)
            r = cell["diameter_um"] / 2 / dx
            for _attempt in range(12):
                if not members:  # the seed cell (or a retry when it found no room)
                    c = (rng.uniform(0, ny), rng.uniform(0, nx))
                else:
                    other = members[int(rng.integers(0, len(members)))]
                    gap = rng.uniform(0.75, 0.95) * (r + other["diameter_um"] / 2 / dx)
                    t = rng.uniform(-np.pi, np.pi)
                    c = (other["centre_px"][0] + gap * np.sin(t),
                         other["centre_px"][1] + gap * np.cos(t))  # fmt: skip
                if free(c, r, 0.7):
                    break
            else:
                continue
            cell.update(centre_px=c, cluster=g)
            members.append(cell)
            cells.append(cell)
    for _ in range(n_singles):
        kind = "round" if rng.random() < p["round_probability"] else "spread"
        cell = _new_cell(rng, kind, dx, p)
        r = cell["diameter_um"] / 2 / dx
        for _attempt in range(12):
            c = tuple(rng.uniform(r, n - r) if n > 2 * r else rng.uniform(0, n) for n in shape)
            if free(c, r, 1.05):
                cell.update(centre_px=c, cluster=None)
                cells.append(cell)
                break
    return cells


def _debris(
    rng: np.random.Generator, scene: np.ndarray, dx: float, p: dict[str, Any]
) -> tuple[np.ndarray, int]:
    """Debris layer (rad, same shape as ``scene``) on the background, and the number of blobs."""
    ny, nx = scene.shape
    area = ny * nx * dx**2 / REFERENCE_FIELD_UM**2
    n = _count(rng, p["debris"], _u(rng, p["debris_per_field"]) * area)
    layer = np.zeros_like(scene)
    blobs = 0
    for _ in range(n):
        for _attempt in range(6):
            c = (rng.uniform(0, ny), rng.uniform(0, nx))
            if scene[min(int(c[0]), ny - 1), min(int(c[1]), nx - 1)] < 0.02:
                break
        else:
            continue
        parts = 1 + (_i(rng, (1, 3)) if rng.random() < p["debris_clump_probability"] else 0)
        for _part in range(parts):
            r = max(_u(rng, p["debris_diameter_um"]) / 2 / dx, 0.7)
            _add_spheres(
                layer, np.array([c]), np.array([r]), np.array([_u(rng, p["debris_phase_rad"])])
            )
            t = rng.uniform(-np.pi, np.pi)
            c = (c[0] + 1.2 * r * np.sin(t), c[1] + 1.2 * r * np.cos(t))
            blobs += 1
    if p["blur_px"] > 0 and blobs:
        layer = ndimage.gaussian_filter(layer, float(p["blur_px"]))
    return layer, blobs


def cell_scene(
    rng: np.random.Generator,
    shape: tuple[int, int],
    pixel_size_um: float = 0.21,
    **overrides: Any,
) -> tuple[np.ndarray, dict[str, Any]]:
    """A field of cells, clusters and debris: phase float64 (Y, X) in rad, background 0.

    ``shape`` (Y, X) px at ``pixel_size_um`` µm; ``overrides``: any key of
    :data:`CELL_SCENE_DEFAULTS` (e.g. ``clusters=0, singles=1, debris=0``). Returns the map and
    an info dict: ``generator``, ``n_cells``, ``n_clusters``, ``n_debris``, ``phi_max`` (the map's
    maximum, rad) and ``cells``, one entry per cell touching the field: ``kind``,
    ``diameter_um`` (equivalent-area body diameter), ``aspect``, ``peak_rad``, ``cluster``
    (index or None), ``lamellipodia``, ``centre_um`` (y, x from the field's top-left pixel
    centre) and ``clipped`` (whether the cell's window leaves the field).
    """
    p = resolve_params(CELL_SCENE_DEFAULTS, overrides, "cell scene")
    ny, nx = int(shape[0]), int(shape[1])
    dx = float(pixel_size_um)
    scene = np.zeros((ny, nx))
    cells_info = []
    for cell in _layout(rng, (ny, nx), dx, p):
        y0, x0, patch = _render_cell(rng, cell, dx, p)
        sy0, sx0 = max(y0, 0), max(x0, 0)
        sy1, sx1 = min(y0 + patch.shape[0], ny), min(x0 + patch.shape[1], nx)
        if sy0 >= sy1 or sx0 >= sx1:
            continue
        view = scene[sy0:sy1, sx0:sx1]
        np.maximum(view, patch[sy0 - y0 : sy1 - y0, sx0 - x0 : sx1 - x0], out=view)
        clipped = y0 < 0 or x0 < 0 or y0 + patch.shape[0] > ny or x0 + patch.shape[1] > nx
        cells_info.append(
            {
                "kind": cell["kind"],
                "diameter_um": round(cell["diameter_um"], 4),
                "aspect": round(cell["aspect"], 4),
                "peak_rad": float(cell["peak_rad"]),
                "cluster": cell["cluster"],
                "lamellipodia": cell["lamellipodia"],
                "centre_um": [
                    round(cell["centre_px"][0] * dx, 3),
                    round(cell["centre_px"][1] * dx, 3),
                ],
                "clipped": bool(clipped),
            }
        )
    layer, n_debris = _debris(rng, scene, dx, p)
    scene += layer
    clusters = {c["cluster"] for c in cells_info if c["cluster"] is not None}
    info = {
        "generator": "cell_scene",
        "n_cells": len(cells_info),
        "n_clusters": len(clusters),
        "n_debris": n_debris,
        "phi_max": float(scene.max()),
        "cells": cells_info,
    }
    return scene, info
