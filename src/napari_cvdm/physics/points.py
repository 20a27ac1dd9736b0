"""Point-cloud geometry for the structure generators: curves, splatting, cell envelope (numpy).

Coordinates are (y, x) in µm measured from the canvas' top-left *edge*: object pixel i (data
coordinate i, napari convention) covers [iΔ, (i + 1)Δ) and has its centre at (i + 0.5)·Δ.
Curves are sampled as sub-pixel points ≤ 5 nm apart whose weights are the arc length they stand
for (mass per µm of filament = 1), then splatted with mass-conserving bilinear weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..errors import InputError

MAX_SPACING_UM = 0.005

ENVELOPE_DEFAULTS = {
    "radius_um": (10.0, 25.0),
    "offset_fraction": (0.0, 0.9),
    "harmonics": 4,
    "harmonic_amplitude": 0.08,
    "edge_um": 0.3,
    "centre_boost": 0.3,
    "nucleus_probability": 0.3,
    "nucleus_fraction": (0.25, 0.4),
    "nucleus_transmission": 0.15,
}


@dataclass
class Structure:
    """Labelled points: ``points_um`` (N, 2) (y, x) µm from the canvas edge, ``weights`` (N,) mass
    per point, ``label_sigma_um`` the Gaussian σ of the label cross-section (µm); ``info`` holds
    extras (CCP centres, the ER graph, ...) for tests and figures."""

    name: str
    points_um: np.ndarray
    weights: np.ndarray
    label_sigma_um: float
    info: dict = field(default_factory=dict)


def resolve_params(defaults: dict, overrides: dict, what: str) -> dict:
    """Defaults updated by overrides; unknown names raise :class:`InputError`."""
    unknown = set(overrides) - set(defaults)
    if unknown:
        raise InputError(
            f"Unknown {what} parameter(s) {sorted(unknown)}; valid ones are {sorted(defaults)}."
        )
    return {**defaults, **overrides}


def draw(rng: np.random.Generator, value):
    """A ``(lo, hi)`` pair → uniform draw; a scalar (or None) is returned unchanged."""
    if isinstance(value, (tuple, list)):
        return float(rng.uniform(value[0], value[1]))
    return value


def draw_int(rng: np.random.Generator, value) -> int:
    """A ``(lo, hi)`` pair → integer drawn uniformly from lo…hi inclusive; a scalar → int."""
    if isinstance(value, (tuple, list)):
        return int(rng.integers(int(value[0]), int(value[1]) + 1))
    return int(value)


def uniform_array(rng: np.random.Generator, value, n: int) -> np.ndarray:
    """``n`` uniform draws from a ``(lo, hi)`` pair, or ``n`` copies of a scalar."""
    if isinstance(value, (tuple, list)):
        return rng.uniform(value[0], value[1], n)
    return np.full(n, float(value))


def in_extent(points: np.ndarray, extent_um, margin: float = 0.0) -> np.ndarray:
    """Mask (N,) of points inside the canvas grown by ``margin`` µm."""
    ext = np.asarray(extent_um)
    return (
        (points[:, 0] >= -margin)
        & (points[:, 0] < ext[0] + margin)
        & (points[:, 1] >= -margin)
        & (points[:, 1] < ext[1] + margin)
    )


# --- rendering --------------------------------------------------------------------------------


def splat_bilinear(
    points_px: np.ndarray, weights: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    """Bilinear, mass-conserving splat of points (N, 2) in data coordinates (pixel centres at
    integers) onto a float64 (Y, X) image; mass falling outside the image is dropped."""
    ny, nx = shape
    y0 = np.floor(points_px[:, 0])
    x0 = np.floor(points_px[:, 1])
    fy = points_px[:, 0] - y0
    fx = points_px[:, 1] - x0
    ok = (y0 >= -1) & (y0 < ny) & (x0 >= -1) & (x0 < nx)
    # splat into a buffer with a one-pixel frame so no tap needs its own bounds check
    idx = (y0[ok].astype(np.int64) + 1) * (nx + 2) + (x0[ok].astype(np.int64) + 1)
    w, fy, fx = weights[ok], fy[ok], fx[ok]
    wy1 = w * fy
    wy0 = w - wy1
    size = (ny + 2) * (nx + 2)
    out = np.bincount(idx, wy0 - wy0 * fx, minlength=size)
    out += np.bincount(idx + 1, wy0 * fx, minlength=size)
    out += np.bincount(idx + nx + 2, wy1 - wy1 * fx, minlength=size)
    out += np.bincount(idx + nx + 3, wy1 * fx, minlength=size)
    return out.reshape(ny + 2, nx + 2)[1:-1, 1:-1]


def points_to_px(points_um: np.ndarray, pixel_size_um: float) -> np.ndarray:
    """µm from the canvas edge → data coordinates (pixel centres at integers)."""
    return points_um / pixel_size_um - 0.5


def render(
    structure: Structure, shape: tuple[int, int], pixel_size_um: float, blur: bool = True
) -> np.ndarray:
    """Labelled density (Y, X) float64 on a grid of ``pixel_size_um``: splat, then label blur.

    Units: mass per pixel (1 µm of a unit filament = 1).
    """
    img = splat_bilinear(points_to_px(structure.points_um, pixel_size_um), structure.weights, shape)
    if blur and structure.label_sigma_um > 0:
        img = ndimage.gaussian_filter(
            img, structure.label_sigma_um / pixel_size_um, mode="constant"
        )
    return img


# --- curves -----------------------------------------------------------------------------------


def segmented_cumsum(values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum along axis 0 restarting at each run of ``counts`` consecutive rows."""
    cs = np.cumsum(values, axis=0)
    first = np.cumsum(counts) - counts
    offset = cs[first] - values[first]
    return cs - np.repeat(offset, counts, axis=0)


def worm_like_chains(
    rng: np.random.Generator,
    starts_um: np.ndarray,
    angles: np.ndarray,
    lengths_um: np.ndarray,
    step_um: float,
    persistence_um: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """2-D worm-like chains: θ_{n+1} = θ_n + sqrt(s/L_p)·ξ, ξ ~ N(0, 1); θ = 0 points along +x.

    Returns points (M, 2) µm, chain index (M,) and heading θ (M,) rad (direction of the step
    leaving each point); chain i has ceil(L_i/s) + 1 points. ``persistence_um=inf`` → straight.
    """
    counts = np.maximum(1, np.ceil(np.asarray(lengths_um) / step_um - 1e-9)).astype(np.int64) + 1
    chain = np.repeat(np.arange(counts.size), counts)
    first = np.cumsum(counts) - counts
    incr = rng.standard_normal(chain.size) * np.sqrt(step_um / persistence_um)
    incr[first] = 0.0
    theta = np.asarray(angles, dtype=np.float64)[chain] + segmented_cumsum(incr, counts)
    disp = np.empty((chain.size, 2))
    disp[0] = 0.0
    disp[1:, 0] = step_um * np.sin(theta[:-1])
    disp[1:, 1] = step_um * np.cos(theta[:-1])
    disp[first] = 0.0
    points = np.asarray(starts_um, dtype=np.float64)[chain] + segmented_cumsum(disp, counts)
    return points, chain, theta


def uniform_chain_points(
    points_um: np.ndarray,
    chain: np.ndarray,
    step_um: float,
    extent_um=None,
    max_spacing_um: float = MAX_SPACING_UM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample chains with (nearly) constant step ``step_um`` at ≤ ``max_spacing_um``.

    Each segment is split into m = ceil(step/max_spacing) equal parts, represented by their
    midpoints with weight step/m (µm of curve); when m = 1 the chain points themselves are used
    (each standing for the step that leaves it). Segments starting outside ``extent_um`` (+0.1
    µm) are skipped. Returns points (K, 2), chain index (K,), weights (K,).
    """
    m = max(1, int(np.ceil(step_um / max_spacing_um - 1e-9)))
    if m == 1:  # already fine enough: each point stands for the step that leaves it
        keep = np.empty(chain.size, dtype=bool)
        keep[:-1] = chain[:-1] == chain[1:]
        keep[-1] = False
        if extent_um is not None:
            keep &= in_extent(points_um, extent_um, 0.1 + step_um)
        return points_um[keep], chain[keep], np.full(int(keep.sum()), step_um)
    seg = np.flatnonzero(chain[:-1] == chain[1:])
    if extent_um is not None:
        seg = seg[in_extent(points_um[seg], extent_um, 0.1 + step_um)]
    a = points_um[seg]
    d = points_um[seg + 1] - a
    t = (np.arange(m) + 0.5) / m
    pts = (a[:, None, :] + t[None, :, None] * d[:, None, :]).reshape(-1, 2)
    ids = np.repeat(chain[seg], m)
    return pts, ids, np.full(ids.size, step_um / m)


def polyline_points(
    points_um: np.ndarray,
    chain: np.ndarray,
    extent_um=None,
    max_spacing_um: float = MAX_SPACING_UM,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resample polylines with arbitrary segment lengths to points ≤ ``max_spacing_um`` apart.

    Midpoint rule: the total weight equals the curve length (µm) and the weighted centroid is
    the curve's centroid. Segments with both ends 0.5 µm outside ``extent_um`` are skipped.
    Returns points (K, 2), chain index (K,), weights (K,).
    """
    seg = np.flatnonzero(chain[:-1] == chain[1:])
    a, b = points_um[seg], points_um[seg + 1]
    if extent_um is not None:
        inside = in_extent(a, extent_um, 0.5) | in_extent(b, extent_um, 0.5)
        seg, a, b = seg[inside], a[inside], b[inside]
    d = b - a
    length = np.hypot(d[:, 0], d[:, 1])
    m = np.maximum(1, np.ceil(length / max_spacing_um)).astype(np.int64)
    rep = np.repeat(np.arange(seg.size), m)
    j = np.arange(rep.size) - np.repeat(np.cumsum(m) - m, m)
    t = (j + 0.5) / m[rep]
    pts = a[rep] + t[:, None] * d[rep]
    return pts, chain[seg][rep], (length / m)[rep]


# --- cell envelope ----------------------------------------------------------------------------


@dataclass
class CellEnvelope:
    """Star-convex cell outline with a brighter centre and an optional dim nucleus (µm)."""

    centre_um: np.ndarray
    radius_um: float
    amplitudes: np.ndarray
    phases: np.ndarray
    edge_um: float = 0.3
    centre_boost: float = 0.3
    nucleus_centre_um: np.ndarray | None = None
    nucleus_radii_um: tuple[float, float] = (0.0, 0.0)
    nucleus_transmission: float = 0.15
    _lookup: tuple | None = field(default=None, repr=False)

    def radius_at(self, theta: np.ndarray) -> np.ndarray:
        """Outline radius (µm) at polar angle ``theta`` around the cell centre."""
        k = np.arange(2, 2 + self.amplitudes.size)
        ripple = self.amplitudes * np.cos(np.multiply.outer(theta, k) + self.phases)
        return self.radius_um * (1.0 + ripple.sum(axis=-1))

    def weight(self, points_um: np.ndarray) -> np.ndarray:
        """Labelling weight (N,) in [0, 1 + boost] at points (N, 2) µm (exact evaluation)."""
        d = points_um - self.centre_um
        r = np.hypot(d[:, 0], d[:, 1])
        rad = self.radius_at(np.arctan2(d[:, 0], d[:, 1]))
        w = 0.5 * (1.0 + np.tanh((rad - r) / self.edge_um))
        w *= 1.0 + self.centre_boost * np.clip(1.0 - (r / rad) ** 2, 0.0, None)
        if self.nucleus_centre_um is not None:
            q = (points_um - self.nucleus_centre_um) / np.asarray(self.nucleus_radii_um)
            inside = 0.5 * (1.0 - np.tanh((np.hypot(q[:, 0], q[:, 1]) - 1.0) * 5.0))
            w *= 1.0 - (1.0 - self.nucleus_transmission) * inside
        return w

    def lookup(self, points_um: np.ndarray, extent_um, grid_um: float = 0.1) -> np.ndarray:
        """Fast weight (N,): bilinear interpolation of :meth:`weight` tabulated every ``grid_um``
        over the canvas (+1 µm); the envelope varies on ≥ 0.3 µm, so the error is ~1 %."""
        ext = tuple(float(e) for e in np.asarray(extent_um))
        if self._lookup is None or self._lookup[0] != (ext, grid_um):
            ny, nx = (int(np.ceil((e + 2.0) / grid_um)) + 2 for e in ext)
            yy, xx = np.meshgrid(
                np.arange(ny) * grid_um - 1.0, np.arange(nx) * grid_um - 1.0, indexing="ij"
            )
            table = self.weight(np.stack([yy.ravel(), xx.ravel()], axis=1))
            self._lookup = ((ext, grid_um), table, nx, ny)
        _, table, nx, ny = self._lookup
        cy = np.clip((points_um[:, 0] + 1.0) / grid_um, 0.0, ny - 1.001)
        cx = np.clip((points_um[:, 1] + 1.0) / grid_um, 0.0, nx - 1.001)
        iy, ix = cy.astype(np.int64), cx.astype(np.int64)
        fy, fx = cy - iy, cx - ix
        i = iy * nx + ix
        t00, t01 = table.take(i), table.take(i + 1)
        t10, t11 = table.take(i + nx), table.take(i + nx + 1)
        top = t00 + (t01 - t00) * fx
        return top + (t10 + (t11 - t10) * fx - top) * fy

    def boundary(self, n: int = 720) -> tuple[np.ndarray, np.ndarray]:
        """Outline points (n, 2) µm and their outward (radial) unit directions (n, 2)."""
        theta = np.linspace(0.0, 2.0 * np.pi, n, endpoint=False)
        u = np.stack([np.sin(theta), np.cos(theta)], axis=1)
        return self.centre_um + self.radius_at(theta)[:, None] * u, u


def cell_envelope(rng: np.random.Generator, extent_um, **params) -> CellEnvelope:
    """Random cell outline that covers the canvas centre (radius 10–25 µm by default).

    The cell centre lies ``offset_fraction``·R from the canvas centre, so the edge crosses the
    canvas in a fraction of the patches.
    """
    p = resolve_params(ENVELOPE_DEFAULTS, params, "cell envelope")
    radius = draw(rng, p["radius_um"])
    direction = rng.uniform(0.0, 2.0 * np.pi)
    offset = draw(rng, p["offset_fraction"]) * radius
    centre = np.asarray(extent_um) / 2.0 - offset * np.array([np.sin(direction), np.cos(direction)])
    k = int(p["harmonics"])
    amplitudes = rng.uniform(0.0, p["harmonic_amplitude"], k) / np.sqrt(np.arange(1, k + 1))
    phases = rng.uniform(0.0, 2.0 * np.pi, k)
    nucleus, radii = None, (0.0, 0.0)
    if rng.random() < p["nucleus_probability"]:
        frac = draw(rng, p["nucleus_fraction"])
        nucleus = centre + rng.uniform(-0.15, 0.15, 2) * radius
        radii = (frac * radius, frac * radius * rng.uniform(0.7, 1.0))
    return CellEnvelope(
        centre,
        radius,
        amplitudes,
        phases,
        p["edge_um"],
        p["centre_boost"],
        nucleus,
        radii,
        p["nucleus_transmission"],
    )
