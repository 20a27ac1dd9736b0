"""The Train widget (docs/usage.md, "Train"): train or fine-tune a model from layers or folders.

A ``QWidget`` with magicgui sub-widgets (public attributes, so tests set values directly), a
**Train/Stop** toggle, live loss and validation curves (matplotlib ``FigureCanvasQTAgg``, at most
~5 redraws per second) and a preview layer refreshed at every validation. The training generator
(``workflows.train.train``) runs in a napari thread worker; layers and widgets change only in the
worker's callbacks on the main thread. Stop sets a flag the trainer checks every step: it saves
a checkpoint and the model, then finishes. The model lands in the user models folder
(``engine.registry.user_models_dir()``) so the Reconstruct widget lists it at once; the
checkpoint (``<name>.ckpt``) sits beside it, and "Resume" continues from it.

Importing this module imports no torch (the workflows are imported when training starts).
"""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    LineEdit,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog, QFrame, QScrollArea, QVBoxLayout, QWidget

from .. import tasks
from ..defaults import LR_SCHEDULES, PRESETS
from ..errors import UserError
from ..failures import internal_message, user_message
from ..train_settings import TRAIN_DEFAULTS, read_settings, write_settings
from ..workflows.preflight import check_train_run
from .checks import TRAIN_FIELDS, field_problem, fields_problem
from .common import MODEL_EVENTS, TRAIN_PREVIEW, notify
from .train_plot import LossPlot

if TYPE_CHECKING:
    import napari

__all__ = ["PREVIEW_LAYER", "TrainWidget"]

PREVIEW_LAYER = TRAIN_PREVIEW
SCRATCH = "(new model from scratch)"
SOURCES = ("layers", "folder", "synthetic")
#: settings the widget has a field for (the others in a settings file are the CLI's)
WIDGET_SETTINGS = (
    "task", "data", "base_model", "preset", "freeze_schedule", "steps", "batch", "patch", "lr",
    "lr_schedule", "val_fraction", "val_every", "device", "name",
)  # fmt: skip


def _pixel_size(layer: Any) -> float | None:
    """A layer's X pixel size in µm, or None when it is napari's default 1 without units."""
    scale = float(layer.scale[-1])
    units = getattr(layer, "units", None)
    unit = str(units[-1]) if units is not None and len(units) else ""
    if scale == 1.0 and unit in ("", "pixel", "px"):
        return None
    factor = {"micrometer": 1.0, "um": 1.0, "µm": 1.0, "nanometer": 1e-3, "nm": 1e-3}.get(unit, 1.0)
    return scale * factor


def _refuse_overwrite(output: Path, base: str | None, resume: bool) -> None:
    """Never replace a user's model or checkpoint by a new run (resuming continues it)."""
    if base is not None and (base == output.stem or Path(base).resolve() == output.resolve()):
        raise UserError(
            f"the new model {output.stem!r} would overwrite its own base model; choose another "
            "model name"
        )
    if resume:
        return
    taken = [p for p in (output, output.with_suffix(".ckpt")) if p.exists()]
    if taken:
        raise UserError(
            f"a model named {output.stem!r} already exists ({taken[0]}); choose another model "
            "name, or tick 'Resume from checkpoint' to continue its training"
        )


class _FolderData:
    """A paired folder read in the worker thread (reading many files must not freeze napari)."""

    def __init__(self, task: str, folder: Path, val_fraction: float) -> None:
        self.task, self.folder, self.val_fraction = task, folder, val_fraction

    def load(self) -> Any:
        from ..workflows.training_data import make_training_data

        return make_training_data(self.task, self.folder, val_fraction=self.val_fraction)


def _training_events(config: Any, stop: threading.Event, data: Any) -> Any:
    """The trainer's events, after the measured time estimate; a folder is read here, in the
    worker thread, before the first step."""
    from ..workflows.train import train
    from ..workflows.train_estimate import estimate_training

    if isinstance(data, _FolderData):
        data = data.load()
        _check_patch(data, config.patch)
        if stop.is_set():  # Stop pressed while the folder was read: no run, no model
            return
    yield estimate_training(config)
    if stop.is_set():
        return
    yield from train(config, stop, data=data)


def _check_patch(data: Any, patch: int) -> None:
    """Refuse, before any work, a patch larger than the training images (paired data)."""
    pairs = getattr(data, "train_pairs", None)
    if not pairs:
        return
    smallest = min(min(p.target.shape[-2:]) for p in pairs)
    if patch > smallest:
        raise UserError(
            f"patch size {patch} is larger than the training images ({smallest} px on the target "
            "grid after the validation split); choose a patch size of at most "
            f"{smallest - smallest % 8}"
        )


class TrainWidget(QWidget):
    """Train / fine-tune a CVDM model inside napari."""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self._make_fields()
        self._lay_out()
        self._estimator: Any = None
        # docked under Reconstruct on a 1080p screen, Qt gives this widget at least the height
        # down to the Train button (about 300 px); the rest scrolls
        self.setMinimumHeight(self._basic_height())
        self.worker: Any = None
        self.model_path: Path | None = None
        self.finished_event: Any = None
        self._stop = threading.Event()
        self._job: Any = None

        self._connect()
        self._fill_devices()
        self._task_changed()

    def _make_fields(self) -> None:
        """The form's widgets (public attributes: tests set their values directly), with the
        defaults of ``napari_cvdm.defaults`` (the same as ``napari-cvdm train``)."""
        self.task = ComboBox(label="Task", choices=list(tasks.names(trainable=True)), value="sr")
        self.source = ComboBox(label="Data", choices=list(SOURCES), value="layers")
        self.input_layer = ComboBox(label="Input", choices=self._input_choices, nullable=True)
        self.target_layer = ComboBox(label="Target", choices=self._target_choices, nullable=True)
        self.folder = FileEdit(label="Folder", mode="d")
        self.base_model = ComboBox(label="Base model", choices=[SCRATCH], value=SCRATCH)
        d = TRAIN_DEFAULTS  # the same defaults as `napari-cvdm train`
        self.preset = ComboBox(label="Size", choices=list(PRESETS), value=d["preset"])
        self.freeze_schedule = CheckBox(label="Freeze schedule", value=False)
        self.steps = SpinBox(label="Steps", min=1, max=10_000_000, value=d["steps"])
        self.batch = SpinBox(label="Batch", min=1, max=1024, value=d["batch"])
        self.patch = SpinBox(label="Patch size", min=16, max=1024, step=8, value=d["patch"])
        self.lr = LineEdit(label="Learning rate", value="auto")
        schedules = sorted(LR_SCHEDULES, key=lambda name: name != d["lr_schedule"])  # default 1st
        self.lr_schedule = ComboBox(label="LR schedule", choices=schedules, value=d["lr_schedule"])
        self.val_fraction = FloatSpinBox(
            label="Validation split", min=0.0, max=0.5, step=0.05, value=d["val_fraction"]
        )
        self.val_every = SpinBox(label="Validate every", min=1, max=1_000_000, value=d["val_every"])
        self.device = ComboBox(label="Device", choices=["auto"], value="auto")
        self.name = LineEdit(label="Model name", value="my-sr-model")
        self.resume = CheckBox(label="Resume from checkpoint", value=False)
        self.train_button = PushButton(text="Train")
        self.save_button = PushButton(text="Save model as…", enabled=False)
        self.status = Label(value="idle")
        self.estimate_button = PushButton(text="Estimate time")
        self.estimate = Label(value="")
        self.estimate.tooltip = (
            "Measured on the chosen device: a few training steps of this network at this batch "
            "and patch size (data loading not included)"
        )
        self.save_settings_button = PushButton(text="Save settings…")
        self.load_settings_button = PushButton(text="Load settings…")
        self.show_advanced = CheckBox(text="Advanced settings", value=False)

    def _lay_out(self) -> None:
        """The form (the rarely changed fields folded under "Advanced settings"), the loss plot
        and the scroll area that keeps the widget no taller than the dock."""
        # the form fits a 1080p screen beside Reconstruct: the rarely changed fields fold away
        self.advanced = Container(
            widgets=[
                self.device,
                self.preset,
                self.freeze_schedule,
                self.batch,
                self.patch,
                self.lr,
                self.lr_schedule,
                self.val_fraction,
                self.val_every,
                Container(
                    widgets=[self.save_settings_button, self.load_settings_button],
                    layout="horizontal",
                    labels=False,
                ),
            ],
            visible=False,
        )
        self.advanced.margins = (0, 0, 0, 0)
        self.form = Container(
            widgets=[
                self.task,
                self.source,
                self.input_layer,
                self.target_layer,
                self.folder,
                self.base_model,
                self.steps,
                self.name,
                self.resume,
                Container(
                    widgets=[self.train_button, self.estimate_button, self.save_button],
                    layout="horizontal",
                    labels=False,
                ),
                self.estimate,
                self.status,
                self.show_advanced,
                self.advanced,
            ]
        )
        for label in (self.estimate, self.status):
            label.native.setWordWrap(True)
        self.plot = LossPlot(self)
        self.plot.canvas.setMinimumHeight(150)
        self.plot.setVisible(False)  # shown from the first Train on: the form alone fits 1080p
        content = QWidget()
        inner = QVBoxLayout(content)
        inner.setContentsMargins(0, 0, 0, 0)
        inner.addWidget(self.form.native)
        inner.addWidget(self.plot)
        self.scroll = QScrollArea()  # never taller than the dock: scrolls instead
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setWidget(content)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scroll)

    def _connect(self) -> None:
        """Signals: the form's fields, the buttons, and the viewer's layer list."""
        self.task.changed.connect(self._task_changed)
        self.source.changed.connect(self._refresh_visibility)
        self.name.changed.connect(self._refresh_resume)
        self.base_model.changed.connect(self._refresh_visibility)
        self.train_button.changed.connect(self._toggle)
        self.save_button.changed.connect(self._save_as_dialog)
        self.show_advanced.changed.connect(lambda v: setattr(self.advanced, "visible", bool(v)))
        self.estimate_button.changed.connect(self.start_estimate)
        self.save_settings_button.changed.connect(self._save_settings_dialog)
        self.load_settings_button.changed.connect(self._load_settings_dialog)
        for field in (self.task, self.steps, self.batch, self.patch, self.preset, self.device):
            field.changed.connect(lambda *_: setattr(self.estimate, "value", ""))  # stale now
        events = self.viewer.layers.events
        for name in ("inserted", "removed", "reordered"):
            getattr(events, name).connect(self.reset_choices)

    def _basic_height(self) -> int:
        """Pixels from the top of the form down to the Train button (the estimate, status,
        advanced section and plot scroll below it)."""
        layout = self.form.native.layout()
        last = [*self.form].index(self.estimate) - 1
        rows = [*self.form][: last + 1]  # down to the button row
        shown = [w.native for w in rows if not w.native.isHidden()]
        spacing = max(layout.spacing(), 0)
        margins = layout.contentsMargins()
        heights = sum(max(w.sizeHint().height(), w.minimumSizeHint().height()) for w in shown)
        return heights + spacing * len(shown) + margins.top() + margins.bottom()

    # --- napari hooks -------------------------------------------------------------------

    def reset_choices(self, *_: Any) -> None:
        """napari calls this when layers change: refresh the layer pickers."""
        self.input_layer.reset_choices()
        self.target_layer.reset_choices()

    def _image_layers(self, min_ndim: int) -> list[tuple[str, Any]]:
        from napari.layers import Image

        return [
            (f"{layer.name}  {'×'.join(str(n) for n in layer.data.shape)}", layer)
            for layer in self.viewer.layers
            if isinstance(layer, Image)
            and layer.ndim >= min_ndim
            and not layer.rgb
            and layer.name != PREVIEW_LAYER
        ]

    def _input_choices(self, *_: Any) -> list[tuple[str, Any]]:
        """Image layers usable as inputs: SR any ≥ 2-D image, QPI stacks (≥ 3-D)."""
        return self._image_layers(tasks.get(self.task.value).min_input_ndim)

    def _target_choices(self, *_: Any) -> list[tuple[str, Any]]:
        return self._image_layers(2)

    # --- form state ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.worker is not None

    def _fill_devices(self) -> None:
        try:
            from .common import device_choices

            self.device.choices = [value for _label, value in device_choices()]
        except (ImportError, RuntimeError):  # torch missing: keep "auto"
            self.device.choices = ["auto"]

    def _task_changed(self, *_: Any) -> None:
        task = self.task.value
        try:
            from ..engine.registry import list_models

            names = [info.name for info in list_models(task)]
        except (ImportError, UserError):
            names = []
        self.base_model.choices = [SCRATCH, *names]
        self.base_model.value = SCRATCH
        self.reset_choices()
        if re.fullmatch(r"my-(sr|qpi)-model", self.name.value or ""):
            self.name.value = f"my-{task}-model"
        self._refresh_visibility()

    def _refresh_visibility(self, *_: Any) -> None:
        layers = self.source.value == "layers"
        self.input_layer.visible = layers
        self.target_layer.visible = layers
        self.folder.visible = self.source.value == "folder"
        scratch = self.base_model.value == SCRATCH
        self.preset.visible = scratch
        self.freeze_schedule.visible = not scratch
        self._refresh_resume()

    def output_path(self) -> Path:
        """Where the model file goes: ``<user models>/<name>.safetensors``."""
        from ..engine.registry import user_models_dir

        name = (self.name.value or "").strip()
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
            raise UserError(
                f"model name {name!r} must start with a letter or digit and hold only letters, "
                "digits, '.', '_' and '-'"
            )
        return user_models_dir() / f"{name}.safetensors"

    def _refresh_resume(self, *_: Any) -> None:
        try:
            exists = self.output_path().with_suffix(".ckpt").is_file()
        except UserError:
            exists = False
        self.resume.enabled = exists
        if not exists:
            self.resume.value = False

    def _data_source(self) -> Any:
        """The training data for the current form (snapshot of the layers' arrays)."""
        from ..workflows.training_data import PairedImages, make_training_data

        task = self.task.value
        if self.source.value == "synthetic":
            return make_training_data(task, "synthetic", seed=0)
        if self.source.value == "folder":
            folder = Path(str(self.folder.value))
            if str(self.folder.value) in ("", ".") or not folder.is_dir():
                raise UserError(
                    f"training folder {str(folder)!r} does not exist; choose a folder holding "
                    "input/ and target/ subfolders"
                )
            return _FolderData(task, folder, self.val_fraction.value)
        x_layer, y_layer = self.input_layer.value, self.target_layer.value
        if x_layer is None or y_layer is None:
            raise UserError("choose an input and a target image layer (or use a folder)")
        if x_layer is y_layer:
            raise UserError("the input and target layers are the same layer; choose two layers")
        return PairedImages(
            task,
            [np.asarray(x_layer.data).copy()],
            [np.asarray(y_layer.data).copy()],
            names=[f"{x_layer.name} → {y_layer.name}"],
            input_pixel_size_um=[_pixel_size(x_layer)],
            target_pixel_size_um=[_pixel_size(y_layer)],
            val_fraction=self.val_fraction.value,
            description={"source": "layers", "input": x_layer.name, "target": y_layer.name},
        )

    def make_config(self) -> Any:
        """A ``TrainConfig`` from the form (raises ``UserError`` for bad fields)."""
        from ..workflows.train import TrainConfig

        text = (self.lr.value or "auto").strip().lower()
        try:
            lr = None if text in ("", "auto") else float(text)
        except ValueError:
            raise UserError(
                f"learning rate {text!r} is not a number; use e.g. 1e-4 or 'auto'"
            ) from None
        problem = fields_problem(self, TRAIN_FIELDS) or (  # the CLI's ranges, one line
            None if lr is None else field_problem("lr", lr, "Learning rate")
        )
        if problem:
            raise UserError(problem)
        output = self.output_path()
        base = None if self.base_model.value == SCRATCH else self.base_model.value
        _refuse_overwrite(output, base, resume=bool(self.resume.value))
        config = TrainConfig(
            task=self.task.value,
            output=output,
            data="widget",
            steps=self.steps.value,
            batch=self.batch.value,
            patch=self.patch.value,
            lr=lr,
            lr_schedule=self.lr_schedule.value,
            preset=self.preset.value,
            base_model=base,
            freeze_schedule=bool(self.freeze_schedule.value and base),
            resume=output.with_suffix(".ckpt") if self.resume.value else None,
            device=self.device.value,
            val_every=self.val_every.value,
            ckpt_every=max(self.val_every.value, 100),
            val_fraction=self.val_fraction.value,
            name=output.stem,
            command="napari Train widget",
        )
        config.validate()
        return config

    # --- run / stop ---------------------------------------------------------------------

    def _toggle(self, *_: Any) -> None:
        if self.running:
            self.stop()
        else:
            self.start()

    def start(self) -> None:
        """Snapshot the form and start training in a thread worker (no-op while running)."""
        if self.running:
            return
        try:
            config = self.make_config()
            data = self._data_source()
            if not isinstance(data, _FolderData):
                _check_patch(data, config.patch)
            # writable models folder, disk for a checkpoint and the model, memory for a step
            check_train_run(config)
        except UserError as exc:
            notify(str(exc), "warning")
            return
        except OSError as exc:  # the models folder itself cannot be created or listed
            notify(user_message(exc) or str(exc), "warning")
            return
        from napari.qt.threading import create_worker

        self.plot.setVisible(True)
        self.plot.start(config.task)
        self.model_path = None
        self.finished_event = None
        self._stop.clear()
        self._job = _training_events(config, self._stop, data)
        job = self._job

        def run_job():
            yield from job

        # errors are shown by _on_error (one notification), not re-raised in the main thread
        self.worker = create_worker(run_job, _ignore_errors=True)
        self.worker.yielded.connect(self._on_event)
        self.worker.errored.connect(self._on_error)
        self.worker.finished.connect(self._on_finished)
        # a hard quit (closing napari) leaves the generator paused: close it right there, in the
        # worker thread, so the trainer writes its checkpoint
        self.worker.aborted.connect(self._close_job, Qt.ConnectionType.DirectConnection)
        self.train_button.text = "Stop"
        self.save_button.enabled = False
        self.status.value = "starting…"
        self.worker.start()

    def stop(self) -> None:
        """Ask the trainer to stop after the current step (it saves a checkpoint and the model)."""
        if not self.running:
            return
        self._stop.set()
        self.train_button.text = "Stopping…"
        self.train_button.enabled = False
        self.status.value = "stopping after this step (saving checkpoint)…"

    def _close_job(self) -> None:
        job, self._job = self._job, None
        if job is not None:
            job.close()

    # --- worker callbacks (main thread) ------------------------------------------------

    def _on_event(self, event: Any) -> None:
        from ..workflows.events import Finished, LossReport, Progress, Validation
        from ..workflows.train_estimate import TrainEstimate

        if isinstance(event, TrainEstimate):
            self.estimate.value = event.describe()
            self.status.value = "training…"
        elif isinstance(event, LossReport):
            self.plot.add_loss(event.step, event.losses, event.lr)
        elif isinstance(event, Progress):
            loss = self.history.losses.get("total", [float("nan")])[-1]
            self.status.value = f"step {event.step}/{event.total}  loss {loss:.4g}"
        elif isinstance(event, Validation):
            self.plot.add_validation(event.step, event.metrics)
            self._show_preview(event.preview)
        elif isinstance(event, Finished):
            self.finished_event = event
            self.model_path = Path(event.result)

    def _show_preview(self, preview: Any) -> None:
        if preview is None:
            return
        data = np.asarray(preview, dtype=np.float32)
        if PREVIEW_LAYER in self.viewer.layers:
            self.viewer.layers[PREVIEW_LAYER].data = data
        else:
            self.viewer.add_image(
                data,
                name=PREVIEW_LAYER,
                colormap="gray",
                contrast_limits=(0, 1),
                metadata={TRAIN_PREVIEW: "the Train widget's validation preview"},
            )

    def _on_error(self, exc: BaseException) -> None:
        """One line: the user's problem (bad data, full disk, out of memory, divergence) in the
        CLI's words, or a bug with the log file holding its traceback."""
        if isinstance(exc, FloatingPointError):
            notify(str(exc), "error")
            return
        message = user_message(exc)
        if message is None:
            message = f"training failed: {internal_message(exc, 'napari-cvdm Train widget')}"
        notify(message, "error")

    def _on_finished(self) -> None:
        self.worker = None
        self._job = None
        self.plot.stop()
        self.train_button.text = "Train"
        self.train_button.enabled = True
        event = self.finished_event
        if event is not None:
            state = "stopped" if event.cancelled else "finished"
            self.status.value = f"{state} at step {event.info.get('steps')}: {self.model_path.name}"
            self.save_button.enabled = True
            MODEL_EVENTS.saved.emit(str(self.model_path))
            notify(
                f"model {self.model_path.stem!r} saved ({state}); it is listed in Reconstruct",
                "info",
            )
        else:
            self.status.value = "idle"
        self._refresh_resume()
        self._task_changed_keep_name()
        import gc

        gc.collect()

    def _task_changed_keep_name(self) -> None:
        current = self.base_model.value
        self._task_changed()
        if current in self.base_model.choices:
            self.base_model.value = current

    @property
    def history(self) -> Any:
        """The ``TrainHistory`` of the current (or last) run."""
        return self.plot.history

    # --- time estimate ----------------------------------------------------------------

    def start_estimate(self, *_: Any) -> None:
        """Measure the training time of the form's run in a worker (the GUI stays live)."""
        if self.running or self._estimator is not None:
            return
        try:
            config = self.make_config()
        except UserError as exc:
            notify(str(exc), "warning")
            return
        from napari.qt.threading import create_worker

        from ..workflows.train_estimate import estimate_training

        self.estimate.value = "measuring a few training steps…"
        self.estimate_button.enabled = False
        self._estimator = create_worker(estimate_training, config, _ignore_errors=True)
        self._estimator.returned.connect(lambda e: setattr(self.estimate, "value", e.describe()))
        self._estimator.errored.connect(
            lambda exc: setattr(self.estimate, "value", f"no estimate: {exc}")
        )
        self._estimator.finished.connect(self._estimate_done)
        self._estimator.start()

    def _estimate_done(self) -> None:
        self._estimator = None
        self.estimate_button.enabled = True

    # --- settings files ---------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """The form as training settings (the file format of ``train --config``)."""
        text = (self.lr.value or "auto").strip().lower()
        try:
            lr = None if text in ("", "auto") else float(text)
        except ValueError:
            raise UserError(
                f"learning rate {text!r} is not a number; use e.g. 1e-4 or 'auto'"
            ) from None
        data = None
        if self.source.value == "synthetic":
            data = "synthetic"
        elif self.source.value == "folder" and str(self.folder.value) not in ("", "."):
            data = str(Path(str(self.folder.value)).resolve())
        return {
            "task": self.task.value,
            "data": data,
            "base_model": None if self.base_model.value == SCRATCH else self.base_model.value,
            "preset": self.preset.value,
            "freeze_schedule": bool(self.freeze_schedule.value),
            "steps": self.steps.value,
            "batch": self.batch.value,
            "patch": self.patch.value,
            "lr": lr,
            "lr_schedule": self.lr_schedule.value,
            "val_fraction": float(self.val_fraction.value),
            "val_every": self.val_every.value,
            "device": self.device.value,
            "name": (self.name.value or "").strip() or None,
        }

    def apply_settings(self, settings: dict[str, Any]) -> list[str]:
        """Fill the form from training settings; returns the keys it has no field for (the
        CLI's). Raises ``UserError`` for a value the form cannot take."""
        if "task" in settings:
            if settings["task"] not in tasks.names(trainable=True):
                raise UserError(f"task must be 'sr' or 'qpi', got {settings['task']!r}")
            self.task.value = settings["task"]
        data = settings.get("data")
        if data == "synthetic":
            self.source.value = "synthetic"
        elif data:
            self.source.value = "folder"
            self.folder.value = data
        base = settings.get("base_model") or SCRATCH
        if base not in self.base_model.choices:
            raise UserError(
                f"base model {base!r} is not listed for task {self.task.value}; train or copy it "
                "into the user models folder first"
            )
        self.base_model.value = base
        for key in ("preset", "lr_schedule", "device"):
            if key in settings:
                combo = getattr(self, key)
                values = [c[1] if isinstance(c, tuple) else c for c in combo.choices]
                if settings[key] not in values:
                    raise UserError(f"{key} {settings[key]!r} is not one of {values}")
                combo.value = settings[key]
        for key in ("steps", "batch", "patch", "val_every", "val_fraction", "freeze_schedule"):
            if key in settings:
                getattr(self, key).value = settings[key]
        if "lr" in settings:
            self.lr.value = "auto" if settings["lr"] is None else repr(float(settings["lr"]))
        if settings.get("name"):
            self.name.value = settings["name"]
        return [k for k in settings if k not in WIDGET_SETTINGS]

    def save_settings(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the form's settings (a file `napari-cvdm train --config` reads)."""
        return write_settings(path, self.settings(), overwrite)

    def load_settings(self, path: str | Path) -> list[str]:
        """Fill the form from a settings file; returns the CLI-only keys it kept aside."""
        return self.apply_settings(read_settings(path))

    def _save_settings_dialog(self, *_: Any) -> None:
        target, _filter = QFileDialog.getSaveFileName(
            self, "Save training settings", str(Path.home() / "train-settings.json"),
            "Training settings (*.json)",
        )  # fmt: skip
        if target:  # the dialog already asked before replacing a file
            try:
                notify(f"training settings saved to {self.save_settings(target, True)}", "info")
            except (UserError, OSError) as exc:
                notify(f"could not save the settings: {exc}", "error")

    def _load_settings_dialog(self, *_: Any) -> None:
        source, _filter = QFileDialog.getOpenFileName(
            self, "Load training settings", str(Path.home()), "Training settings (*.json)"
        )
        if source:
            try:
                aside = self.load_settings(source)
            except UserError as exc:
                notify(str(exc), "warning")
                return
            note = f" (command-line only, not used here: {', '.join(aside)})" if aside else ""
            notify(f"training settings loaded from {source}{note}", "info")

    # --- save ---------------------------------------------------------------------------

    def save_model_as(self, path: str | Path) -> Path:
        """Copy the trained model file to ``path`` (a ``.safetensors`` file)."""
        if self.model_path is None or not self.model_path.is_file():
            raise UserError("no trained model yet; press Train first")
        path = Path(path)
        if path.suffix != ".safetensors":
            path = path.with_name(path.name + ".safetensors")
        tmp = path.with_name(f".{path.name}.tmp")
        shutil.copyfile(self.model_path, tmp)
        tmp.replace(path)
        return path

    def _save_as_dialog(self, *_: Any) -> None:
        if self.model_path is None:
            return
        target, _filter = QFileDialog.getSaveFileName(
            self, "Save model as", str(Path.home() / self.model_path.name), "Model (*.safetensors)"
        )
        if target:
            try:
                notify(f"model saved to {self.save_model_as(target)}", "info")
            except (UserError, OSError) as exc:
                notify(f"could not save the model: {exc}", "error")
