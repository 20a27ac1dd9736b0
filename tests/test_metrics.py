"""Metrics against hand-computed values and known answers (docs/physics.md (g) 13)."""

import math

import numpy as np
import pytest

from napari_cvdm import metrics
from napari_cvdm.errors import InputError
from napari_cvdm.resolution import decorrelation_resolution, fourier_ring_correlation


def band_limited_noise(rng, n, kc):
    """White noise with a hard circular cut-off at ``kc`` (fraction of Nyquist)."""
    spectrum = np.fft.fft2(rng.standard_normal((n, n)))
    fy = np.fft.fftfreq(n)[:, None]
    fx = np.fft.fftfreq(n)[None, :]
    spectrum[2 * np.sqrt(fy**2 + fx**2) > kc] = 0
    return np.fft.ifft2(spectrum).real


def test_psnr_exact_for_known_mse_and_inf_for_identical():
    target = np.zeros((32, 32))
    target[0, 0] = 1.0
    pred = target.copy()
    pred[5:9, 5:9] += 0.1  # 16 px of error 0.1 -> MSE = 16 * 0.01 / 1024
    mse = 16 * 0.01 / 1024
    assert metrics.psnr(pred, target, 1.0) == pytest.approx(10 * math.log10(1 / mse), abs=1e-9)
    assert metrics.psnr(target, target, 1.0) == math.inf


def test_ssim_of_identical_images_is_one_and_lower_for_noise():
    rng = np.random.default_rng(0)
    image = rng.random((48, 48))
    assert metrics.ssim(image, image, 1.0) == pytest.approx(1.0, abs=1e-12)
    assert metrics.ssim(image + 0.2 * rng.standard_normal(image.shape), image, 1.0) < 0.9


def test_sr_metrics_conventions():
    rng = np.random.default_rng(1)
    target = rng.random((40, 40)) * 500 + 100
    pred = target + 20 * rng.standard_normal(target.shape)
    result = metrics.sr_metrics(pred, target)
    p01, g01 = metrics.minmax01(pred), metrics.minmax01(target)
    mse = np.mean((p01 - g01) ** 2)
    assert result["psnr"] == pytest.approx(10 * np.log10(1 / mse), rel=1e-12)
    assert result["psnr_cvdm"] == pytest.approx(result["psnr"], rel=1e-12)  # same in both units
    assert result["nrmse"] == pytest.approx(np.linalg.norm(p01 - g01) / np.linalg.norm(g01))
    pm, gm = 2 * p01 - 1, 2 * g01 - 1
    assert result["nmae_cvdm"] == pytest.approx(np.mean(np.abs(pm - gm)) / np.mean(np.abs(gm)))
    assert result["ssim_cvdm"] != pytest.approx(result["ssim"], abs=1e-4)
    # min-max normalisation makes the metrics invariant to a positive affine intensity change
    again = metrics.sr_metrics(3 * pred + 7, target)
    assert again["psnr"] == pytest.approx(result["psnr"], rel=1e-9)


def test_metrics_reject_bad_inputs():
    with pytest.raises(InputError, match="same shape"):
        metrics.sr_metrics(np.zeros((16, 16)), np.zeros((16, 17)))
    bad = np.ones((16, 16))
    bad[3, 3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        metrics.sr_metrics(bad, np.ones((16, 16)))
    with pytest.raises(InputError, match="11x11"):
        metrics.ssim(np.ones((8, 8)), np.ones((8, 8)), 1.0)


def test_phase_mae_ignores_constant_offsets():
    rng = np.random.default_rng(2)
    phase = rng.random((64, 64)) * 3.0
    pred = phase + 0.05 * rng.standard_normal(phase.shape)
    base = metrics.qpi_metrics(pred, phase)
    shifted = metrics.qpi_metrics(pred + 1.234, phase)
    for key in ("mae_rad", "rmse_rad", "mae_norm", "ssim", "psnr"):
        assert shifted[key] == pytest.approx(base[key], rel=1e-9)
    assert metrics.phase_errors(phase + 0.7, phase)["mae_rad"] == pytest.approx(0, abs=1e-12)
    assert base["border_px"] == 16 and base["data_range_rad"] == 3.5
    # 16-px border excluded, errors of ~N(0, 0.05^2): RMSE ~ 0.05, MAE ~ 0.05*sqrt(2/pi)
    assert base["rmse_rad"] == pytest.approx(0.05, rel=0.05)
    assert base["mae_rad"] == pytest.approx(0.05 * np.sqrt(2 / np.pi), rel=0.05)
    assert base["mae_norm"] == pytest.approx(2 * base["mae_rad"] / 3.5)


def test_phase_errors_exclude_the_border():
    phase = np.zeros((64, 64))
    pred = phase.copy()
    pred[:16, :] = 5.0  # error only inside the excluded border
    assert metrics.phase_errors(pred, phase)["rmse_rad"] == pytest.approx(0, abs=1e-12)
    assert metrics.phase_errors(pred, phase, border=0)["rmse_rad"] > 1


@pytest.mark.parametrize("kc", [0.3, 0.5, 0.8])
def test_decorrelation_finds_cutoff_of_band_limited_noise(kc):
    image = band_limited_noise(np.random.default_rng(3), 256, kc)
    result = decorrelation_resolution(image, pixel_size_um=0.1)
    expected = 2 * 0.1 / kc
    assert result.kc == pytest.approx(kc, rel=0.05)
    assert result.resolution_um == pytest.approx(expected, rel=0.05)
    assert result.curve.shape == (50,) and result.highpass_curves.shape == (10, 50)


def test_decorrelation_of_a_flat_image_has_no_resolution():
    result = decorrelation_resolution(np.full((64, 64), 3.0), pixel_size_um=0.1)
    assert result.resolution_um is None and result.kc == 0


def test_frc_of_identical_images_is_one():
    image = np.random.default_rng(4).standard_normal((64, 64))
    result = fourier_ring_correlation(image, image, pixel_size_um=0.05)
    np.testing.assert_allclose(result.frc[1:], 1.0, atol=1e-12)
    assert result.resolution_um is None and result.resolution_half_bit_um is None
    assert result.frequencies[-1] == pytest.approx(0.5 / 0.05)  # Nyquist in cycles/µm


def test_frc_of_noisy_band_limited_pair_crosses_at_the_cutoff():
    rng = np.random.default_rng(5)
    kc = 0.5
    signal = band_limited_noise(rng, 256, kc)
    noise = 0.3 * signal.std()
    a = signal + noise * rng.standard_normal(signal.shape)
    b = signal + noise * rng.standard_normal(signal.shape)
    result = fourier_ring_correlation(a, b, pixel_size_um=0.1)
    expected = 2 * 0.1 / kc  # cut-off frequency kc/(2 dx)
    assert result.resolution_um == pytest.approx(expected, rel=0.05)
    assert result.resolution_half_bit_um == pytest.approx(expected, rel=0.05)
    assert result.half_bit[10] == pytest.approx(
        (0.2071 + 1.9102 / np.sqrt(result.n_pixels[10]))
        / (1.2071 + 0.9102 / np.sqrt(result.n_pixels[10]))
    )


def test_coverage_of_calibrated_gaussian_posterior():
    rng = np.random.default_rng(6)
    n_pixels, n_samples = 50_000, 100
    sigma = rng.uniform(0.05, 0.5, n_pixels)
    centre = rng.standard_normal(n_pixels)
    target = centre + sigma * rng.standard_normal(n_pixels)
    samples = centre + sigma * rng.standard_normal((n_samples, n_pixels))
    mean, std = samples.mean(0), samples.std(0, ddof=1)
    result = metrics.calibration_metrics(mean, std, target, n_samples=n_samples)
    assert result["coverage_1sigma"] == pytest.approx(0.683, abs=0.01)
    assert result["coverage_2sigma"] == pytest.approx(0.954, abs=0.01)
    assert result["spearman_rho"] > 0.3  # larger std, larger errors
    assert result["calibration_error"] < 0.01
    assert sum(result["bins"]["count"]) == n_pixels and len(result["bins"]["rmv"]) == 10
    # over-confident std (halved): coverage collapses, calibration error grows
    bad = metrics.calibration_metrics(mean, std / 2, target, n_samples=n_samples)
    assert bad["coverage_1sigma"] < 0.45
    assert bad["calibration_error"] > 5 * result["calibration_error"]


def test_calibration_with_mask_and_subsampling():
    rng = np.random.default_rng(7)
    target = rng.standard_normal((100, 100))
    std = np.full(target.shape, 1.0)
    std[:50] = 2.0
    mean = target + std * rng.standard_normal(target.shape)
    mask = np.zeros(target.shape, bool)
    mask[:50] = True
    result = metrics.calibration_metrics(mean, std, target, mask=mask, max_pixels=1000)
    assert result["n_pixels"] == 5000 and result["n_samples"] is None
    assert math.isnan(result["spearman_rho"])  # constant std inside the mask
    assert result["coverage_1sigma"] == pytest.approx(0.683, abs=0.03)


def test_sr_consistency_of_the_true_object_and_of_a_wrong_one():
    from napari_cvdm.physics.psf import airy_otf, bin_sum

    rng = np.random.default_rng(8)
    truth = band_limited_noise(rng, 128, 0.6) ** 2  # positive, fine structure on the 2x grid
    truth[:24] = truth[-24:] = truth[:, :24] = truth[:, -24:] = 0  # dark margin: no edge effects
    otf = airy_otf(truth.shape, 0.0313, 1.49, 0.525)
    widefield = 3.0 * bin_sum(np.fft.ifft2(np.fft.fft2(truth) * otf).real, 2) + 10.0
    widefield += 0.001 * widefield.std() * rng.standard_normal(widefield.shape)
    good = metrics.sr_consistency(truth, widefield, 1.49, 0.525, 0.0313)
    assert good["rsp"] > 0.99
    assert good["scale"] == pytest.approx(3.0, rel=0.05)
    assert good["rse"] < 0.05 * widefield.std()
    assert good["error_map"].shape == (64, 64) and good["error_map"].dtype == np.float32
    wrong = metrics.sr_consistency(np.roll(truth, 9, axis=1), widefield, 1.49, 0.525, 0.0313)
    assert wrong["rsp"] < 0.9 and wrong["rse"] > 5 * good["rse"]
    with pytest.raises(InputError, match="twice"):
        metrics.sr_consistency(truth, truth, 1.49, 0.525, 0.0313)
