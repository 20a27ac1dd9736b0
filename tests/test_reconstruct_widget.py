"""The Reconstruct widget in a real napari viewer (Xvfb via pytest-xvfb), CPU, tiny models.

Models are tiny random-weight CVDMs saved into a temporary folder with engine.modelfile; the
numbers they produce are meaningless, so the tests check layers, geometry, dtypes, metadata,
the Run/Cancel life cycle and the error notifications.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from napari_cvdm import datasets
from napari_cvdm._widgets import common
from napari_cvdm._widgets.reconstruct import LOAD_FROM_FILE, ReconstructWidget

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000
MT_SOURCE = Path("/work/shared/data/rdlsim-mt/MT.mrc")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_model

    folder = tmp_path_factory.mktemp("models")
    paths = {}
    for task in ("sr", "qpi"):
        loaded = make_untrained_model(task, "tiny", seed=1)
        paths[task] = save_model(folder / f"{task}_tiny.safetensors", loaded.model, loaded.metadata)
    return paths


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    folder.mkdir()
    monkeypatch.setenv(datasets.CACHE_ENV, str(folder))
    return folder


@pytest.fixture
def viewer_widget(make_napari_viewer, cache):
    viewer = make_napari_viewer()
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    assert isinstance(widget, ReconstructWidget)
    return viewer, widget


def use_model(widget: ReconstructWidget, path: Path) -> None:
    widget.model.value = LOAD_FROM_FILE
    widget.model_file.value = path


def run_and_wait(qtbot, widget: ReconstructWidget) -> None:
    widget.run()
    qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)


def select(widget: ReconstructWidget, name: str) -> None:
    widget.image.reset_choices()
    (choice,) = [c for c in widget.image.choices if c is not None and c.name == name]
    widget.image.value = choice


def names(viewer) -> list[str]:
    return [layer.name for layer in viewer.layers]


# ---------------------------------------------------------------------------------- basics


def test_widget_defaults_devices_and_idle_state(viewer_widget):
    viewer, widget = viewer_widget
    values = (
        [value for _, value in widget.device.choices]
        if isinstance(widget.device.choices[0], tuple)
        else list(widget.device.choices)
    )
    assert values[0] == "auto" and "cpu" in values
    assert widget.device_info.value == "using cpu"  # CI / NAPARI_CVDM_DEVICE=cpu
    assert widget.samples.value == 4 and widget.steps.value == 20  # CPU defaults
    assert widget.run_button.widget.text == "Run"
    assert not widget.run_button.widget.enabled  # no image yet
    assert "No image layer" in widget.run_button.widget.tooltip
    assert widget.status.idle


def test_gpu_defaults_unless_the_user_changed_them(viewer_widget, monkeypatch):
    import torch

    from napari_cvdm.engine import device

    viewer, widget = viewer_widget
    monkeypatch.setattr(device, "resolve_device", lambda name: torch.device("cuda:0"))
    widget._on_device()
    assert widget.device_info.value == "using cuda:0"
    assert (widget.samples.value, widget.steps.value) == (8, 50)
    widget.samples.value = 3  # the user's choice is kept from now on
    monkeypatch.setattr(device, "resolve_device", lambda name: torch.device("cpu"))
    widget._on_device()
    assert (widget.samples.value, widget.steps.value) == (3, 20)


def test_model_list_shows_user_models_by_task(viewer_widget, models, cache):
    viewer, widget = viewer_widget
    (cache / "models").mkdir()
    shutil.copy(models["sr"], cache / "models" / "my_sr.safetensors")
    widget.model.reset_choices()
    values = list(widget.model.choices)
    assert str(cache / "models" / "my_sr.safetensors") in values
    assert LOAD_FROM_FILE in values
    widget.model.value = str(cache / "models" / "my_sr.safetensors")
    assert "SR" in widget.model_info.value and "0.0626 µm/px" in widget.model_info.value
    assert "NA 1.49" in widget.model_info.value
    widget.mode.value = "qpi"
    assert str(cache / "models" / "my_sr.safetensors") not in list(widget.model.choices)


# ---------------------------------------------------------------------------------- SR


def test_sr_end_to_end_layers_geometry_and_rerun(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    assert widget.image.value.name == "sr_widefield"  # follows the active layer
    assert widget.pixel_size_um.value == pytest.approx(0.0626)
    use_model(widget, models["sr"])
    assert widget.model.value == str(models["sr"])
    assert widget.na.value == pytest.approx(1.49)
    widget.steps.value, widget.samples.value = 2, 2
    assert widget.run_button.widget.enabled

    steps_seen = []
    with common.recording_notifications() as seen:
        widget.run()
        assert widget.run_button.widget.text == "Cancel"
        widget.worker.yielded.connect(lambda e: steps_seen.append(type(e).__name__))
        qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    assert seen == []
    assert widget.run_button.widget.text == "Run"
    assert names(viewer) == [
        "sr_ground_truth",
        "sr_widefield",
        "sr_widefield_cvdm",
        "sr_widefield_cvdm_std",
        "sr_widefield_cvdm_schedule",
        "sr_widefield_cvdm_gamma",
    ]
    mean, std = viewer.layers["sr_widefield_cvdm"], viewer.layers["sr_widefield_cvdm_std"]
    schedule, gamma = (
        viewer.layers["sr_widefield_cvdm_schedule"],
        viewer.layers["sr_widefield_cvdm_gamma"],
    )
    for layer in (mean, std, schedule):
        assert layer.data.shape == (256, 256)
        assert layer.data.dtype == np.float32
        assert np.isfinite(layer.data).all()
        assert_allclose(layer.scale, (0.0313, 0.0313))
        assert_allclose(layer.translate, (-0.01565, -0.01565))
        assert [str(u) for u in layer.units] == ["micrometer", "micrometer"]
    assert gamma.data.shape == (5, 256, 256) and gamma.data.dtype == np.float32
    assert_allclose(gamma.scale[1:], (0.0313, 0.0313))
    assert (std.data >= 0).all() and std.data.max() > 0
    assert mean.visible and not std.visible and not schedule.visible and not gamma.visible
    assert std.colormap.name == "magma" and schedule.colormap.name == "viridis"
    # γ = exp(-λ ρ(t*)) lies in (0, 1]
    assert gamma.data.min() >= 0 and gamma.data.max() <= 1.0 + 1e-6
    prov = mean.metadata["cvdm"]
    assert prov["status"] == "complete" and prov["samples_done"] == 2 and prov["steps"] == 2
    assert prov["input_name"] == "sr_widefield" and prov["mode"] == "sr"
    assert prov["sr_factor"] == pytest.approx(2.0) and prov["device"] == "cpu"
    assert mean.metadata["source_metadata"]["pixel_size_um"] == pytest.approx(0.0626)
    assert gamma.metadata["cvdm"]["t_star"] == pytest.approx([0.1, 0.25, 0.5, 0.75, 0.9])
    # one Progress per step per group (group size 1: 2 groups x 2 steps), 2 partials, 1 finish
    assert steps_seen.count("Progress") == 4 and steps_seen.count("PartialResult") == 2
    assert steps_seen[-1] == "Finished"

    # a re-run updates the same layers in place
    first = np.array(mean.data)
    widget.seed.value = 5
    run_and_wait(qtbot, widget)
    assert len(viewer.layers) == 6
    assert viewer.layers["sr_widefield_cvdm"].metadata["cvdm"]["seed"] == 5
    assert not np.array_equal(first, viewer.layers["sr_widefield_cvdm"].data)

    # "keep previous results" adds a numeric suffix
    widget.keep_previous.value = True
    run_and_wait(qtbot, widget)
    assert names(viewer)[6:] == [
        "sr_widefield_cvdm_2",
        "sr_widefield_cvdm_std_2",
        "sr_widefield_cvdm_schedule_2",
        "sr_widefield_cvdm_gamma_2",
    ]


def test_sr_time_stack_all_frames_and_current_frame(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(0)
    stack = (100 + rng.poisson(50, size=(3, 32, 32))).astype(np.float32)
    stack[:, 10:14, :] += 400  # some structure
    viewer.add_image(
        stack,
        name="movie",
        scale=(2.0, 0.0626, 0.0626),
        translate=(10.0, 1.0, 2.0),
        units=("s", "µm", "µm"),
        axis_labels=("t", "y", "x"),
    )
    use_model(widget, models["sr"])
    widget.steps.value, widget.samples.value = 2, 2
    assert widget.frames.enabled
    widget.frames.value = "all frames"
    run_and_wait(qtbot, widget)
    mean = viewer.layers["movie_cvdm"]
    assert mean.data.shape == (3, 64, 64)
    assert_allclose(mean.scale, (2.0, 0.0313, 0.0313))
    assert_allclose(mean.translate, (10.0, 1.0 - 0.01565, 2.0 - 0.01565))
    assert mean.axis_labels == ("t", "y", "x")
    assert viewer.layers["movie_cvdm_gamma"].data.shape == (5, 3, 64, 64)
    assert viewer.layers["movie_cvdm_std"].data.shape == (3, 64, 64)
    assert all(np.abs(mean.data[t]).sum() > 0 for t in range(3))  # every frame reconstructed

    viewer.dims.set_point(viewer.dims.ndim - 3, 10.0 + 2.0 * 2)  # world time of frame 2
    widget.frames.value = "current frame"
    widget.keep_previous.value = True
    run_and_wait(qtbot, widget)
    single = viewer.layers["movie_cvdm_2"]
    assert single.data.shape == (1, 64, 64)  # stays at the time of frame 2
    assert_allclose(single.scale, (2.0, 0.0313, 0.0313))
    assert_allclose(single.translate, (14.0, 1.0 - 0.01565, 2.0 - 0.01565))
    assert single.metadata["cvdm"]["frame_index"] == {"0": 2}
    assert viewer.layers["movie_cvdm_gamma_2"].data.shape == (5, 1, 64, 64)


def test_sr_resampled_input_keeps_field_of_view(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(1)
    image = (100 + rng.poisson(200, size=(40, 40))).astype(np.float32)
    viewer.add_image(image, name="coarse", scale=(0.1, 0.1), units=("µm", "µm"))
    use_model(widget, models["sr"])
    widget.steps.value, widget.samples.value = 2, 2
    assert "resampled" in widget.status_label.value
    with common.recording_notifications() as seen:
        run_and_wait(qtbot, widget)
    assert len(seen) == 1 and seen[0][0] == "info" and "resampled" in seen[0][1]
    mean = viewer.layers["coarse_cvdm"]
    n = mean.data.shape[-1]
    assert n != 80  # resampled, not a plain 2x
    assert_allclose(mean.scale[-1] * n, 4.0, rtol=1e-6)  # same field of view (40 x 0.1 µm)
    assert_allclose(mean.translate[-1] - mean.scale[-1] / 2, -0.05, atol=1e-9)


# ---------------------------------------------------------------------------------- QPI


def test_qpi_end_to_end(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "qpi_synthetic")
    widget.mode.value = "qpi"
    assert widget.image.value.name == "qpi_through_focus"
    assert not widget.qpi_box.native.isHidden()  # shown in QPI mode (the dock itself is hidden)
    use_model(widget, models["qpi"])
    assert (widget.focus_axis.value, widget.plane_minus.value, widget.plane_plus.value) == (0, 0, 2)
    assert widget.dz_um.value == pytest.approx(1.0)
    assert widget.wavelength_um.value == pytest.approx(0.521)
    assert widget.pixel_size_um.value == pytest.approx(0.21)
    widget.steps.value, widget.samples.value = 2, 2
    with common.recording_notifications() as seen:
        run_and_wait(qtbot, widget)
    assert seen == []
    mean = viewer.layers["qpi_through_focus_cvdm"]
    std = viewer.layers["qpi_through_focus_cvdm_std"]
    for layer in (mean, std, viewer.layers["qpi_through_focus_cvdm_schedule"]):
        assert layer.data.shape == (128, 128) and layer.data.dtype == np.float32
        assert np.isfinite(layer.data).all()
        assert_allclose(layer.scale, (0.21, 0.21))  # the input's YX geometry, focus axis dropped
        assert_allclose(layer.translate, (0.0, 0.0))
        assert layer.axis_labels == ("y", "x")
    assert (std.data >= 0).all()
    assert mean.colormap.name == "gray"
    prov = mean.metadata["cvdm"]
    assert prov["mode"] == "qpi" and prov["planes"] == [0, 2]
    assert prov["optics"]["dz_um"] == pytest.approx(1.0)
    # t* on its own axis, a singleton on the stack's z axis (tests/test_widget_follows_data.py)
    assert viewer.layers["qpi_through_focus_cvdm_gamma"].data.shape == (5, 1, 128, 128)


@pytest.mark.skipif(not MT_SOURCE.exists(), reason="local copy of MT.mrc not present")
def test_real_biosr_sample_opens_from_cache(viewer_widget, cache, monkeypatch):
    viewer, widget = viewer_widget
    monkeypatch.setenv(datasets.DATA_URL_ENV, "http://127.0.0.1:9/")  # no network needed
    shutil.copy(MT_SOURCE, cache / "MT.mrc")
    viewer.open_sample("napari-cvdm", "biosr_microtubules")
    layer = viewer.layers["biosr_microtubules_widefield"]
    assert layer.data.shape == (256, 256) and layer.data.dtype == np.float32
    assert_allclose(layer.scale, (0.0626, 0.0626))
    assert widget.image.value.name == "biosr_microtubules_widefield"
    assert widget.pixel_size_um.value == pytest.approx(0.0626)


# ---------------------------------------------------------------------------------- cancel


def test_cancel_before_first_sample_group_adds_no_layers(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    use_model(widget, models["sr"])
    widget.steps.value, widget.samples.value = 50, 2
    before = names(viewer)
    with common.recording_notifications() as seen:
        widget.run()
        qtbot.waitUntil(lambda: widget.status.step >= 1, timeout=TIMEOUT_MS)
        widget.cancel()
        assert widget.run_button.widget.text == "Cancelling…"
        assert not widget.run_button.widget.enabled
        qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    assert widget.last_run.aborted
    assert names(viewer) == before
    assert widget.run_button.widget.text == "Run" and widget.run_button.widget.enabled
    assert seen == []
    assert widget.worker is None


def test_cancel_after_first_group_keeps_layers_marked_cancelled(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    use_model(widget, models["sr"])
    widget.steps.value, widget.samples.value = 25, 8  # 4 groups of 2 samples
    widget.run()
    qtbot.waitUntil(lambda: "sr_widefield_cvdm" in names(viewer), timeout=TIMEOUT_MS)
    widget.cancel()
    qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    assert widget.last_run.aborted
    mean = viewer.layers["sr_widefield_cvdm"]
    assert mean.metadata["cvdm"]["status"] == "cancelled"
    assert mean.metadata["cvdm"]["samples_done"] < 8
    assert "sr_widefield_cvdm_schedule" not in names(viewer)
    assert np.isfinite(mean.data).all()


# ---------------------------------------------------------------------------------- errors


def _expect_one_error(qtbot, viewer, widget, *contains: str) -> str:
    before = names(viewer)
    with common.recording_notifications() as seen:
        widget.run()
        qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    assert len(seen) == 1, seen
    message = seen[0][1]
    for text in contains:
        assert text.lower() in message.lower(), message
    assert names(viewer) == before
    assert widget.run_button.widget.text == "Run"
    assert widget.worker is None
    return message


def test_error_wrong_dimensionality_for_qpi(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(np.ones((32, 32), np.float32), name="flat")
    widget.mode.value = "qpi"
    use_model(widget, models["qpi"])
    assert widget.image.value is None  # 2-D layers are not offered in QPI mode
    assert not widget.run_button.widget.enabled
    _expect_one_error(qtbot, viewer, widget, "3 axes", "switch to SR")


def test_error_nan_input(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    data = np.full((32, 32), 200.0, np.float32)
    data[5, 5] = np.nan
    viewer.add_image(data, name="broken")
    use_model(widget, models["sr"])
    widget.steps.value, widget.samples.value = 2, 2
    _expect_one_error(qtbot, viewer, widget, "NaN", "replace")


def test_error_out_of_memory(viewer_widget, models, qtbot, monkeypatch):
    import torch

    from napari_cvdm.workflows import predict

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(predict, "reconstruct", out_of_memory)
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    use_model(widget, models["sr"])
    _expect_one_error(qtbot, viewer, widget, "out of GPU memory", "tile size", "CPU")
    assert len(viewer.layers) == 2


def test_error_corrupt_model_file_header(viewer_widget, models, qtbot, tmp_path):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    bad = tmp_path / "truncated.safetensors"
    bad.write_bytes(Path(models["sr"]).read_bytes()[:100])
    use_model(widget, bad)
    assert widget.model.value == LOAD_FROM_FILE  # not accepted into the list
    assert not widget.run_button.widget.enabled
    _expect_one_error(qtbot, viewer, widget, "model file", str(bad.name))


def test_error_corrupt_model_weights(viewer_widget, models, qtbot, tmp_path):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    bad = tmp_path / "tampered.safetensors"
    raw = bytearray(Path(models["sr"]).read_bytes())
    for i in range(1, 65):  # flip bytes inside the last tensor; the header stays valid
        raw[-i] ^= 0xFF
    bad.write_bytes(bytes(raw))
    use_model(widget, bad)
    assert widget.run_button.widget.enabled  # the header is fine; the weights are checked on load
    _expect_one_error(qtbot, viewer, widget, "model file", "digest")


def test_error_missing_planes(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(np.ones((1, 32, 32), np.float32), name="one_plane")
    widget.mode.value = "qpi"
    use_model(widget, models["qpi"])
    assert widget.image.value.name == "one_plane"
    _expect_one_error(qtbot, viewer, widget, "two different planes")


# ---------------------------------------------------------------------------------- writer


def test_writer_saves_output_layer_with_pixel_size(viewer_widget, tmp_path):
    import tifffile

    from napari_cvdm.io import read_image

    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    layer = viewer.layers["sr_ground_truth"]
    path = tmp_path / "gt.tif"
    written = layer.save(str(path), plugin="napari-cvdm")
    assert Path(written[0]) == path
    assert tifffile.imread(path).dtype == np.float32
    _, meta = read_image(path)
    assert meta.pixel_size_um == pytest.approx((0.0313, 0.0313), rel=1e-6)
    assert meta.extra["provenance"]["layer"]["name"] == "sr_ground_truth"


def test_qpi_time_stack_gives_stacked_phase(viewer_widget, models, qtbot):
    from napari_cvdm.physics.qpi import simulate_qpi_stack

    viewer, widget = viewer_widget
    rng = np.random.default_rng(3)
    frames = [simulate_qpi_stack(rng, size=32, planes=3).stack for _ in range(2)]
    viewer.add_image(
        np.stack(frames),
        name="tz",
        scale=(5.0, 1.0, 0.21, 0.21),
        units=("s", "µm", "µm", "µm"),
        axis_labels=("t", "z", "y", "x"),
    )
    widget.mode.value = "qpi"
    use_model(widget, models["qpi"])
    assert widget.focus_axis.value == 1  # the axis before Y by default
    assert widget.dz_um.value == pytest.approx(1.0)  # half the distance of planes 0 and 2
    widget.frames.value = "all frames"
    widget.steps.value, widget.samples.value = 2, 2
    with common.recording_notifications() as seen:
        run_and_wait(qtbot, widget)
    (note,) = seen  # the layer has no wavelength: the model's is used, and said
    assert note[0] == "info" and "λ 0.521 µm (model's)" in note[1]
    # T stays on napari's T axis: the focus axis is kept as one plane spanning the stack's 3
    # planes (a (2, 32, 32) layer would be aligned on the viewer's last axes, T on the z slider)
    mean = viewer.layers["tz_cvdm"]
    assert mean.data.shape == (2, 1, 32, 32)
    assert_allclose(mean.scale, (5.0, 3.0, 0.21, 0.21))
    assert_allclose(mean.translate, (0.0, 1.0, 0.0, 0.0))
    assert mean.axis_labels == ("t", "z", "y", "x")
    assert np.abs(mean.data[1]).sum() > 0  # the second time point is reconstructed
    assert viewer.layers["tz_cvdm_gamma"].data.shape == (5, 2, 1, 32, 32)  # t* on its own axis
    assert viewer.dims.axis_labels[-4:] == ("t", "z", "y", "x")

    viewer.dims.set_point(viewer.dims.ndim - 4, 5.0)  # the current frame: time point 1
    widget.frames.value = "current frame"
    widget.keep_previous.value = True
    run_and_wait(qtbot, widget)
    single = viewer.layers["tz_cvdm_2"]
    assert single.data.shape == (1, 1, 32, 32)
    assert_allclose(single.translate, (5.0, 1.0, 0.0, 0.0))
    assert single.metadata["cvdm"]["frame_index"] == {"0": 1}


def test_device_and_threads_persist_between_widgets(make_napari_viewer, cache):
    viewer = make_napari_viewer()
    first = ReconstructWidget(viewer)
    first.threads.value = 1
    first.device.value = "cpu"
    second = ReconstructWidget(viewer)
    assert second.threads.value == 1 and second.device.value == "cpu"


def test_damaged_settings_file_gives_defaults(make_napari_viewer, cache):
    from napari_cvdm._widgets.settings import settings_path

    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text("{not json")
    widget = ReconstructWidget(make_napari_viewer())
    assert widget.threads.value == 0  # automatic
