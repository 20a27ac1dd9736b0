"""The Train widget beside Reconstruct on a 1080p screen, its defaults, time estimate and
settings files (real napari under Xvfb, CPU).

Measured: in a 1920 × 1080 napari window with Reconstruct docked first and Train under it (as
a user opens them from the Plugins menu), the window stays 1080 px high and both the Run and
the Train button are on screen, without scrolling, in SR and in QPI mode.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_cvdm._widgets.reconstruct import ReconstructWidget
from napari_cvdm._widgets.train import TrainWidget
from napari_cvdm.cli import build_parser
from napari_cvdm.train_settings import TRAIN_DEFAULTS, read_settings
from napari_cvdm.workflows.train_estimate import TrainEstimate

pytestmark = pytest.mark.gui


@pytest.fixture
def viewer(make_napari_viewer, tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    return make_napari_viewer(show=True)


def _y_range(widget, window) -> tuple[int, int]:
    top = widget.mapTo(window, widget.rect().topLeft()).y()
    return top, top + widget.height()


def _inside(inner, outer, window) -> bool:
    (a, b), (c, d) = _y_range(inner, window), _y_range(outer, window)
    return inner.isVisible() and c <= a and b <= d


def test_train_fits_a_1080p_screen_under_reconstruct(viewer, qtbot):
    window = viewer.window._qt_window
    window.showNormal()
    window.setGeometry(0, 0, 1920, 1080)
    rdock, recon = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    tdock, train = viewer.window.add_plugin_dock_widget("napari-cvdm", "Train")
    assert isinstance(recon, ReconstructWidget) and isinstance(train, TrainWidget)
    for sample in ("sr_synthetic", "qpi_synthetic"):
        viewer.open_sample("napari-cvdm", sample)
        if sample == "sr_synthetic":
            viewer.layers.selection.active = viewer.layers["sr_widefield"]
        qtbot.wait(50)
        assert recon.mode.value == ("sr" if sample == "sr_synthetic" else "qpi")
        assert window.height() == 1080  # nothing pushed off the screen
        run, train_button = recon.run_button.widget.native, train.train_button.native
        assert _inside(run, rdock, window)
        assert _inside(train_button, tdock, window)
        assert _inside(train_button, train.scroll.viewport(), window)  # no scrolling needed
        assert _y_range(tdock, window)[1] <= 1080
    # the form down to the Train button is about 300 px; the rest folds or scrolls
    assert train.minimumHeight() < 340
    assert not train.advanced.visible and not train.plot.isVisible()
    train.show_advanced.value = True
    qtbot.wait(20)
    assert train.batch.native.isVisible() and window.height() == 1080


def test_widget_and_cli_start_the_same_run(viewer):
    train = TrainWidget(viewer)
    cli = build_parser().parse_args(["train", "--task", "sr", "--data", "synthetic",
                                      "--output", "m.safetensors"])  # fmt: skip
    for key in ("steps", "batch", "patch", "val_every", "val_fraction"):
        assert getattr(train, key).value == getattr(cli, key) == TRAIN_DEFAULTS[key], key
    assert train.lr_schedule.value == cli.lr_schedule == TRAIN_DEFAULTS["lr_schedule"]
    assert train.preset.value == cli.preset == TRAIN_DEFAULTS["preset"]
    assert TRAIN_DEFAULTS["steps"] == 2000


def test_time_estimate_before_the_first_step(viewer, qtbot, monkeypatch):
    from napari_cvdm.workflows.events import LossReport

    train = TrainWidget(viewer)
    train.source.value = "synthetic"
    train.preset.value = "tiny"
    train.batch.value, train.patch.value, train.steps.value = 2, 32, 2
    train.device.value = "cpu"
    train.name.value = "estimate-test"
    train.start_estimate()  # the button: measured in a worker, the GUI stays live
    qtbot.waitUntil(lambda: train._estimator is None, timeout=60_000)
    text = train.estimate.value
    assert text.startswith("estimated training time on cpu: about ") and "for 2 steps" in text

    order = []
    original = train._on_event

    def spy(event):
        order.append(type(event).__name__)
        original(event)

    monkeypatch.setattr(train, "_on_event", spy)
    train.start()
    qtbot.waitUntil(lambda: not train.running, timeout=120_000)
    assert order[0] == TrainEstimate.__name__  # shown before step 1
    assert LossReport.__name__ in order[1:]
    assert train.estimate.value.startswith("estimated training time on cpu")


def test_settings_file_round_trip_widget_and_cli(viewer, tmp_path, capsys):
    train = TrainWidget(viewer)
    train.task.value = "qpi"
    train.source.value = "synthetic"
    train.steps.value, train.batch.value, train.patch.value = 1234, 4, 48
    train.lr.value = "2e-4"
    train.lr_schedule.value = "constant"
    train.val_every.value = 50
    train.name.value = "cells-qpi"
    path = train.save_settings(tmp_path / "run.json")
    saved = json.loads(path.read_text())
    assert saved["napari_cvdm_train_settings"] == 1 and saved["task"] == "qpi"
    assert saved["data"] == "synthetic" and saved["steps"] == 1234 and saved["lr"] == 2e-4
    with pytest.raises(Exception, match="already exists"):  # never replaced silently
        train.save_settings(path)

    other = TrainWidget(viewer)
    assert other.load_settings(path) == []
    assert (other.task.value, other.source.value, other.steps.value) == ("qpi", "synthetic", 1234)
    assert (other.batch.value, other.patch.value, other.val_every.value) == (4, 48, 50)
    assert other.lr.value == "0.0002" and other.lr_schedule.value == "constant"
    assert other.name.value == "cells-qpi"

    # a file with a CLI-only key: the widget keeps it aside and says which
    body = {**saved, "val_steps": 5}
    (tmp_path / "cli.json").write_text(json.dumps(body))
    assert other.load_settings(tmp_path / "cli.json") == ["val_steps"]
    assert read_settings(tmp_path / "cli.json")["val_steps"] == 5


def test_bad_settings_file_is_one_line(viewer, tmp_path):
    from napari_cvdm.errors import InputError

    train = TrainWidget(viewer)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"napari_cvdm_train_settings": 1, "stpes": 10}))
    with pytest.raises(InputError, match="unknown training setting 'stpes'"):
        train.load_settings(bad)
    bad.write_text(json.dumps({"napari_cvdm_train_settings": 1, "steps": "many"}))
    with pytest.raises(InputError, match="steps must be int"):
        train.load_settings(bad)
    bad.write_text("{not json")
    with pytest.raises(InputError, match="cannot read training settings"):
        train.load_settings(bad)
    assert train.steps.value == TRAIN_DEFAULTS["steps"]  # the form is unchanged
    assert np.isfinite(train.val_fraction.value)
