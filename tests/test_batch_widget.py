"""The Reconstruct widget's batch mode in a real napari viewer (Xvfb, CPU, tiny models).

Several layers (results as layers) or a folder (files written as `napari-cvdm predict` writes
them): progress per input, a failing input listed and skipped over, Cancel within one sampler
step with nothing written for the stopped input, and the summary.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from numpy.testing import assert_allclose, assert_array_equal

from napari_cvdm import datasets
from napari_cvdm._widgets import common
from napari_cvdm._widgets.batch_job import BatchSummary
from napari_cvdm._widgets.reconstruct import LOAD_FROM_FILE, ReconstructWidget
from napari_cvdm.io import write_tiff

pytestmark = pytest.mark.gui

TIMEOUT_MS = 120_000


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
    dock, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    assert isinstance(widget, ReconstructWidget)
    widget.threads.value = 1
    return viewer, widget


def _fast(widget: ReconstructWidget, model: Path, steps: int = 2, samples: int = 2) -> None:
    widget.model.value = LOAD_FROM_FILE
    widget.model_file.value = model
    widget.steps.value, widget.samples.value = steps, samples


def _widefield(seed: int, size: int = 32) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = (100 + rng.poisson(50, size=(size, size))).astype(np.float32)
    image[size // 3 : size // 3 + 3, :] += 400
    return image


def _run_batch(qtbot, widget: ReconstructWidget) -> list[tuple[str, str]]:
    with common.recording_notifications() as seen:
        widget.run()
        qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    return seen


def test_summary_text_is_one_line_per_problem():
    summary = BatchSummary(total=4, done=["a.tif"], seconds=3.25)
    summary.failed.append(("c.tif", "Input problem: cannot read c.tif"))
    summary.skipped.append(("b.tif", "its outputs are already in out (tick overwrite)"))
    assert summary.lines() == [
        "Batch of 4 inputs finished in 3.2 s: 1 done, 1 failed, 1 skipped",
        "failed: c.tif: Input problem: cannot read c.tif",
        "skipped: b.tif: its outputs are already in out (tick overwrite)",
    ]
    summary.cancelled, summary.not_started = "d.tif (nothing written)", ["e.tif"]
    assert summary.headline().startswith("Batch of 4 inputs cancelled after 3.2 s")
    assert summary.headline().endswith("; stopped d.tif (nothing written); 1 not started")


def test_layers_batch_adds_layers_and_lists_failures(viewer_widget, models, qtbot):
    viewer, widget = viewer_widget
    viewer.add_image(_widefield(0), name="a", scale=(0.0626, 0.0626), units=("µm", "µm"))
    viewer.add_image(_widefield(1), name="b", scale=(0.0626, 0.0626), units=("µm", "µm"))
    nan = _widefield(2)
    nan[3, 3] = np.nan  # refused in the worker by the task adapter
    viewer.add_image(nan, name="nan")
    stack = np.ones((3, 32, 32), np.float32)  # a through-focus stack: refused before the start
    viewer.add_image(stack, name="focus", metadata={"z_offsets_um": [-1.0, 0.0, 1.0]})
    widget.mode.value = "sr"  # selecting the stack proposed QPI
    _fast(widget, models["sr"])
    widget.batch.source.value = "layers"
    assert widget.image.native.isHidden() and not widget.batch.layers.native.isHidden()
    assert not widget.run_button.widget.enabled  # nothing picked yet
    assert "Pick the layers" in widget.status_label.value
    widget.batch.layers.value = [c for c in widget.batch.layers.choices if c is not None]
    assert widget.run_button.widget.enabled, widget.problem()
    assert widget.status_label.value.startswith("ready: batch of 4 layer(s)")

    seen = _run_batch(qtbot, widget)
    (note,) = seen  # one notification: the summary
    assert note[0] == "warning"
    summary = widget.batch.last_run.summary
    assert summary.done == ["a", "b"]
    reasons = dict(summary.failed)
    assert set(reasons) == {"nan", "focus"}
    assert "NaN" in reasons["nan"] and "through-focus" in reasons["focus"]
    assert all("\n" not in r and "Traceback" not in r for r in reasons.values())
    assert note[1].splitlines()[0].startswith("Batch of 4 inputs finished in ")
    assert "2 done, 2 failed, 0 skipped" in note[1]
    assert widget.batch.summary.value == note[1]
    for name in ("a", "b"):
        mean = viewer.layers[f"{name}_cvdm"]
        assert mean.data.shape == (64, 64) and np.isfinite(mean.data).all()
        assert_allclose(mean.scale, (0.0313, 0.0313))
        assert mean.metadata["cvdm"]["status"] == "complete"
        assert f"{name}_cvdm_std" in viewer.layers and f"{name}_cvdm_schedule" in viewer.layers
    assert "nan_cvdm" not in viewer.layers and "focus_cvdm" not in viewer.layers
    assert widget.status.idle and widget.run_button.widget.text == "Run"


def test_qpi_layers_batch_takes_each_layers_own_geometry(viewer_widget, models, qtbot):
    from napari_cvdm.physics.qpi import simulate_qpi_stack

    viewer, widget = viewer_widget
    rng = np.random.default_rng(3)
    viewer.add_image(
        simulate_qpi_stack(rng, size=32, planes=3).stack,
        name="zstack",
        scale=(0.5, 0.21, 0.21),
        units=("µm", "µm", "µm"),
    )
    frames = np.stack([simulate_qpi_stack(rng, size=32, planes=3).stack for _ in range(2)])
    viewer.add_image(
        frames,
        name="tz",
        scale=(5.0, 1.0, 0.21, 0.21),
        units=("s", "µm", "µm", "µm"),
        axis_labels=("t", "z", "y", "x"),
    )
    widget.mode.value = "qpi"
    _fast(widget, models["qpi"])
    widget.batch.source.value = "layers"
    assert widget.focus_axis.native.isHidden()  # each layer's axis before Y
    widget.batch.layers.value = [c for c in widget.batch.layers.choices if c is not None]
    _run_batch(qtbot, widget)
    assert widget.batch.last_run.summary.done == ["zstack", "tz"]
    z = viewer.layers["zstack_cvdm"]
    assert z.data.shape == (32, 32)
    assert z.metadata["cvdm"]["optics"]["dz_um"] == pytest.approx(0.5)  # planes 0, 2 at 0.5 µm
    tz = viewer.layers["tz_cvdm"]
    assert tz.data.shape == (2, 1, 32, 32) and tz.axis_labels == ("t", "z", "y", "x")
    assert tz.metadata["cvdm"]["optics"]["dz_um"] == pytest.approx(1.0)
    assert_allclose(tz.scale, (5.0, 3.0, 0.21, 0.21))


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "in"
    folder.mkdir()
    for i, name in enumerate(("a", "b")):
        write_tiff(folder / f"{name}.tif", _widefield(i).astype(np.uint16), 0.0626, {})
    (folder / "c.tif").write_bytes(b"this is not a TIFF file" * 10)  # unreadable
    write_tiff(folder / "tiny.tif", np.full((4, 4), 200, np.uint16), 0.0626, {})  # too small
    (folder / "notes.txt").write_text("not an image, not listed")
    return folder


def test_folder_batch_writes_like_predict_skips_existing_and_overwrites(
    viewer_widget, models, qtbot, tmp_path
):
    from napari_cvdm import cli

    viewer, widget = viewer_widget
    folder, out = _folder(tmp_path), tmp_path / "out"
    _fast(widget, models["sr"])
    widget.batch.source.value = "folder"
    assert "input folder" in widget.run_button.widget.tooltip
    widget.batch.input_dir.value = folder
    assert "output folder" in widget.run_button.widget.tooltip
    widget.batch.output_dir.value = out
    assert widget.run_button.widget.enabled, widget.problem()
    layers_before = len(viewer.layers)

    start = time.monotonic()
    (note,) = _run_batch(qtbot, widget)
    first = time.monotonic() - start
    summary = widget.batch.last_run.summary
    assert summary.done == ["a.tif", "b.tif"] and summary.skipped == []
    reasons = dict(summary.failed)
    assert set(reasons) == {"c.tif", "tiny.tif"}
    assert "could not read" in reasons["c.tif"].lower() and "minimum 8×8" in reasons["tiny.tif"]
    assert "2 done, 2 failed, 0 skipped" in note[1]
    assert len(viewer.layers) == layers_before  # folder mode adds no layers
    names = sorted(p.name for p in out.iterdir())
    assert names == [f"{s}_{k}.tif" for s in ("a", "b") for k in ("mean", "schedule", "std")]

    # the same pixels and names as `napari-cvdm predict` with the same settings
    cli_out = tmp_path / "cli"
    argv = ["predict", str(folder / "a.tif"), "--model", str(models["sr"]), "--output-dir",
            str(cli_out), "--samples", "2", "--steps", "2", "--seed", "0", "--threads", "1",
            "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0
    for kind in ("mean", "std", "schedule"):
        assert_array_equal(
            tifffile.imread(out / f"a_{kind}.tif"), tifffile.imread(cli_out / f"a_{kind}.tif")
        )

    # again: the written inputs are skipped (never overwritten silently), the others fail again
    stamp = (out / "a_mean.tif").stat().st_mtime_ns
    (note,) = _run_batch(qtbot, widget)
    summary = widget.batch.last_run.summary
    assert summary.done == [] and [n for n, _ in summary.skipped] == ["a.tif", "b.tif"]
    assert "tick overwrite" in summary.skipped[0][1]
    assert "0 done, 2 failed, 2 skipped" in note[1]
    assert (out / "a_mean.tif").stat().st_mtime_ns == stamp
    # with overwrite: replaced
    widget.batch.overwrite.value = True
    _run_batch(qtbot, widget)
    assert widget.batch.last_run.summary.done == ["a.tif", "b.tif"]
    assert (out / "a_mean.tif").stat().st_mtime_ns != stamp
    print(f"folder batch of 4 files (2 written): {first:.1f} s")


def test_an_input_failing_while_its_bar_is_made_leaves_no_bar(qtbot, monkeypatch):
    # napari's activity panel processes Qt events while it adds a progress bar, so the events
    # of an input that fails at once (an unreadable file) and the worker's end can arrive
    # before ``progress(...)`` returns: that input's bar must still be closed, not left
    # spinning in the activity panel after the batch
    import napari.utils

    from napari_cvdm._widgets.batch import BatchRun
    from napari_cvdm._widgets.batch_job import FileItem, ItemFailed, ItemStarted
    from napari_cvdm._widgets.common import RunState, RunStatus

    made, ended = [], []
    run = BatchRun(
        [FileItem("z.tif", None)], {}, BatchSummary(total=1), None, 1, RunStatus(), ended.append
    )
    run.status.update(state=RunState.RUNNING)
    real = napari.utils.progress

    class ReentrantProgress(real):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)
            if len(made) == 1:  # what processEvents delivers while the bar is added
                run.handle(ItemFailed(0, "z.tif", OSError("not a TIFF file")))
                run._on_finished()

    monkeypatch.setattr(napari.utils, "progress", ReentrantProgress)
    run.handle(ItemStarted(0, "z.tif"))
    assert ended and [n for n, _ in ended[0].failed] == ["z.tif"]
    assert made and all(bar not in real._all_instances for bar in made)
    assert run._file is None
    # an input that is still running keeps its bar
    run = BatchRun(
        [FileItem("a.tif", None)], {}, BatchSummary(total=1), None, 1, RunStatus(), ended.append
    )
    run.worker = object()
    run.handle(ItemStarted(0, "a.tif"))
    assert run._file is made[-1] and run._file in real._all_instances
    run._file.close()


def test_folder_batch_refuses_its_input_folder_as_output(viewer_widget, models, qtbot, tmp_path):
    viewer, widget = viewer_widget
    folder = _folder(tmp_path)
    _fast(widget, models["sr"])
    widget.batch.source.value = "folder"
    widget.batch.input_dir.value = folder
    widget.batch.output_dir.value = folder
    (note,) = _run_batch(qtbot, widget)
    assert note[0] == "error" and "output folder is the input folder" in note[1]
    assert "\n" not in note[1]
    assert sorted(p.name for p in folder.iterdir()) == ["a.tif", "b.tif", "c.tif", "notes.txt",
                                                         "tiny.tif"]  # fmt: skip


def test_cancel_stops_within_a_step_writes_nothing_and_starts_no_more(
    viewer_widget, models, qtbot, tmp_path
):
    viewer, widget = viewer_widget
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    for i in range(3):
        write_tiff(folder / f"f{i}.tif", _widefield(i, 48).astype(np.uint16), 0.0626, {})
    _fast(widget, models["sr"], steps=2000, samples=1)  # long enough to cancel in f0
    widget.batch.source.value = "folder"
    widget.batch.input_dir.value = folder
    widget.batch.output_dir.value = out
    with common.recording_notifications() as seen:
        widget.run()
        run = widget.batch.running
        qtbot.waitUntil(lambda: run.current == 0 and widget.status.step >= 1, timeout=TIMEOUT_MS)
        assert widget.run_button.widget.text == "Cancel"
        assert widget.status_label.value.startswith("1/3 f0.tif: ")
        widget.cancel()
        assert widget.run_button.widget.text == "Cancelling…"
        qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)
    latency = run.stopped_time - run.cancel_time
    print(f"cancel latency: {latency * 1000:.0f} ms (steps of {run.summary.cancelled})")
    assert latency < 5.0
    summary = run.summary
    assert summary.done == [] and summary.failed == []
    assert summary.cancelled == "f0.tif (nothing written)"
    assert summary.not_started == ["f1.tif", "f2.tif"]
    (note,) = seen
    assert note[0] == "info" and "cancelled after" in note[1] and "2 not started" in note[1]
    assert list(out.iterdir()) == []  # no partial file, no staging folder left
    assert widget.run_button.widget.text == "Run" and widget.batch.running is None


def test_batch_form_fits_a_1080p_screen_with_train(
    make_napari_viewer, tmp_path, monkeypatch, qtbot
):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    viewer = make_napari_viewer(show=True)
    window = viewer.window._qt_window
    window.showNormal()
    window.setGeometry(0, 0, 1920, 1080)
    rdock, recon = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    viewer.window.add_plugin_dock_widget("napari-cvdm", "Train")
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    for source in ("layers", "folder", "single"):
        recon.batch.source.value = source
        qtbot.wait(50)
        assert window.height() == 1080
        run = recon.run_button.widget.native
        top = run.mapTo(window, run.rect().topLeft()).y()
        dock_top = rdock.mapTo(window, rdock.rect().topLeft()).y()
        assert run.isVisible() and dock_top <= top and top + run.height() <= 1080, source
