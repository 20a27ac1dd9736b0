"""The widgets check the CLI's ranges and preflight (issue 14): one clear line, nothing started.

Reconstruct: a field outside ``limits.LIMITS`` disables Run with that line; a resampling factor,
memory estimate or camera offset the CLI refuses gives one error and starts no worker. Train: a
learning rate of NaN, or a run that does not fit in memory or cannot write its models folder,
gives one warning and starts no worker.
"""

from pathlib import Path

import numpy as np
import pytest
import torch

from napari_cvdm._widgets import common
from napari_cvdm._widgets import train as train_widget
from napari_cvdm._widgets.checks import RECONSTRUCT_FIELDS, field_problem, fields_problem
from napari_cvdm._widgets.reconstruct import LOAD_FROM_FILE, ReconstructWidget
from napari_cvdm._widgets.train import TrainWidget

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def sr_model(tmp_path_factory):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_model

    loaded = make_untrained_model("sr", "tiny", seed=1)
    folder = tmp_path_factory.mktemp("models")
    return save_model(folder / "sr_tiny.safetensors", loaded.model, loaded.metadata)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def reconstruct(make_napari_viewer, cache, sr_model):
    viewer = make_napari_viewer()
    data = (100 + np.random.default_rng(0).poisson(50, (32, 32))).astype(np.float32)
    viewer.add_image(data, name="wf", scale=(0.0626, 0.0626))
    widget = ReconstructWidget(viewer)
    widget.model.value = LOAD_FROM_FILE
    widget.model_file.value = Path(sr_model)
    widget.steps.value, widget.samples.value = 2, 2
    widget.device.value = "cpu"
    assert widget.problem() is None, widget.problem()
    return viewer, widget


def _one_notification(widget, severity):
    with common.recording_notifications() as seen:
        widget.run()
    assert len(seen) == 1, seen
    assert seen[0][0] == severity, seen
    assert widget.worker is None and widget.status.idle
    return seen[0][1]


def test_field_problems_use_the_cli_ranges():
    assert field_problem("pixel_size_um", 0.0, "pixel size (µm)", zero_unknown=True) is None
    assert "0.0626" in field_problem("pixel_size_um", 62.6, "Pixel size (µm)", True)
    assert "Learning rate" in field_problem("lr", float("nan"), "Learning rate")
    assert field_problem("tile", 0, "tile size (px)") is None  # 0: whole frame

    class Form:
        pass

    form = Form()
    for attr in RECONSTRUCT_FIELDS:
        setattr(form, attr, type("F", (), {"value": 0})())
    form.samples.value = form.steps.value = 1
    form.dz_um.value = 0.0001  # below the range, but QPI only
    assert fields_problem(form, RECONSTRUCT_FIELDS, "sr") is None
    assert "dz (µm)" in fields_problem(form, RECONSTRUCT_FIELDS, "qpi")


def test_reconstruct_refuses_a_pixel_size_in_nm(reconstruct):
    viewer, widget = reconstruct
    widget.pixel_size_um.value = 62.6  # nm typed as µm
    problem = widget.problem()
    assert problem.startswith("Pixel size (µm) must be") and "0.0626" in problem
    assert not widget.run_button.widget.enabled
    assert _one_notification(widget, "warning") == problem
    assert [layer.name for layer in viewer.layers] == ["wf"]


def test_reconstruct_refuses_a_resampling_factor_the_cli_refuses(reconstruct):
    viewer, widget = reconstruct
    widget.pixel_size_um.value = 1.0  # in range, but 16× the model's sampling
    problem = widget.problem()  # said before Run (Run disabled), not only when pressed
    assert "resampling" in problem and "µm" in problem and not widget.run_button.widget.enabled
    message = _one_notification(widget, "warning")
    assert message == problem
    assert [layer.name for layer in viewer.layers] == ["wf"]


def test_reconstruct_refuses_an_offset_above_the_image(reconstruct):
    viewer, widget = reconstruct
    widget.offset_adu.value = 60000.0  # typed by the user
    message = _one_notification(widget, "error")
    assert "the camera offset 60000 ADU is above most of wf" in message
    assert [layer.name for layer in viewer.layers] == ["wf"]


@pytest.fixture
def trainer(make_napari_viewer, cache, monkeypatch):
    notes = []
    monkeypatch.setattr(
        train_widget, "notify", lambda message, severity="error": notes.append((severity, message))
    )
    before = torch.get_num_threads()
    viewer = make_napari_viewer()
    viewer.add_image(np.ones((32, 32)), name="wf")
    viewer.add_image(np.ones((64, 64)), name="gt")
    widget = TrainWidget(viewer)
    widget.input_layer.value = viewer.layers["wf"]
    widget.target_layer.value = viewer.layers["gt"]
    widget.source.value = "synthetic"
    widget.preset.value = "tiny"
    widget.device.value = "cpu"
    yield widget, notes
    torch.set_num_threads(before)


@pytest.mark.parametrize("text", ["nan", "0", "-1e-4", "inf", "2"])
def test_train_refuses_a_learning_rate_out_of_range(trainer, text):
    widget, notes = trainer
    widget.lr.value = text
    widget.start()
    assert not widget.running
    assert len(notes) == 1 and notes[0][0] == "warning", notes
    assert notes[0][1].startswith("Learning rate must be")


def test_train_refuses_a_run_that_does_not_fit_in_memory(trainer, cache):
    widget, notes = trainer
    widget.preset.value = "base"
    widget.batch.value = 1024
    widget.patch.value = 1024
    widget.start()
    assert not widget.running
    assert len(notes) == 1 and "of memory" in notes[0][1] and "--batch" in notes[0][1], notes
    assert not (cache / "models").exists() or not list((cache / "models").iterdir())


def test_train_refuses_an_unwritable_models_folder(trainer, cache):
    widget, notes = trainer
    cache.mkdir(parents=True, exist_ok=True)
    (cache / "models").write_text("a file where the models folder should be")
    widget.start()
    assert not widget.running
    assert len(notes) == 1 and "models" in notes[0][1], notes
