"""The Reconstruct widget follows the data (napari under Xvfb, CPU, tiny random models).

What a microscopist relies on: the image picker is the layer selected in the layer list (after
a mode switch, after the Train widget adds its preview); the mode follows the layer (a
through-focus stack → QPI); a stack that does not fit the mode gets one clear message and no
run; no value of a previous layer or model stays in the optics fields; the camera offset has a
field; every default that is assumed (pixel size, offset, optics, resampling) is said; the γ
stack's t* slider is never labelled in µm.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose

from napari_cvdm import datasets
from napari_cvdm._widgets import common
from napari_cvdm._widgets.reconstruct import LOAD_FROM_FILE, ReconstructWidget
from napari_cvdm.assumptions import sr_resample_factor

pytestmark = pytest.mark.gui

TIMEOUT_MS = 60_000


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
def viewer_widget(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    assert isinstance(widget, ReconstructWidget)
    return viewer, widget


def use_model(widget: ReconstructWidget, path) -> None:
    widget.model.value = LOAD_FROM_FILE
    widget.model_file.value = path


def select_layer(viewer, name: str) -> None:
    viewer.layers.selection.active = viewer.layers[name]


def picked(widget: ReconstructWidget) -> str | None:
    return None if widget.image.value is None else widget.image.value.name


def test_picker_and_mode_follow_the_selected_layer(viewer_widget):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    viewer.open_sample("napari-cvdm", "qpi_synthetic")
    # the stack was added last: it is selected, so the widget proposes QPI for it
    assert (picked(widget), widget.mode.value) == ("qpi_through_focus", "qpi")
    assert "mode set to QPI for qpi_through_focus: its metadata says task qpi" in (
        widget.status_label.value
    )
    select_layer(viewer, "sr_widefield")
    assert (picked(widget), widget.mode.value) == ("sr_widefield", "sr")
    # a mode switch by hand and back: the picker is again the selected layer
    widget.mode.value = "qpi"
    assert picked(widget) == "qpi_through_focus"  # the only stack; the 2-D layer cannot be QPI
    widget.mode.value = "sr"
    assert picked(widget) == "sr_widefield"
    assert "mode set" not in widget.status_label.value  # the user chose the mode


def test_train_preview_layer_never_becomes_the_input(viewer_widget):
    viewer, widget = viewer_widget
    _dock, train = viewer.window.add_plugin_dock_widget("napari-cvdm", "Train")
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    assert picked(widget) == "sr_widefield"
    train._show_preview(np.zeros((32, 32), np.float32))  # as at a validation during training
    assert viewer.layers.selection.active.name == "cvdm_train_preview"
    assert picked(widget) == "sr_widefield"
    widget.image.reset_choices()
    assert "cvdm_train_preview" not in [c.name for c in widget.image.choices if c is not None]


def test_a_through_focus_stack_in_sr_mode_gets_one_message_and_no_run(viewer_widget, models):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "qpi_synthetic")
    widget.mode.value = "sr"  # the user insists on SR
    use_model(widget, models["sr"])
    assert picked(widget) == "qpi_through_focus"
    problem = widget.problem()
    assert problem.startswith("qpi_through_focus is a through-focus stack (its metadata says task")
    assert "3 planes as separate widefield images" in problem and "mode to QPI" in problem
    assert not widget.run_button.widget.enabled
    assert widget.run_button.widget.tooltip == problem
    before = [layer.name for layer in viewer.layers]
    with common.recording_notifications() as seen:
        widget.run()
    assert seen == [("warning", problem)]
    assert [layer.name for layer in viewer.layers] == before and widget.worker is None


def test_a_widefield_stack_in_qpi_mode_gets_one_message(viewer_widget, models):
    viewer, widget = viewer_widget
    stack = np.full((3, 32, 32), 100.0, np.float32)
    viewer.add_image(stack, name="wf_movie", metadata={"task": "sr"})
    assert widget.mode.value == "sr"
    widget.mode.value = "qpi"
    use_model(widget, models["qpi"])
    problem = widget.problem()
    assert problem.startswith("wf_movie is a widefield image (its metadata says task sr)")
    assert not widget.run_button.widget.enabled


def test_optics_never_keep_a_previous_layers_values(viewer_widget, models):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "qpi_synthetic")
    assert widget.wavelength_um.value == pytest.approx(0.521)  # the stack's illumination
    viewer.add_image(np.full((32, 32), 150.0, np.float32), name="plain")
    use_model(widget, models["sr"])
    assert (picked(widget), widget.mode.value) == ("plain", "sr")
    # no stale 0.521 µm: the SR model's emission wavelength and NA, said to be the model's
    assert widget.wavelength_um.value == pytest.approx(0.525)
    assert widget.na.value == pytest.approx(1.49)
    assert widget.pixel_size_um.value == 0.0
    status = widget.status_label.value
    assert "no pixel size in the input: assuming the model's 0.0626 µm" in status
    assert "NA 1.49 (model's), λ 0.525 µm (model's)" in status
    # a value the user typed survives a model change; a model's value follows the model
    widget.na.value = 1.2
    widget.model.reset_choices()
    widget._on_model()
    assert widget.na.value == pytest.approx(1.2)


def test_camera_offset_field_from_layer_model_or_user(viewer_widget, models):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    use_model(widget, models["sr"])
    offset = viewer.layers["sr_widefield"].metadata["offset_adu"]
    assert widget.offset_adu.value == pytest.approx(offset)  # from the layer's metadata
    job, _ = widget.snapshot()
    assert job.task_options["offset_adu"] == pytest.approx(offset)

    viewer.add_image(np.full((32, 32), 500.0, np.float32), name="camera", scale=(0.0626,) * 2)
    model_offset = widget._model_meta(widget.model_path())["normalization"]["input"]["offset_adu"]
    assert widget.offset_adu.value == pytest.approx(model_offset)
    assert f"camera offset {model_offset:.4g} ADU (the model's training value" in (
        widget.status_label.value
    )
    widget.offset_adu.value = 480.0
    job, _ = widget.snapshot()
    assert job.task_options["offset_adu"] == pytest.approx(480.0)
    assert "camera offset 480 ADU" in widget.status_label.value
    widget.mode.value = "qpi"
    assert not widget.offset_adu.visible and not widget.na.visible  # SR-only fields


@pytest.mark.parametrize("pixel", [0.5, 0.01])
def test_a_pixel_size_the_model_cannot_serve_is_refused_before_run(viewer_widget, models, pixel):
    # an SR input that would need resampling by more than 4x (or less than 1/4) is what the
    # reconstruction refuses: the form says so before Run instead of "ready", with the field's
    # name (not the CLI's --pixel-size), and Run is disabled
    viewer, widget = viewer_widget
    image = np.full((32, 32), 150.0, np.float32)
    viewer.add_image(image, name="badpx", scale=(pixel, pixel), units=("µm", "µm"))
    use_model(widget, models["sr"])
    problem = widget.problem()
    assert problem is not None and problem.startswith(f"badpx: its pixel size ({pixel:g} µm)")
    assert "allowed 1/4 to 4" in problem and "pixel size field" in problem
    assert "--pixel-size" not in problem
    assert not widget.run_button.widget.enabled
    assert widget.status_label.value.endswith(problem) and "ready" not in widget.status_label.value
    widget.pixel_size_um.value = 0.0626  # corrected by hand: ready
    assert widget.problem() is None and widget.run_button.widget.enabled


def test_assumed_pixel_size_and_resampling_are_announced_at_run(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    rng = np.random.default_rng(0)
    image = (100 + rng.poisson(200, size=(32, 32))).astype(np.float32)
    viewer.add_image(image, name="nopixel")
    use_model(widget, models["sr"])
    widget.steps.value, widget.samples.value = 1, 1
    with common.recording_notifications() as seen:
        widget.run()
        qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    infos = [m for s, m in seen if s == "info"]
    assert len(infos) == 1 and infos[0].startswith("Assumed for nopixel: no pixel size")
    assert "assuming the model's 0.0626 µm" in infos[0] and "not resampled" in infos[0]
    assert viewer.layers["nopixel_cvdm"].data.shape == (64, 64)  # plain 2x: no resampling

    viewer.add_image(image, name="coarse", scale=(0.1, 0.1), units=("µm", "µm"))
    physics = widget._model_meta(widget.model_path())["physics"]
    factor = sr_resample_factor(physics, 0.1)
    assert factor == pytest.approx(0.1 / 0.0626, rel=1e-3)  # same optics: the pixel ratio
    with common.recording_notifications() as seen:
        widget.run()
        qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    (note,) = [m for s, m in seen if s == "info"]
    n = viewer.layers["coarse_cvdm"].data.shape[-1]
    assert n == 2 * round(32 * factor)
    assert f"resampled ×{n / 64:.3f} to the model's PSF width" in note  # the factor applied
    assert "resampled ×" in widget.status_label.value  # said before Run too


def test_gamma_t_star_slider_is_not_in_micrometres(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    viewer.open_sample("napari-cvdm", "qpi_synthetic")  # a z axis in µm in the viewer
    use_model(widget, models["qpi"])
    widget.steps.value, widget.samples.value = 1, 1
    widget.run()
    qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    gamma = viewer.layers["qpi_through_focus_cvdm_gamma"]
    assert gamma.data.shape == (5, 1, 128, 128)  # t*, then a singleton on the z axis
    assert gamma.axis_labels[:2] == ("t*", "z")
    assert str(gamma.units[0]) == "pixel" and str(gamma.units[1]) == "micrometer"
    # the singleton spans the whole z range, so γ shows at every z of the slider
    stack = viewer.layers["qpi_through_focus"]
    z = stack.translate[0] + stack.scale[0] * np.arange(3)
    low, high = gamma.translate[1] - gamma.scale[1] / 2, gamma.translate[1] + gamma.scale[1] / 2
    assert low < z.min() and z.max() < high
    # the viewer keeps consistent units: the scale bar still reads µm
    assert [str(u) for u in viewer.layers.units] == ["pixel"] + ["micrometer"] * 3
    assert viewer.dims.axis_labels[0] == "t*"
    assert_allclose(gamma.scale[2:], stack.scale[1:])
