"""Property test 6 of physics.md (g) (photon transfer) and the camera/background model."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics.camera import (
    CameraModel,
    background_map,
    expose,
    foreground_mask,
    photon_scale,
    smooth_noise,
)


def test_photon_transfer_slope_is_gain_and_intercept_is_read_noise():
    camera = CameraModel(offset_adu=100.0, gain_adu_per_e=2.0, read_noise_e=1.5)
    rng = np.random.default_rng(42)
    means, variances = [], []
    for level in (0.0, 5.0, 20.0, 50.0, 100.0):  # five flat fields of 10^6 px
        frame = expose(rng, np.full((1000, 1000), level), camera).astype(np.float64)
        means.append(frame.mean() - camera.offset_adu)
        variances.append(frame.var())
    slope, intercept = np.polyfit(means, variances, 1)
    assert slope == pytest.approx(camera.gain_adu_per_e, rel=0.02)
    expected = camera.gain_adu_per_e**2 * camera.read_noise_e**2 + 1.0 / 12.0
    assert intercept == pytest.approx(expected, rel=0.10)


def test_same_seed_gives_identical_frames_and_values_are_uint16_integers():
    camera = CameraModel()
    lam = np.linspace(0, 40000, 64 * 64).reshape(64, 64)
    a = expose(np.random.default_rng(3), lam, camera)
    b = expose(np.random.default_rng(3), lam, camera)
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32
    np.testing.assert_array_equal(a, np.rint(a))
    assert a.min() >= 0 and a.max() == 65535  # 40000 e⁻ × 2 ADU/e⁻ saturates
    assert not np.array_equal(a, expose(np.random.default_rng(4), lam, camera))
    with pytest.raises(InputError):
        expose(np.random.default_rng(0), -lam, camera)


def test_foreground_and_photon_scale_follow_the_spec_definition():
    clean = np.zeros((100, 100))
    clean[:10] = 10.0  # foreground: 10 % of the pixels
    clean[10:20] = 1.0  # below 20 % of the 99th percentile → background
    mask = foreground_mask(clean)
    assert mask.sum() == 1000 and mask[:10].all()
    scale = photon_scale(clean, 500.0)
    assert (scale * clean)[mask].mean() == pytest.approx(500.0)
    assert photon_scale(np.zeros((8, 8)), 500.0) == 0.0


def test_camera_metadata_and_electron_conversion():
    camera = CameraModel(offset_adu=100.0, gain_adu_per_e=2.0, read_noise_e=1.5)
    assert camera.to_metadata() == {"offset_adu": 100.0, "gain_adu_per_e": 2.0, "read_noise_e": 1.5}
    np.testing.assert_allclose(camera.electrons(np.array([100.0, 120.0])), [0.0, 10.0])


def test_background_is_smooth_positive_and_has_the_requested_level():
    rng = np.random.default_rng(1)
    n = smooth_noise(rng, (128, 128), 24.0)
    assert np.abs(n).max() == pytest.approx(1.0)
    assert np.abs(np.diff(n, axis=1)).max() < 0.2  # smooth: no pixel-scale jumps
    signal = np.zeros((128, 128))
    signal[64, 64] = 1000.0
    b = background_map(rng, (128, 128), 20.0, 0.3, 24.0, signal, beta=0.1)
    assert b.min() >= 0.7 * 20.0 - 1e-9 and b.max() <= 1.3 * 20.0 + 100.0 + 1e-9
    assert b.mean() == pytest.approx(20.0, rel=0.3)
