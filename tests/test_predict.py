"""Tests for napari_cvdm.workflows.predict (and its task adapters) with tiny random models."""

import numpy as np
import pytest
import torch

from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.errors import InputError
from napari_cvdm.workflows.events import Finished, PartialResult, Progress
from napari_cvdm.workflows.predict import (
    CURVE_POINTS,
    ReconstructionParams,
    RunningStats,
    reconstruct,
    upsample_condition,
)

PARAMS = ReconstructionParams(n_samples=3, steps=2, seed=1, device="cpu", group_size=2)


@pytest.fixture(scope="module")
def sr_model():
    return make_untrained_model("sr", "tiny", seed=0)


@pytest.fixture(scope="module")
def qpi_model():
    return make_untrained_model("qpi", "tiny", seed=0)


def _widefield(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (100.0 + rng.gamma(2.0, 40.0, size=shape)).astype(np.float32)


def _stack(shape, seed=0):
    rng = np.random.default_rng(seed)
    return (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)


def _finish(events):
    events = list(events)
    assert isinstance(events[-1], Finished)
    return events, events[-1].result


def test_params_groups_and_validation():
    assert ReconstructionParams(n_samples=5, group_size=2).group_sizes() == [2, 2, 1]
    assert ReconstructionParams(n_samples=5, group_size=2).groups == 3
    assert ReconstructionParams(n_samples=4).groups == 4  # automatic: at most one per sample
    for bad in (
        dict(n_samples=0),
        dict(steps=0),
        dict(sampler="euler"),
        dict(eta=2.0),
        dict(tile=4),
        dict(t_star=(1.5,)),
    ):
        with pytest.raises(InputError):
            ReconstructionParams(**bad).validate()


def test_running_stats_match_numpy():
    rng = np.random.default_rng(0)
    data = rng.standard_normal((6, 4, 5))
    stats = RunningStats()
    stats.add(data[:1])
    np.testing.assert_array_equal(stats.std, np.zeros((4, 5)))
    stats.add(data[1:3])
    stats.add(data[3:])
    assert stats.n == 6
    np.testing.assert_allclose(stats.mean, data.mean(0), atol=1e-12)
    np.testing.assert_allclose(stats.std, data.std(0, ddof=1), atol=1e-12)


def test_upsample_condition_is_torch_bicubic_for_numpy_and_tensors():
    x = np.random.default_rng(0).standard_normal((3, 8, 10)).astype(np.float32)
    up = upsample_condition(x)
    assert isinstance(up, np.ndarray) and up.shape == (3, 16, 20) and up.dtype == np.float32
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(x)[:, None], scale_factor=2, mode="bicubic", align_corners=False
    )[:, 0]
    np.testing.assert_allclose(up, ref.numpy(), atol=1e-6)
    assert torch.equal(upsample_condition(torch.from_numpy(x)), ref)
    np.testing.assert_allclose(upsample_condition(np.full((8, 8), 0.5, np.float32)), 0.5, atol=1e-6)


def test_sr_2d_shapes_events_and_metadata(sr_model):
    image = _widefield((16, 20))
    events, result = _finish(reconstruct(image, sr_model, PARAMS, input_name="wf.tif"))
    progress = [e for e in events if isinstance(e, Progress)]
    partial = [e for e in events if isinstance(e, PartialResult)]
    # sample-steps: group of 2 advances by 2 per reverse step, the group of 1 by 1
    assert [p.step for p in progress] == [2, 4, 5, 6]
    assert all(p.total == 3 * 2 for p in progress)
    assert [p.samples_done for p in partial] == [2, 3]
    assert all(p.samples_total == 3 for p in partial)
    # order: the steps of group 1, its partial result, the steps of group 2, its partial result
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Progress"] * 2 + ["PartialResult"] + ["Progress"] * 2 + [
        "PartialResult",
        "Finished",
    ]
    for array in (result.mean, result.std, result.schedule):
        assert array.shape == (32, 40) and array.dtype == np.float32 and np.isfinite(array).all()
    assert (result.std >= 0).all() and result.std.max() > 0
    assert (result.schedule > 0).all()
    assert result.gamma.shape == result.beta.shape == (5, 32, 40)
    assert np.all((result.gamma > 0) & (result.gamma <= 1))
    # gamma decreases along t_star
    assert np.all(np.diff(result.gamma.reshape(5, -1).mean(1)) < 0)
    np.testing.assert_allclose(result.t_star, PARAMS.t_star)
    assert result.curves["t"].shape == (CURVE_POINTS,)
    for name in ("gamma_structure", "gamma_background", "beta_structure", "beta_background"):
        assert (
            result.curves[name].shape == (CURVE_POINTS,) and np.isfinite(result.curves[name]).all()
        )
    assert result.curves["gamma_structure"][0] == pytest.approx(1.0, abs=1e-6)  # γ(0) = 1
    meta = result.metadata
    assert meta["status"] == "complete" and meta["mode"] == "sr"
    assert meta["samples_done"] == 3 and meta["samples_total"] == 3
    assert meta["input_name"] == "wf.tif" and meta["sr_factor"] == 2.0
    assert meta["model"].startswith("UNTRAINED") and meta["untrained"] is True
    assert meta["device"] == "cpu" and meta["steps"] == 2 and meta["seed"] == 1
    assert len(meta["normalization"]["frames"]) == 1 and "timestamp" in meta
    # the last partial result equals the final mean/std
    np.testing.assert_array_equal(partial[-1].mean, result.mean)
    np.testing.assert_array_equal(partial[-1].std, result.std)


def test_sr_stack_runs_frame_by_frame_and_is_reproducible(sr_model):
    stack = _widefield((2, 16, 16), seed=3)
    events, result = _finish(reconstruct(stack, sr_model, PARAMS))
    assert result.mean.shape == result.std.shape == result.schedule.shape == (2, 32, 32)
    assert result.gamma.shape == (5, 2, 32, 32)
    assert result.curves["beta_structure"].shape == (2, CURVE_POINTS)
    progress = [e for e in events if isinstance(e, Progress)]
    assert len(progress) == 2 * 2 * 2 and progress[-1].step == progress[-1].total == 2 * 3 * 2
    partial = [e for e in events if isinstance(e, PartialResult)]
    assert [(p.frame, p.samples_done) for p in partial] == [(0, 2), (0, 3), (1, 2), (1, 3)]
    assert partial[0].mean.shape == (2, 32, 32) and not partial[0].mean[1].any()
    # frame 0 of the stack is exactly the 2-D result of that frame (same seed)
    _, single = _finish(reconstruct(stack[0], sr_model, PARAMS))
    np.testing.assert_array_equal(single.mean, result.mean[0])
    assert not np.array_equal(result.mean[0], result.mean[1])


def test_sr_resamples_to_the_model_pixel_size(sr_model):
    image = _widefield((10, 10))
    model_px = sr_model.metadata["physics"]["pixel_size_um"]
    one = ReconstructionParams(n_samples=1, steps=1, device="cpu")
    _, result = _finish(reconstruct(image, sr_model, one, pixel_size_um=1.5 * model_px))
    assert result.mean.shape == (30, 30)
    assert result.metadata["resample_factor"] == pytest.approx(1.5)
    assert result.metadata["sr_factor"] == pytest.approx(3.0)
    with pytest.warns(UserWarning, match="outside 0.5"):
        reconstruct(image, sr_model, PARAMS, pixel_size_um=3.0 * model_px)


def test_qpi_2d_phase_from_a_stack(qpi_model):
    events, result = _finish(reconstruct(_stack((3, 16, 16)), qpi_model, PARAMS, planes=(0, 2)))
    assert result.mean.shape == result.std.shape == result.schedule.shape == (16, 16)
    assert result.gamma.shape == (5, 16, 16)
    assert result.metadata["mode"] == "qpi" and result.metadata["planes"] == [0, 2]
    assert sum(isinstance(e, Progress) for e in events) == 2 * 2


def test_qpi_focus_axis_and_frames(qpi_model):
    data = _stack((2, 3, 16, 16))  # (Z, T, Y, X): focus axis first
    _, result = _finish(reconstruct(data, qpi_model, PARAMS, focus_axis=0))
    assert result.mean.shape == (3, 16, 16)
    assert result.metadata["frames"] == 3


@pytest.mark.parametrize(
    "image, options, match",
    [
        (np.ones((16, 16), np.float32), {}, "through-focus stack"),
        (np.ones((1, 16, 16), np.float32), {}, "two distinct planes"),
        (np.ones((3, 16, 16), np.float32), {"planes": (0, 5)}, "two distinct planes"),
        (np.ones((3, 16, 16), np.float32), {"planes": (0, 2)}, "constant"),
        (np.ones((2, 16, 16), np.float32), {"focus_axis": 2}, "focus axis"),
    ],
)
def test_qpi_bad_inputs(qpi_model, image, options, match):
    with pytest.raises(InputError, match=match):
        reconstruct(image, qpi_model, PARAMS, **options)


def _with_nan():
    image = _widefield((16, 16))
    image[3, 3] = np.nan
    return image


def _constant_frame():
    stack = _widefield((2, 16, 16))
    stack[1] = 5.0
    return stack


@pytest.mark.parametrize(
    "image, match",
    [
        (np.arange(20.0), "at least 2 dimensions"),
        (np.zeros((0, 16)), "empty"),
        (_with_nan(), "NaN or Inf"),
        (np.full((16, 16), np.inf), "NaN or Inf"),
        (np.full((16, 16), 7.0), "constant"),
        (_constant_frame(), r"constant.*frame \(1,\)"),
        (np.ones((16, 16), bool), "dtype"),
        (np.ones((4, 16)), "too small"),
    ],
)
def test_sr_bad_inputs(sr_model, image, match):
    with pytest.raises(InputError, match=match):
        reconstruct(image, sr_model, PARAMS)


def test_unknown_option_is_an_input_error(sr_model):
    with pytest.raises(InputError, match="unknown option"):
        reconstruct(_widefield((16, 16)), sr_model, PARAMS, planes=(0, 1))


def test_close_midway_stops_the_job(sr_model):
    params = ReconstructionParams(n_samples=1, steps=5, device="cpu")
    gen = reconstruct(_widefield((16, 16)), sr_model, params)
    first = [next(gen) for _ in range(2)]
    assert [e.step for e in first] == [1, 2]
    gen.close()
    with pytest.raises(StopIteration):
        next(gen)
    assert next(sr_model.model.parameters()).device.type == "cpu"


def test_lambda_network_runs_once_per_frame(sr_model):
    """λ(x) is computed once per frame and shared by the sampler and the schedule outputs."""
    net = sr_model.model.lambda_net
    calls = []
    handle = net.register_forward_hook(lambda module, args, out: calls.append(args[0].shape))
    try:
        _finish(reconstruct(_widefield((2, 16, 16)), sr_model, PARAMS))
    finally:
        handle.remove()
    assert len(calls) == 2  # two frames, one call each (one tile covers a 32² frame)


def test_first_partial_result_arrives_after_the_first_group(sr_model):
    params = ReconstructionParams(n_samples=4, steps=3, seed=2, device="cpu")  # automatic groups
    events, result = _finish(reconstruct(_widefield((16, 16)), sr_model, params))
    kinds = [type(e).__name__ for e in events]
    first = kinds.index("PartialResult")
    assert kinds[:first] == ["Progress"] * 3  # one sample's 3 steps, then the first mean/std
    assert events[first].samples_done == 1
    partial = [e for e in events if isinstance(e, PartialResult)]
    assert partial[-1].samples_done == 4 and result.metadata["samples_done"] == 4
    assert [e.step for e in events if isinstance(e, Progress)][-1] == 4 * 3
    # the same seed gives the same samples whatever the grouping
    fixed = ReconstructionParams(n_samples=4, steps=3, seed=2, device="cpu", group_size=4)
    _, same = _finish(reconstruct(_widefield((16, 16)), sr_model, fixed))
    np.testing.assert_allclose(same.mean, result.mean, rtol=1e-4, atol=1e-5)  # batch rounding


def test_gamma_beta_are_the_models_schedule_maps_computed_from_lambda(sr_model):
    # the γ/β stacks are no longer held: they are made from the λ map when read, and equal
    # what the model's schedule_maps gives for that λ map
    _, result = _finish(reconstruct(_widefield((16, 20)), sr_model, PARAMS))
    lam = torch.from_numpy(result.schedule)[None, None]
    with torch.inference_mode():
        maps = sr_model.model.schedule_maps(None, PARAMS.t_star, lam=lam)
    np.testing.assert_allclose(result.gamma, maps["gamma"][0, :, 0].numpy(), rtol=1e-6)
    np.testing.assert_allclose(result.beta, maps["beta"][0, :, 0].numpy(), rtol=1e-6)
    assert result.gamma.dtype == result.beta.dtype == np.float32


def test_partial_results_are_views_without_copies(sr_model):
    params = ReconstructionParams(n_samples=2, steps=1, device="cpu", partial_copies=False)
    events, result = _finish(reconstruct(_widefield((16, 16)), sr_model, params))
    partial = [e for e in events if isinstance(e, PartialResult)]
    assert partial and all(p.mean is result.mean and p.std is result.std for p in partial)
