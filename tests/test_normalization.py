"""Tests for napari_cvdm.normalization (numpy only)."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.normalization import (
    PercentileNorm,
    defocus_number,
    denormalize,
    denormalize_scale,
    fit_input_norm,
    model_to_phase,
    normalize_input,
    normalize_target_minmax,
    normalize_target_to_condition,
    phase_to_model,
    qpi_contrast,
    qpi_tie_prior,
)
from napari_cvdm.tasks import validate_rule
from napari_cvdm.tasks.qpi import condition as qpi_condition
from napari_cvdm.tasks.qpi import rule as qpi_rule
from napari_cvdm.tasks.sr import rule as sr_rule


def _frame(seed=0, shape=(64, 48)):
    rng = np.random.default_rng(seed)
    return (100.0 + rng.gamma(2.0, 50.0, size=shape)).astype(np.float32)


def test_fit_input_norm_maps_percentiles_to_minus_one_and_one():
    frame = _frame()
    norm = fit_input_norm(frame, offset_adu=100.0)
    lo, hi = np.percentile(frame.astype(np.float64) - 100.0, [1, 99.8])
    assert norm.low == pytest.approx(lo)
    assert norm.high == pytest.approx(hi)
    x = normalize_input(frame, norm)
    assert x.dtype == np.float32 and x.shape == frame.shape
    assert np.percentile(x, 1) == pytest.approx(-1.0, abs=1e-5)
    assert np.percentile(x, 99.8) == pytest.approx(1.0, abs=1e-5)
    # not clipped: the brightest pixel lies above 1, the darkest below -1
    assert x.max() > 1.0 and x.min() < -1.0


def test_normalize_then_denormalize_returns_adu_above_offset():
    frame = _frame(1)
    norm = fit_input_norm(frame, offset_adu=100.0)
    back = denormalize(normalize_input(frame, norm), norm)
    np.testing.assert_allclose(back, frame - 100.0, rtol=1e-5, atol=1e-3)
    # a spread maps by (high - low) / 2
    np.testing.assert_allclose(denormalize_scale(np.array([2.0]), norm), [norm.scale], rtol=1e-6)


def test_percentile_norm_dict_round_trip_and_unknown_keys():
    norm = fit_input_norm(_frame(2), offset_adu=99.5, p_low=2.0, p_high=99.0)
    again = PercentileNorm.from_dict(norm.to_dict())
    assert again == norm
    with pytest.raises(ValueError, match="unknown"):
        PercentileNorm.from_dict({**norm.to_dict(), "gain": 1.0})


def test_sparse_frame_falls_back_to_min_max():
    frame = np.zeros((100, 100), np.float32)
    frame[50, 50] = 10.0  # 1 pixel in 10^4: both percentiles are 0
    norm = fit_input_norm(frame)
    assert (norm.low, norm.high) == (0.0, 10.0)


@pytest.mark.parametrize(
    "frame, match",
    [
        (np.zeros((0, 5)), "empty"),
        (np.full((4, 4), 7.0), "constant"),
        (np.array([[1.0, np.nan], [2.0, 3.0]]), "NaN or Inf"),
        (np.array([[1.0, np.inf], [2.0, 3.0]]), "NaN or Inf"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_fit_input_norm_rejects_unusable_frames(frame, match):
    with pytest.raises(InputError, match=match):
        fit_input_norm(frame)


def test_target_minmax():
    t = np.array([[2.0, 4.0], [6.0, 10.0]])
    np.testing.assert_allclose(normalize_target_minmax(t), [[-1.0, -0.5], [0.0, 1.0]])
    np.testing.assert_array_equal(normalize_target_minmax(np.ones((3, 3))), -np.ones((3, 3)))


def test_qpi_contrast_with_given_and_median_background():
    stack = np.ones((2, 8, 8), np.float32) * 2.0
    stack[0, 3, 3] = 3.0
    c = qpi_contrast(stack)  # median background is 2
    assert c.dtype == np.float32 and c.shape == stack.shape
    assert c[0, 3, 3] == pytest.approx(0.5)
    assert c[1, 0, 0] == pytest.approx(0.0)
    c2 = qpi_contrast(stack, background=4.0)
    assert c2[1, 0, 0] == pytest.approx(-0.5)
    with pytest.raises(InputError, match="positive"):
        qpi_contrast(stack, background=0.0)


def test_sr_target_takes_the_local_intensity_scale_of_the_input():
    from scipy.ndimage import gaussian_filter

    rng = np.random.default_rng(2)
    gt = np.zeros((64, 64))
    gt[rng.integers(4, 60, 30), rng.integers(4, 60, 30)] = rng.uniform(1, 5, 30)
    gt = gaussian_filter(gt, 1.0) * 1000.0  # SIM-like, arbitrary units
    x_up = 0.004 * gaussian_filter(gt, 2.0) - 0.8  # the input, already in model units
    target = normalize_target_to_condition(gt, x_up)
    np.testing.assert_allclose(target, 0.004 * gt - 0.8, rtol=1e-4, atol=1e-4)  # a·GT + c exact
    assert target.dtype == np.float32
    # a brighter isolated peak elsewhere in the frame leaves the other pixels' scale alone
    brighter = gt.copy()
    brighter[2, 2] += 50 * gt.max()
    other = normalize_target_to_condition(brighter, 0.004 * gaussian_filter(brighter, 2.0) - 0.8)
    np.testing.assert_allclose(other[10:, 10:], target[10:, 10:], atol=1e-3)
    # while min–max would rescale every pixel by the new maximum
    assert (
        np.abs(normalize_target_minmax(brighter) - normalize_target_minmax(gt))[10:, 10:].max()
        > 0.1
    )
    flat = normalize_target_to_condition(np.ones((16, 16)), rng.standard_normal((16, 16)))
    assert np.all(flat == -1.0)  # degenerate fit: falls back to min–max
    with pytest.raises(InputError, match="shape"):
        normalize_target_to_condition(gt, x_up[:32])


def test_phase_maps_are_fixed_and_inverse():
    phi = np.array([0.0, 1.75, 3.5])
    np.testing.assert_allclose(phase_to_model(phi), [-1.0, 0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(model_to_phase(phase_to_model(phi)), phi, atol=1e-6)
    np.testing.assert_allclose(phase_to_model(np.array([2.0]), phi_norm=4.0), [0.0])


def test_rules_validate_and_reject_tampering():
    assert validate_rule(sr_rule(), "sr")["input"]["offset_adu"] == 100.0
    assert validate_rule(qpi_rule(), "qpi")["target"]["phi_norm"] == 3.5
    with pytest.raises(ValueError, match="model task"):
        validate_rule(sr_rule(), "qpi")
    bad = sr_rule()
    bad["input"]["p_low"] = "one"
    with pytest.raises(ValueError, match="p_low"):
        validate_rule(bad)
    bad = qpi_rule()
    bad["target"]["phi_norm"] = -1.0
    with pytest.raises(ValueError, match="positive"):
        validate_rule(bad)
    bad = sr_rule()
    bad["extra"] = 1
    with pytest.raises(ValueError, match="unknown"):
        validate_rule(bad)
    with pytest.raises(ValueError, match="missing"):
        validate_rule({"task": "sr", "input": {}})
    bad = qpi_rule()
    bad["prior"]["alpha"] = 0.0
    with pytest.raises(ValueError, match="prior.alpha"):
        validate_rule(bad)
    bad["prior"] = {"kind": "ctf"}
    with pytest.raises(ValueError, match="prior.kind"):
        validate_rule(bad)
    old = qpi_rule()
    del old["prior"]
    old["residual"] = False
    assert validate_rule(old, "qpi") is old  # two-plane models without a prior stay valid


def test_tie_prior_recovers_a_smooth_phase_bump_in_model_units():
    from napari_cvdm.physics.qpi import simulate_qpi_stack

    n = 128
    yy, xx = np.mgrid[:n, :n] - n / 2
    phase = 2.0 * np.exp(-(xx**2 + yy**2) / (2 * 12.0**2))  # rad, min ≈ 0
    sample = simulate_qpi_stack(np.random.default_rng(0), phase=phase, noise="none", size=n)
    md = sample.metadata
    D = defocus_number(md["wavelength_um"], md["dz_um"], md["pixel_size_um"])
    assert pytest.approx(0.521 / 0.21**2, rel=1e-6) == D
    contrast = qpi_contrast(sample.stack, background=1.0)
    prior = model_to_phase(qpi_tie_prior(contrast, D))
    assert np.percentile(prior, 1.0) == pytest.approx(0.0, abs=1e-5)  # floored at 0 rad
    centre = prior[n // 2 - 4 : n // 2 + 4, n // 2 - 4 : n // 2 + 4].mean()
    assert centre == pytest.approx(2.0, abs=0.2)  # right sign and height of the bump
    error = (prior - phase) - np.mean(prior - phase)
    assert np.sqrt(np.mean(error**2)) < 0.1
    condition = qpi_condition(contrast, D, qpi_rule())
    assert condition.shape == (3, n, n) and condition.dtype == np.float32
    np.testing.assert_array_equal(condition[1:], contrast)
    old = {**qpi_rule(), "residual": False}
    del old["prior"]
    assert qpi_condition(contrast, D, old).shape == (2, n, n)
    with pytest.raises(InputError, match="two planes"):
        qpi_tie_prior(contrast[:1], D)
