"""Property test 7 of physics.md (g): structure generators, splatting and geometry helpers."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics.points import (
    Structure,
    cell_envelope,
    polyline_points,
    render,
    splat_bilinear,
    uniform_chain_points,
    worm_like_chains,
)
from napari_cvdm.physics.psf import measure_fwhm
from napari_cvdm.physics.structures import (
    STRUCTURE_NAMES,
    er_network,
    generate_structure,
    matern_hard_core,
)

DX = 0.01565
EXTENT = (4.0, 4.0)  # µm; small canvases keep the tests fast


def test_bilinear_splat_conserves_mass_and_centroid():
    rng = np.random.default_rng(0)
    pts = rng.uniform(2.0, 60.0, (5000, 2))
    w = rng.uniform(0.1, 2.0, 5000)
    img = splat_bilinear(pts, w, (64, 64))
    assert img.sum() == pytest.approx(w.sum(), rel=1e-12)
    y, x = np.indices(img.shape)
    assert (img * y).sum() / img.sum() == pytest.approx(np.average(pts[:, 0], weights=w), rel=1e-12)
    assert (img * x).sum() / img.sum() == pytest.approx(np.average(pts[:, 1], weights=w), rel=1e-12)
    # a point exactly on a pixel centre stays in that pixel; mass outside the image is dropped
    one = splat_bilinear(np.array([[3.0, 5.0], [-7.0, 2.0]]), np.array([2.0, 1.0]), (8, 8))
    assert one[3, 5] == 2.0 and one.sum() == 2.0


@pytest.mark.parametrize("sigma_um", [0.010, 0.015])
def test_straight_filament_cross_section_fwhm_is_2355_sigma(sigma_um):
    px = 0.002  # fine grid so the FWHM is well sampled
    pts, chain, _ = worm_like_chains(
        np.random.default_rng(0),
        np.array([[0.201, 0.06]]),
        np.array([0.0]),
        np.array([0.28]),
        0.005,
        np.inf,
    )
    pts, _, w = uniform_chain_points(pts, chain, 0.005)
    img = render(Structure("line", pts, w, sigma_um), (200, 200), px)
    profile = img[:, 100]
    assert measure_fwhm(profile, px) == pytest.approx(2.3548 * sigma_um, rel=0.05)
    # mass per µm of filament is 1
    assert img.sum() == pytest.approx(0.28, rel=1e-3)


def test_worm_like_chain_tangent_correlation_decays_with_persistence_length():
    rng = np.random.default_rng(1)
    lp, step, n = 10.0, 0.02, 200
    pts, chain, _ = worm_like_chains(
        rng, np.zeros((n, 2)), rng.uniform(0, 2 * np.pi, n), np.full(n, 25.0), step, lp
    )
    per = pts.reshape(n, -1, 2)
    d = np.diff(per, axis=1)
    theta = np.arctan2(d[..., 0], d[..., 1])  # tangent angle measured from the positions
    assert np.hypot(d[..., 0], d[..., 1]) == pytest.approx(step)
    for ell in (2.0, 5.0, 10.0):
        lag = int(round(ell / step))
        corr = np.cos(theta[:, lag:] - theta[:, :-lag]).mean()
        assert corr == pytest.approx(np.exp(-ell / (2 * lp)), rel=0.10)


def test_chain_sampling_keeps_points_at_most_5nm_apart():
    rng = np.random.default_rng(2)
    pts, chain, _ = worm_like_chains(rng, np.zeros((3, 2)), np.zeros(3), np.full(3, 1.0), 0.013, 20)
    fine, ids, w = uniform_chain_points(pts, chain, 0.013)
    gaps = np.hypot(*np.diff(fine, axis=0).T)[ids[1:] == ids[:-1]]
    assert gaps.max() <= 0.005 + 1e-9
    assert w.sum() == pytest.approx(3 * 0.013 * np.ceil(1.0 / 0.013))
    poly, pid, pw = polyline_points(np.array([[0, 0], [0, 0.1], [0.3, 0.1]]), np.zeros(3, int))
    assert pw.sum() == pytest.approx(0.4)
    assert np.hypot(*np.diff(poly, axis=0).T).max() <= 0.005 + 1e-9


def test_ccp_centres_respect_exclusion_and_density():
    rng = np.random.default_rng(3)
    extent, density = (15.0, 15.0), 2.0
    centres = matern_hard_core(rng, extent, density, 0.15)
    d = np.hypot(*(centres[:, None] - centres[None]).transpose(2, 0, 1))
    np.fill_diagonal(d, np.inf)
    assert d.min() >= 0.15
    expected = density * 15.0 * 15.0
    assert abs(len(centres) - expected) < 3 * np.sqrt(expected)
    st = generate_structure(rng, "ccps", extent, density_per_um2=density, plaques=0)
    assert abs(len(st.info["centres_um"]) - expected) < 3 * np.sqrt(expected)
    with pytest.raises(InputError, match="hard"):
        matern_hard_core(rng, extent, 20.0, 0.15)


def test_ccp_pits_carry_lognormal_brightness_with_mean_one():
    st = generate_structure(np.random.default_rng(4), "ccps", (15.0, 15.0), plaques=(2, 2))
    n = len(st.info["centres_um"])
    assert st.weights.sum() / n == pytest.approx(1.0, rel=0.15)


def test_er_junctions_are_three_way():
    rng = np.random.default_rng(5)
    verts, edges = er_network(rng, (8.0, 8.0), 2.0, 0.0)
    deg = np.bincount(edges.ravel(), minlength=len(verts))
    inner = np.all((verts > 1.0) & (verts < 7.0), axis=1)  # away from the network border
    assert (deg[inner] == 3).mean() > 0.99
    verts, edges = er_network(rng, (8.0, 8.0), 2.0, 0.2)
    deg = np.bincount(edges.ravel(), minlength=len(verts))
    assert deg.max() == 3  # deleting edges never makes four-way junctions
    branch = deg[deg > 0]
    assert np.argmax(np.bincount(branch)) == 3  # degree 3 is still the most common


@pytest.mark.parametrize("name", STRUCTURE_NAMES)
def test_generators_are_finite_nonnegative_and_seeded(name):
    env = cell_envelope(np.random.default_rng(6), EXTENT)
    a = generate_structure(np.random.default_rng(7), name, EXTENT, env)
    b = generate_structure(np.random.default_rng(7), name, EXTENT, env)
    np.testing.assert_array_equal(a.points_um, b.points_um)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert a.name == name and 0.005 < a.label_sigma_um < 0.04
    img = render(a, (256, 256), DX)
    assert np.all(np.isfinite(img)) and img.min() >= 0 and img.sum() > 0
    assert np.all(a.weights >= 0)


def test_generator_parameters_can_be_overridden_and_are_checked():
    rng = np.random.default_rng(8)
    st = generate_structure(rng, "microtubules", EXTENT, persistence_um=33.0, label_sigma_um=0.012)
    assert st.info["persistence_um"] == 33.0 and st.label_sigma_um == 0.012
    with pytest.raises(InputError, match="Unknown microtubule parameter"):
        generate_structure(rng, "microtubules", EXTENT, stiffness=3)
    with pytest.raises(InputError, match="Unknown structure"):
        generate_structure(rng, "mitochondria", EXTENT)


def test_cell_envelope_is_bright_inside_and_dark_outside():
    env = cell_envelope(np.random.default_rng(9), EXTENT, radius_um=12.0, nucleus_probability=0)
    inside = env.weight(env.centre_um[None])
    edge, normal = env.boundary(90)
    outside = env.weight(edge + 2.0 * normal)
    assert inside[0] == pytest.approx(1.3) and outside.max() < 1e-4
    pts = np.random.default_rng(10).uniform(-1, 5, (500, 2))
    np.testing.assert_allclose(env.lookup(pts, EXTENT), env.weight(pts), atol=0.02)
