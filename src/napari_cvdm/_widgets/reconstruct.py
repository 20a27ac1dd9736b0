"""The Reconstruct widget: CVDM super-resolution (SR) or quantitative phase (QPI) in napari.

A :class:`magicgui.widgets.Container` whose sub-widgets are public attributes (tests set values
and call :meth:`ReconstructWidget.run` / :meth:`ReconstructWidget.cancel` directly). Run
snapshots the inputs into a :class:`~._widgets.reconstruct_job.ReconstructionJob` and starts a
napari thread worker over :func:`napari_cvdm.workflows.predict.reconstruct`; layers, the progress
bar and the form change only in the worker's callbacks (main thread).

Importing this module imports no torch (the engine and workflows are imported in functions);
building the widget imports torch to list the devices.
"""

from __future__ import annotations

import contextlib
from collections.abc import Collection
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    SpinBox,
)

from .. import tasks
from ..assumptions import Assumptions
from ..defaults import SAMPLER, SAMPLERS, SAMPLES, SAMPLING_STEPS
from ..engine.threads import auto_threads
from ..errors import UserError
from . import common
from .batch import BatchForm
from .checks import RECONSTRUCT_FIELDS, fields_problem, preflight_job
from .common import MODEL_EVENTS, TRAIN_PREVIEW, RunButton, RunState, RunStatus
from .inputs import (
    ModelHeaders,
    dz_from_layer,
    implied_task,
    metadata_number,
    metadata_offset,
    pixel_size_um,
)
from .outputs import OutputLayers, layer_geometry, output_names
from .reconstruct_job import (
    ReconstructionJob,
    default_threads,
    describe_model,
    memory_warning,
    select_frames,
)
from .reconstruct_run import ReconstructionRun
from .settings import load_settings, save_setting

if TYPE_CHECKING:
    import napari

__all__ = ["LOAD_FROM_FILE", "ReconstructWidget"]

LOAD_FROM_FILE = "<load model from file>"
SETTINGS = "reconstruct"  # section of the persisted widget settings
LOAD_LABEL = "Load model from file…"
MODES = [(tasks.get(name).mode_label, name) for name in tasks.names(reconstructs=True)]
CURRENT, ALL = "current frame", "all frames"
#: form fields whose value may come from the layer, the model or the user (see ``_sources``)
_OPTICS = ("wavelength_um", "na", "offset_adu")


def _fmt(value: float) -> str:
    return f"{value:.4g}"


class ReconstructWidget(Container):
    """Reconstruct an image layer with a CVDM model; see the module docstring and docs/usage.md."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.status = RunStatus()
        self.last_run: ReconstructionRun | None = None
        self._extra_models: list[str] = []
        self._touched: set[str] = set()  # fields whose GPU/CPU defaults the user overrode
        self._setting_defaults = False
        self._headers = ModelHeaders()
        # where each optics field's value came from: "layer", "model", "user" or None (unknown)
        self._sources: dict[str, str | None] = dict.fromkeys((*_OPTICS, "pixel_size_um", "dz_um"))
        self._filling = False  # True while the form fills fields itself (not a user edit)
        self._filled_for: Any = None  # the layer the optics fields were filled from
        self._last_active: Any = None  # the active layer seen last (a new one proposes a mode)
        self._mode_note = ""  # why the mode was switched to follow the selected layer

        self._make_fields()
        self._lay_out()
        self._connect(viewer)
        self._on_active_layer()
        self._on_device()
        self._on_image()
        self._on_model()

    def _make_fields(self) -> None:
        """The form's widgets (public attributes: tests set their values directly); sampling
        defaults from ``napari_cvdm.defaults``, modes from the tasks."""
        self.mode = ComboBox(label="mode", choices=MODES, value="sr")
        self.image = ComboBox(label="image", choices=self._image_choices)
        self.image_info = Label(label="")
        self.model = ComboBox(label="model", choices=self._model_choices)
        self.model_file = FileEdit(label="model file", mode="r", filter="*.safetensors")
        self.model_info = Label(label="")
        self.pixel_size_um = FloatSpinBox(
            label="pixel size (µm)", min=0.0, max=100.0, step=0.0001, value=0.0
        )
        self.pixel_size_um.tooltip = "Input pixel size; 0 = unknown (assume the model's)"
        self.wavelength_um = FloatSpinBox(
            label="wavelength (µm)", min=0.0, max=10.0, step=0.001, value=0.0
        )
        self.na = FloatSpinBox(label="NA", min=0.0, max=1.7, step=0.01, value=0.0)
        self.offset_adu = FloatSpinBox(
            label="camera offset (ADU)", min=0.0, max=65535.0, step=1.0, value=0.0
        )
        self.offset_adu.tooltip = (
            "Camera offset (dark level) subtracted before normalising; from the layer's "
            "metadata (offset_adu) when it has one, else the model's training value"
        )
        self.focus_axis = SpinBox(label="focus axis", min=0, max=0, value=0)
        self.plane_minus = SpinBox(label="plane at −dz", min=0, max=0, value=0)
        self.plane_plus = SpinBox(label="plane at +dz", min=0, max=0, value=0)
        self.dz_um = FloatSpinBox(label="dz (µm)", min=0.0, max=1000.0, step=0.01, value=0.0)
        self.dz_um.tooltip = "Defocus of the two planes from focus (half their distance)"
        self.qpi_box = Container(
            widgets=[self.focus_axis, self.plane_minus, self.plane_plus, self.dz_um],
            labels=True,
            visible=False,
        )
        self.qpi_box.margins = (0, 0, 0, 0)
        self.samples = SpinBox(label="samples", min=1, max=256, value=SAMPLES)
        self.steps = SpinBox(label="steps", min=1, max=2000, value=SAMPLING_STEPS)
        self.sampler = ComboBox(label="sampler", choices=list(SAMPLERS), value=SAMPLER)
        self.seed = SpinBox(label="seed", min=0, max=2**31 - 1, value=0)
        self.device = ComboBox(label="device", choices=common.device_choices())
        self.device_info = Label(label="")
        self.threads = SpinBox(label="CPU threads", min=0, max=256, value=0)
        self.threads.tooltip = "torch threads on the CPU; 0 = automatic (free cores minus one)"
        self.tile_size = SpinBox(label="tile size (px)", min=0, max=8192, step=16, value=0)
        self.tile_size.tooltip = "Tiles blended every step (output-grid pixels); 0 = whole frame"
        self.frames = ComboBox(label="frames", choices=[CURRENT, ALL], value=ALL)
        self.keep_previous = CheckBox(text="keep previous results", value=False)
        self.run_button = RunButton(self.status, self.run, self.cancel)
        self.status_label = Label(label="")
        self.show_more = CheckBox(text="more options (sampler, seed, threads, tiles)", value=False)
        self.more = Container(
            widgets=[self.sampler, self.seed, self.threads, self.tile_size, self.keep_previous],
            labels=True,
            visible=False,
        )
        self.more.margins = (0, 0, 0, 0)
        self.show_more.changed.connect(lambda v: setattr(self.more, "visible", bool(v)))
        self.batch = BatchForm(self)  # one layer, several layers or a folder (_widgets/batch.py)

    def _lay_out(self) -> None:
        """The form's order, tooltips and wrapping labels."""
        self.extend(
            [
                self.mode,
                self.batch.source,
                self.image,
                self.image_info,
                self.batch.box,
                self.model,
                self.model_file,
                self.model_info,
                self.pixel_size_um,
                self.wavelength_um,
                self.na,
                self.offset_adu,
                self.qpi_box,
                self.samples,
                self.steps,
                self.device,
                self.device_info,
                self.frames,
                self.show_more,
                self.more,
                self.run_button.widget,
                self.status_label,
            ]
        )
        self.device.tooltip = common.device_tooltip()
        for label in (self.image_info, self.model_info, self.device_info, self.status_label):
            label.native.setWordWrap(True)  # long lines wrap instead of widening the dock
        self.model_file.visible = False

    def _connect(self, viewer: napari.viewer.Viewer) -> None:
        """Signals: the form's fields, the saved settings, the run status and the viewer's
        active layer."""
        self.mode.changed.connect(self._on_mode)
        self.image.changed.connect(self._on_image)
        self.model.changed.connect(self._on_model)
        MODEL_EVENTS.saved.connect(self._on_model_saved)
        self.model_file.changed.connect(self._on_model_file)
        self._restore_settings()
        self.device.changed.connect(self._on_device)
        self.device.changed.connect(lambda *_: save_setting(SETTINGS, "device", self.device.value))
        self.threads.changed.connect(
            lambda *_: save_setting(SETTINGS, "threads", self.threads.value)
        )
        self.focus_axis.changed.connect(self._on_focus_axis)
        self.plane_minus.changed.connect(self._update_dz)
        self.plane_plus.changed.connect(self._update_dz)
        self.samples.changed.connect(lambda *_: self._touch("samples"))
        self.steps.changed.connect(lambda *_: self._touch("steps"))
        for widget in (
            self.pixel_size_um, self.wavelength_um, self.na, self.dz_um,
            self.steps, self.tile_size, self.frames, self.offset_adu,
        ):  # fmt: skip
            widget.changed.connect(self.validate)
        for key in (*_OPTICS, "pixel_size_um", "dz_um"):
            getattr(self, key).changed.connect(lambda *_, key=key: self._user_set(key))
        self.status.changed.connect(self._show_status)
        viewer.layers.selection.events.active.connect(self._on_active_layer)

    def _restore_settings(self) -> None:
        """The device and thread count chosen in an earlier session (when still valid)."""
        saved = load_settings(SETTINGS)
        devices = [c[1] if isinstance(c, tuple) else c for c in self.device.choices]
        if saved.get("device") in devices:
            self.device.value = saved["device"]
        threads = saved.get("threads")
        if isinstance(threads, int) and 0 <= threads <= self.threads.max:
            self.threads.value = threads

    # ------------------------------------------------------------------ choices

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        need = tasks.get(self.mode.value).min_input_ndim if hasattr(self, "mode") else 2
        out = []
        for layer in self.viewer.layers:
            if not isinstance(layer, Image) or layer.ndim < need or layer.rgb:
                continue
            if not self._is_input(layer):
                continue
            shape = "×".join(str(s) for s in layer.data.shape)
            out.append((f"{layer.name} ({shape})", layer))
        return out

    @staticmethod
    def _is_input(layer: Any) -> bool:
        """Our own outputs and the Train widget's preview are never inputs."""
        meta = layer.metadata or {}
        return "cvdm" not in meta and TRAIN_PREVIEW not in meta and layer.name != TRAIN_PREVIEW

    def _model_choices(self, _widget: Any = None) -> list[tuple[str, str]]:
        from ..engine.registry import list_models

        task = self.mode.value if hasattr(self, "mode") else "sr"
        out = [(f"{info.name} [{info.source}]", str(info.path)) for info in list_models(task)]
        listed = {value for _, value in out}
        for path in self._extra_models:
            meta = self._model_meta(path)
            if path not in listed and isinstance(meta, dict) and meta["task"] == task:
                out.append((f"{meta['name']} [file]", path))
        out.append((LOAD_LABEL, LOAD_FROM_FILE))
        return out

    def _model_meta(self, path: str | Path | None) -> dict[str, Any] | Exception | None:
        """The model header, or the ModelFileError it raised (cached)."""
        return self._headers.get(path)

    def model_path(self) -> Path | None:
        """The chosen model file, or None (no file chosen yet)."""
        value = self.model.value
        if value == LOAD_FROM_FILE:
            chosen = self.model_file.value
            if chosen is None or str(chosen) in ("", ".") or not Path(chosen).is_file():
                return None
            return Path(chosen)
        return None if value is None else Path(value)

    # ------------------------------------------------------------------ form logic

    def _layer(self) -> Any:
        return self.image.value

    def reset_choices(self, *_: Any) -> None:
        """Called by napari when layers are inserted, removed or reordered."""
        super().reset_choices()
        self._on_active_layer()

    def _on_active_layer(self, *_: Any) -> None:
        """Follow the layer list: a newly selected input proposes its mode (a through-focus
        stack → QPI, a 2-D image → SR) and becomes the picker's choice."""
        from napari.layers import Image

        active = self.viewer.layers.selection.active
        if not self.status.idle or active is None:
            return
        if not isinstance(active, Image) or active.rgb or not self._is_input(active):
            return
        new = active is not self._last_active
        self._last_active = active
        task, why = implied_task(active)
        if new and task is not None and task != self.mode.value:
            note = f"mode set to {task.upper()} for {active.name}: {why}"
            self.mode.value = task  # _on_mode re-lists the layers and selects the active one
            self._mode_note = note
            self.validate()
            return
        if new:
            self._mode_note = ""
        self._select_active()

    def _select_active(self) -> None:
        """Make the active layer the picker's choice when it is one (napari hands plugins
        proxies: compare names)."""
        active = self.viewer.layers.selection.active
        current = self.image.value
        if active is None or (current is not None and current.name == active.name):
            return
        for choice in self.image.choices:
            if choice is not None and choice.name == active.name:
                self.image.value = choice
                return

    def _on_model_saved(self, _path: str) -> None:
        """A model was trained into the user models folder: list it (keeps the current choice)."""
        with contextlib.suppress(RuntimeError):  # the dock's Qt widget is already deleted
            self.model.reset_choices()

    def _on_mode(self, *_: Any) -> None:
        self._mode_note = ""
        spec = tasks.get(self.mode.value)
        self.qpi_box.visible = spec.focus_stack
        self.na.visible = "na" in spec.optics_fields
        self.offset_adu.visible = "offset_adu" in spec.optics_fields
        self.image.reset_choices()
        self.batch.layers.reset_choices()
        self._select_active()
        self.model.reset_choices()
        self._on_image()
        self._on_model()

    def _on_image(self, *_: Any) -> None:
        layer = self._layer()
        if layer is None:
            self.image_info.value = "no suitable image layer"
            self.validate()
            return
        px = pixel_size_um(layer)
        shape = f"{layer.ndim}-D {tuple(layer.data.shape)}"
        if px is not None:
            self.image_info.value = f"{shape}, pixel {_fmt(px)} µm"
        else:
            self.image_info.value = f"{shape}, no pixel size in µm (set it below)"
        meta = layer.metadata or {}
        if layer is not self._filled_for:  # another layer: nothing of the previous one stays
            self._filled_for = layer
            px = px or metadata_number(meta, "pixel_size_um")
            self._fill("pixel_size_um", px or 0.0, "layer" if px else None)
            for key in _OPTICS:  # an offset of 0 is a real value
                value = metadata_offset(meta) if key == "offset_adu" else metadata_number(meta, key)
                self._fill(key, value or 0.0, "layer" if value is not None else None)
            self._sources["dz_um"] = None
        spec = tasks.get(self.mode.value)
        leading = layer.ndim - spec.min_input_ndim
        self.frames.enabled = leading > 0
        if spec.focus_stack and layer.ndim >= spec.min_input_ndim:
            self.focus_axis.max = layer.ndim - 3
            self.focus_axis.value = layer.ndim - 3
            self._on_focus_axis()
        self._prefill_optics_from_model(only_missing=True)
        self.validate()

    def _on_focus_axis(self, *_: Any) -> None:
        layer = self._layer()
        if layer is None or layer.ndim < 3:
            return
        nz = int(layer.data.shape[self.focus_axis.value])
        for spin in (self.plane_minus, self.plane_plus):
            spin.max = max(nz - 1, 0)
        self.plane_minus.value = 0
        self.plane_plus.value = max(nz - 1, 0)
        self._update_dz()

    def _update_dz(self, *_: Any) -> None:
        """dz: half the distance of the two planes (see ``inputs.dz_from_layer``)."""
        layer = self._layer()
        if layer is None or layer.ndim < 3:
            return
        dz = dz_from_layer(
            layer, self.focus_axis.value, self.plane_minus.value, self.plane_plus.value
        )
        if dz:
            self._fill("dz_um", dz, "layer")
        elif self._sources["dz_um"] == "layer":  # the previous planes' dz: not these planes'
            self._sources["dz_um"] = None
            self._prefill_optics_from_model()
        self.validate()

    def _on_model(self, *_: Any) -> None:
        self.model_file.visible = self.model.value == LOAD_FROM_FILE
        self._prefill_optics_from_model(only_missing=False)
        self.validate()

    def _on_model_file(self, *_: Any) -> None:
        path = self.model_path()
        meta = self._model_meta(path)
        if path is not None and isinstance(meta, dict) and meta["task"] == self.mode.value:
            if str(path) not in self._extra_models:
                self._extra_models.append(str(path))
            self.model.reset_choices()
            self.model.value = str(path)  # listed from now on; hides the file field
            return
        self._on_model()

    def _fill(self, key: str, value: float, source: str | None) -> None:
        """Set a field from the layer or the model (not a user edit) and record the source."""
        self._filling = True
        try:
            getattr(self, key).value = value
        finally:
            self._filling = False
        self._sources[key] = source

    def _user_set(self, key: str) -> None:
        if not self._filling:
            self._sources[key] = "user"

    def _prefill_optics_from_model(self, only_missing: bool = False) -> None:
        """Fields not given by the layer or the user take the model's value (or 0 = unknown,
        never a stale value from another layer or model)."""
        meta = self._model_meta(self.model_path())
        if not isinstance(meta, dict):
            return
        physics = meta["physics"]
        rule = (meta.get("normalization") or {}).get("input") or {}
        model_values = {**physics, "offset_adu": rule.get("offset_adu")}
        for key in (*_OPTICS, "dz_um"):
            if self._sources[key] in ("layer", "user"):
                continue
            if only_missing and self._sources[key] == "model":
                continue
            value = model_values.get(key)
            ok = isinstance(value, int | float) and (
                value > 0 or key == "offset_adu" and value == 0
            )
            self._fill(key, float(value) if ok else 0.0, "model" if ok else None)

    def _touch(self, name: str) -> None:
        if not self._setting_defaults:
            self._touched.add(name)

    def _on_device(self, *_: Any) -> None:
        from ..errors import DeviceError

        try:
            from ..engine.device import resolve_device

            resolved = str(resolve_device(self.device.value))
        except DeviceError as exc:
            self.device_info.value = f"unavailable: {exc}"
            self.validate()
            return
        self.device_info.value = f"using {resolved}"
        gpu = resolved != "cpu"  # defaults: 8 samples / 50 steps on a GPU, 4 / 20 on the CPU
        self._setting_defaults = True
        if "samples" not in self._touched:
            self.samples.value = 8 if gpu else 4
        if "steps" not in self._touched:
            self.steps.value = 50 if gpu else 20
        self._setting_defaults = False
        self.validate()

    def layer_problem(self, layer: Any) -> str | None:
        """Why ``layer`` cannot be reconstructed in the current mode (one line), or None."""
        mode = self.mode.value
        needed = tasks.get(mode).min_input_ndim
        if layer.ndim < needed:
            return (
                f"{layer.name} has {layer.ndim} axes; {mode.upper()} needs at least "
                f"{needed} (choose another layer or switch mode)."
            )
        task, why = implied_task(layer)
        if task is not None and task != mode:
            return tasks.get(task).implied_by(layer.name, why, layer.data.shape)
        return None

    def problem(self) -> str | None:
        """What stops a run right now (with what to do), or None when everything is valid."""
        mode = self.mode.value
        spec = tasks.get(mode)
        layer = None if self.batch.active else self._layer()
        if self.batch.active:
            bad = self.batch.problem()
            if bad:
                return bad
        elif layer is None:
            return spec.no_input_hint
        else:
            bad = self.layer_problem(layer)
            if bad:
                return bad
        path = self.model_path()
        if path is None:
            return "No model chosen: pick a model, or choose 'Load model from file…' and a file."
        meta = self._model_meta(path)
        if isinstance(meta, Exception):
            return f"Model file problem: {meta}"
        if meta["task"] != mode:
            return (
                f"The model {meta['name']!r} is a {meta['task'].upper()} model; pick a "
                f"{mode.upper()} model or switch the mode to {meta['task'].upper()}."
            )
        if spec.focus_stack and layer is not None:
            nz = int(layer.data.shape[self.focus_axis.value])
            if nz < 2 or self.plane_minus.value == self.plane_plus.value:
                return (
                    f"QPI needs two different planes at −dz and +dz; the focus axis "
                    f"{self.focus_axis.value} has {nz} plane(s). Pick the focus axis and two "
                    "planes."
                )
            if self.dz_um.value <= 0 or self.wavelength_um.value <= 0:
                return "Enter dz and the wavelength (µm) of this stack."
        bad = fields_problem(self, RECONSTRUCT_FIELDS, mode)  # the CLI's ranges, one line
        if bad:
            return bad
        if spec.resamples_to_model and layer is not None:
            bad = self._resampling_problem(layer.name)
            if bad:
                return bad
        if self.device_info.value.startswith("unavailable"):
            return f"Device {self.device.value}: {self.device_info.value}"
        return None

    def _resampling_problem(self, name: str) -> str | None:
        """SR: the input's pixel size would need a zoom the reconstruction refuses (outside
        1/4 to 4 of the model's PSF width in pixels; usually nm typed as µm), or None."""
        from ..limits import MAX_RESAMPLE_FACTOR

        factor = self.assumptions().resample_factor
        if 1.0 / MAX_RESAMPLE_FACTOR <= factor <= MAX_RESAMPLE_FACTOR:
            return None
        return (
            f"{name}: its pixel size ({self.pixel_size_um.value:g} µm) would need resampling by "
            f"{factor:.3g} to match the model (allowed 1/{MAX_RESAMPLE_FACTOR:g} to "
            f"{MAX_RESAMPLE_FACTOR:g}); check the pixel size field is in µm (62.6 nm is 0.0626), "
            "or use a model trained for this sampling."
        )

    def validate(self, *_: Any) -> str | None:
        """Re-check the form: Run is disabled with the problem as tooltip; returns it."""
        if not hasattr(self, "run_button"):
            return None
        problem = self.problem()
        self.run_button.set_problem(problem)
        meta = self._model_meta(self.model_path())
        if isinstance(meta, dict):
            self.model_info.value = describe_model(meta)
            self.model_info.tooltip = meta.get("description", "")
        else:
            self.model_info.value = "" if meta is None else "cannot read this model file"
        if self.status.idle:
            lines = [self._mode_note] if self._mode_note else []
            if problem is None and self.batch.active:
                lines.append(self.batch.describe())
            else:
                lines.append(problem or "ready: " + "; ".join(self.assumptions().parts()))
            self.status_label.value = "\n".join(lines)
        return problem

    def assumptions(self) -> Assumptions:
        """What a run with the current form would assume, and where each value comes from."""
        meta = self._model_meta(self.model_path())
        physics = meta["physics"] if isinstance(meta, dict) else {}
        src = self._sources

        def value(key: str) -> float | None:
            return getattr(self, key).value if src[key] is not None else None

        return Assumptions(
            task=self.mode.value,
            model_physics=physics,
            pixel_size_um=self.pixel_size_um.value or None,
            pixel_source=src["pixel_size_um"],
            na=value("na"),
            na_source=src["na"],
            wavelength_um=value("wavelength_um"),
            wavelength_source=src["wavelength_um"],
            offset_adu=value("offset_adu"),
            offset_source=src["offset_adu"],
            dz_um=value("dz_um"),
            dz_source=src["dz_um"],
        )

    def assumed_defaults(self) -> Assumptions | None:
        """The assumptions worth a notification with the result (a default the user may not
        know: no pixel size, the model's offset or optics, resampling), or None."""
        a = self.assumptions()
        told = (
            (a.pixel_size_um is None and a.model_physics.get("pixel_size_um"))
            or a.resample_factor != 1.0
            or "model"
            in (  # an optics field of the task whose value is the model's
                getattr(a, f"{key.removesuffix('_um').removesuffix('_adu')}_source")
                for key in tasks.get(a.task).optics_fields
            )
        )
        return a if told else None

    def _show_status(self) -> None:
        status = self.status
        if status.state is RunState.IDLE:
            self.validate()
        elif status.total:
            self.status_label.value = f"{status.message}: step {status.step}/{status.total}"
        else:
            self.status_label.value = status.message

    # ------------------------------------------------------------------ run / cancel

    def user_values(self) -> dict[str, float]:
        """The pixel size, optics and dz the user typed (the batch mode applies them to every
        input; the other values come from each input or the model)."""
        keys = (*_OPTICS, "pixel_size_um", "dz_um")
        return {key: getattr(self, key).value for key in keys if self._sources[key] == "user"}

    def form_values(self) -> dict[str, Any]:
        """What a run takes from the form for the chosen layer (see :meth:`snapshot`)."""
        return {
            "pixel_size_um": self.pixel_size_um.value or None,
            "na": self.na.value or None,
            "wavelength_um": self.wavelength_um.value or None,
            "offset_adu": (
                float(self.offset_adu.value) if self._sources["offset_adu"] is not None else None
            ),
            "focus_axis": self.focus_axis.value,
            "planes": (self.plane_minus.value, self.plane_plus.value),
            "dz_um": self.dz_um.value or None,
            "current_frame": self.frames.value == CURRENT and self.frames.enabled,
        }

    def params(self) -> Any:
        """The sampling settings of the form (a ``workflows.predict.ReconstructionParams``)."""
        from ..workflows.predict import ReconstructionParams

        return ReconstructionParams(
            n_samples=self.samples.value,
            steps=self.steps.value,
            sampler=self.sampler.value,
            seed=self.seed.value,
            device=self.device.value,
            tile=self.tile_size.value or None,
            group_size=None,  # sized from measured throughput: first mean/std after one sample
        )

    def worker_threads(self) -> int:
        """torch threads of the worker: the form's, or the free cores minus one."""
        return self.threads.value or min(default_threads(), auto_threads())

    def snapshot(
        self, layer: Any = None, values: dict[str, Any] | None = None
    ) -> tuple[ReconstructionJob, dict[str, Any]]:
        """Freeze the inputs for one run: the job and what the output layers need.

        ``layer``: the chosen image layer by default; ``values``: :meth:`form_values` by default
        (the batch mode gives each layer its own).
        """
        layer = self._layer() if layer is None else layer
        values = self.form_values() if values is None else values
        mode = self.mode.value
        spec = tasks.get(mode)
        focus = values["focus_axis"] if spec.focus_stack else None
        current = None
        if values.get("current_frame"):
            current = tuple(layer.world_to_data(self.viewer.dims.point))
        image, drop_axes, frame_index = select_frames(
            layer.data, mode=mode, focus_axis=focus, current=current
        )
        options: dict[str, Any] = {"input_name": layer.name}
        options["pixel_size_um"] = values["pixel_size_um"]
        options.update(spec.form_options(values, focus))
        job = ReconstructionJob(
            image=image,
            model_path=self.model_path(),
            params=self.params(),
            task_options=options,
            threads=self.worker_threads(),
        )
        extras = {
            "drop_axes": drop_axes,
            "input_yx": tuple(int(s) for s in layer.data.shape[-2:]),
            "frames": CURRENT if values.get("current_frame") else ALL,
            "frame_index": frame_index,
            "na": values["na"],
        }
        return job, extras

    def prepare(
        self,
        layer: Any = None,
        values: dict[str, Any] | None = None,
        taken: Collection[str] = (),
        assumed: bool = True,
    ) -> tuple[ReconstructionRun, list[str]]:
        """One layer's run (not started) and the preflight notes to show.

        Raises ``UserError`` (resampling, memory), ``ValueError`` or ``MemoryError`` (copying
        the layer data) with one line. ``taken``: layer names that other runs of a batch will
        add; ``assumed``: notify the assumed defaults with the result (single runs).
        """
        layer = self._layer() if layer is None else layer
        job, extras = self.snapshot(layer, values)
        # resampling factor, memory and camera offset, as the CLI checks them
        given = job.task_options.get("offset_adu") is not None and (
            values is not None or self._sources.get("offset_adu") in ("layer", "user")
        )
        notes = preflight_job(self.mode.value, job, self._model_meta(job.model_path), given)
        notes.append(memory_warning(job))
        existing = [lyr.name for lyr in self.viewer.layers] + list(taken)
        names = output_names(layer.name, existing, self.keep_previous.value)
        source = layer_geometry(layer)
        spec = tasks.get(self.mode.value)
        text = spec.text
        if extras["frame_index"]:  # one frame: its axes keep length 1 at that frame's position
            translate = list(source.translate)
            for axis, i in extras["frame_index"].items():
                translate[axis] += i * source.scale[axis]
            source = replace(source, translate=tuple(translate))
        outputs = OutputLayers(
            viewer=self.viewer,
            names=names,
            source=source,
            drop_axes=extras["drop_axes"],
            input_yx=extras["input_yx"],
            mean_colormap=(
                layer.colormap.name if text.mean_colormap_of_input else text.mean_colormap
            ),
            source_metadata=dict(layer.metadata or {}),
        )
        provenance = {
            "input_name": layer.name,
            "frames_selection": extras["frames"],
        }
        if extras["frame_index"]:
            provenance["frame_index"] = {str(a): i for a, i in extras["frame_index"].items()}
        if "na" not in spec.optics_fields and extras["na"]:  # recorded, not used
            provenance["na"] = extras["na"]
        run = ReconstructionRun(
            job=job,
            outputs=outputs,
            status=self.status,
            mode=self.mode.value,
            provenance=provenance,
            description=f"CVDM {self.mode.value.upper()}: {layer.name}",
            assumed=self.assumed_defaults() if assumed else None,
        )
        return run, [note for note in notes if note]

    @property
    def worker(self) -> Any:
        """The running napari worker, or None when idle."""
        return None if self.last_run is None else self.last_run.worker

    def run(self) -> None:
        """Start a reconstruction (Run), or the batch (several layers or a folder). Problems
        found before starting give one warning."""
        if not self.status.idle:
            return
        problem = self.validate()
        if problem:
            common.notify(problem, "warning")
            return
        if self.batch.active:
            self.batch.run()
            return
        try:
            run, notes = self.prepare()
        except UserError as exc:
            common.notify(str(exc), "error")
            return
        except (ValueError, MemoryError) as exc:  # indexing/copying the layer data
            common.notify(common.describe_error(exc), "error")
            return
        for note in notes:
            common.notify(note, "warning")
        self.last_run = run
        self.last_run.start()

    def cancel(self) -> None:
        """Cancel: the worker stops at its next yield (within one diffusion step)."""
        if self.batch.running is not None:
            self.batch.running.cancel()
        elif self.last_run is not None:
            self.last_run.cancel()
