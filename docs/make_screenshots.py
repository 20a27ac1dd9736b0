"""Render the napari screenshots used in docs/usage.md (and the README picture).

Run under a real X server (never ``QT_QPA_PLATFORM=offscreen``, vispy crashes there)::

    xvfb-run -a .venv/bin/python docs/make_screenshots.py

It opens napari with the Reconstruct widget, loads the synthetic samples, runs an SR and a QPI
reconstruction on the CPU and writes ``docs/images/*.png``: grid views with a scale bar (µm) and
a colour bar per panel, the Reconstruct and Train widgets docked together in a 1920 × 1080
window, the widget refusing a through-focus stack in SR mode, and the Reconstruct widget after
a batch of three layers. ``--only sr batch refusal qpi`` renders those groups alone (``sr``:
``reconstruct_sr.png``, ``sr_mean_std_schedule.png``, ``widgets_1080p.png``; ``batch``:
``reconstruct_batch.png``; ``refusal``: ``reconstruct_through_focus.png``; ``qpi``:
``qpi_phase_std.png``). The bundled default models are used when they are installed
(``napari_cvdm/models/``); otherwise tiny UNTRAINED random-weight models are built on the fly,
the pictures then show the layout only, and the script says so.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("NAPARI_CVDM_DEVICE", "cpu")  # reproducible pictures, any machine

HERE = Path(__file__).resolve().parent


def _model_for(task: str, folder: Path) -> tuple[Path, bool]:
    """The bundled default model of ``task``, else a tiny untrained one saved in ``folder``."""
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import default_model, make_untrained_model

    info = default_model(task)
    if info is not None:
        return info.path, False
    loaded = make_untrained_model(task, "tiny", seed=0)
    return save_model(folder / f"untrained_{task}.safetensors", loaded.model, loaded.metadata), True


def _wait_idle(widget, timeout_s: float = 1200.0) -> None:
    from qtpy.QtWidgets import QApplication

    start = time.monotonic()
    while not widget.status.idle:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError("the reconstruction did not finish in time")
        QApplication.processEvents()
        time.sleep(0.01)
    for _ in range(20):  # let napari draw the new layers
        QApplication.processEvents()
        time.sleep(0.02)


def _show_only(viewer, names: list[str]) -> None:
    for layer in viewer.layers:
        layer.visible = layer.name in names


def _dismiss_notifications() -> None:
    """Close napari's notification pop-ups: they would cover the scale bar (what they say is
    also in the widget's status or summary line)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    for toast in QApplication.instance().allWidgets():
        if isinstance(toast, NapariQtNotification) and toast.isVisible():
            toast.close()


def _shot(viewer, path: Path, canvas_only: bool = False) -> None:
    from qtpy.QtWidgets import QApplication

    _dismiss_notifications()
    for _ in range(10):
        QApplication.processEvents()
        time.sleep(0.02)
    viewer.screenshot(str(path), canvas_only=canvas_only, flash=False)
    print(f"wrote {path}")


def _colour_bars(viewer, names: list[str]) -> None:
    """A colour bar on each shown layer (its unit is in the figure caption in docs/usage.md;
    napari's colour bar has no label); the scale bar reads µm from the layers' units."""
    for layer in viewer.layers:
        layer.colorbar.visible = layer.name in names


def _run(widget, model: Path, steps: int, samples: int) -> None:
    from napari_cvdm._widgets.reconstruct import LOAD_FROM_FILE

    widget.model.value = LOAD_FROM_FILE
    widget.model_file.value = model
    widget.steps.value, widget.samples.value, widget.seed.value = steps, samples, 0
    widget.run()
    _wait_idle(widget)
    if widget.batch.active:
        if widget.batch.last_run.summary.failed:
            raise RuntimeError(f"batch failed: {widget.batch.last_run.summary.text()}")
    elif widget.last_run.failed is not None:
        raise RuntimeError(f"reconstruction failed: {widget.last_run.failed}")


def _batch_shot(viewer, widget, model: Path, out: Path, steps: int, samples: int) -> None:
    """The Reconstruct widget in batch mode after reconstructing three widefield layers (the
    synthetic sample and two simulated structures), their means side by side."""
    import numpy as np

    from napari_cvdm.physics.fluorescence import simulate_sr_pair

    viewer.layers.clear()
    widget.mode.value = "sr"
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    rng = np.random.default_rng(7)
    inputs = ["sr_widefield"]
    for structure in ("er", "ccps"):
        sample = simulate_sr_pair(rng, structure=structure)
        px = sample.metadata["widefield_pixel_size_um"]
        name = f"widefield_{structure}"
        viewer.add_image(sample.widefield, name=name, scale=(px, px), units=("µm", "µm"))
        inputs.append(name)
    widget.batch.source.value = "layers"
    widget.batch.layers.value = [c for c in widget.batch.layers.choices if c.name in inputs]
    _run(widget, model, steps, samples)
    print(widget.batch.last_run.summary.text())
    means = [f"{name}_cvdm" for name in inputs]
    _show_only(viewer, means)
    for name in reversed(means):  # grid order follows the layer list, last layer first
        viewer.layers.move(viewer.layers.index(name), len(viewer.layers))
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (1, 3)
    viewer.layers.selection.active = viewer.layers[means[0]]
    viewer.reset_view()
    _shot(viewer, out / "reconstruct_batch.png")
    viewer.canvas.grid.enabled = False
    widget.batch.source.value = "single"


def _refusal_shot(viewer, widget, out: Path) -> None:
    """The widget in SR mode with the synthetic through-focus stack picked: the status line
    says it is a through-focus stack and Run is disabled (nothing runs)."""
    viewer.layers.clear()
    viewer.open_sample("napari-cvdm", "qpi_synthetic")  # selected: the widget proposes QPI
    widget.mode.value = "sr"  # the user switches back to SR
    if widget.run_button.widget.enabled or "through-focus" not in widget.status_label.value:
        raise RuntimeError(f"the through-focus stack was not refused: {widget.status_label.value}")
    _show_only(viewer, ["qpi_through_focus"])
    viewer.layers.selection.active = viewer.layers["qpi_through_focus"]
    viewer.reset_view()
    _shot(viewer, out / "reconstruct_through_focus.png")
    viewer.layers.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--samples", type=int, default=4)
    parser.add_argument(
        "--only",
        nargs="+",
        choices=["sr", "batch", "refusal", "qpi"],
        default=None,
        help="render only these groups of pictures (see the module docstring)",
    )
    args = parser.parse_args(argv)
    wanted = set(args.only or ("sr", "batch", "refusal", "qpi"))
    args.out.mkdir(parents=True, exist_ok=True)

    import napari

    with tempfile.TemporaryDirectory() as tmp:
        sr_model, sr_untrained = _model_for("sr", Path(tmp))
        qpi_model, qpi_untrained = _model_for("qpi", Path(tmp))

        viewer = napari.Viewer(title="napari CVDM", show=True)
        viewer.window.resize(1500, 900)
        viewer.canvas.overlays.scale_bar.visible = True
        dock, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")

        if "sr" in wanted:
            _sr_shots(viewer, dock, widget, sr_model, args)
        if "batch" in wanted:  # --- three layers one after the other, the summary in the form
            _batch_shot(viewer, widget, sr_model, args.out, args.steps, args.samples)
        if "refusal" in wanted:  # --- a through-focus stack in SR mode: one message, no run
            _refusal_shot(viewer, widget, args.out)
        if "qpi" in wanted:
            _qpi_shot(viewer, dock, widget, qpi_model, args)
        viewer.close()

    untrained = [t for t, u in (("SR", sr_untrained), ("QPI", qpi_untrained)) if u]
    if untrained:
        print(
            f"NOTE: no bundled {' and '.join(untrained)} model installed; the pictures use tiny "
            "UNTRAINED random-weight models and show the layout only. Re-run after the trained "
            "models are in src/napari_cvdm/models/."
        )
    return 0


def _sr_shots(viewer, dock, widget, sr_model: Path, args: argparse.Namespace) -> None:
    """The widget beside an SR reconstruction, the README grid, the two widgets at 1080p."""
    viewer.layers.clear()
    viewer.open_sample("napari-cvdm", "sr_synthetic")
    _run(widget, sr_model, args.steps, args.samples)
    _show_only(viewer, ["sr_widefield_cvdm"])
    viewer.layers.selection.active = viewer.layers["sr_widefield_cvdm"]
    viewer.reset_view()
    _shot(viewer, args.out / "reconstruct_sr.png")

    # --- SR: input, mean, std and schedule side by side (the README picture)
    panels = ["sr_widefield", "sr_widefield_cvdm", "sr_widefield_cvdm_std",
              "sr_widefield_cvdm_schedule"]  # fmt: skip
    _show_only(viewer, panels)
    _colour_bars(viewer, panels)
    for name in panels:  # grid order follows the layer list, last layer first
        viewer.layers.move(viewer.layers.index(name), len(viewer.layers))
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (2, 2)
    viewer.reset_view()
    dock.hide()  # a larger canvas for the canvas-only pictures
    _shot(viewer, args.out / "sr_mean_std_schedule.png", canvas_only=True)
    dock.show()
    viewer.canvas.grid.enabled = False
    _colour_bars(viewer, [])

    # --- Reconstruct and Train docked together in a 1920 x 1080 window (docs/usage.md)
    window = viewer.window._qt_window
    window.showNormal()
    window.setGeometry(0, 0, 1920, 1080)
    train_dock, _train = viewer.window.add_plugin_dock_widget("napari-cvdm", "Train")
    _show_only(viewer, ["sr_widefield"])
    viewer.layers.selection.active = viewer.layers["sr_widefield"]
    viewer.reset_view()
    _shot(viewer, args.out / "widgets_1080p.png")
    viewer.window.remove_dock_widget(train_dock)
    viewer.window.resize(1500, 900)


def _qpi_shot(viewer, dock, widget, qpi_model: Path, args: argparse.Namespace) -> None:
    """QPI: through-focus stack, ground truth, phase and its uncertainty (a grid)."""
    viewer.layers.clear()
    widget.mode.value = "qpi"
    viewer.open_sample("napari-cvdm", "qpi_synthetic")
    _run(widget, qpi_model, args.steps, args.samples)
    panels = ["qpi_through_focus", "qpi_phase_ground_truth", "qpi_through_focus_cvdm",
              "qpi_through_focus_cvdm_std"]  # fmt: skip
    _show_only(viewer, panels)
    _colour_bars(viewer, panels)
    for name in panels:
        viewer.layers.move(viewer.layers.index(name), len(viewer.layers))
    viewer.canvas.grid.enabled = True
    viewer.canvas.grid.shape = (2, 2)
    viewer.dims.set_point(viewer.dims.ndim - 3, -1.0)  # the plane at -dz shows the contrast
    dock.hide()
    viewer.reset_view()
    _shot(viewer, args.out / "qpi_phase_std.png", canvas_only=True)
    dock.show()
    viewer.canvas.grid.enabled = False


if __name__ == "__main__":
    sys.exit(main())
