"""The unconditional EDM prior: preconditioning, loss, model files, registry, training loop."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_cvdm.engine.modelfile import load_model, read_metadata, save_model
from napari_cvdm.engine.prior import EDMPrior, PriorConfig, edm_coefficients, prior_loss
from napari_cvdm.workflows.events import Finished, LossReport, Validation
from napari_cvdm.workflows.prior_train import (
    PRIOR_NORMALIZATION,
    PriorTrainConfig,
    clean_fluorescence_image,
    train_prior,
)

torch.set_num_threads(1)


def test_edm_coefficients_at_known_sigmas():
    sd = 0.5
    sigma = torch.tensor([0.5, 1.0, 2.0], dtype=torch.float64)
    c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, sd)
    assert c_skip[0] == pytest.approx(0.5) and c_skip[1] == pytest.approx(0.25 / 1.25)
    assert c_out[0] == pytest.approx(0.25 / math.sqrt(0.5))
    assert c_in[2] == pytest.approx(1.0 / math.sqrt(4.25))
    assert c_noise[1] == pytest.approx(0.0) and c_noise[2] == pytest.approx(0.25 * math.log(2))


def test_zero_network_gives_c_skip_x_and_identity_at_small_sigma():
    model = EDMPrior(PriorConfig(preset="tiny")).double()
    torch.nn.init.zeros_(model.net.out_conv.weight)
    torch.nn.init.zeros_(model.net.out_conv.bias)
    x = torch.randn(2, 1, 12, 10, dtype=torch.float64)
    for sigma in (0.1, 1.0, 10.0):
        c_skip = 0.25 / (sigma**2 + 0.25)
        assert torch.allclose(model(x, sigma), c_skip * x)
    trained_like = EDMPrior(PriorConfig(preset="tiny")).double()
    assert torch.allclose(trained_like(x, 1e-6), x, atol=1e-5)


def test_loss_is_finite_and_a_few_steps_reduce_it():
    torch.manual_seed(0)
    model = EDMPrior(PriorConfig(preset="tiny"))
    x0 = torch.tanh(torch.randn(4, 1, 16, 16))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(30):
        gen.manual_seed(0)  # the same σ and noise every step: a pure fit
        loss = prior_loss(model, x0, generator=gen)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


def test_config_round_trip_and_validation():
    config = PriorConfig(preset="tiny", sigma_data=0.3)
    assert PriorConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="unknown"):
        PriorConfig.from_dict({**config.to_dict(), "bogus": 1})
    with pytest.raises(ValueError, match="condition_channels"):
        PriorConfig(condition_channels=1)


def _meta():
    return {
        "task": "prior",
        "name": "prior-test",
        "description": "test prior",
        "normalization": PRIOR_NORMALIZATION,
        "physics": {"pixel_size_um": 0.0313, "modality": "fluorescence"},
        "training": {"steps": 0, "cumulative_steps": 0, "cumulative_wall_time_s": 0.0},
    }


def test_model_file_round_trip_and_registry(tmp_path, monkeypatch):
    model = EDMPrior(PriorConfig(preset="tiny")).eval()
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path))
    path = save_model(tmp_path / "models" / "prior-test.safetensors", model, _meta(), "float32")
    loaded = load_model(path)
    assert isinstance(loaded.model, EDMPrior) and loaded.task == "prior"
    x = torch.randn(1, 1, 20, 20)
    with torch.no_grad():
        assert torch.equal(loaded.model(x, 0.7), model(x, 0.7))
    assert read_metadata(path)["architecture"]["condition_channels"] == 0
    from napari_cvdm.engine.registry import list_models

    infos = [i for i in list_models("prior") if i.name == "prior-test"]
    assert infos and infos[0].source == "user" and infos[0].pixel_size_um == pytest.approx(0.0313)


def test_clean_images_are_normalised():
    image = clean_fluorescence_image(np.random.default_rng(0), size=16)
    assert image.shape == (32, 32) and image.dtype == np.float32
    assert image.min() == pytest.approx(-1.0) and image.max() == pytest.approx(1.0)


def test_training_loop_writes_a_model_and_resumes(tmp_path):
    out, ckpt = tmp_path / "p.safetensors", tmp_path / "p.ckpt"
    cfg = PriorTrainConfig(
        output=str(out),
        checkpoint=str(ckpt),
        preset="tiny",
        steps=3,
        batch=2,
        patch=16,
        pool=2,
        sim_size=16,
        n_validation=2,
        validate_every=3,
        log_every=1,
    )
    events = list(train_prior(cfg))
    assert sum(isinstance(e, LossReport) for e in events) == 3
    assert any(isinstance(e, Validation) for e in events)
    assert isinstance(events[-1], Finished) and events[-1].result == out
    training = read_metadata(out)["training"]
    assert training["cumulative_steps"] == 3 and training["cumulative_wall_time_s"] > 0
    assert read_metadata(out)["weights"]["dtype"] == "float16"
    cfg.resume, cfg.steps = str(ckpt), 2
    list(train_prior(cfg))
    training = read_metadata(out)["training"]
    assert training["cumulative_steps"] == 5 and len(training["runs"]) == 2


def test_closing_the_training_generator_saves(tmp_path):
    out = tmp_path / "p.safetensors"
    cfg = PriorTrainConfig(
        output=str(out),
        preset="tiny",
        steps=50,
        batch=1,
        patch=16,
        pool=1,
        sim_size=16,
        n_validation=1,
        log_every=1,
    )
    gen = train_prior(cfg)
    next(gen)
    gen.close()
    assert read_metadata(out)["training"]["cumulative_steps"] == 1
