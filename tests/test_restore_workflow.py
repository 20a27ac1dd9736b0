"""The zero-shot restore workflow with a tiny untrained prior: checks, shapes, units, seeds,
determinism, cancel, baselines. Numbers are meaningless (random weights)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cvdm.engine.registry import make_untrained_prior
from napari_cvdm.errors import InputError
from napari_cvdm.workflows.events import Finished, Progress
from napari_cvdm.workflows.restore import (
    Noise,
    Optics,
    RestoreParams,
    restore,
    restore_image,
)
from napari_cvdm.workflows.restore_problem import choose_grid

torch.set_num_threads(1)
AIRY = Optics(na=1.49, wavelength_um=0.525)
SMALL = RestoreParams(levels=2, inner_steps=1)


@pytest.fixture(scope="module")
def prior():
    return make_untrained_prior("tiny", seed=0)


def _image(shape=(24, 24), seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.indices(shape)
    signal = 50 + 400 * np.exp(-((yy - shape[0] / 2) ** 2 + (xx - shape[1] / 3) ** 2) / 20.0)
    return (rng.poisson(signal) + 100).astype(np.float32)


def _finish(events):
    out = [e for e in events]
    assert isinstance(out[-1], Finished)
    return out


def test_sr_shapes_units_and_provenance(prior):
    events = _finish(
        restore(
            _image(), prior, SMALL, pixel_size_um=0.0626, optics=AIRY, noise=Noise(offset_adu=100.0)
        )
    )
    progress = [e for e in events if isinstance(e, Progress)]
    assert [p.step for p in progress] == [1, 2] and progress[-1].total == 2
    assert progress[0].stage.startswith("level 1/2")
    r = events[-1].result
    assert r.restored.shape == (48, 48) and r.restored.dtype == np.float32
    assert r.residual.shape == (24, 24) and r.variability.shape == (48, 48)
    assert r.pixel_size_um == pytest.approx(0.0313)
    assert r.residual_pixel_size_um == pytest.approx(0.0626)
    assert not r.variability.any()  # one seed
    meta = r.metadata
    assert meta["binning"] == 2 and meta["resample_factor"] == 1.0
    assert meta["network_evaluations"] == {"forward": 4, "vjp": 2}
    assert meta["noise"]["source"] == "estimated" and "variability" in meta["variability_note"]


def test_same_grid_deblur_and_resampling_note(prior):
    r = restore_image(
        _image((48, 48)), prior, SMALL, pixel_size_um=0.0313, na=1.4, wavelength_um=0.5
    )
    assert r.restored.shape == (48, 48) and r.metadata["binning"] == 1
    r = restore_image(_image((40, 40)), prior, SMALL, pixel_size_um=0.05, na=1.4, wavelength_um=0.5)
    assert r.metadata["binning"] == 2 and r.metadata["resample_factor"] == pytest.approx(
        0.05 / 0.0626
    )
    assert any("resampled" in n for n in r.metadata["notes"])


def test_seeds_give_variability_and_runs_are_deterministic(prior):
    params = RestoreParams(levels=2, inner_steps=1, seeds=2, seed=3)
    a = restore_image(_image(), prior, params, pixel_size_um=0.0626, na=1.49, wavelength_um=0.525)
    b = restore_image(_image(), prior, params, pixel_size_um=0.0626, na=1.49, wavelength_um=0.525)
    assert np.array_equal(a.restored, b.restored) and a.variability.max() > 0
    assert a.seeds.shape == (2, 48, 48)


def test_result_scales_with_the_image(prior):
    """Normalisation commutes: k·y with k·σ gives k·x̂ (RL and the (a, s) map are equivariant)."""
    image = _image() - 100.0
    params = RestoreParams(levels=2, inner_steps=1, warm_start=True)
    one = restore_image(
        image,
        prior,
        params,
        pixel_size_um=0.0626,
        na=1.49,
        wavelength_um=0.525,
        noise_sigma_adu=5.0,
    )
    ten = restore_image(
        10 * image,
        prior,
        params,
        pixel_size_um=0.0626,
        na=1.49,
        wavelength_um=0.525,
        noise_sigma_adu=50.0,
    )
    np.testing.assert_allclose(ten.restored, 10 * one.restored, rtol=1e-3, atol=1e-2)
    np.testing.assert_allclose(ten.residual, one.residual, rtol=1e-3, atol=1e-3)


def test_cancel_within_one_inner_step(prior):
    calls = []
    original = prior.model.forward

    def counting(x, sigma):
        calls.append(1)
        return original(x, sigma)

    prior.model.forward = counting
    try:
        events = restore(
            _image(),
            prior,
            RestoreParams(levels=5, inner_steps=3),
            pixel_size_um=0.0626,
            optics=AIRY,
        )
        first = next(events)
        assert isinstance(first, Progress) and first.step == 1
        events.close()
        assert len(calls) == 1
    finally:
        del prior.model.forward


@pytest.mark.parametrize("method", ["rl", "dps"])
def test_baselines_in_the_same_engine(prior, method):
    r = restore_image(
        _image(),
        prior,
        RestoreParams(method=method, levels=2, inner_steps=1),
        pixel_size_um=0.0626,
        na=1.49,
        wavelength_um=0.525,
    )
    assert r.restored.shape == (48, 48) and np.isfinite(r.restored).all()
    if method == "rl":
        assert r.restored.min() >= 0


def test_psf_image_input(prior):
    psf = np.zeros((15, 15))
    psf[6:9, 7:10] = 1.0
    r = restore_image(_image(), prior, SMALL, pixel_size_um=0.0626, psf=psf, psf_pixel_um=0.0626)
    assert r.metadata["psf_source"] == "image" and r.restored.shape == (48, 48)


@pytest.mark.parametrize(
    "image, kwargs, match",
    [
        (np.ones((3, 24, 24)), {}, "one 2-D image"),
        (np.full((24, 24), np.nan), {}, "NaN"),
        (np.ones((24, 24)), {}, "constant"),
        (np.ones((8, 8)), {}, "16×16"),
        (None, {"pixel_size_um": None}, "pixel size is unknown"),
        (None, {"pixel_size_um": 0.5}, "outside what the prior serves"),
        (None, {"psf": np.zeros((5, 5))}, "zero"),
        (None, {"psf": np.ones((2, 9, 9))}, "3-D"),
        (None, {"na": None, "wavelength_um": None}, "PSF is unknown"),
    ],
)
def test_bad_inputs_refused_before_any_work(prior, image, kwargs, match):
    args = {"pixel_size_um": 0.0626, "na": 1.49, "wavelength_um": 0.525, **kwargs}
    if "psf" in args:
        args["na"] = args["wavelength_um"] = None
    with pytest.raises(InputError, match=match):
        restore_image(_image() if image is None else image, prior, SMALL, **args)


def test_large_psf_refused(prior):
    wide = np.exp(-((np.indices((61, 61)) - 30.0) ** 2).sum(0) / (2 * 12.0**2))
    with pytest.raises(InputError, match="larger than the image"):
        restore_image(_image(), prior, SMALL, pixel_size_um=0.0626, psf=wide, psf_pixel_um=0.0626)


def test_params_and_grid_rules():
    with pytest.raises(InputError, match="budget"):
        RestoreParams(budget="slow").validate()
    with pytest.raises(InputError, match="seeds"):
        RestoreParams(seeds=0).validate()
    assert RestoreParams(budget="fast").validate().levels >= 1
    assert choose_grid(0.0313, 0.0313) == (1, 1.0)
    assert choose_grid(0.0626, 0.0313) == (2, 1.0)
    assert choose_grid(0.1, 0.0313)[0] == 2
    with pytest.raises(InputError):
        choose_grid(0.2, 0.0313)


def test_non_prior_model_refused():
    from napari_cvdm.engine.registry import make_untrained_model

    sr = make_untrained_model("sr", "tiny")
    with pytest.raises(InputError, match="prior"):
        restore(_image(), sr, SMALL, pixel_size_um=0.0626, optics=AIRY)


def test_warm_start_rl_stops_by_the_discrepancy_principle(prior):
    yy, xx = np.indices((32, 32))
    clean = 5 + 500 * np.exp(-((yy - 12.0) ** 2 + (xx - 20.0) ** 2) / 6.0)
    rng = np.random.default_rng(1)
    counts = {}
    for sigma in (1.0, 30.0):
        noisy = clean + rng.normal(0.0, sigma, clean.shape)
        r = restore_image(
            noisy, prior, RestoreParams(levels=1, inner_steps=1), pixel_size_um=0.0626, na=1.49,
            wavelength_um=0.525, noise_sigma_adu=sigma,
        )  # fmt: skip
        counts[sigma] = r.metadata["normalization"]["rl_iterations"]
    r = restore_image(
        clean, prior, RestoreParams(levels=1, inner_steps=1), pixel_size_um=0.0626, na=1.49,
        wavelength_um=0.525, noise_sigma_adu=1.0,
    )  # fmt: skip
    assert counts[30.0] < counts[1.0]
    assert r.metadata["normalization"]["rl_iterations"] >= counts[30.0]
