"""Recipe QPI-B (the QPI simulator's default): cell-like phase scenes, true optics, noise."""

import json

import numpy as np
import pytest
from scipy import ndimage

from napari_cvdm.errors import InputError
from napari_cvdm.physics.cell_phase import cell_scene, star_outline
from napari_cvdm.physics.propagation import propagate_planes
from napari_cvdm.physics.qpi import QPI_DEFAULTS, draw_source, simulate_qpi_stack
from napari_cvdm.physics.tie import tie_fft

SINGLE = {"clusters": 0, "singles": 1, "debris": 0}


def test_qpi_b_is_the_default_with_nominal_and_true_optics():
    s = simulate_qpi_stack(np.random.default_rng(0), size=64)
    md = s.metadata
    assert QPI_DEFAULTS["recipe"] == "QPI-B" and md["recipe"] == "QPI-B"
    assert s.stack.shape == (2, 64, 64) and s.stack.dtype == np.float32
    # nominal optics, as a user states them
    assert md["wavelength_um"] == 0.521 and md["dz_um"] == 1.0 and md["z_offsets_um"] == [-1, 1]
    assert md["D"] == pytest.approx(11.81, abs=0.01)
    true = md["true_optics"]
    assert 0.521 * 0.98 <= true["wavelength_um"] <= 0.521 * 1.02
    assert 0.95 <= true["dz_um"] <= 1.05 and abs(true["focus_offset_um"]) <= 0.05
    z = np.asarray(true["z_offsets_um"])
    assert z[1] - z[0] == pytest.approx(2 * true["dz_um"])
    assert z.mean() == pytest.approx(true["focus_offset_um"])
    assert 1000 <= md["photons"] <= 30000 and 0.003 <= md["read_noise"] <= 0.1
    assert 0.0 <= md["absorption"] <= 0.1
    json.dumps(md)  # serialisable as written into TIFF metadata


def test_noise_free_stack_is_the_field_propagated_with_the_true_optics():
    s = simulate_qpi_stack(
        np.random.default_rng(1), size=64, noise="none", source="cells", absorption=0.0
    )
    true = s.metadata["true_optics"]
    # fixed optical path: the phase at the true wavelength is φ·λ_nominal/λ_true
    field = np.exp(1j * s.phase.astype(np.float64) * 0.521 / true["wavelength_um"])
    ref = propagate_planes(field, true["wavelength_um"], true["z_offsets_um"], 0.21)
    assert np.max(np.abs(s.stack - np.abs(ref) ** 2)) < 1e-5


def test_cells_carry_0p3_to_6_rad_and_the_map_holds_their_peaks():
    peaks = []
    for seed in range(12):
        phase, info = cell_scene(np.random.default_rng(seed), (128, 128), 0.21)
        assert phase.min() == 0.0 and np.isfinite(phase).all()  # background exactly 0 rad
        assert info["n_cells"] >= 1 and len(info["cells"]) == info["n_cells"]
        cell_peaks = [c["peak_rad"] for c in info["cells"]]
        assert all(0.3 <= v <= 6.0 for v in cell_peaks)
        # each cell is scaled to its peak; touching cells meet at the larger phase
        whole = [c["peak_rad"] for c in info["cells"] if not c["clipped"]]
        assert phase.max() >= max(whole, default=0.0) - 1e-9
        assert phase.max() <= 6.0 and info["phi_max"] == pytest.approx(phase.max())
        peaks += cell_peaks
    scenes = [cell_scene(np.random.default_rng(seed), (64, 64), 0.21)[1] for seed in range(12)]
    kinds = {c["kind"] for info in scenes for c in info["cells"]}
    assert kinds == {"round", "spread"}
    assert min(peaks) < 1.5 and max(peaks) > 3.5  # thin spread cells and thick rounded ones
    s = simulate_qpi_stack(np.random.default_rng(3), size=64, source="cells", noise="none")
    assert 0.3 <= s.metadata["phi_max"] <= 6.0
    assert float(s.phase.max()) == pytest.approx(s.metadata["phi_max"], rel=1e-6)


@pytest.mark.parametrize("pixel_size_um, size", [(0.21, 160), (0.1, 330)])
def test_cell_bodies_are_5_to_25_um_across_at_any_pixel_size(pixel_size_um, size):
    measured = 0
    for seed in range(8):
        kind = {"round_probability": float(seed % 2)}  # alternate rounded and spread cells
        phase, info = cell_scene(
            np.random.default_rng(seed), (size, size), pixel_size_um,
            lamellipodia_probability=0.0, **SINGLE, **kind,
        )  # fmt: skip
        (cell,) = info["cells"]
        if cell["clipped"]:
            continue
        mask = phase > 0.01 * cell["peak_rad"]
        d_eq = 2 * np.sqrt(mask.sum() / np.pi) * pixel_size_um  # µm
        assert d_eq == pytest.approx(cell["diameter_um"], rel=0.08, abs=2.5 * pixel_size_um)
        assert 5.0 * 0.92 <= d_eq <= 25.0 * 1.08
        # principal axes of the body (4·sqrt of the covariance eigenvalues of a filled ellipse)
        yy, xx = np.nonzero(mask)
        axes = 4 * np.sqrt(np.linalg.eigvalsh(np.cov(np.stack([yy, xx])))) * pixel_size_um
        assert axes.min() >= 4.5 and axes.max() <= 27.5
        measured += 1
    assert measured >= 5


def test_star_outline_has_the_requested_area():
    for seed, aspect in enumerate((1.0, 1.6, 2.2)):
        r = star_outline(np.random.default_rng(seed), 20.0, aspect, 0.3, 0.2, n=4096)
        area = 0.5 * np.sum(r**2) * 2 * np.pi / r.size
        assert area == pytest.approx(np.pi * 20.0**2, rel=1e-9)
        assert r.min() > 0


def test_cells_have_organelle_texture_and_lamellipodia_are_thin_sheets():
    phase, info = cell_scene(
        np.random.default_rng(4), (200, 200), 0.21, round_probability=0.0,
        lamellipodia_probability=1.0, lamellipodium_phase_rad=(0.05, 0.1), **SINGLE,
    )  # fmt: skip
    (cell,) = info["cells"]
    assert cell["lamellipodia"] and cell["kind"] == "spread"
    body = phase > 0.2 * cell["peak_rad"]
    # nucleus, nucleoli, granules and vesicles: fine structure beyond a smooth dome
    fine = phase - ndimage.gaussian_filter(phase, 1.0 / 0.21)
    assert np.sqrt(np.mean(fine[body] ** 2)) > 0.01 * cell["peak_rad"]
    maxima = (phase == ndimage.maximum_filter(phase, size=5)) & body
    assert maxima.sum() >= 3
    # the sheet: a flat rim of ≤ 0.1 rad covering several µm² beyond the body
    sheet = (phase > 0.02) & (phase <= 0.1 + 1e-9) & ~ndimage.binary_dilation(body, iterations=3)
    assert sheet.sum() * 0.21**2 > 5.0


def test_clusters_and_debris():
    phase, info = cell_scene(
        np.random.default_rng(2), (256, 256), 0.21, clusters=1, singles=0, debris=20,
        cluster_size=(5, 5),
    )  # fmt: skip
    assert info["n_clusters"] == 1 and info["n_cells"] >= 3 and info["n_debris"] >= 20
    # touching cells form one connected object
    labels, n = ndimage.label(phase > 0.01)
    sizes = np.bincount(labels.ravel())[1:]
    assert sizes.max() * 0.21**2 > 3 * np.pi * (5.0 / 2) ** 2
    # debris: small separate blobs of ≤ 0.8 rad per blob (clumps may overlap)
    small = [k + 1 for k, v in enumerate(sizes) if v * 0.21**2 < np.pi * 2.0**2]
    assert len(small) >= 5
    assert max(phase[labels == k].max() for k in small) <= 2 * 0.8 + 1e-9


def test_crowded_fields_place_what_fits():
    """A cluster whose seed cell finds no room still grows from its next cell (no error)."""
    for seed in range(6):
        phase, info = cell_scene(
            np.random.default_rng(seed), (64, 64), 0.21, clusters=8, singles=6, debris=4
        )
        assert info["n_cells"] >= 1 and np.isfinite(phase).all() and phase.max() <= 6.0


def test_fractal_sources_are_a_minority():
    odds = QPI_DEFAULTS["source_odds"]
    assert set(odds) == {"cells", "fractal"} and odds["fractal"] == pytest.approx(0.13)
    rng = np.random.default_rng(0)
    draws = [draw_source(rng, odds) for _ in range(4000)]
    share = draws.count("fractal") / len(draws)
    assert share == pytest.approx(0.13, abs=3 * np.sqrt(0.13 * 0.87 / 4000))
    sources = [
        simulate_qpi_stack(np.random.default_rng(s), size=24, noise="none").metadata["source"]
        for s in range(120)
    ]
    assert set(sources) == {"cells", "fractal"}
    assert 0.04 <= sources.count("fractal") / 120 <= 0.25


def _flat(seed: int, **kw):
    return simulate_qpi_stack(np.random.default_rng(seed), phase=np.zeros((256, 256)), **kw)


def test_noise_statistics_measured_on_a_flat_field():
    # shot noise only: Poisson counts divided by the flat field N₀, variance 1/N₀
    s = _flat(0, photons=400.0, read_noise=0.0)
    assert float(s.stack.mean()) == pytest.approx(1.0, abs=0.002)
    assert float(s.stack.var()) == pytest.approx(1 / 400, rel=0.03)
    assert np.allclose(s.stack * 400, np.round(s.stack * 400), atol=1e-3)  # whole electrons
    # read noise only (shot noise negligible): Gaussian σ in units of I₀
    s = _flat(1, photons=1e9, read_noise=0.05)
    x = s.stack.astype(np.float64) - 1.0
    assert x.std() == pytest.approx(0.05, rel=0.02)
    assert abs(np.mean(x**4) / np.mean(x**2) ** 2 - 3.0) < 0.1  # Gaussian kurtosis
    # drawn levels: variance 1/N₀ + σ², as recorded
    for seed in range(3):
        s = _flat(10 + seed)
        md = s.metadata
        assert 1000 <= md["photons"] <= 30000 and 0.003 <= md["read_noise"] <= 0.1
        expected = 1 / md["photons"] + md["read_noise"] ** 2
        assert md["noise_sigma_background"] ** 2 == pytest.approx(expected)
        assert float(s.stack.var()) == pytest.approx(expected, rel=0.03)
    # a uniform phase is no object: no absorption, background 1
    s = _flat(5, noise="none", absorption="random")
    assert np.allclose(s.stack, 1.0, atol=1e-6)


def test_same_seed_same_sample():
    a = simulate_qpi_stack(np.random.default_rng(7), size=96)
    b = simulate_qpi_stack(np.random.default_rng(7), size=96)
    c = simulate_qpi_stack(np.random.default_rng(8), size=96)
    assert np.array_equal(a.stack, b.stack) and np.array_equal(a.phase, b.phase)
    assert a.metadata == b.metadata
    assert not np.array_equal(a.stack, c.stack)
    p, i = cell_scene(np.random.default_rng(3), (64, 64))
    q, j = cell_scene(np.random.default_rng(3), (64, 64))
    assert np.array_equal(p, q) and i == j


def test_tie_recovers_the_cells_sign_and_shape():
    s = simulate_qpi_stack(
        np.random.default_rng(6), size=128, source="cells", photons=1e5, read_noise=0.003,
        absorption=0.0,
    )  # fmt: skip
    md = s.metadata
    est = tie_fft(s.stack, md["wavelength_um"], md["z_offsets_um"], md["pixel_size_um"], 1e-4)
    corr = np.corrcoef(est[16:-16, 16:-16].ravel(), s.phase[16:-16, 16:-16].ravel())[0, 1]
    assert corr > 0.8


def test_phi_max_rescales_the_scene_and_bad_options_raise():
    s = simulate_qpi_stack(np.random.default_rng(0), size=48, source="cells", phi_max=2.0)
    assert float(s.phase.max()) == pytest.approx(2.0, rel=1e-6) and s.metadata["phi_max"] == 2.0
    rng = np.random.default_rng(0)
    with pytest.raises(InputError, match="recipe"):
        simulate_qpi_stack(rng, recipe="QPI-C")
    with pytest.raises(InputError, match="QPI-B only"):
        simulate_qpi_stack(rng, recipe="QPI-A", read_noise=0.01)
    with pytest.raises(InputError, match="source_odds"):
        simulate_qpi_stack(rng, source_odds={"stars": 1.0})
    with pytest.raises(InputError, match="read_noise"):
        simulate_qpi_stack(rng, read_noise=-0.1)
    with pytest.raises(InputError, match="cell scene"):
        simulate_qpi_stack(rng, size=32, source="cells", scene={"nuclei": 3})
