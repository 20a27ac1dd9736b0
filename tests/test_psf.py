"""Property tests 1–4 and the PSF-width invariance of physics.md (g) for physics.psf."""

import warnings

import numpy as np
import pytest
import scipy.fft as sfft
from scipy.optimize import curve_fit

from napari_cvdm.errors import InputError
from napari_cvdm.physics.psf import (
    SR_A_PSF_WIDTH_PX,
    airy_cutoff,
    airy_intensity,
    airy_otf,
    airy_otf_profile,
    airy_psf,
    bin_adjoint,
    bin_sum,
    cubic_resize,
    fourier_resize,
    gaussian_otf,
    gaussian_psf,
    measure_fwhm,
    psf_fwhm_um,
    psf_width_px,
    radial_frequency,
    resample_factor_for_model,
    resample_image,
    sim_fwhm_um,
)

OPTICS = [(1.49, 0.525, 0.01565), (1.30, 0.560, 0.0313), (1.40, 0.500, 0.02)]


def _centroid(img):
    y, x = np.indices(img.shape)
    return (img * y).sum() / img.sum(), (img * x).sum() / img.sum()


def _psfs(n):
    for na, wl, px in OPTICS:
        yield airy_psf((n, n), px, na, wl)
        yield gaussian_psf((n, n), px, sim_fwhm_um(na, wl))


@pytest.mark.parametrize("n", [129, 128])
def test_psfs_sum_to_one_are_nonnegative_centred_and_rotation_symmetric(n):
    for psf in _psfs(n):
        assert abs(psf.sum() - 1.0) < 1e-6
        assert psf.min() >= 0.0
        # for even n the kernel is centred at n // 2: drop row/column 0 to get an odd window
        core = psf if n % 2 else psf[1:, 1:]
        c = core.shape[0] // 2
        cy, cx = _centroid(core)
        assert abs(cy - c) < 0.01 and abs(cx - c) < 0.01
        assert np.abs(core - np.rot90(core)).max() < 1e-6


def test_airy_otf_is_one_at_zero_and_zero_beyond_cutoff():
    na, wl, px = 1.49, 0.525, 0.01565
    psf = airy_psf((256, 256), px, na, wl)
    otf = np.abs(sfft.fft2(sfft.ifftshift(psf)))
    rho = radial_frequency((256, 256), px)
    rc = airy_cutoff(na, wl)
    assert rc == pytest.approx(5.676, abs=1e-3)  # spec example: 176 nm period
    assert otf[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert otf[rho > 1.02 * rc].max() < 1e-3
    # the grid PSF's transfer is the analytic curve
    assert np.abs(otf - airy_otf_profile(rho, na, wl)).max() < 0.02


def test_analytic_otf_matches_fft_of_directly_sampled_airy_pattern():
    """The analytic OTF is the transform of [2J1(v)/v]², sampled independently on a large grid."""
    na, wl, px, n = 1.4, 0.52, 0.01, 1024
    y, x = (np.indices((n, n)) - n // 2) * px
    airy = airy_intensity(np.hypot(y, x), na, wl)
    otf = np.abs(sfft.fft2(sfft.ifftshift(airy / airy.sum())))
    rho = radial_frequency((n, n), px)
    assert np.abs(otf - airy_otf_profile(rho, na, wl)).max() < 0.02
    np.testing.assert_allclose(airy_otf((n, n), px, na, wl), airy_otf_profile(rho, na, wl))


@pytest.mark.parametrize(("na", "wl", "px"), OPTICS)
def test_widefield_fwhm_is_051_lambda_over_na(na, wl, px):
    psf = airy_psf((257, 257), px / 2, na, wl)  # finer sampling for the half-max interpolation
    assert psf_fwhm_um(psf, px / 2) == pytest.approx(0.51 * wl / na, rel=0.03)


@pytest.mark.parametrize("fwhm", [0.085, 0.095, 0.110])
def test_sim_gaussian_has_requested_fwhm_and_passes_the_widefield_cutoff(fwhm):
    psf = gaussian_psf((129, 129), 0.01565, fwhm)
    assert psf_fwhm_um(psf, 0.01565) == pytest.approx(fwhm, rel=0.02)
    otf = np.abs(sfft.fft2(sfft.ifftshift(psf)))
    kx = sfft.fftfreq(129, 0.01565)[:65]
    h_at_rc = np.interp(airy_cutoff(1.49, 0.525), kx, otf[0, :65])
    assert h_at_rc > 0.1  # the SIM-like GT keeps contrast at (and beyond) the WF cut-off
    # the analytic Gaussian OTF is the transform of the sampled kernel
    np.testing.assert_allclose(otf, gaussian_otf((129, 129), 0.01565, fwhm), atol=1e-6)


def test_default_sim_fwhm_is_widefield_over_1_9():
    assert sim_fwhm_um(1.49, 0.525) == pytest.approx(0.095, abs=1e-3)  # spec: ≈ 95 nm


def test_measure_fwhm_of_a_sampled_gaussian():
    x = np.arange(-50, 51) * 0.1
    assert measure_fwhm(np.exp(-(x**2) / 2), 0.1) == pytest.approx(2.3548, rel=2e-3)
    with pytest.raises(InputError):
        measure_fwhm(np.ones(10))


def test_binning_preserves_sum_composes_and_has_replication_adjoint():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 1000, (3, 64, 48)).astype(np.float64)
    assert bin_sum(x, 2).sum() == x.sum()
    assert bin_sum(x, 4).shape == (3, 16, 12)
    np.testing.assert_array_equal(bin_sum(bin_sum(x, 2), 2), bin_sum(x, 4))
    for k in (2, 4):
        a = rng.standard_normal((64, 48))
        b = rng.standard_normal((64 // k, 48 // k))
        assert abs(np.vdot(bin_sum(a, k), b) - np.vdot(a, bin_adjoint(b, k))) < 1e-10
    with pytest.raises(InputError):
        bin_sum(np.ones((5, 4)), 2)


def test_psf_width_and_resample_factor_follow_the_invariance_rule():
    assert abs(SR_A_PSF_WIDTH_PX - 1.18) < 0.01
    assert psf_width_px(1.49, 0.525, 0.0626) == pytest.approx(SR_A_PSF_WIDTH_PX)
    assert resample_factor_for_model(0.108, 1.49, 0.525) == pytest.approx(1.725, abs=0.005)
    assert resample_factor_for_model(0.0626, 1.49, 0.525) == pytest.approx(1.0)
    with pytest.warns(UserWarning, match="outside 0.5"):
        resample_factor_for_model(0.3, 1.49, 0.525)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        resample_factor_for_model(0.1, 1.4, 0.52)
    with pytest.raises(InputError, match="NA"):
        resample_factor_for_model(0.108, None, 0.525)


def _fitted_sigma_px(img):
    yy, xx = np.indices(img.shape)
    cy, cx = np.unravel_index(np.argmax(img), img.shape)
    win = (slice(cy - 3, cy + 4), slice(cx - 3, cx + 4))

    def gauss(c, a, y0, x0, s):
        return a * np.exp(-((c[0] - y0) ** 2 + (c[1] - x0) ** 2) / (2 * s * s))

    coords = (yy[win].ravel(), xx[win].ravel())
    p, _ = curve_fit(gauss, coords, img[win].ravel(), p0=[img.max(), cy, cx, 1.0])
    return abs(p[3])


def test_resampling_a_0108um_image_gives_the_model_psf_width():
    """Spec (g) 8: a 0.108 µm image resampled to the model pixel has a PSF width within 2 % of
    r₀: compare with the same Airy sampled directly at the new pixel size."""
    na, wl, px, n = 1.49, 0.525, 0.108, 64
    y, x = (np.indices((n, n)) - 31.3) * px
    image = airy_intensity(np.hypot(y, x), na, wl)
    factor = resample_factor_for_model(px, na, wl)
    zoomed = resample_image(image, factor, "fourier")
    assert zoomed.dtype == np.float32 and zoomed.shape == (110, 110)
    new_px = px * n / zoomed.shape[0]
    assert psf_width_px(na, wl, new_px) == pytest.approx(SR_A_PSF_WIDTH_PX, rel=0.01)
    y, x = (np.indices(zoomed.shape) - 54.0) * new_px
    reference = airy_intensity(np.hypot(y, x), na, wl)
    ratio = _fitted_sigma_px(zoomed.astype(np.float64)) / _fitted_sigma_px(reference)
    assert ratio == pytest.approx(1.0, abs=0.02)


def test_resizers_are_box_aligned_and_preserve_values():
    # a blob at input data coordinate p lands at output coordinate (p + 0.5)·f − 0.5
    n, m, p = 24, 60, 10.3
    x = np.arange(n)
    blob = np.exp(-((x[:, None] - p) ** 2 + (x[None, :] - p) ** 2) / (2 * 2.0**2))
    expected = (p + 0.5) * m / n - 0.5
    for out in (cubic_resize(blob, (m, m)), fourier_resize(blob, (m, m))):
        cy, cx = _centroid(out)
        assert abs(cy - expected) < 0.02 and abs(cx - expected) < 0.02
    const = np.full((12, 20), 3.5)
    np.testing.assert_allclose(fourier_resize(const, (30, 7)), 3.5, atol=1e-12)
    np.testing.assert_allclose(cubic_resize(const, (30, 7)), 3.5, atol=1e-12)
    # Fourier zoom of a band-limited cosine is exact at the new pixel centres
    n, m, k = 16, 40, 3
    img = np.cos(np.pi * k * (np.arange(n) + 0.5) / n)[None, :].repeat(3, 0)
    out = fourier_resize(img, (3, m))
    np.testing.assert_allclose(out[1], np.cos(np.pi * k * (np.arange(m) + 0.5) / m), atol=1e-12)
    with pytest.raises(InputError):
        resample_image(img, 2.0, "nearest")
