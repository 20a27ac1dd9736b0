"""Property tests of the free-space propagators (physics.md (g) 9–10)."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics.propagation import (
    angular_spectrum_transfer,
    defocus_number,
    detection_pupil,
    propagate,
    propagate_planes,
    propagate_px,
)

LAM, DX = 0.521, 0.21  # µm; 1/λ = 1.92 cycles/µm is inside the grid's Nyquist band (2.38)
METHODS = ("fresnel", "angular_spectrum")


def band_limited_field(rng, n, cutoff_cycles_per_um, dx=DX):
    """Random complex field whose spectrum is zero for |u| ≥ cutoff."""
    spec = rng.standard_normal((n, n)) + 1j * rng.standard_normal((n, n))
    uy = np.fft.fftfreq(n, dx)[:, None]
    ux = np.fft.fftfreq(n, dx)[None, :]
    spec[uy**2 + ux**2 >= cutoff_cycles_per_um**2] = 0
    return np.fft.ifft2(spec)


def gaussian_bump(n, sigma_px, peak=1.0):
    yy, xx = np.mgrid[:n, :n] - n / 2
    return peak * np.exp(-(yy**2 + xx**2) / (2 * sigma_px**2))


def test_defocus_number_of_cvdm_setting():
    assert defocus_number(0.521, 1.0, 0.21) == pytest.approx(11.814, abs=1e-3)


@pytest.mark.parametrize("method", METHODS)
def test_energy_conservation_for_band_limited_fields(method):
    u0 = band_limited_field(np.random.default_rng(0), 64, 0.95 / LAM)
    for z in (-3.0, 0.7, 10.0):
        uz = propagate(u0, LAM, z, DX, method=method, pad="none")
        assert np.sum(np.abs(uz) ** 2) == pytest.approx(np.sum(np.abs(u0) ** 2), rel=1e-10)


@pytest.mark.parametrize("method", METHODS)
def test_propagation_group_properties(method):
    u0 = band_limited_field(np.random.default_rng(1), 64, 0.95 / LAM)
    norm = np.linalg.norm(u0)
    p0 = propagate(u0, LAM, 0.0, DX, method=method, pad="none")
    back = propagate(
        propagate(u0, LAM, 2.5, DX, method=method, pad="none"),
        LAM,
        -2.5,
        DX,
        method=method,
        pad="none",
    )
    two_steps = propagate(
        propagate(u0, LAM, 1.2, DX, method=method, pad="none"),
        LAM,
        3.1,
        DX,
        method=method,
        pad="none",
    )
    one_step = propagate(u0, LAM, 4.3, DX, method=method, pad="none")
    assert np.linalg.norm(p0 - u0) / norm < 1e-12
    assert np.linalg.norm(back - u0) / norm < 1e-10
    assert np.linalg.norm(two_steps - one_step) / norm < 1e-10


def test_angular_spectrum_drops_evanescent_waves():
    h = angular_spectrum_transfer((64, 64), LAM, 1.0, DX)
    u = np.hypot(np.fft.fftfreq(64, DX)[:, None], np.fft.fftfreq(64, DX)[None, :])
    assert np.all(h[u >= 1 / LAM] == 0)
    assert np.allclose(np.abs(h[u < 1 / LAM]), 1.0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("pad", ("edge", "mean"))
def test_uniform_phase_gives_unit_intensity(method, pad):
    field = np.full((64, 64), np.exp(1j * 0.8))
    planes = propagate_planes(field, LAM, [-2.0, -1.0, 1.0, 2.0], DX, method=method, pad=pad)
    assert np.max(np.abs(np.abs(planes) ** 2 - 1.0)) < 1e-12


@pytest.mark.parametrize("method", METHODS)
def test_positive_bump_focuses_downstream(method):
    """+z downstream: a positive bump is a converging lens, so I(+dz) > I(−dz) at its centre."""
    field = np.exp(1j * gaussian_bump(64, 6.0))
    minus, plus = np.abs(propagate_planes(field, LAM, [-1.0, 1.0], DX, method=method)) ** 2
    assert plus[32, 32] > 1.05 > 0.95 > minus[32, 32]


def test_equal_defocus_number_gives_equal_fresnel_intensities():
    field = np.exp(1j * gaussian_bump(64, 5.0, peak=2.0))
    # (λ, dz, Δx) = (0.521, 1, 0.21) and (0.6, D·Δx²/λ, 0.3) share D
    d = defocus_number(0.521, 1.0, 0.21)
    dz2 = d * 0.3**2 / 0.6
    a = np.abs(propagate_planes(field, 0.521, [-1.0, 1.0], 0.21)) ** 2
    b = np.abs(propagate_planes(field, 0.6, [-dz2, dz2], 0.3)) ** 2
    c = np.abs(np.stack([propagate_px(field, -d), propagate_px(field, d)])) ** 2
    assert np.max(np.abs(a - b)) < 1e-10
    assert np.max(np.abs(a - c)) < 1e-10


def test_angular_spectrum_matches_fresnel_for_paraxial_fields():
    u0 = band_limited_field(np.random.default_rng(2), 64, 0.2 / LAM)
    for z in (1.0, 5.0):
        fresnel = propagate(u0, LAM, z, DX, method="fresnel", pad="none")
        # the angular spectrum keeps the carrier exp(ikz) that Fresnel drops
        ang = propagate(u0, LAM, z, DX, method="angular_spectrum", pad="none")
        ang = ang * np.exp(-2j * np.pi * z / LAM)
        assert np.linalg.norm(ang - fresnel) / np.linalg.norm(fresnel) < 0.01


@pytest.mark.parametrize("cycles", (3, 7, 12, 20))
def test_weak_phase_transfer_is_2_sin(cycles):
    """A 0.01-rad cosine's intensity contrast is 2·sin(πλz|u|²)·φ̂ (weak-object transfer)."""
    n, z = 64, 1.5
    phi = 0.01 * np.cos(2 * np.pi * cycles * np.arange(n) / n)[None, :] * np.ones((n, 1))
    intensity = np.abs(propagate(np.exp(1j * phi), LAM, z, DX, pad="none")) ** 2
    u = cycles / (n * DX)
    measured = np.fft.fft2(intensity - 1)[0, cycles]
    expected = 2 * np.sin(np.pi * LAM * z * u**2) * np.fft.fft2(phi)[0, cycles]
    assert abs(measured - expected) < 0.01 * abs(expected)


def test_pupil_limits_the_spectrum():
    field = band_limited_field(np.random.default_rng(3), 64, 0.95 / LAM)
    out = propagate(field, LAM, 0.0, DX, pad="none", na=0.5)
    u = np.hypot(np.fft.fftfreq(64, DX)[:, None], np.fft.fftfreq(64, DX)[None, :])
    spec = np.fft.fft2(out)
    assert np.max(np.abs(spec[u > 0.5 / LAM])) < 1e-9
    assert detection_pupil((64, 64), 0.5, LAM, DX).sum() == np.sum(u <= 0.5 / LAM)


def test_bad_arguments_raise_input_errors():
    with pytest.raises(InputError, match="method"):
        propagate(np.ones((8, 8)), LAM, 1.0, DX, method="rayleigh")
    with pytest.raises(InputError, match="padding"):
        propagate(np.ones((8, 8)), LAM, 1.0, DX, pad="wrap")
    with pytest.raises(InputError, match="2-D"):
        propagate(np.ones((2, 8, 8)), LAM, 1.0, DX)
