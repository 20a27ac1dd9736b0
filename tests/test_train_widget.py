"""The Train widget: trains two steps from layers, plots, previews, stops, saves a listed model."""

import threading

import numpy as np
import pytest
import torch

from napari_cvdm._widgets import train as train_widget
from napari_cvdm._widgets.reconstruct import ReconstructWidget
from napari_cvdm._widgets.train import PREVIEW_LAYER, SCRATCH, TrainWidget
from napari_cvdm.engine.registry import list_models, user_models_dir
from napari_cvdm.errors import InputError
from napari_cvdm.physics.fluorescence import simulate_sr_pair
from napari_cvdm.workflows.checkpoint import load_checkpoint
from napari_cvdm.workflows.events import Finished
from napari_cvdm.workflows.predict import ReconstructionParams, reconstruct


@pytest.fixture
def notes(monkeypatch):
    recorded = []
    monkeypatch.setattr(
        train_widget,
        "notify",
        lambda message, severity="error": recorded.append((severity, message)),
    )
    return recorded


@pytest.fixture
def widget(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    sample = simulate_sr_pair(np.random.default_rng(0), size=32)
    viewer.add_image(sample.widefield, name="wf", scale=(0.0626, 0.0626))
    viewer.add_image(sample.target, name="gt", scale=(0.0313, 0.0313))
    w = TrainWidget(viewer)
    w.input_layer.value = viewer.layers["wf"]
    w.target_layer.value = viewer.layers["gt"]
    w.preset.value = "tiny"
    w.batch.value = 2
    w.patch.value = 32
    w.val_every.value = 1
    w.device.value = "cpu"
    w.name.value = "widget-sr"
    yield w
    if w.running:
        w.stop()
    torch.set_num_threads(before)


def _labels(combo):
    return [combo.native.itemText(i) for i in range(combo.native.count())]


def _names(combo):
    return [layer.name for layer in combo.choices if layer is not None]


def test_pickers_follow_the_task(widget):
    assert _names(widget.input_layer) == ["wf", "gt"]
    widget.task.value = "qpi"
    assert _names(widget.input_layer) == []  # QPI needs a stack
    assert _names(widget.target_layer) == ["wf", "gt"]
    widget.viewer.add_image(np.ones((2, 16, 16)), name="stack")
    assert _names(widget.input_layer) == ["stack"]
    assert widget.name.value == "widget-sr"  # a user-chosen name is kept


def test_trains_two_steps_plots_previews_and_saves_a_listed_model(widget, qtbot, notes):
    reconstruct_widget = ReconstructWidget(widget.viewer)  # open before training
    assert "widget-sr [user]" not in _labels(reconstruct_widget.model)
    widget.steps.value = 2
    assert widget.make_config().lr_schedule == "cosine"  # the form's default schedule
    widget.train_button.native.click()
    assert widget.train_button.text == "Stop"
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert widget.train_button.text == "Train"
    assert widget.history.steps == [1, 2]
    assert sorted(widget.history.validation) == [1, 2]
    loss_axis = widget.plot.figure.axes[0]
    assert list(loss_axis.lines[0].get_xdata()) == [1, 2]
    assert widget.plot.redraws >= 1
    preview = widget.viewer.layers[PREVIEW_LAYER]
    # validation = the bottom 16-px band of the 64-px target: four 16-px patches, three columns
    assert preview.data.shape == (4 * 16, 3 * 16)
    assert preview.data.min() >= 0 and preview.data.max() <= 1
    event = widget.finished_event
    assert isinstance(event, Finished) and not event.cancelled
    path = user_models_dir() / "widget-sr.safetensors"
    assert widget.model_path == path and path.is_file()
    listed = [info for info in list_models("sr") if info.name == "widget-sr"]
    assert len(listed) == 1 and listed[0].source == "user"
    assert listed[0].pixel_size_um == pytest.approx(0.0626)
    assert any("listed in Reconstruct" in message for _, message in notes)
    assert "widget-sr [user]" in _labels(reconstruct_widget.model)  # listed at once
    widget._task_changed()
    assert "widget-sr" in widget.base_model.choices
    params = ReconstructionParams(n_samples=1, steps=2, device="cpu")
    events = list(reconstruct(np.asarray(widget.viewer.layers["wf"].data), "widget-sr", params))
    result = events[-1].result
    assert result.mean.shape == (64, 64) and np.all(np.isfinite(result.mean))
    copy = widget.save_model_as(path.parent.parent / "copy")
    assert copy.name == "copy.safetensors" and copy.read_bytes() == path.read_bytes()


def test_stop_saves_a_checkpoint_and_resume_is_offered(widget, qtbot):
    widget.steps.value = 100000
    widget.val_every.value = 100000
    widget.train_button.native.click()
    qtbot.waitUntil(lambda: len(widget.history.steps) >= 1, timeout=60000)
    widget.train_button.native.click()  # Stop
    assert widget.train_button.text == "Stopping…" and not widget.train_button.enabled
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    event = widget.finished_event
    assert event.cancelled
    ckpt = user_models_dir() / "widget-sr.ckpt"
    assert load_checkpoint(ckpt).step == event.info["steps"] >= 1
    assert widget.resume.enabled
    assert widget.train_button.text == "Train" and widget.train_button.enabled


def test_bad_form_warns_and_starts_nothing(widget, notes):
    widget.name.value = "bad name/with slash"
    widget.train_button.native.click()
    assert not widget.running
    assert notes and notes[-1][0] == "warning" and "model name" in notes[-1][1]
    widget.name.value = "ok"
    widget.target_layer.value = widget.viewer.layers["wf"]
    widget.train_button.native.click()
    assert not widget.running and "same layer" in notes[-1][1]
    widget.target_layer.value = widget.viewer.layers["gt"]
    widget.lr.value = "fast"
    widget.train_button.native.click()
    assert not widget.running and "learning rate" in notes[-1][1]
    assert widget.base_model.value == SCRATCH


def test_patch_larger_than_the_images_is_refused_before_running(widget, notes):
    widget.patch.value = 128  # larger than the 48-px training part of the 64-px target
    widget.train_button.native.click()
    assert not widget.running
    assert notes[-1][0] == "warning" and "at most 48" in notes[-1][1]


def test_errors_during_training_are_notified_once(widget, qtbot, notes, monkeypatch):
    real = widget._data_source

    def broken_source():
        data = real()

        def fail(*_args):
            raise InputError("the data went away; check the layers")

        data.train_batch = fail
        return data

    monkeypatch.setattr(widget, "_data_source", broken_source)
    widget.steps.value = 2
    widget.train_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    errors = [n for n in notes if n[0] == "error"]
    assert errors == [("error", "the data went away; check the layers")]
    assert widget.train_button.text == "Train" and widget.status.value == "idle"


def test_closing_napari_mid_training_asks_and_keeps_a_checkpoint(widget, qtbot):
    widget.steps.value = 100000
    widget.val_every.value = 100000
    widget.train_button.native.click()
    qtbot.waitUntil(lambda: len(widget.history.steps) >= 1, timeout=60000)
    # napari's close dialog lists running workers (private API: no public way to ask)
    tasks = widget.viewer.window._qt_window._window._task_status_manager
    assert tasks.is_busy()
    widget.worker.quit()  # what napari does when the user confirms closing
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert not tasks.is_busy()
    ckpt = user_models_dir() / "widget-sr.ckpt"
    assert load_checkpoint(ckpt).step >= 1
    assert not (user_models_dir() / "widget-sr.safetensors").exists()


def test_a_new_run_never_overwrites_an_existing_model(widget, notes):
    user_models_dir().mkdir(parents=True, exist_ok=True)
    existing = user_models_dir() / "widget-sr.safetensors"
    existing.write_bytes(b"a user's model")
    widget.train_button.native.click()
    assert not widget.running
    assert notes[-1][0] == "warning" and "already exists" in notes[-1][1]
    assert existing.read_bytes() == b"a user's model"
    widget.base_model.value = "sr-fluorescence-2x"  # fine-tuning under the base's name: refused
    widget.name.value = "sr-fluorescence-2x"
    widget.train_button.native.click()
    assert not widget.running and "overwrite its own base model" in notes[-1][1]


def test_a_folder_is_read_in_the_worker_and_its_errors_are_notified(
    widget, qtbot, notes, tmp_path, monkeypatch
):
    from napari_cvdm.io import write_tiff

    rng = np.random.default_rng(3)
    for sub in ("input", "target"):
        (tmp_path / "pairs" / sub).mkdir(parents=True)
    for name in "abcd":
        sample = simulate_sr_pair(rng, size=32)
        write_tiff(tmp_path / "pairs" / "input" / f"{name}.tif", sample.widefield, 0.0626)
        write_tiff(tmp_path / "pairs" / "target" / f"{name}.tif", sample.target, 0.0313)
    widget.source.value = "folder"
    widget.folder.value = tmp_path / "pairs"
    widget.val_fraction.value = 0.25
    widget.steps.value = 2
    readers = []
    real_load = train_widget._FolderData.load

    def recording_load(self):
        readers.append(threading.current_thread())
        return real_load(self)

    monkeypatch.setattr(train_widget._FolderData, "load", recording_load)
    widget.train_button.native.click()
    assert widget.running
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    assert readers and readers[0] is not threading.main_thread()  # read in the worker
    assert widget.finished_event is not None and widget.history.steps == [1, 2]
    write_tiff(tmp_path / "pairs" / "input" / "extra.tif", np.ones((32, 32)), 0.0626)
    widget.name.value = "from-folder-2"
    widget.train_button.native.click()
    qtbot.waitUntil(lambda: not widget.running, timeout=60000)
    errors = [message for severity, message in notes if severity == "error"]
    assert len(errors) == 1 and "extra" in errors[0]
    widget.folder.value = tmp_path / "missing"
    widget.train_button.native.click()
    assert not widget.running and "does not exist" in notes[-1][1]
