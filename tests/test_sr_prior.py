"""The SR Richardson–Lucy prior channel: condition, rule, warm start, training and inference."""

import numpy as np
import pytest
import torch

from napari_cvdm.engine.cvdm import CVDM, CVDMConfig, insert_condition_channel
from napari_cvdm.engine.modelfile import (
    ModelFileError,
    load_model,
    read_metadata,
    validate_metadata,
)
from napari_cvdm.metrics import psnr
from napari_cvdm.normalization import fit_input_norm, normalize_target_to_condition
from napari_cvdm.physics.fluorescence import simulate_sr_pair
from napari_cvdm.tasks import validate_rule
from napari_cvdm.tasks.sr import SRAdapter
from napari_cvdm.tasks.sr import condition as sr_condition
from napari_cvdm.tasks.sr import rule as sr_rule
from napari_cvdm.workflows.train import TrainConfig, train
from napari_cvdm.workflows.training_data import PairedImages, prepare_sr_pair


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _pair(seed=3, size=64, photons=1500.0):
    return simulate_sr_pair(np.random.default_rng(seed), size=size, photons=photons)


def _optics(md):
    return {
        "pixel_size_um": md["widefield_pixel_size_um"],
        "na": md["na"],
        "wavelength_um": md["wavelength_um"],
    }


def test_rl_prior_is_closer_to_the_target_than_the_upsampled_widefield():
    scores = []
    for seed in (3, 4, 5):
        sample = _pair(seed)
        norm = fit_input_norm(sample.widefield, sample.metadata["camera"]["offset_adu"])
        cond = sr_condition(sample.widefield, norm, sr_rule(prior=True), _optics(sample.metadata))
        assert cond.shape == (2, 128, 128) and cond.dtype == np.float32
        plain = sr_condition(sample.widefield, norm, sr_rule())
        assert plain.shape == (1, 128, 128)
        np.testing.assert_array_equal(cond[1], plain[0])  # channel 1 is the widefield ×2
        target = normalize_target_to_condition(sample.target, plain[0])
        rng = float(target.max() - target.min())
        scores.append(
            (psnr(cond[0], target, data_range=rng), psnr(cond[1], target, data_range=rng))
        )
    gains = [rl - up for rl, up in scores]
    assert min(gains) > 1.0, scores  # RL sharpens: > 1 dB better than bicubic on every pair


def test_the_prior_needs_optics_and_the_rule_is_checked():
    sample = _pair(size=32)
    norm = fit_input_norm(sample.widefield)
    with pytest.raises(Exception, match="pixel size, NA and wavelength"):
        sr_condition(sample.widefield, norm, sr_rule(prior=True), None)
    rule = sr_rule(prior=True)
    assert rule["prior"] == {"kind": "rl", "iterations": 100}
    assert validate_rule(rule, "sr") is rule
    for bad in ({"kind": "tie", "iterations": 10}, {"kind": "rl", "iterations": 0},
                {"kind": "rl", "iterations": 5, "extra": 1}):  # fmt: skip
        with pytest.raises(ValueError):
            validate_rule({**rule, "prior": bad}, "sr")


def test_inserted_channel_starts_with_zero_weights_so_outputs_are_unchanged():
    torch.manual_seed(0)
    model = CVDM(CVDMConfig(condition_channels=1, target_channels=1, preset="tiny")).eval()
    wide = insert_condition_channel(model, 0).eval()
    assert wide.config.condition_channels == 2
    x = torch.randn(2, 1, 16, 16)
    extra = 5.0 * torch.randn(2, 1, 16, 16)  # anything in the new channel
    y_t = torch.randn(2, 1, 16, 16)
    snr = torch.randn(2, 1, 16, 16)
    with torch.no_grad():
        x2 = torch.cat([extra, x], 1)
        torch.testing.assert_close(wide.lambda_map(x2), model.lambda_map(x))
        torch.testing.assert_close(wide.denoise(y_t, x2, snr), model.denoise(y_t, x, snr))
    with pytest.raises(ValueError):
        insert_condition_channel(model, 3)


def _data(prior, frames=2, size=32):
    rng = np.random.default_rng(0)
    pairs = [simulate_sr_pair(rng, size=size) for _ in range(frames)]
    return PairedImages(
        "sr",
        [p.widefield for p in pairs],
        [p.target for p in pairs],
        val_fraction=0.5,
        input_pixel_size_um=[p.metadata["widefield_pixel_size_um"] for p in pairs],
        target_pixel_size_um=[p.metadata["target_pixel_size_um"] for p in pairs],
        sr_prior=prior,
    )


def _config(tmp_path, name, **changes):
    base = dict(task="sr", output=tmp_path / f"{name}.safetensors", steps=2, batch=2, patch=32,
                preset="tiny", val_every=2, val_count=1, val_steps=2, ckpt_every=2,
                device="cpu", warmup_steps=1, prefetch=0)  # fmt: skip
    base.update(changes)
    return TrainConfig(**base)


def test_a_model_fine_tuned_with_the_prior_gains_the_channel_and_predicts(tmp_path):
    base = list(train(_config(tmp_path, "base", sr_prior=False), data=_data(False)))[-1].result
    assert read_metadata(base)["architecture"]["condition_channels"] == 1
    config = _config(tmp_path, "rl", base_model=str(base), sr_prior=True)
    events = list(train(config, data=_data(True)))
    meta = read_metadata(events[-1].result)
    assert meta["architecture"]["condition_channels"] == 2
    assert meta["normalization"]["prior"] == {"kind": "rl", "iterations": 100}
    loaded = load_model(events[-1].result, "cpu")
    sample = _pair(seed=9, size=24)
    adapter = SRAdapter(sample.widefield, loaded.metadata)
    frame = adapter.prepare(0)
    assert frame.condition.shape == (2, 48, 48)
    # a residual model adds back the RL channel: zero samples give the RL estimate itself
    out = frame.to_physical(np.zeros((1, 48, 48)))
    assert out.shape == (1, 48, 48) and np.isfinite(out).all()
    # the prior channel needs a model that was trained with it: the header is checked
    bad = dict(meta, normalization=sr_rule())
    with pytest.raises(ModelFileError, match="without an RL prior needs"):
        validate_metadata(bad)


def test_prepared_pairs_carry_the_prior_with_the_stated_optics():
    sample = _pair(seed=1, size=32)
    plain = prepare_sr_pair(sample.widefield, sample.target)
    with_prior = prepare_sr_pair(
        sample.widefield, sample.target, prior_optics=_optics(sample.metadata)
    )
    assert plain.condition.shape == (1, 64, 64) and with_prior.condition.shape == (2, 64, 64)
    np.testing.assert_allclose(with_prior.condition[1], plain.condition[0])
    np.testing.assert_allclose(with_prior.target, plain.target)  # the target does not change


def test_the_prior_is_inherited_from_the_base_model_and_off_by_default(tmp_path):
    plain = list(train(_config(tmp_path, "plain"), data=_data(True)))[-1].result
    assert read_metadata(plain)["architecture"]["condition_channels"] == 1  # default: none
    scratch = list(train(_config(tmp_path, "scratch", sr_prior=True), data=_data(False)))
    scratch = scratch[-1].result
    assert read_metadata(scratch)["architecture"]["condition_channels"] == 2
    # fine-tuning a prior model on data prepared without it: the data adopt the channel
    tuned = list(train(_config(tmp_path, "tuned", base_model=str(scratch)), data=_data(False)))
    meta = read_metadata(tuned[-1].result)
    assert meta["normalization"]["prior"]["kind"] == "rl"
    assert meta["architecture"]["condition_channels"] == 2
