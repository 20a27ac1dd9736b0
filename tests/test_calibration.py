"""The std calibration: a conformal scale reaches its coverage and predict applies it."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.workflows.calibration import (
    COVERAGE,
    calibration_record,
    fit_std_scale,
    std_scale,
)


def test_conformal_scale_makes_two_sigma_cover_the_requested_share():
    rng = np.random.default_rng(0)
    true_sigma = rng.uniform(0.5, 2.0, 20000)
    errors = rng.normal(0.0, true_sigma)
    reported = 0.1 * true_sigma  # a std ten times too small, like the raw model's
    n = 8
    scale = fit_std_scale(errors, reported, n)
    assert scale == pytest.approx(10.0 / np.sqrt(1 + 1 / n), rel=0.05)
    fresh = rng.normal(0.0, true_sigma)
    covered = np.abs(fresh) <= 2 * scale * reported * np.sqrt(1 + 1 / n)
    assert covered.mean() == pytest.approx(COVERAGE, abs=0.01)


def test_bad_calibration_inputs_get_one_clear_error():
    with pytest.raises(InputError, match="at least 2 samples"):
        fit_std_scale(np.ones(200), np.ones(200), 1)
    with pytest.raises(InputError, match="100 pixels"):
        fit_std_scale(np.ones(200), np.zeros(200), 4)
    with pytest.raises(InputError, match="differ in shape"):
        fit_std_scale(np.ones(200), np.ones(100), 4)


def test_std_scale_reads_the_model_header_and_honours_raw():
    meta = {"calibration": calibration_record(3.5, 8, 16, "SR-B validation", 12)}
    assert std_scale(meta) == 3.5
    assert std_scale(meta, raw=True) == 1.0
    assert std_scale({}) == 1.0
    assert std_scale({"calibration": {"scale": -1}}) == 1.0


def test_predict_multiplies_the_std_by_the_calibration_scale():
    from dataclasses import replace

    from napari_cvdm.engine.registry import make_untrained_model
    from napari_cvdm.workflows.events import Finished
    from napari_cvdm.workflows.predict import ReconstructionParams, reconstruct

    untrained = make_untrained_model("sr", "tiny", seed=0)
    image = np.random.default_rng(1).poisson(50, (16, 16)).astype(np.float32) + 100
    outs = {}
    for scale, raw in ((None, False), (4.0, False), (4.0, True)):
        m = dict(untrained.metadata)
        if scale is not None:
            m["calibration"] = calibration_record(scale, 2, 2, "test", 1)
        loaded = replace(untrained, metadata=m)
        params = ReconstructionParams(n_samples=2, steps=2, seed=3, device="cpu", raw_std=raw)
        events = list(reconstruct(image, loaded, params))
        outs[(scale, raw)] = next(e for e in events if isinstance(e, Finished)).result
    base = outs[(None, False)].std
    assert np.abs(base).max() > 0
    np.testing.assert_allclose(outs[(4.0, False)].std, 4.0 * base, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(outs[(4.0, True)].std, base, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(
        outs[(4.0, False)].mean, outs[(None, False)].mean, rtol=1e-4, atol=1e-4
    )
    assert outs[(4.0, False)].metadata["std_calibration"] == {"scale": 4.0, "raw": False}


def test_fit_model_calibration_covers_its_validation_errors():
    from napari_cvdm.engine.registry import make_untrained_model
    from napari_cvdm.physics.fluorescence import simulate_sr_pair
    from napari_cvdm.workflows.calibration import fit_model_calibration

    model = make_untrained_model("sr", "tiny", seed=0)
    rng = np.random.default_rng(2)
    pairs = []
    for _ in range(2):
        s = simulate_sr_pair(rng, size=16, photons=500)
        pairs.append((s.widefield, s.target))
    scale, pooled = fit_model_calibration(model, pairs, n_samples=2, steps=2, border=2)
    assert scale > 0
    e, s = pooled["errors"], pooled["stds"]
    assert e.shape == s.shape == (2 * 28 * 28,)
    spread = s > 0  # an untrained net clamps some pixels to the same value in every sample
    assert spread.mean() > 0.5
    covered = np.abs(e[spread]) <= 2 * scale * s[spread] * np.sqrt(1 + 1 / 2)
    assert covered.mean() == pytest.approx(COVERAGE, abs=0.01)
