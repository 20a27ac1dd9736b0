"""The Restore (zero-shot) widget: deconvolution / ×2 super-resolution with a known PSF.

A :class:`magicgui.widgets.Container` (sub-widgets are public attributes; tests set values and
call :meth:`RestoreWidget.run` / :meth:`RestoreWidget.cancel`). Run snapshots the image (the
displayed plane of a stack), the PSF (a layer, or NA/λ for an Airy PSF) and the noise settings,
then starts a napari thread worker over :func:`napari_cvdm.workflows.restore.restore` — the
same generator the CLI drains. Progress shows the solver's level; Cancel stops within one inner
step. Results: ``<name>_restored`` and ``<name>_variability`` on the prior's grid and
``<name>_residual`` (whitened, on the measurement grid), placed over the input's field of view.

The noise estimate (a single-image photon-transfer fit) is shown when an image is chosen; a
noise σ > 0 replaces it. No torch at import.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, SpinBox

from . import common
from .common import RunButton, RunState, RunStatus
from .inputs import metadata_number, pixel_size_um

if TYPE_CHECKING:
    import napari

__all__ = ["RestoreWidget", "RestoreJob", "run_restore_job"]

NO_PSF = "none: Airy PSF from NA and wavelength"
LOAD_FROM_FILE = "<load prior from file>"
OUTPUTS = ("restored", "residual", "variability")


@dataclass(frozen=True)
class JobFailed:
    """The job raised ``error``; the worker then ends normally."""

    error: BaseException


@dataclass(frozen=True)
class RestoreJob:
    """One run, independent of the GUI (numpy arrays and plain values)."""

    image: np.ndarray
    name: str
    prior: str
    params: Any
    pixel_size_um: float | None
    optics: Any
    noise: Any


def run_restore_job(job: RestoreJob) -> Iterator[Any]:
    """The worker's generator: the restore workflow's events, exceptions as :class:`JobFailed`."""
    import torch

    from ..engine.threads import auto_threads
    from ..workflows.restore import restore

    torch.set_num_threads(max(1, auto_threads()))
    try:
        events = restore(
            job.image,
            job.prior,
            job.params,
            pixel_size_um=job.pixel_size_um,
            optics=job.optics,
            noise=job.noise,
            input_name=job.name,
        )
    except Exception as exc:  # noqa: BLE001 - shown as one notification
        yield JobFailed(exc)
        return
    try:
        yield from events
    except Exception as exc:  # noqa: BLE001
        yield JobFailed(exc)
    finally:
        events.close()


def _prior_names() -> list[str]:
    from ..engine.registry import list_models

    try:
        return [i.name for i in list_models("prior")]
    except Exception:  # noqa: BLE001 - an unreadable folder lists nothing
        return []


class RestoreWidget(Container):
    """Zero-shot restoration of an image layer; see the module docstring."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(labels=True)
        self.viewer = viewer
        self.status = RunStatus()
        self.worker: Any = None
        self.last_error: BaseException | None = None
        self._stream: Any = None
        self._pbar: Any = None
        self._job: RestoreJob | None = None
        self.aborted = False

        self.image = ComboBox(label="image", choices=self._image_choices)
        self.psf = ComboBox(label="PSF", choices=self._psf_choices)
        self.psf.tooltip = "A PSF image layer (a bead, any size), or none to use NA/λ (Airy)"
        self.psf_pixel_um = FloatSpinBox(
            label="PSF pixel (µm)", min=0.0, max=10.0, step=0.0001, value=0.0
        )
        self.psf_pixel_um.tooltip = "0 = the image's pixel size"
        self.na = FloatSpinBox(label="NA", min=0.1, max=1.7, step=0.01, value=1.49)
        self.wavelength_um = FloatSpinBox(
            label="wavelength (µm)", min=0.2, max=2.0, step=0.001, value=0.525
        )
        self.pixel_size_um = FloatSpinBox(
            label="pixel size (µm)", min=0.0, max=10.0, step=0.0001, value=0.0
        )
        self.pixel_size_um.tooltip = "The image's pixel size (from the layer's scale when in µm)"
        self.offset_adu = FloatSpinBox(
            label="camera offset (ADU)", min=0.0, max=65535.0, step=1.0, value=0.0
        )
        self.noise_sigma = FloatSpinBox(
            label="noise σ (ADU)", min=0.0, max=1e6, step=0.1, value=0.0
        )
        self.noise_sigma.tooltip = (
            "0 = Poisson + read noise from the estimate shown below; > 0: a constant σ"
        )
        self.noise_info = Label(label="noise estimate", value="-")
        self.budget = ComboBox(label="budget", choices=["fast", "quality"], value="fast")
        self.method = ComboBox(
            label="method",
            choices=[("VML-MAP", "vml"), ("DPS (baseline)", "dps"), ("Richardson–Lucy", "rl")],
            value="vml",
        )
        self.seeds = SpinBox(label="seeds", min=1, max=16, value=1)
        self.seeds.tooltip = "Several seeds give a variability map (not calibrated uncertainty)"
        self.prior = ComboBox(label="prior", choices=self._prior_choices)
        self.prior_file = FileEdit(label="prior file", mode="r", filter="*.safetensors")
        self.progress_info = Label(label="progress", value="")
        self.run_button = RunButton(self.status, self.run, self.cancel)
        self.extend(
            [
                self.image,
                self.pixel_size_um,
                self.psf,
                self.psf_pixel_um,
                self.na,
                self.wavelength_um,
                self.offset_adu,
                self.noise_sigma,
                self.noise_info,
                self.budget,
                self.method,
                self.seeds,
                self.prior,
                self.prior_file,
                self.progress_info,
                self.run_button.widget,
            ]
        )
        self.image.changed.connect(self._image_changed)
        for widget in (self.prior, self.prior_file, self.pixel_size_um, self.psf):
            widget.changed.connect(self._validate)
        self.psf.changed.connect(self._psf_changed)
        viewer.layers.events.inserted.connect(self._layers_changed)
        viewer.layers.events.removed.connect(self._layers_changed)
        self._image_changed()
        self._psf_changed()

    # ------------------------------------------------------------------ form

    def _image_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        from napari.layers import Image

        out = []
        for layer in self.viewer.layers:
            if isinstance(layer, Image) and not layer.rgb and "cvdm_restore" not in layer.metadata:
                out.append((f"{layer.name} ({'×'.join(map(str, layer.data.shape))})", layer))
        return out

    def _psf_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(NO_PSF, None), *self._image_choices()]

    def _prior_choices(self, _widget: Any = None) -> list[str]:
        return [*_prior_names(), LOAD_FROM_FILE]

    def _layers_changed(self, *_: Any) -> None:
        self.image.reset_choices()
        self.psf.reset_choices()

    def _psf_changed(self, *_: Any) -> None:
        airy = self.psf.value is None
        self.na.enabled = self.wavelength_um.enabled = airy
        self.psf_pixel_um.enabled = not airy

    def _plane(self, layer: Any) -> np.ndarray:
        data = layer.data
        if data.ndim > 2:
            step = tuple(self.viewer.dims.current_step[-data.ndim :][: data.ndim - 2])
            data = data[step]
        return np.asarray(data)

    def _image_changed(self, *_: Any) -> None:
        layer = self.image.value
        if layer is None:
            self.noise_info.value = "-"
            self._validate()
            return
        pixel = pixel_size_um(layer) or metadata_number(layer.metadata, "pixel_size_um")
        if pixel:
            self.pixel_size_um.value = pixel
        offset = metadata_number(layer.metadata, "offset_adu")
        if offset is not None:
            self.offset_adu.value = offset
        self.noise_info.value = self._noise_text(layer)
        self._validate()

    def _noise_text(self, layer: Any) -> str:
        from ..errors import UserError
        from ..physics.forward_ops import estimate_noise

        try:
            plane = self._plane(layer).astype(np.float64)
            model = estimate_noise(plane)
        except (UserError, ValueError, TypeError) as exc:
            return f"not available ({exc})"
        median = float(np.median(plane))
        return (
            f"σ ≈ {model.sigma_at(median):.3g} ADU at the median; "
            f"var = {model.slope:.3g}·μ {model.intercept:+.3g}"
        )

    def _prior_path(self) -> str | None:
        if self.prior.value == LOAD_FROM_FILE:
            path = Path(str(self.prior_file.value))
            return str(path) if path.is_file() else None
        return self.prior.value

    def problem(self) -> str | None:
        """Why Run is disabled, or None."""
        if self.image.value is None:
            return "Choose an image layer"
        if not self.pixel_size_um.value > 0:
            return "Enter the image's pixel size (µm)"
        if self._prior_path() is None:
            return "No prior model: choose a prior file (task 'prior', e.g. prior-fluorescence)"
        return None

    def _validate(self, *_: Any) -> None:
        self.prior_file.visible = self.prior.value == LOAD_FROM_FILE
        self.run_button.set_problem(self.problem())

    # ------------------------------------------------------------------ run

    def job(self) -> RestoreJob:
        """Snapshot the form into a :class:`RestoreJob` (main thread)."""
        from ..workflows.restore import Noise, Optics, RestoreParams

        layer = self.image.value
        psf_layer = self.psf.value
        if psf_layer is not None:
            optics = Optics(
                psf=np.asarray(psf_layer.data, dtype=np.float64),
                psf_pixel_um=self.psf_pixel_um.value or None,
            )
        else:
            optics = Optics(na=self.na.value, wavelength_um=self.wavelength_um.value)
        offset = self.offset_adu.value or None
        noise = Noise(sigma_adu=self.noise_sigma.value or None, offset_adu=offset)
        params = RestoreParams(
            budget=self.budget.value, method=self.method.value, seeds=self.seeds.value
        )
        return RestoreJob(
            image=self._plane(layer).copy(),
            name=layer.name,
            prior=self._prior_path(),
            params=params,
            pixel_size_um=self.pixel_size_um.value,
            optics=optics,
            noise=noise,
        )

    def run(self) -> None:
        """Start a run (no-op unless idle and the form is valid)."""
        if not self.status.idle or self.problem() is not None:
            return
        from napari.qt.threading import create_worker
        from napari.utils import progress

        self._job = job = self.job()
        self._layer = self.image.value
        self.aborted = False
        self.last_error = None
        self._pbar = progress(total=0, desc=f"Restoring {job.name}")
        self._stream = stream = run_restore_job(job)

        def work():
            yield from stream

        self.worker = create_worker(work, _start_thread=False)
        self.worker.yielded.connect(self._on_event)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(self._on_finished)
        self.status.update(state=RunState.RUNNING, step=0, total=0, message="preparing")
        self.progress_info.value = "preparing (noise, PSF, Richardson–Lucy start)"
        self.worker.start()

    def cancel(self) -> None:
        """Stop within one inner step of the solver."""
        if self.status.state is RunState.RUNNING and self.worker is not None:
            self.status.update(state=RunState.CANCELLING, message="cancelling")
            self.worker.quit()

    def _on_event(self, event: Any) -> None:
        from ..workflows.events import Finished, Progress

        if isinstance(event, Progress):
            if self._pbar.total != event.total:
                self._pbar.total = event.total
            self._pbar.update(event.step - self._pbar.n)
            self.status.update(step=event.step, total=event.total, message=event.stage)
            self.progress_info.value = f"{event.step}/{event.total}  {event.stage}"
        elif isinstance(event, Finished):
            self._show(event.result)
        elif isinstance(event, JobFailed):
            self.last_error = event.error
            common.notify(common.describe_error(event.error), "error")

    def _on_aborted(self) -> None:
        self.aborted = True

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        self.worker = None
        if self.aborted:
            self.progress_info.value = "cancelled"
        self.status.update(state=RunState.IDLE, step=0, total=0, message="")

    # ------------------------------------------------------------------ outputs

    def _geometry(self, pixel_um: float) -> dict[str, Any]:
        """scale/translate placing a grid of ``pixel_um`` over the input layer's field of view
        (box-aligned: both grids start at the same edge)."""
        layer, p_in = self._layer, float(self._job.pixel_size_um)
        k_y = float(layer.scale[-2]) / p_in  # world units per µm
        k_x = float(layer.scale[-1]) / p_in
        t_y = float(layer.translate[-2]) + k_y * (pixel_um - p_in) / 2
        t_x = float(layer.translate[-1]) + k_x * (pixel_um - p_in) / 2
        out: dict[str, Any] = {"scale": (k_y * pixel_um, k_x * pixel_um), "translate": (t_y, t_x)}
        units = getattr(layer, "units", None)
        if units is not None:
            out["units"] = tuple(str(u) for u in units[-2:])
        return out

    def _show(self, result: Any) -> None:
        name = self._job.name
        meta = dict(result.metadata)
        arrays = {
            "restored": (result.restored, result.pixel_size_um, "gray"),
            "residual": (result.residual, result.residual_pixel_size_um, "PiYG"),
            "variability": (result.variability, result.pixel_size_um, "magma"),
        }
        for suffix, (data, pixel, cmap) in arrays.items():
            layer_name = f"{name}_{suffix}"
            kwargs = self._geometry(pixel)
            info = {"cvdm_restore": {**meta, "output": suffix}, "pixel_size_um": pixel}
            if suffix == "residual":
                limits = (-3.0, 3.0)
            else:
                hi = float(np.percentile(data, 99.8)) if data.any() else 1.0
                limits = (float(np.percentile(data, 0.2)), max(hi, 1e-6))
                if limits[0] >= limits[1]:
                    limits = (limits[1] - 1.0, limits[1])
            if layer_name in self.viewer.layers:
                layer = self.viewer.layers[layer_name]
                layer.data = data
                layer.metadata = info
                layer.scale, layer.translate = kwargs["scale"], kwargs["translate"]
                layer.contrast_limits = limits
            else:
                self.viewer.add_image(
                    data, name=layer_name, colormap=cmap, metadata=info,
                    contrast_limits=limits, **kwargs,
                )  # fmt: skip
        notes = meta.get("notes") or []
        text = f"{name}: {meta.get('seconds', 0):.1f} s, residual RMS {meta['residual_rms']:.2f}"
        common.notify(text + ("; " + "; ".join(notes) if notes else ""), "info")
        self.progress_info.value = "done"
