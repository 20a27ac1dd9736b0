"""Task adapters: the QPI condition [TIE prior, c−, c+] and the residual read-out at inference."""

import numpy as np
import pytest

from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.errors import InputError
from napari_cvdm.normalization import defocus_number, model_to_phase, qpi_contrast, qpi_tie_prior
from napari_cvdm.physics.qpi import simulate_qpi_stack
from napari_cvdm.tasks import make_adapter
from napari_cvdm.tasks.qpi import rule as qpi_rule


@pytest.fixture(scope="module")
def qpi_meta():
    return make_untrained_model("qpi").metadata


@pytest.fixture(scope="module")
def sample():
    return simulate_qpi_stack(np.random.default_rng(5), photons=3000.0, size=96)


def test_qpi_condition_is_the_tie_prior_then_the_contrast(qpi_meta, sample):
    adapter = make_adapter("qpi", sample.stack, qpi_meta)
    frame = adapter.prepare(0)
    contrast = qpi_contrast(sample.stack[[0, -1]])
    assert frame.condition.shape == (3, 96, 96)
    np.testing.assert_array_equal(frame.condition[1:], contrast)
    model_D = defocus_number(0.521, 1.0, 0.21)  # unknown optics: the model's own D
    np.testing.assert_allclose(frame.condition[0], qpi_tie_prior(contrast, model_D), atol=1e-6)
    assert frame.norm["tie_prior"]["defocus_D"] == pytest.approx(model_D)
    # a zero residual reads out as the TIE prior itself, in rad
    zero = np.zeros((1, 1, 96, 96), np.float32)
    np.testing.assert_allclose(
        frame.to_physical(zero)[0, 0], model_to_phase(frame.condition[0]), atol=1e-5
    )


def test_qpi_prior_uses_the_stacks_own_defocus_number(qpi_meta, sample):
    md = sample.metadata
    adapter = make_adapter(
        "qpi", sample.stack, qpi_meta, wavelength_um=0.6, dz_um=md["dz_um"],
        pixel_size_um=md["pixel_size_um"],
    )  # fmt: skip
    frame = adapter.prepare(0)
    user_D = defocus_number(0.6, md["dz_um"], md["pixel_size_um"])
    contrast = qpi_contrast(sample.stack[[0, -1]])
    np.testing.assert_allclose(frame.condition[0], qpi_tie_prior(contrast, user_D), atol=1e-6)


def test_unknown_optics_use_the_d_the_prior_was_trained_with(qpi_meta, sample):
    trained = {**qpi_meta, "normalization": qpi_rule(defocus_D=30.0)}
    frame = make_adapter("qpi", sample.stack, trained).prepare(0)
    contrast = qpi_contrast(sample.stack[[0, -1]])
    np.testing.assert_allclose(frame.condition[0], qpi_tie_prior(contrast, 30.0), atol=1e-6)


def test_models_without_a_prior_get_the_contrast_only(qpi_meta, sample):
    old = {**qpi_meta, "normalization": {**qpi_rule(), "residual": False}}
    del old["normalization"]["prior"]
    old["architecture"] = {**qpi_meta["architecture"], "condition_channels": 2, "residual": False}
    frame = make_adapter("qpi", sample.stack, old).prepare(0)
    assert frame.condition.shape == (2, 96, 96)
    np.testing.assert_allclose(frame.to_physical(np.zeros((1, 1, 96, 96)))[0, 0], 1.75)


def test_bad_qpi_inputs_are_refused_with_a_reason(qpi_meta, sample):
    with pytest.raises(InputError, match="through-focus stack"):
        make_adapter("qpi", sample.stack[0], qpi_meta)
    with pytest.raises(InputError, match="constant"):
        make_adapter("qpi", np.ones((2, 32, 32)), qpi_meta)
