"""Offline phase sources for the QPI simulator."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics import phase_sources as ps


@pytest.mark.parametrize("family", ps.PHASE_SOURCE_FAMILIES)
def test_every_family_is_scaled_and_seeded(family):
    a, info = ps.random_phase(np.random.default_rng(5), (64, 80), family)
    b, _ = ps.random_phase(np.random.default_rng(5), (64, 80), family)
    assert a.shape == (64, 80) and a.dtype == np.float64 and np.isfinite(a).all()
    assert np.array_equal(a, b)
    assert a.min() == 0.0
    assert a.max() == pytest.approx(info["phi_max"], rel=1e-12)
    assert 1.0 <= info["phi_max"] <= 3.5 and info["source"] == family
    assert np.std(a) > 0.01  # not flat


def test_family_is_drawn_when_not_given():
    seen = {ps.random_phase(np.random.default_rng(s), (32, 32))[1]["source"] for s in range(40)}
    assert seen == set(ps.PHASE_SOURCE_FAMILIES)


def test_scale_phase():
    out = ps.scale_phase(np.array([[2.0, 4.0], [3.0, 6.0]]), 2.0)
    assert np.allclose(out, [[0.0, 1.0], [0.5, 2.0]])
    assert np.array_equal(ps.scale_phase(np.ones((3, 3)), 2.0), np.zeros((3, 3)))


def test_procedural_cell_phase_follows_refractive_index_model():
    """φ = (2π/λ)·Σ Δn·h: for one cell the peak lies near (2π/λ)·(Δn_c·h₀ + Δn_n·h_n + ...)."""
    phase, info = ps.procedural_cells(np.random.default_rng(1), (128, 128), 0.21, 0.521, n_cells=1)
    assert info["n_cells"] == 1
    assert phase.min() == 0.0  # background outside the cell
    # cytoplasm alone: (2π/0.521)·[0.02·2, 0.04·8] = [0.48, 3.9] rad; nucleus/granules add ≤ ~3 rad
    assert 0.4 < phase.max() < 10.0
    assert np.mean(phase > 0) > 0.02  # the cell covers a visible area


def test_natural_images_are_bundled_not_downloaded():
    names = ps.available_natural_images()
    assert {"camera.png", "moon.png", "coins.png", "text.png"} <= set(names)
    img, info = ps.natural_image_phase(np.random.default_rng(0), (48, 48), name="camera.png")
    assert img.shape == (48, 48) and img.min() >= 0.0 and img.max() <= 1.0 + 1e-12
    assert info["image"] == "camera.png"
    with pytest.raises(InputError, match="bundled"):
        ps.natural_image_phase(np.random.default_rng(0), (8, 8), name="not_there.png")


def test_fractal_texture_has_requested_spectral_slope():
    n, beta = 256, 2.5
    acc = np.zeros(n // 2)
    for seed in range(4):
        tex, info = ps.fractal_texture(np.random.default_rng(seed), (n, n), beta=beta)
        assert info["beta"] == beta
        power = np.abs(np.fft.fft2(tex)) ** 2
        r = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")) * n
        idx = np.round(r).astype(int)
        ok = idx < n // 2
        acc += np.bincount(idx[ok], power[ok], n // 2) / np.bincount(idx[ok], minlength=n // 2)
    k = np.arange(4, 100)
    slope = np.polyfit(np.log(k), np.log(acc[k]), 1)[0]
    assert slope == pytest.approx(-beta, abs=0.15)
    _, info = ps.fractal_texture(np.random.default_rng(0), (16, 16))
    assert 1.5 <= info["beta"] <= 3.0


def test_fluorescence_fallback_is_nonnegative_structure():
    img, info = ps.fluorescence_phase(np.random.default_rng(2), (64, 64), prefer_simulator=False)
    assert info["generator"] == "internal_fallback"
    assert img.shape == (64, 64) and img.min() >= 0 and img.max() > 0


def test_unknown_family_raises():
    with pytest.raises(InputError, match="cells"):
        ps.random_phase(np.random.default_rng(0), (8, 8), "galaxies")
