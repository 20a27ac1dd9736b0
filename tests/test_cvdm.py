"""CVDM model: config round trip, loss terms and their gradients, schedule outputs, toy fit."""

import json

import pytest
import torch

from napari_cvdm.engine import schedule as sch
from napari_cvdm.engine.cvdm import CVDM, CVDMConfig, count_parameters, noise_level_map
from napari_cvdm.engine.sampling import sample_all

LOSS_TERMS = ("diff", "boundary", "prior", "gamma_curvature", "x0")


@pytest.fixture
def one_thread():
    """The test machine is shared: one thread avoids oversubscription in the longer tests."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def tiny_model(seed=0, **overrides) -> CVDM:
    torch.manual_seed(seed)
    return CVDM(CVDMConfig(preset="tiny", **overrides))


def test_config_json_round_trip_and_preset_expansion():
    config = CVDMConfig(condition_channels=2, target_channels=1, preset="small", residual=True)
    data = config.to_dict()
    assert data["base_width"] == 24 and data["channel_mults"] == [1, 2, 4, 8]
    back = CVDMConfig.from_dict(json.loads(json.dumps(data)))
    assert back == config
    assert CVDM(back).config.to_dict() == data
    custom = CVDMConfig(preset="tiny", base_width=12)
    assert custom.base_width == 12 and custom.channel_mults == (1, 2, 4)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"preset": "huge"}, "unknown preset"),
        ({"target_channels": 0}, "target_channels"),
        ({"lambda_min": 0.0}, "lambda_init > lambda_min > 0"),
        ({"channel_mults": (1, 2), "blocks_per_level": (1, 1, 1)}, "blocks_per_level"),
        ({"weight_prior": -1.0}, "loss weights"),
    ],
)
def test_config_validation(overrides, message):
    with pytest.raises(ValueError, match=message):
        CVDMConfig(**overrides)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown field.*'wings'"):
        CVDMConfig.from_dict({**CVDMConfig(preset="tiny").to_dict(), "wings": 2})


def test_api_shapes():
    model = tiny_model(condition_channels=2, target_channels=3)
    x = torch.randn(2, 2, 13, 17)
    lam = model.lambda_map(x)
    assert lam.shape == (2, 3, 13, 17) and torch.all(lam >= model.config.lambda_min)
    t = torch.tensor([0.0, 0.25, 1.0])
    assert model.rho(t).shape == (3,) and model.rho(t)[0].item() == 0.0
    rho, drho, d2rho = model.rho_derivatives(t)
    assert rho.shape == drho.shape == d2rho.shape == (3,)
    y_t = torch.randn(2, 3, 13, 17)
    eps = model.denoise(y_t, x, sch.log_snr(lam, rho[1]))
    assert eps.shape == (2, 3, 13, 17)
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert count_parameters(model) < 500_000


def test_noise_level_map_is_bounded_and_monotone():
    values = noise_level_map(torch.tensor([-300.0, -10.0, 0.0, 10.0, 300.0]))
    assert values.abs().max() <= 1.0
    assert torch.all(values[1:] >= values[:-1]) and values[1] < values[2] < values[3]
    assert values[2].item() == 0.0 and 0.7 < values[3].item() < 0.8


@pytest.mark.parametrize("embed_dim", [0, 8])
def test_every_loss_term_finite_and_reaches_every_parameter(embed_dim):
    model = tiny_model(seed=1, condition_channels=2, embed_dim=embed_dim)
    x = torch.randn(4, 2, 16, 12)
    y0 = torch.rand(4, 1, 16, 12) * 2 - 1
    losses = model.loss(x, y0, generator=torch.Generator().manual_seed(0))
    assert set(losses) == {"total", *LOSS_TERMS}
    for name, value in losses.items():
        assert value.ndim == 0 and torch.isfinite(value), name
    params = dict(model.named_parameters())
    for name in ("total", "diff"):
        grads = torch.autograd.grad(
            losses[name], list(params.values()), retain_graph=True, allow_unused=True
        )
        missing = [n for n, g in zip(params, grads) if g is None or not torch.any(g != 0)]
        assert not missing, f"{name}: no gradient for {missing}"
    schedule_params = {n: p for n, p in params.items() if not n.startswith("denoiser.")}
    for name in ("boundary", "prior", "gamma_curvature"):
        grads = torch.autograd.grad(
            losses[name], list(schedule_params.values()), retain_graph=True, allow_unused=True
        )
        missing = [
            n
            for n, g in zip(schedule_params, grads)
            if g is None or not torch.all(torch.isfinite(g))
        ]
        assert not missing, f"{name}: no gradient for {missing}"
        assert any(torch.any(g != 0) for g in grads)


def test_loss_terms_match_the_formulas():
    model = tiny_model(seed=2)
    x = torch.randn(3, 1, 8, 8)
    y0 = torch.randn(3, 1, 8, 8)
    t = torch.tensor([0.2, 0.5, 0.9])
    noise = torch.randn(3, 1, 8, 8)
    losses = model.loss(x, y0, t, noise=noise)
    c = model.config
    with torch.no_grad():
        lam = model.lambda_map(x)
        rho, drho, d2rho = (v.reshape(-1, 1, 1, 1) for v in model.rho_derivatives(t))
        g = torch.exp(-lam * rho)
        y_t = g.sqrt() * y0 + (1 - g).sqrt() * noise
        eps_hat = model.denoise(y_t, x, torch.log(g / (1 - g)))
        diff = ((noise - eps_hat) ** 2).mean()
        r0, r1 = model.rho([1 / c.t_prime, 1 - 1 / c.t_prime])
        g0, g1 = torch.exp(-lam * r0), torch.exp(-lam * r1)
        boundary = ((g0 - 1) ** 2 + g1**2).mean()
        prior = 0.5 * (g1 * y0**2 + (1 - g1) - torch.log(1 - g1) - 1).mean()
        curvature = c.gamma_curvature_alpha * (((lam * drho) ** 2 - lam * d2rho) * g).pow(2).mean()
    torch.testing.assert_close(losses["diff"], diff, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(losses["boundary"], boundary, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(losses["prior"], prior, rtol=1e-4, atol=1e-9)
    torch.testing.assert_close(losses["gamma_curvature"], curvature, rtol=1e-4, atol=1e-9)
    total = diff + 2 * boundary + 2 * prior + 2 * curvature
    torch.testing.assert_close(losses["total"], total, rtol=1e-4, atol=1e-6)


def test_prior_kl_direction_is_q_to_standard_normal():
    """KL(N(a·y0, 1-γ) ‖ N(0,1)) is 0 when γ1 → 0 and grows with y0² (reverse KL would differ)."""
    model = tiny_model()
    x = torch.zeros(1, 1, 8, 8)
    small_target = model.loss(x, torch.zeros(1, 1, 8, 8), torch.tensor([0.5]))["prior"]
    large_target = model.loss(x, torch.full((1, 1, 8, 8), 3.0), torch.tensor([0.5]))["prior"]
    assert 0 <= small_target.item() < 1e-6
    with torch.no_grad():
        g1 = torch.exp(-model.lambda_map(x) * model.rho([1 - 1 / 200])).mean()
    assert large_target.item() == pytest.approx(0.5 * g1.item() * 9.0, rel=0.05)


def test_stratified_times_cover_the_interval():
    model = tiny_model()
    t = model.stratified_times(8, torch.Generator().manual_seed(3))
    assert t.shape == (8,) and torch.all((t >= model.config.t_epsilon) & (t < 1))
    # one point in each of the 8 strata
    assert sorted((t * 8).floor().long().tolist()) == list(range(8))


def test_schedule_maps_and_curves():
    model = tiny_model(target_channels=2)
    x = torch.randn(1, 1, 10, 12)
    maps = model.schedule_maps(x, [0.0, 0.5, 1.0])
    assert maps["lambda"].shape == (1, 2, 10, 12)
    assert maps["gamma"].shape == maps["beta"].shape == (1, 3, 2, 10, 12)
    assert torch.equal(maps["gamma"][:, 0], torch.ones(1, 2, 10, 12))
    assert torch.all(maps["gamma"][:, 2] < maps["gamma"][:, 1])
    _, drho, _ = model.rho_derivatives([0.5])
    torch.testing.assert_close(maps["beta"][:, 1], maps["lambda"] * drho)

    mask = torch.zeros(10, 12, dtype=torch.bool)
    mask[2:6, 3:9] = True
    with torch.no_grad():
        model.lambda_net.unet.out_conv.weight.zero_()
        curves = model.schedule_curves(x, mask, n_t=11)
    assert (
        curves["t"].shape
        == curves["beta_structure"].shape
        == curves["gamma_background"].shape
        == (11,)
    )
    assert curves["structure_fraction"].item() == pytest.approx(24 / 120)
    # with a uniform λ both regions have the same curves
    torch.testing.assert_close(curves["gamma_structure"], curves["gamma_background"])
    assert curves["gamma_structure"][0].item() == 1.0
    assert torch.all(curves["beta_structure"] > 0)
    empty = model.schedule_curves(x, torch.zeros(10, 12, dtype=torch.bool), n_t=4)
    assert (
        torch.isnan(empty["gamma_structure"]).all()
        and torch.isfinite(empty["gamma_background"]).all()
    )


def test_tiny_model_fits_a_toy_conditional_distribution(one_thread):
    """y = x + N(0, 0.2²) per pixel: after ~200 Adam steps (a few seconds on one CPU core), the
    ancestral sampler's per-pixel mean tracks x and its std the noise level.

    Tolerances: with 64 samples the Monte-Carlo error of the mean is 0.2/8 = 0.025; the measured
    rms error was ≈ 0.05 (limited by the short training), against 0.5 for a model that ignores x.
    The mean sample std was ≈ 0.19; we accept [0.14, 0.27].
    """
    torch.manual_seed(0)
    config = CVDMConfig(
        preset="tiny", base_width=16, channel_mults=(1, 2), lambda_channel_mults=(1,)
    )
    model = CVDM(config)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    noise_std, size = 0.2, 8
    for _ in range(200):
        x = torch.randn(16, 1, size, size, generator=gen) * 0.5
        y = x + noise_std * torch.randn(16, 1, size, size, generator=gen)
        losses = model.loss(x, y, generator=gen)
        optimiser.zero_grad()
        losses["total"].backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimiser.step()
    x = torch.randn(1, size, size, generator=gen) * 0.5
    samples = sample_all(model, x, n_samples=64, steps=20, sampler="ancestral", seed=3)
    assert samples.shape == (64, 1, size, size)
    mean_error = (samples.mean(0) - x).pow(2).mean().sqrt().item()
    assert mean_error < 0.1
    assert 0.14 < samples.std(0).mean().item() < 0.27
