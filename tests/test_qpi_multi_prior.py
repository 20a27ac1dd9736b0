"""QPI models with several TIE prior channels (multi-α): condition, rule, warm start, training
and inference."""

import numpy as np
import pytest
import torch

from napari_cvdm.engine.modelfile import (
    ModelFileError,
    load_model,
    read_metadata,
    validate_metadata,
)
from napari_cvdm.normalization import QPI_TIE_EXTRA_ALPHAS, qpi_contrast, qpi_tie_prior
from napari_cvdm.physics.qpi import simulate_qpi_stack
from napari_cvdm.tasks import validate_rule
from napari_cvdm.tasks.qpi import QPIAdapter
from napari_cvdm.tasks.qpi import condition as qpi_condition
from napari_cvdm.tasks.qpi import prior_alphas as qpi_prior_alphas
from napari_cvdm.tasks.qpi import rule as qpi_rule
from napari_cvdm.workflows.train import TrainConfig, _widen_condition, train
from napari_cvdm.workflows.training_data import PairedImages, prepare_qpi_pair

D = 11.8  # the QPI recipes' defocus number λ·dz/Δx²


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sample(seed=2, size=64):
    return simulate_qpi_stack(np.random.default_rng(seed), size=size)


def _contrast(sample):
    return qpi_contrast(sample.stack[[0, -1]])


def test_the_condition_stacks_one_tie_prior_per_weight_before_the_planes():
    contrast = _contrast(_sample())
    single = qpi_condition(contrast, D, qpi_rule())
    multi = qpi_condition(contrast, D, qpi_rule(extra_alphas=QPI_TIE_EXTRA_ALPHAS))
    assert single.shape == (3, 64, 64) and multi.shape == (6, 64, 64)
    assert multi.dtype == np.float32
    np.testing.assert_array_equal(multi[0], single[0])  # the residual base is unchanged
    np.testing.assert_array_equal(multi[-2:], single[-2:])  # the planes close the stack
    for channel, alpha in zip(multi[1:4], QPI_TIE_EXTRA_ALPHAS):
        np.testing.assert_allclose(channel, qpi_tie_prior(contrast, D, alpha=alpha), atol=1e-6)
    # a stronger Tikhonov weight damps the low frequencies: a smoother, flatter prior
    spread = [float(np.std(c)) for c in (multi[1], multi[0], multi[2], multi[3])]
    assert spread == sorted(spread, reverse=True)


def test_the_rule_lists_the_weights_in_channel_order_and_is_checked():
    rule = qpi_rule(defocus_D=D, extra_alphas=(1e-7, 1e-5))
    assert qpi_prior_alphas(rule) == (1e-6, 1e-7, 1e-5)
    assert qpi_prior_alphas(qpi_rule()) == (1e-6,)
    assert validate_rule(rule, "qpi") is rule
    for bad in ([-1e-5], [0.0], "1e-5", [float("nan")]):
        broken = qpi_rule()
        broken["prior"]["extra_alphas"] = bad
        with pytest.raises(ValueError, match="extra_alphas"):
            validate_rule(broken, "qpi")


def test_a_widened_model_starts_exactly_where_the_single_prior_model_was(tmp_path):
    base = list(train(_config(tmp_path, "base"), data=_data(())))[-1].result
    model = load_model(base, "cpu").model.float().eval()
    config = _config(tmp_path, "multi", qpi_extra_alphas=QPI_TIE_EXTRA_ALPHAS)
    widened = _widen_condition(model, config).eval()
    assert widened.config.condition_channels == 6
    contrast = _contrast(_sample(seed=4, size=32))
    one = torch.from_numpy(qpi_condition(contrast, D, qpi_rule()))[None]
    rule = qpi_rule(extra_alphas=QPI_TIE_EXTRA_ALPHAS)
    four = torch.from_numpy(qpi_condition(contrast, D, rule))[None]
    target = torch.zeros(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(widened.lambda_map(four), model.lambda_map(one))
        losses = []
        for net, condition in ((model, one), (widened, four)):
            torch.manual_seed(0)  # the same diffusion times and noise for both
            losses.append(net.loss(condition, target)["total"])
        torch.testing.assert_close(losses[0], losses[1], atol=1e-5, rtol=0)


def test_fine_tuning_with_extra_priors_writes_a_loadable_multi_prior_model(tmp_path):
    base = list(train(_config(tmp_path, "base"), data=_data(())))[-1].result
    config = _config(tmp_path, "multi", base_model=str(base), qpi_extra_alphas=QPI_TIE_EXTRA_ALPHAS)
    multi = list(train(config, data=_data(())))[-1].result  # the data adopt the channels
    meta = read_metadata(multi)
    assert meta["architecture"]["condition_channels"] == 6
    assert meta["normalization"]["prior"]["extra_alphas"] == list(QPI_TIE_EXTRA_ALPHAS)
    # the channels are inherited when not asked for, and from scratch the default is one prior
    again = list(train(_config(tmp_path, "again", base_model=str(multi)), data=_data(())))
    assert read_metadata(again[-1].result)["architecture"]["condition_channels"] == 6
    assert read_metadata(base)["architecture"]["condition_channels"] == 3
    # inference builds the same six channels from a stack
    loaded = load_model(multi, "cpu")
    sample = _sample(seed=6, size=32)
    frame = QPIAdapter(sample.stack, loaded.metadata, **_optics(sample)).prepare(0)
    assert frame.condition.shape == (6, 32, 32)
    # a header whose rule and channels disagree is refused in one line
    narrow = dict(meta, architecture=dict(meta["architecture"], condition_channels=3))
    with pytest.raises(ModelFileError, match="needs architecture.condition_channels = 6"):
        validate_metadata(narrow)


def test_prepared_pairs_and_the_target_do_not_depend_on_the_extra_channels():
    sample = _sample(seed=8, size=32)
    one = prepare_qpi_pair(sample.stack, sample.phase, defocus_D=D)
    four = prepare_qpi_pair(sample.stack, sample.phase, defocus_D=D, extra_alphas=(1e-5,))
    assert one.condition.shape == (3, 32, 32) and four.condition.shape == (4, 32, 32)
    np.testing.assert_array_equal(four.target, one.target)


def test_extra_priors_are_refused_for_sr():
    with pytest.raises(Exception, match="for QPI models"):
        TrainConfig(task="sr", output="m.safetensors", qpi_extra_alphas=(1e-5,)).validate()


def _optics(sample):
    md = sample.metadata
    return {k: md[k] for k in ("wavelength_um", "dz_um", "pixel_size_um")}


def _data(extra, frames=2, size=32):
    rng = np.random.default_rng(1)
    samples = [simulate_qpi_stack(rng, size=size) for _ in range(frames)]
    return PairedImages(
        "qpi",
        [s.stack for s in samples],
        [s.phase for s in samples],
        val_fraction=0.5,
        qpi_extra_alphas=tuple(extra),
    )


def _config(tmp_path, name, **changes):
    base = dict(task="qpi", output=tmp_path / f"{name}.safetensors", steps=2, batch=2, patch=32,
                preset="tiny", val_every=2, val_count=1, val_steps=2, ckpt_every=2,
                device="cpu", warmup_steps=1, prefetch=0)  # fmt: skip
    base.update(changes)
    return TrainConfig(**base)
