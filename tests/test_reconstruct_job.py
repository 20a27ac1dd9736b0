"""The Reconstruct widget's Qt-free parts: frame selection, the job generator, error messages,
output names and contrast."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm._widgets.common import describe_error
from napari_cvdm._widgets.outputs import output_names, percentile_limits
from napari_cvdm._widgets.reconstruct_job import (
    JobFailed,
    ReconstructionJob,
    default_threads,
    describe_model,
    group_size_for,
    memory_warning,
    run_job,
    select_frames,
)
from napari_cvdm.errors import InputError, ModelFileError


def test_select_all_frames_copies_and_keeps_axes():
    data = np.arange(2 * 3 * 4 * 5, dtype=np.uint16).reshape(2, 3, 4, 5)
    image, drop, chosen = select_frames(data, mode="sr", focus_axis=None, current=None)
    assert image.shape == data.shape and drop == () and chosen == {}
    image[0, 0, 0, 0] = 999
    assert data[0, 0, 0, 0] == 0  # a copy: edits to the layer during a run cannot leak in


def test_select_current_frame_sr_keeps_length_one_axes():
    data = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    image, drop, chosen = select_frames(data, mode="sr", focus_axis=None, current=(1.2, 2.0, 0, 0))
    assert image.shape == (1, 1, 4, 5)
    assert np.array_equal(image[0, 0], data[1, 2])
    assert drop == () and chosen == {0: 1, 1: 2}


def test_select_current_frame_qpi_keeps_the_focus_axis():
    data = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)  # (T, Z, Y, X)
    image, drop, chosen = select_frames(data, mode="qpi", focus_axis=1, current=(7.0, 1.0, 0, 0))
    assert image.shape == (1, 3, 4, 5)  # T clipped to its last index, all Z planes kept
    assert np.array_equal(image[0], data[1])
    assert drop == (1,) and chosen == {0: 1}
    # a plain (Z, Y, X) stack has no frame axes: "current frame" changes nothing
    image, drop, chosen = select_frames(data[0], mode="qpi", focus_axis=0, current=(0, 0, 0))
    assert image.shape == (3, 4, 5) and drop == (0,) and chosen == {}


@pytest.mark.parametrize(("n", "size"), [(1, 1), (2, 1), (4, 1), (8, 2), (9, 3), (32, 8)])
def test_group_size_refines_about_four_times(n, size):
    assert group_size_for(n) == size


def test_default_threads_leaves_one_core():
    assert default_threads() >= 1


def _tiny_sr_model(tmp_path):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_model

    loaded = make_untrained_model("sr", "tiny", seed=2)
    return save_model(tmp_path / "sr.safetensors", loaded.model, loaded.metadata)


def _job(image, path, **params):
    from napari_cvdm.workflows.predict import ReconstructionParams

    defaults = {"n_samples": 2, "steps": 2, "group_size": 1, "device": "cpu"}
    return ReconstructionJob(
        image=image,
        model_path=path,
        params=ReconstructionParams(**{**defaults, **params}),
        task_options={"input_name": "x"},
        threads=1,
    )


def test_run_job_streams_predict_events(tmp_path):
    from napari_cvdm.workflows.events import Finished, PartialResult, Progress

    image = 100 + np.random.default_rng(0).poisson(100, size=(24, 24)).astype(np.float32)
    events = list(run_job(_job(image, _tiny_sr_model(tmp_path))))
    kinds = [type(e) for e in events]
    assert kinds == [Progress, Progress, PartialResult, Progress, Progress, PartialResult, Finished]
    assert [e.step for e in events if isinstance(e, Progress)] == [1, 2, 3, 4]
    assert events[-1].result.mean.shape == (48, 48)


def test_run_job_close_midway_stops(tmp_path):
    image = 100 + np.random.default_rng(0).poisson(100, size=(24, 24)).astype(np.float32)
    stream = run_job(_job(image, _tiny_sr_model(tmp_path), steps=10))
    first = next(stream)
    assert first.step == 1
    stream.close()
    with pytest.raises(StopIteration):
        next(stream)


def test_run_job_turns_errors_into_one_message(tmp_path):
    missing = tmp_path / "missing.safetensors"
    (event,) = list(run_job(_job(np.ones((16, 16), np.float32), missing)))
    assert isinstance(event, JobFailed) and isinstance(event.error, ModelFileError)
    nan_image = np.ones((16, 16), np.float32)
    nan_image[3, 3] = np.nan
    (event,) = list(run_job(_job(nan_image, _tiny_sr_model(tmp_path))))
    assert isinstance(event.error, InputError)


def test_describe_error_names_the_fix():
    import torch

    oom = describe_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert "tile size" in oom and "CPU" in oom
    assert "tile size" in describe_error(RuntimeError("CUDA error: out of memory"))
    mps = describe_error(NotImplementedError("op aten::foo is not implemented for the MPS device"))
    assert "CPU" in mps
    assert describe_error(InputError("bad axes; use (Z, Y, X)")).startswith(
        "Input problem: bad axes"
    )
    assert describe_error(ModelFileError("truncated")).startswith("Model file problem")
    assert "bug" in describe_error(KeyError("x"))
    assert "RAM" in describe_error(MemoryError())


def test_output_names_plain_and_numbered():
    plain = output_names("cells", ["cells"], keep_previous=False)
    assert plain == {
        "mean": "cells_cvdm",
        "std": "cells_cvdm_std",
        "schedule": "cells_cvdm_schedule",
        "gamma": "cells_cvdm_gamma",
    }
    assert output_names("cells", ["cells"], keep_previous=True) == plain  # nothing to keep yet
    existing = ["cells", *plain.values(), "cells_cvdm_2"]
    numbered = output_names("cells", existing, keep_previous=True)
    assert numbered["mean"] == "cells_cvdm_3" and numbered["std"] == "cells_cvdm_std_3"


def test_percentile_limits():
    data = np.arange(1000, dtype=np.float32)
    data[0] = np.nan
    lo, hi = percentile_limits(data)
    assert lo == pytest.approx(np.percentile(np.arange(1, 1000), 0.5))
    assert hi == pytest.approx(np.percentile(np.arange(1, 1000), 99.5))
    lo, hi = percentile_limits(np.full(10, 3.0))
    assert hi > lo == 3.0
    assert percentile_limits(np.full(4, np.nan)) == (0.0, 1.0)


def test_describe_model_line():
    meta = {
        "task": "sr",
        "physics": {"pixel_size_um": 0.0626, "upscale": 2.0, "na": 1.49, "wavelength_um": 0.525},
        "architecture": {"preset": "small"},
        "training": {"untrained": True},
    }
    text = describe_model(meta)
    assert text.startswith("SR · ×2 · trained at 0.0626 µm/px · NA 1.49 · λ 0.525 µm · small")
    assert "UNTRAINED" in text
    qpi = {**meta, "task": "qpi", "physics": {"pixel_size_um": 0.21, "dz_um": 1.0}, "training": {}}
    assert describe_model(qpi) == "QPI · trained at 0.21 µm/px · dz 1 µm · small"


def test_memory_warning_only_for_huge_outputs(tmp_path):
    small = _job(np.zeros((64, 64), np.float32), tmp_path / "m.safetensors")
    assert memory_warning(small) is None
    huge = _job(np.broadcast_to(np.float32(0), (4000, 8192, 8192)), tmp_path / "m.safetensors")
    message = memory_warning(huge)
    assert message is not None and "current frame" in message and "GB" in message
