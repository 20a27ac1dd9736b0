"""Samplers: step rules, shapes, seeding, events, cancellation, tiling, exact-denoiser check."""

import pytest
import torch

from napari_cvdm.engine.cvdm import CVDM, CVDMConfig
from napari_cvdm.engine.sampling import (
    SampleGroup,
    ancestral_step,
    ddim_step,
    lambda_map_tiled,
    plan_batches,
    sample,
    sample_all,
    time_grid,
)
from napari_cvdm.engine.tile_plan import tile_overhead
from napari_cvdm.errors import InputError
from napari_cvdm.workflows.events import Progress


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return CVDM(CVDMConfig(preset="tiny"))


class GaussianOracle(CVDM):
    """CVDM whose ε̂ is the exact posterior mean of ε when y0 ~ N(x, s²) per pixel."""

    target_std = 0.3

    def denoise(self, y_t, x, log_snr, global_log_snr=None):
        g = torch.sigmoid(log_snr)  # γ from log-SNR
        s2 = self.target_std**2
        return (1 - g).sqrt() * (y_t - g.sqrt() * x) / (g * s2 + 1 - g)


def levels(*log_gammas):
    return [torch.tensor(v, dtype=torch.float64) for v in log_gammas]


def test_time_grid_is_uniform_and_descending():
    grid = time_grid(4)
    torch.testing.assert_close(grid, torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    assert time_grid(1).tolist() == [1.0, 0.0]


def test_ancestral_step_is_the_gaussian_posterior():
    """Mean/var of q(y_s | y_t, y0) derived independently from the joint Gaussian of (y_s, y_t)."""
    log_gamma_t, log_gamma_s = levels(-2.0, -0.4)
    y0, eps = torch.tensor(0.7, dtype=torch.float64), torch.tensor(-1.3, dtype=torch.float64)
    a_t, a_s = log_gamma_t.mul(0.5).exp(), log_gamma_s.mul(0.5).exp()
    var_t, var_s = 1 - log_gamma_t.exp(), 1 - log_gamma_s.exp()
    y_t = a_t * y0 + var_t.sqrt() * eps
    a_ts = a_t / a_s
    mean = a_s * y0 + (a_ts * var_s / var_t) * (y_t - a_t * y0)
    var = var_s - a_ts**2 * var_s**2 / var_t
    z = torch.tensor(0.37, dtype=torch.float64)
    torch.testing.assert_close(ancestral_step(y_t, eps, log_gamma_t, log_gamma_s, None), mean)
    torch.testing.assert_close(
        ancestral_step(y_t, eps, log_gamma_t, log_gamma_s, z), mean + var.sqrt() * z
    )
    # DDIM with η = 1 is the ancestral sampler (same noise)
    torch.testing.assert_close(
        ddim_step(y_t, eps, log_gamma_t, log_gamma_s, 1.0, z), mean + var.sqrt() * z
    )
    # DDIM with η = 0 and the true ε stays on the same forward trajectory
    torch.testing.assert_close(
        ddim_step(y_t, eps, log_gamma_t, log_gamma_s), a_s * y0 + var_s.sqrt() * eps
    )


@pytest.mark.parametrize("eta", [0.0, 0.5])
def test_last_step_lands_on_the_denoised_estimate(eta):
    log_gamma_t, zero = levels(-1.5, 0.0)
    y_t, eps_hat = torch.randn(5, dtype=torch.float64), torch.randn(5, dtype=torch.float64)
    y0_hat = (y_t - (1 - log_gamma_t.exp()).sqrt() * eps_hat) / log_gamma_t.mul(0.5).exp()
    z = torch.randn(5, dtype=torch.float64)
    torch.testing.assert_close(ancestral_step(y_t, eps_hat, log_gamma_t, zero, z), y0_hat)
    torch.testing.assert_close(ddim_step(y_t, eps_hat, log_gamma_t, zero, eta, z), y0_hat)


@pytest.mark.parametrize("shape", [(8, 8), (37, 53)])
@pytest.mark.parametrize("steps", [1, 2, 7])
@pytest.mark.parametrize("sampler", ["ddim", "ancestral"])
def test_shapes_for_any_size_and_step_count(model, shape, steps, sampler):
    out = sample_all(model, torch.randn(1, *shape), n_samples=3, steps=steps, sampler=sampler)
    assert out.shape == (3, 1, *shape) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.isfinite(out).all()


def test_multichannel_shapes():
    torch.manual_seed(0)
    model = CVDM(CVDMConfig(preset="tiny", condition_channels=2, target_channels=3))
    out = sample_all(model, torch.randn(1, 2, 9, 11), n_samples=2, steps=2)
    assert out.shape == (2, 3, 9, 11)


@pytest.mark.parametrize(("sampler", "eta"), [("ancestral", 0.0), ("ddim", 0.0), ("ddim", 0.7)])
def test_same_seed_same_result_different_seed_different(model, sampler, eta):
    x = torch.randn(1, 12, 10)
    runs = [
        sample_all(model, x, n_samples=2, steps=3, sampler=sampler, eta=eta, seed=seed)
        for seed in (5, 5, 6)
    ]
    assert torch.equal(runs[0], runs[1])
    assert (runs[0] - runs[2]).abs().max() > 1e-3
    assert (runs[0][0] - runs[0][1]).abs().max() > 1e-3  # samples within a run differ too


def test_sample_noise_does_not_depend_on_grouping(model):
    x = torch.randn(1, 16, 16)
    together = sample_all(model, x, n_samples=4, steps=3, sampler="ancestral", group_size=4)
    in_pairs = sample_all(model, x, n_samples=4, steps=3, sampler="ancestral", group_size=2)
    scale = together.abs().max()
    assert (together - in_pairs).abs().max() <= 1e-4 * scale


def test_events_progress_count_equals_total_and_groups_stream(model):
    events = list(sample(model, torch.randn(1, 10, 10), n_samples=5, steps=4, group_size=2))
    progress = [e for e in events if isinstance(e, Progress)]
    groups = [e for e in events if isinstance(e, SampleGroup)]
    assert len(progress) == 3 * 4 and progress[0].total == 5 * 4  # sample-steps
    assert [p.step for p in progress] == [2, 4, 6, 8, 10, 12, 14, 16, 17, 18, 19, 20]
    assert {p.stage for p in progress} == {"sampling"}
    assert [(g.done, g.total, g.samples.shape[0]) for g in groups] == [
        (2, 5, 2),
        (4, 5, 2),
        (5, 5, 1),
    ]
    assert isinstance(events[4], SampleGroup)  # a group right after its 4th step
    assert not groups[0].samples.is_inference() and not groups[0].samples.requires_grad


def test_generator_return_value_holds_all_samples(model):
    gen = sample(model, torch.randn(1, 8, 8), n_samples=3, steps=2, group_size=2)
    with pytest.raises(StopIteration) as stop:
        while True:
            next(gen)
    assert stop.value.value.shape == (3, 1, 8, 8)


def test_close_midway_stops_and_leaks_no_state(model):
    gen = sample(model, torch.randn(1, 12, 12), n_samples=4, steps=10, group_size=2)
    seen = [next(gen) for _ in range(3)]
    assert [e.step for e in seen] == [2, 4, 6]  # sample-steps of a group of 2
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
    assert not torch.is_inference_mode_enabled() and torch.is_grad_enabled()


def test_tile_covering_image_reproduces_untiled_sampling(model):
    x = torch.randn(1, 24, 20)
    untiled = sample_all(model, x, n_samples=2, steps=3, sampler="ancestral", tile=0)
    one_tile = sample_all(model, x, n_samples=2, steps=3, sampler="ancestral", tile=32)
    assert torch.equal(untiled, one_tile)
    tiled = sample_all(model, x, n_samples=2, steps=3, sampler="ancestral", tile=16, tile_overlap=6)
    assert tiled.shape == untiled.shape and torch.isfinite(tiled).all()


def test_plan_batches_respects_the_budget():
    bpp = 1000.0  # bytes per pixel and sample
    plan = plan_batches(256, 256, 8, bpp, memory_budget_mb=1000)
    assert plan.tile is None and plan.group_size is None and plan.max_batch == 8
    plan = plan_batches(256, 256, 8, bpp, memory_budget_mb=200)  # 3 whole images fit
    assert plan.tile is None and plan.group_size is None and plan.max_batch == 3
    assert plan_batches(256, 256, 8, bpp, 1000, group_size=2).group_size == 2
    plan = plan_batches(4096, 4096, 8, bpp, memory_budget_mb=200)  # one image does not fit: tile
    assert plan.tile is not None and plan.overlap == plan.tile // 4
    assert plan.max_batch * bpp * plan.tile**2 <= 200 * 2**20
    plan = plan_batches(4096, 4096, 2, bpp, memory_budget_mb=200, tile=0)
    assert plan.tile is None and plan.max_batch == 1
    with pytest.raises(InputError, match="overlap"):
        plan_batches(64, 64, 1, bpp, 100, tile=32, overlap=32)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"sampler": "euler"}, "unknown sampler"),
        ({"steps": 0}, "must both be >= 1"),
        ({"eta": -1.0}, "eta"),
        ({"tile": 4}, "too small"),
    ],
)
def test_bad_options_raise_input_errors(model, kwargs, message):
    with pytest.raises(InputError, match=message):
        next(sample(model, torch.randn(1, 8, 8), **kwargs))


def test_bad_condition_raises_input_errors(model):
    with pytest.raises(InputError, match="does not fit this model"):
        next(sample(model, torch.randn(2, 8, 8)))
    bad = torch.randn(1, 8, 8)
    bad[0, 1, 1] = float("nan")
    with pytest.raises(InputError, match="NaN"):
        next(sample(model, bad))


@pytest.mark.parametrize(("sampler", "steps"), [("ancestral", 50), ("ddim", 25)])
def test_exact_denoiser_reproduces_the_target_distribution(sampler, steps):
    """With the Bayes-optimal ε̂ for y0 ~ N(x, 0.3²), samples have mean x and std 0.3.

    256 samples: Monte-Carlo error of the mean ≈ 0.3/16 ≈ 0.02 per pixel, of the std ≈ 0.3/√512 ≈
    0.013 per pixel; averaged over 64 pixels these shrink by 8, the rest is discretisation error
    (measured: mean |error| ≈ 0.012; std ≈ 0.281 at 50 ancestral / 0.279 at 25 DDIM steps, → 0.299
    at 800 steps, so the sampler converges to the exact distribution).
    """
    torch.manual_seed(0)
    oracle = GaussianOracle(CVDMConfig(preset="tiny"))
    x = torch.linspace(-1, 1, 64).reshape(1, 8, 8)
    out = sample_all(oracle, x, n_samples=256, steps=steps, sampler=sampler, seed=1)
    assert (out.mean(0) - x).abs().mean() < 0.03
    assert abs(out.std(0).mean().item() - 0.3) < 0.03


@pytest.mark.parametrize("sampler", ["ancestral", "ddim"])
def test_clip_denoised_keeps_samples_in_the_target_range(model, sampler):
    """An untrained model's samples run far outside [−1, 1]; clamping ŷ_0 keeps them in range."""
    x = torch.randn(1, 1, 24, 24)
    free = sample_all(model, x, n_samples=2, steps=6, sampler=sampler, clip_denoised=None)
    clipped = sample_all(model, x, n_samples=2, steps=6, sampler=sampler, clip_denoised=1.5)
    absolute = clipped + (x if model.config.residual else 0.0)
    assert float(absolute.abs().max()) <= 1.5 + 1e-5
    assert float(free.abs().max()) > 1.5  # the unclamped sampler does leave the range here


def test_the_default_clamp_is_the_bound_the_model_was_trained_for(model):
    x = torch.randn(1, 1, 24, 24)
    offset = x if model.config.residual else 0.0
    default = sample_all(model, x, n_samples=2, steps=6, sampler="ancestral")
    assert float((default + offset).abs().max()) <= 1.5 + 1e-5  # no bound stored: 1.5
    model.config.extra["denoised_bound"] = 3.0
    try:
        wider = sample_all(model, x, n_samples=2, steps=6, sampler="ancestral")
        same = sample_all(model, x, n_samples=2, steps=6, sampler="ancestral", clip_denoised=3.0)
    finally:
        del model.config.extra["denoised_bound"]
    assert torch.equal(wider, same)
    assert 1.5 < float((wider + offset).abs().max()) <= 3.0 + 1e-5


def test_plan_batches_overlap_follows_the_receptive_field():
    bpp = 1134.0
    plan = plan_batches(2048, 2048, 4, bpp, 2048, halo=140, multiple=8)
    assert plan.overlap == 140 and plan.tile % 8 == 0
    assert tile_overhead(2048, 2048, plan.tile, plan.overlap) <= 1.3
    assert plan_batches(2048, 2048, 4, bpp, 2048, tile=256, halo=140).overlap == 64
    assert plan_batches(2048, 2048, 4, bpp, 2048, tile=1024, halo=140).overlap == 140


def test_receptive_radius_bounds_the_influence():
    from napari_cvdm.engine.unet import UNET_PRESETS, UNet

    torch.manual_seed(0)
    unet = UNet(3, 1, **UNET_PRESETS["tiny"]).eval()
    radius = unet.receptive_radius()
    size = 2 * radius + 24
    centre = size // 2
    x = torch.randn(1, 3, size, size, requires_grad=True)
    unet(x)[0, 0, centre, centre].backward()
    rows, cols = torch.nonzero(x.grad.abs().sum(1)[0] > 0, as_tuple=True)
    reach = max((rows - centre).abs().max().item(), (cols - centre).abs().max().item())
    assert 0.5 * radius < reach <= radius


def test_tiled_lambda_map_equals_untiled(model):
    x = torch.randn(1, model.config.condition_channels, 96, 96)
    whole = lambda_map_tiled(model, x, tile=0)
    with torch.inference_mode():  # in the sampler's layout (channels-last on the CPU)
        assert torch.equal(whole, model.lambda_map(x.to(memory_format=torch.channels_last)))
    assert torch.equal(lambda_map_tiled(model, x, tile=128), whole)  # one tile covers it
    radius = model.lambda_net.unet.receptive_radius()
    tiled = lambda_map_tiled(model, x, tile=48, overlap=min(radius, 47))
    assert (tiled - whole).abs().max().item() < 1e-4 * whole.abs().max().item() + 1e-5


def test_lambda_map_is_the_same_before_and_after_a_sampler_run():
    # the λ pass and the denoiser share one memory layout, so a fresh model (contiguous
    # weights) and one that a sampler run converted to channels-last give the same bits: the
    # first image of a process and the later ones (or a Dask worker's) agree exactly
    from napari_cvdm.engine.registry import make_untrained_model

    torch.manual_seed(0)
    fresh = make_untrained_model("sr", "tiny").model
    x = torch.randn(1, 1, 32, 32)
    first = lambda_map_tiled(fresh, x)
    sample_all(fresh, x, n_samples=1, steps=1, seed=5, lam=first)
    assert torch.equal(lambda_map_tiled(fresh, x), first)


def test_precomputed_lambda_is_used_and_not_recomputed(model):
    x = torch.randn(1, model.config.condition_channels, 12, 12)
    lam = lambda_map_tiled(model, x)
    calls = []
    handle = model.lambda_net.register_forward_hook(lambda *a: calls.append(1))
    try:
        with_lam = sample_all(model, x, n_samples=2, steps=2, seed=3, lam=lam)
    finally:
        handle.remove()
    assert calls == []
    assert torch.equal(with_lam, sample_all(model, x, n_samples=2, steps=2, seed=3))


def test_automatic_groups_start_with_one_sample(model):
    events = list(sample(model, torch.randn(1, 10, 10), n_samples=3, steps=2))
    groups = [e for e in events if isinstance(e, SampleGroup)]
    assert groups[0].samples.shape[0] == 1 and groups[-1].done == 3
    assert isinstance(events[2], SampleGroup)  # right after the first sample's 2 steps
