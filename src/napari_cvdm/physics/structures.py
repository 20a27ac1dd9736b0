"""Fluorescent structure generators on the object grid (numpy/scipy, vectorised).

Every generator returns a :class:`Structure`: sub-pixel points (µm, measured from the canvas'
top-left *edge*, so object pixel i has its centre at (i + 0.5)·Δ), a mass per point (1 = one µm
of a unit-intensity filament) and the Gaussian σ of the label cross-section. :func:`points.render`
splats the points with mass-conserving bilinear weights and blurs them with the label σ.
Curves are sampled as points ≤ 5 nm apart (never Bresenham lines).

Classes and default parameter ranges follow physics.md (b); a ``(lo, hi)`` pair is drawn
uniformly per call, a scalar fixes the value, and any parameter can be overridden by keyword.
All randomness comes from the ``numpy.random.Generator`` passed in.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import Voronoi, cKDTree

from ..errors import InputError
from .points import (
    MAX_SPACING_UM,
    CellEnvelope,
    Structure,
    cell_envelope,
    draw,
    draw_int,
    in_extent,
    polyline_points,
    render,
    resolve_params,
    uniform_array,
    uniform_chain_points,
    worm_like_chains,
)

__all__ = [
    "STRUCTURE_NAMES",
    "CellEnvelope",
    "Structure",
    "ccps",
    "cell_envelope",
    "endoplasmic_reticulum",
    "er_network",
    "f_actin",
    "generate_structure",
    "matern_hard_core",
    "microtubules",
    "render",
]

MICROTUBULE_DEFAULTS = {
    "density_per_900um2": (15.0, 80.0),
    "length_um": (5.0, 30.0),
    "persistence_um": (10.0, 50.0),
    "step_um": (0.005, 0.015),
    "label_sigma_um": (0.010, 0.015),
    "intensity_jitter": 0.3,
    "aster_probability": 0.15,
    "aster_filaments": (20, 60),
    "fluorophores_per_um": None,  # e.g. (30, 100) for Poisson labelling
}
ACTIN_DEFAULTS = {
    "bundles": (1, 4),
    "chains_per_bundle": (5, 30),
    "bundle_persistence_um": (50.0, 200.0),
    "bundle_width_um": (0.10, 0.30),
    "jitter_um": (0.02, 0.06),
    "jitter_correlation_um": 1.0,
    "bundle_angle_spread_deg": 20.0,
    "mesh_density_per_um2": (0.5, 2.0),
    "mesh_length_um": (0.5, 3.0),
    "mesh_persistence_um": (10.0, 17.0),
    "mesh_intensity": (0.2, 0.5),
    "filopodia": (0, 4),
    "filopodium_length_um": (1.0, 5.0),
    "filopodium_intensity": (3.0, 8.0),
    "label_sigma_um": (0.008, 0.012),
    "intensity_jitter": 0.3,
}
CCP_DEFAULTS = {
    "density_per_um2": (0.5, 3.0),
    "exclusion_um": 0.15,
    "radius_um": (0.03, 0.09),  # pits below filled_below_um are filled Gaussians
    "filled_below_um": 0.05,
    "label_sigma_um": (0.015, 0.020),
    "brightness_sigma_log": (0.4, 0.6),
    "plaques": (0, 3),
    "pits_per_plaque": (3, 8),
    "plaque_spacing_um": 0.17,
}
ER_DEFAULTS = {
    "seed_density_per_um2": (1.0, 3.0),
    "delete_fraction": (0.1, 0.3),
    "warp_sigma_um": 0.5,
    "warp_amplitude_um": (0.05, 0.10),
    "tubule_width_um": (0.05, 0.08),
    "sheets": (0, 3),
    "sheet_radius_um": (0.4, 1.2),
    "sheet_intensity": (0.3, 0.6),
    "fenestrations_per_um2": (5.0, 15.0),
    "fenestration_radius_um": (0.04, 0.12),
}


def _weigh(points, weights, envelope, extent_um):
    """Multiply weights by the cell envelope (if any)."""
    return weights if envelope is None else weights * envelope.lookup(points, extent_um)


# --- generators -------------------------------------------------------------------------------


def microtubules(rng: np.random.Generator, extent_um, envelope=None, **params) -> Structure:
    """Worm-like-chain microtubules (optionally an aster from one MTOC) over ``extent_um`` (µm).

    Filament centres are uniform over the canvas grown by the longest length, so the filament
    density (per 30×30 µm) holds inside the canvas; filaments that cannot reach it are dropped
    before they are grown.
    """
    p = resolve_params(MICROTUBULE_DEFAULTS, params, "microtubule")
    ext = np.asarray(extent_um, dtype=np.float64)
    lmax = float(np.max(p["length_um"]))
    region = ext + lmax
    n = rng.poisson(draw(rng, p["density_per_900um2"]) / 900.0 * region.prod())
    lengths = uniform_array(rng, p["length_um"], n)
    centres = rng.uniform(0.0, 1.0, (n, 2)) * region - lmax / 2
    reach = np.all(np.abs(centres - ext / 2) <= ext / 2 + lengths[:, None] / 2, axis=1)
    centres, lengths = centres[reach], lengths[reach]
    angles = rng.uniform(0.0, 2.0 * np.pi, centres.shape[0])
    starts = centres - lengths[:, None] / 2 * np.stack([np.sin(angles), np.cos(angles)], axis=1)
    aster = bool(rng.random() < p["aster_probability"])
    if aster:
        k = draw_int(rng, p["aster_filaments"])
        mtoc = rng.uniform(0.0, 1.0, 2) * (ext + 4.0) - 2.0
        starts = np.concatenate([starts, np.repeat(mtoc[None], k, axis=0)])
        angles = np.concatenate([angles, rng.uniform(0.0, 2.0 * np.pi, k)])
        lengths = np.concatenate([lengths, uniform_array(rng, p["length_um"], k)])
    step, lp = draw(rng, p["step_um"]), draw(rng, p["persistence_um"])
    pts, chain, _ = worm_like_chains(rng, starts, angles, lengths, step, lp)
    pts, chain, w = uniform_chain_points(pts, chain, step, ext)
    jit = p["intensity_jitter"]
    w = w * rng.uniform(1.0 - jit, 1.0 + jit, lengths.size)[chain]
    if p["fluorophores_per_um"] is not None:
        density = draw(rng, p["fluorophores_per_um"])
        w = rng.poisson(w * density) / density
        pts, w = pts[w > 0], w[w > 0]
    return Structure(
        "microtubules",
        pts,
        _weigh(pts, w, envelope, ext),
        draw(rng, p["label_sigma_um"]),
        {"persistence_um": lp, "step_um": step, "aster": aster},
    )


def _bundle(rng, p, ext, angle):
    """One stress-fibre bundle: k chains following a stiff base path with lateral offsets and
    smooth jitter. Returns points (K, 2) and weights (K,)."""
    span = float(np.hypot(*ext)) + 2.0
    centre = rng.uniform(0.0, 1.0, 2) * ext
    start = centre - span / 2 * np.array([np.sin(angle), np.cos(angle)])
    base, _, theta = worm_like_chains(
        rng,
        start[None],
        np.array([angle]),
        np.array([span]),
        MAX_SPACING_UM,
        draw(rng, p["bundle_persistence_um"]),
    )
    inside = np.flatnonzero(in_extent(base, ext, 0.5))
    if inside.size < 2:
        return np.zeros((0, 2)), np.zeros(0)
    base, theta = base[inside[0] : inside[-1] + 1], theta[inside[0] : inside[-1] + 1]
    k = draw_int(rng, p["chains_per_bundle"])
    coarse = 0.1  # µm between jitter knots
    arc = np.arange(base.shape[0]) * (MAX_SPACING_UM / coarse)
    noise = ndimage.gaussian_filter1d(
        rng.standard_normal((k, int(arc[-1]) + 2)), p["jitter_correlation_um"] / coarse, axis=1
    )
    noise /= np.maximum(noise.std(axis=1, keepdims=True), 1e-12)
    i0 = arc.astype(np.int64)
    f = arc - i0
    jitter = draw(rng, p["jitter_um"]) * (noise[:, i0] * (1.0 - f) + noise[:, i0 + 1] * f)
    lateral = rng.uniform(-0.5, 0.5, (k, 1)) * draw(rng, p["bundle_width_um"]) + jitter
    normal = np.stack([np.cos(theta), -np.sin(theta)], axis=1)
    chains = (base[None] + lateral[..., None] * normal[None]).reshape(-1, 2)
    cid = np.repeat(np.arange(k), base.shape[0])
    pts, c, w = uniform_chain_points(chains, cid, MAX_SPACING_UM, ext)
    jit = p["intensity_jitter"]
    return pts, w * rng.uniform(1.0 - jit, 1.0 + jit, k)[c]


def f_actin(rng: np.random.Generator, extent_um, envelope=None, **params) -> Structure:
    """F-actin: stress-fibre bundles, a dense cortical mesh and filopodia at the cell edge."""
    p = resolve_params(ACTIN_DEFAULTS, params, "F-actin")
    ext = np.asarray(extent_um, dtype=np.float64)
    main_angle = rng.uniform(0.0, np.pi)
    spread = np.deg2rad(p["bundle_angle_spread_deg"])
    parts = [
        _bundle(rng, p, ext, main_angle + spread * rng.standard_normal())
        for _ in range(draw_int(rng, p["bundles"]))
    ]
    n_mesh = rng.poisson(draw(rng, p["mesh_density_per_um2"]) * (ext + 2.0).prod())
    starts = rng.uniform(0.0, 1.0, (n_mesh, 2)) * (ext + 2.0) - 1.0
    mesh, cid, _ = worm_like_chains(
        rng,
        starts,
        rng.uniform(0, 2 * np.pi, n_mesh),
        uniform_array(rng, p["mesh_length_um"], n_mesh),
        MAX_SPACING_UM,
        draw(rng, p["mesh_persistence_um"]),
    )
    pts, c, w = uniform_chain_points(mesh, cid, MAX_SPACING_UM, ext)
    jit = p["intensity_jitter"]
    # a mesh filament is 0.2–0.5× as bright as a whole bundle (of chains_per_bundle filaments)
    level = draw(rng, p["mesh_intensity"]) * float(np.mean(p["chains_per_bundle"]))
    parts.append((pts, w * level * rng.uniform(1.0 - jit, 1.0 + jit, n_mesh)[c]))
    pts = np.concatenate([q for q, _ in parts])
    w = _weigh(pts, np.concatenate([v for _, v in parts]), envelope, ext)
    n_filo = draw_int(rng, p["filopodia"]) if envelope is not None else 0
    if n_filo:
        edge, normal = envelope.boundary()
        visible = np.flatnonzero(in_extent(edge, ext, -0.5))
        if visible.size:
            pick = rng.choice(visible, n_filo)
            ang = np.arctan2(normal[pick, 0], normal[pick, 1])
            ang = ang + np.deg2rad(15.0) * rng.standard_normal(n_filo)
            lengths = uniform_array(rng, p["filopodium_length_um"], n_filo)
            filo, cid, _ = worm_like_chains(rng, edge[pick], ang, lengths, MAX_SPACING_UM, 50.0)
            fp, c, fw = uniform_chain_points(filo, cid, MAX_SPACING_UM, ext)
            fw = fw * uniform_array(rng, p["filopodium_intensity"], n_filo)[c]
            pts, w = np.concatenate([pts, fp]), np.concatenate([w, fw])
    return Structure("f-actin", pts, w, draw(rng, p["label_sigma_um"]), {})


_HEX = np.array(
    [[0.0, 0.0]]
    + [[np.sin(a), np.cos(a)] for a in np.arange(6) * np.pi / 3]
    + [
        [np.sqrt(3) * np.sin(a), np.sqrt(3) * np.cos(a)]
        for a in np.arange(6) * np.pi / 3 + np.pi / 6
    ]
)


def matern_hard_core(
    rng: np.random.Generator,
    extent_um,
    density_per_um2: float,
    exclusion_um: float,
    extra_points: np.ndarray | None = None,
) -> np.ndarray:
    """Matérn type-II hard-core points (K, 2) µm inside ``extent_um`` at the requested density.

    Parent intensity λp = −ln(1 − λ·πr²)/(πr²), so the thinned density is λ; parents are drawn
    on the canvas grown by r (no edge bias). ``extra_points`` (plaques) win every conflict.
    """
    ext = np.asarray(extent_um, dtype=np.float64)
    a = np.pi * exclusion_um**2
    if density_per_um2 * a >= 1.0:
        raise InputError(
            f"A density of {density_per_um2} µm⁻² is impossible with a {exclusion_um} µm hard "
            f"core; use a density below {1.0 / a:.1f} µm⁻²."
        )
    lam_parent = -np.log1p(-density_per_um2 * a) / a
    grown = ext + 2 * exclusion_um
    n = rng.poisson(lam_parent * grown.prod())
    pts = rng.uniform(0.0, 1.0, (n, 2)) * grown - exclusion_um
    marks = rng.random(n)
    if extra_points is not None and len(extra_points):
        pts = np.concatenate([pts, extra_points])
        marks = np.concatenate([marks, rng.uniform(-1.0, -0.5, len(extra_points))])
    pairs = cKDTree(pts).query_pairs(exclusion_um, output_type="ndarray")
    if pairs.size:
        loser = np.where(marks[pairs[:, 0]] > marks[pairs[:, 1]], pairs[:, 0], pairs[:, 1])
        pts = np.delete(pts, np.unique(loser), axis=0)
    return pts[in_extent(pts, ext)]


def ccps(rng: np.random.Generator, extent_um, envelope=None, **params) -> Structure:
    """Clathrin-coated pits: hard-core rings (filled discs when small), log-normal brightness
    (mean 1 per pit), and a few plaques of 3–8 pits."""
    p = resolve_params(CCP_DEFAULTS, params, "CCP")
    ext = np.asarray(extent_um, dtype=np.float64)
    plaques = []
    for _ in range(draw_int(rng, p["plaques"])):
        k = draw_int(rng, p["pits_per_plaque"])
        a = rng.uniform(0, np.pi)
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        off = _HEX[:k] @ rot.T * p["plaque_spacing_um"] + rng.uniform(-0.008, 0.008, (k, 2))
        plaques.append(rng.uniform(0.0, 1.0, 2) * ext + off)
    extra = np.concatenate(plaques) if plaques else None
    centres = matern_hard_core(rng, ext, draw(rng, p["density_per_um2"]), p["exclusion_um"], extra)
    n = centres.shape[0]
    radius = uniform_array(rng, p["radius_um"], n)
    s = draw(rng, p["brightness_sigma_log"])
    bright = np.exp(s * rng.standard_normal(n) - s * s / 2)
    filled = radius < p["filled_below_um"]
    ring_n = np.ceil(2 * np.pi * radius / MAX_SPACING_UM)
    disc_n = np.ceil(np.pi * radius**2 / MAX_SPACING_UM**2)
    counts = np.where(filled, disc_n, ring_n).astype(np.int64)
    idx = np.repeat(np.arange(n), counts)
    j = np.arange(idx.size) - np.repeat(np.cumsum(counts) - counts, counts)
    f = filled[idx]
    angle = np.where(
        f,
        2 * np.pi * rng.random(idx.size),
        rng.uniform(0, 2 * np.pi, n)[idx] + 2 * np.pi * j / counts[idx],
    )
    r = np.where(f, radius[idx] * np.sqrt(rng.random(idx.size)), radius[idx])
    pts = centres[idx] + r[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    w = (bright / counts)[idx]
    return Structure(
        "ccps",
        pts,
        _weigh(pts, w, envelope, ext),
        draw(rng, p["label_sigma_um"]),
        {"centres_um": centres, "radii_um": radius},
    )


def er_network(
    rng: np.random.Generator,
    extent_um,
    seed_density_per_um2: float,
    delete_fraction: float,
    margin_um: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Voronoi network of Poisson seeds (three-way junctions) with a fraction of edges deleted.

    Returns vertices (V, 2) µm and edges (E, 2) as vertex indices, over the canvas + margin.
    """
    ext = np.asarray(extent_um, dtype=np.float64)
    region = ext + 2 * margin_um
    n = max(4, rng.poisson(seed_density_per_um2 * region.prod()))
    vor = Voronoi(rng.uniform(0.0, 1.0, (n, 2)) * region - margin_um)
    edges = np.array(vor.ridge_vertices, dtype=np.int64).reshape(-1, 2)
    edges = edges[(edges >= 0).all(axis=1)]
    ok = in_extent(vor.vertices, ext, margin_um)
    edges = edges[ok[edges].all(axis=1)]
    keep = rng.random(edges.shape[0]) >= delete_fraction
    return vor.vertices, edges[keep]


def _sheet(rng, p, radius, spacing):
    """Points (K, 2) µm (centred on 0) of one fenestrated sheet: a star-shaped blob with holes."""
    g = np.arange(-1.3 * radius, 1.3 * radius, spacing)
    y, x = np.meshgrid(g, g, indexing="ij")
    r2 = y * y + x * x + 1e-12
    cos2 = (x * x - y * y) / r2  # cos 2θ without arctan2
    phase = rng.uniform(-1.0, 1.0)
    edge = radius * (1.0 + 0.2 * phase * cos2 + 0.1 * (1 - abs(phase)) * (2 * cos2 * cos2 - 1))
    mask = r2 < edge * edge
    n_holes = rng.poisson(draw(rng, p["fenestrations_per_um2"]) * (2.6 * radius) ** 2)
    centres = rng.uniform(0, g.size, (n_holes, 2))
    radii = uniform_array(rng, p["fenestration_radius_um"], n_holes) / spacing
    for (cy, cx), rh in zip(centres, radii):
        y0, y1 = int(max(cy - rh, 0)), int(min(cy + rh + 1, g.size))
        x0, x1 = int(max(cx - rh, 0)), int(min(cx + rh + 1, g.size))
        iy, ix = np.ogrid[y0:y1, x0:x1]
        mask[y0:y1, x0:x1] &= (iy - cy) ** 2 + (ix - cx) ** 2 > rh * rh
    return np.stack([y[mask], x[mask]], axis=1)


def _warp_field(rng, ext, sigma_um, amplitude_um, grid=0.1):
    """Smooth random displacement: returns f(points (N, 2)) → displacement (N, 2) µm, from
    Gaussian-filtered noise on a ``grid``-µm lattice over the canvas ± 2 µm (rms = amplitude)."""
    shape = tuple(int(v) for v in np.ceil((ext + 4.0) / grid) + 1)
    fields = []
    for _ in range(2):
        field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma_um / grid)
        fields.append(field * amplitude_um / max(field.std(), 1e-12))

    def displacement(points):
        c = (points + 2.0) / grid
        return np.stack(
            [ndimage.map_coordinates(f, c.T, order=1, mode="nearest") for f in fields], axis=1
        )

    return displacement


def _subdivide(a: np.ndarray, b: np.ndarray, max_len: float) -> tuple[np.ndarray, np.ndarray]:
    """Split segments a→b (E, 2) into ≤ max_len pieces: polyline vertices (V, 2), chain ids."""
    m = np.maximum(1, np.ceil(np.hypot(*(b - a).T) / max_len)).astype(np.int64)
    counts = m + 1
    chain = np.repeat(np.arange(a.shape[0]), counts)
    t = (np.arange(chain.size) - np.repeat(np.cumsum(counts) - counts, counts)) / m[chain]
    return a[chain] + t[:, None] * (b - a)[chain], chain


def endoplasmic_reticulum(
    rng: np.random.Generator, extent_um, envelope=None, **params
) -> Structure:
    """ER: Voronoi tubule network with deleted edges, bent by a smooth random displacement
    (σ ≈ 0.5 µm, 50–100 nm rms, applied to vertices every ≤ 0.1 µm along each tubule), plus 0–3
    fenestrated sheets (moved with the same displacement)."""
    p = resolve_params(ER_DEFAULTS, params, "ER")
    ext = np.asarray(extent_um, dtype=np.float64)
    verts, edges = er_network(
        rng, ext, draw(rng, p["seed_density_per_um2"]), draw(rng, p["delete_fraction"])
    )
    warp = _warp_field(rng, ext, p["warp_sigma_um"], draw(rng, p["warp_amplitude_um"]))
    a, b = verts[edges[:, 0]], verts[edges[:, 1]]
    near = in_extent(a, ext, 1.0) | in_extent(b, ext, 1.0)
    poly, chain = _subdivide(a[near], b[near], 0.1)
    poly = poly + warp(poly)
    pts, _, w = polyline_points(poly, chain, ext, 0.004)
    sigma = draw(rng, p["tubule_width_um"]) / 2.3548
    spacing = 0.010
    all_pts, all_w = [pts], [w]
    for _ in range(draw_int(rng, p["sheets"])):
        q = _sheet(rng, p, draw(rng, p["sheet_radius_um"]), spacing)
        centre = rng.uniform(0.0, 1.0, (1, 2)) * ext
        level = draw(rng, p["sheet_intensity"]) / (np.sqrt(2 * np.pi) * sigma)  # peak-matched
        all_pts.append(q + centre + warp(centre))
        all_w.append(np.full(q.shape[0], level * spacing**2))
    pts, w = np.concatenate(all_pts), np.concatenate(all_w)
    keep = in_extent(pts, ext, 0.1)
    pts, w = pts[keep], w[keep]
    return Structure(
        "er", pts, _weigh(pts, w, envelope, ext), sigma, {"vertices_um": verts, "edges": edges}
    )


GENERATORS = {
    "microtubules": microtubules,
    "f-actin": f_actin,
    "ccps": ccps,
    "er": endoplasmic_reticulum,
}
#: Structure classes of recipe SR-A (BioSR's four).
STRUCTURE_NAMES = tuple(GENERATORS)


def generate_structure(
    rng: np.random.Generator, name: str, extent_um, envelope: CellEnvelope | None = None, **params
) -> Structure:
    """Dispatch to a generator by name (one of :data:`STRUCTURE_NAMES`)."""
    if name not in GENERATORS:
        raise InputError(f"Unknown structure {name!r}; choose one of {', '.join(STRUCTURE_NAMES)}.")
    return GENERATORS[name](rng, extent_um, envelope, **params)
