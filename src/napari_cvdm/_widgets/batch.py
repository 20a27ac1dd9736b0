"""The Reconstruct widget's batch mode: several image layers, or a folder of files.

:class:`BatchForm` is the part of the form that picks the input: *one layer* (the widget's
image picker, a single run), *several layers* (a list; results as layers, as a single run
adds them) or *a folder* (every image in it, written into an output folder exactly as
``napari-cvdm predict`` writes them: ``<stem>_mean/_std/_schedule.tif`` as one set, existing
outputs skipped unless *overwrite* is ticked). Every input gets the form's model and sampling
settings; the pixel size, optics and dz come from each input (its scale and metadata, or the
file's) or else the model, and a value typed into the form applies to every input (as a
``predict`` flag does). QPI uses each input's axis before Y as the focus axis and its first and
last planes; stacks are reconstructed in full (every frame).

:class:`BatchRun` runs :func:`~._widgets.batch_job.run_batch` in one napari thread worker:
an overall progress bar (input k of n) with a nested one per input, Cancel within one sampler
step (nothing written for the input it stops, the rest not started), and a
:class:`~._widgets.batch_job.BatchSummary` at the end (a notification and the form's summary
line). An input that fails is listed with its one-line reason and the next one starts.

No torch at import.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, Label, Select

from ..errors import UserError
from . import common
from .batch_job import BatchSummary, FileItem, ItemDone, ItemFailed, ItemStarted, LayerItem
from .common import RunState, RunStatus
from .inputs import dz_from_layer, metadata_number, metadata_offset, pixel_size_um
from .reconstruct_job import JobFailed

if TYPE_CHECKING:
    from .reconstruct import ReconstructWidget
    from .reconstruct_run import ReconstructionRun

__all__ = ["SOURCES", "BatchForm", "BatchRun", "layer_values"]

SOURCES = [
    ("one layer", "single"),
    ("several layers (batch)", "layers"),
    ("a folder of files (batch)", "folder"),
]
#: height of the layer list (about four rows): the form stays usable at 1080p
LIST_HEIGHT = 84


def _path_or_none(value: Any) -> Path | None:
    """A FileEdit's value as a path, or None when nothing was chosen."""
    if value is None or str(value) in ("", "."):
        return None
    return Path(value)


def layer_values(widget: ReconstructWidget, layer: Any) -> dict[str, Any]:
    """The run values of ``layer`` in a batch (the keys of ``ReconstructWidget.form_values``).

    A value the user typed into the form applies to every layer; otherwise the layer's own
    (scale, metadata), else None (the model's). QPI: the axis before Y, first and last planes.
    """
    typed = widget.user_values()
    meta = layer.metadata or {}

    def pick(key: str) -> float | None:
        return typed[key] if key in typed else metadata_number(meta, key)

    values: dict[str, Any] = {
        "pixel_size_um": typed.get("pixel_size_um")
        or pixel_size_um(layer)
        or metadata_number(meta, "pixel_size_um"),
        "na": pick("na"),
        "wavelength_um": pick("wavelength_um"),
        "offset_adu": typed.get("offset_adu", metadata_offset(meta)),
        "focus_axis": 0,
        "planes": (0, 0),
        "dz_um": None,
        "current_frame": False,
    }
    if layer.ndim >= 3:
        focus = layer.ndim - 3
        last = int(layer.data.shape[focus]) - 1
        dz = typed.get("dz_um") or dz_from_layer(layer, focus, 0, last)
        values.update(focus_axis=focus, planes=(0, last), dz_um=dz)
    return values


class BatchForm:
    """The input source of the Reconstruct form and the batch fields (see the module doc).

    ``source`` goes above the image picker, ``box`` (the layer list, folders, overwrite and
    the last summary) below it; only the fields of the chosen source are shown.
    """

    def __init__(self, widget: ReconstructWidget) -> None:
        self.widget = widget
        self.source = ComboBox(label="input", choices=SOURCES, value="single")
        self.source.tooltip = "One layer, or a batch: several layers or every image of a folder"
        self.layers = Select(label="layers", choices=widget._image_choices)
        self.layers.tooltip = "Ctrl/Shift-click to pick several; each is reconstructed in turn"
        self.layers.native.setMaximumHeight(LIST_HEIGHT)
        self.input_dir = FileEdit(label="input folder", mode="d")
        self.output_dir = FileEdit(label="output folder", mode="d")
        self.overwrite = CheckBox(text="overwrite existing outputs", value=False)
        self.summary = Label(label="")
        self.summary.native.setWordWrap(True)
        self.box = Container(
            widgets=[self.layers, self.input_dir, self.output_dir, self.overwrite, self.summary],
            labels=True,
            visible=False,
        )
        self.box.margins = (0, 0, 0, 0)
        self.running: BatchRun | None = None
        self.last_run: BatchRun | None = None
        self.source.changed.connect(self._on_source)
        for field in (self.layers, self.input_dir, self.output_dir, self.overwrite):
            field.changed.connect(widget.validate)

    @property
    def active(self) -> bool:
        """Whether Run starts a batch (several layers or a folder)."""
        return self.source.value != "single"

    def _on_source(self, *_: Any) -> None:
        source, w = self.source.value, self.widget
        self.box.visible = self.active
        self.layers.visible = source == "layers"
        for field in (self.input_dir, self.output_dir, self.overwrite):
            field.visible = source == "folder"
        for field in (w.image, w.image_info, w.frames, w.focus_axis, w.plane_minus, w.plane_plus):
            field.visible = not self.active  # a batch takes them from each input
        w.validate()

    def problem(self) -> str | None:
        """What stops the batch from starting (one line), or None."""
        if self.source.value == "layers":
            if not self.layers.value:
                return "Pick the layers to reconstruct in the list (Ctrl/Shift-click: several)."
            return None
        inp, out = _path_or_none(self.input_dir.value), _path_or_none(self.output_dir.value)
        if inp is None or not inp.is_dir():
            return "Choose the input folder (every image in it is reconstructed)."
        if out is None:
            return "Choose the output folder for the results."
        return None

    def describe(self) -> str:
        """The status line of a batch ready to start."""
        where = "each input (or the model)"
        typed = sorted(self.widget.user_values())
        also = f"; typed here for all: {', '.join(typed)}" if typed else ""
        if self.source.value == "layers":
            what = f"{len(self.layers.value)} layer(s), every frame"
        else:
            what = f"the images of {self.input_dir.value} → {self.output_dir.value}"
        return f"ready: batch of {what}; pixel size and optics from {where}{also}"

    # ------------------------------------------------------------------ starting

    def _layer_items(
        self, summary: BatchSummary
    ) -> tuple[list[LayerItem], dict[int, ReconstructionRun]]:
        """One item per selected layer; a layer that cannot start is listed as failed."""
        w = self.widget
        items: list[LayerItem] = []
        handlers: dict[int, ReconstructionRun] = {}
        taken: list[str] = []
        for layer in list(self.layers.value):
            problem = w.layer_problem(layer)
            if problem:
                summary.failed.append((layer.name, problem))
                continue
            try:
                run, _notes = w.prepare(layer, layer_values(w, layer), taken, assumed=False)
            except UserError as exc:
                summary.failed.append((layer.name, str(exc)))
                continue
            except (ValueError, MemoryError) as exc:
                summary.failed.append((layer.name, common.describe_error(exc)))
                continue
            taken += list(run.outputs.names.values())
            handlers[len(items)] = run
            items.append(LayerItem(layer.name, run.job))
        return items, handlers

    def _folder_items(self, summary: BatchSummary) -> list[FileItem]:
        """One item per image of the input folder (raises ``UserError`` with one line)."""
        from dataclasses import replace

        from .. import tasks
        from ..batch import PredictOptions
        from .batch_job import folder_items

        w = self.widget
        typed = w.user_values()
        fields = tasks.get(w.mode.value).optics_fields  # the optics the task's adapter takes
        options = PredictOptions(
            pixel_size=typed.get("pixel_size_um"),
            na=typed.get("na") if "na" in fields else None,
            wavelength=typed.get("wavelength_um"),
            offset=typed.get("offset_adu") if "offset_adu" in fields else None,
        )
        task_options = {"dz_um": typed["dz_um"]} if "dz_um" in fields and "dz_um" in typed else {}
        items, skipped = folder_items(
            self.input_dir.value,
            self.output_dir.value,
            w.model_path(),
            replace(w.params(), partial_copies=False),  # no layers: the counts suffice
            options,
            overwrite=bool(self.overwrite.value),
            threads=w.worker_threads(),
            task_options=task_options,
        )
        summary.skipped += skipped
        summary.total += len(skipped)
        return items

    def run(self) -> None:
        """Start the batch (the widget checked the form); one line if it cannot start."""
        w = self.widget
        summary = BatchSummary(total=0)
        handlers: dict[int, ReconstructionRun] = {}
        try:
            if self.source.value == "layers":
                items: list[Any] = []
                items, handlers = self._layer_items(summary)
                summary.total += len(items) + len(summary.failed)
            else:
                items = self._folder_items(summary)
                summary.total += len(items)
        except UserError as exc:
            common.notify(str(exc), "error")
            return
        self.summary.value = ""
        run = BatchRun(
            items, handlers, summary, w.model_path(), w.worker_threads(), w.status, self._ended
        )
        self.running = self.last_run = run
        run.start()

    def _ended(self, summary: BatchSummary) -> None:
        self.running = None
        self.summary.value = summary.text()
        common.notify(summary.text(), "warning" if summary.failed else "info")


class BatchRun:
    """The worker, progress bars and summary of one batch (main-thread object).

    ``handlers``: the :class:`~._widgets.reconstruct_run.ReconstructionRun` (layers) of each
    layer item by index; ``summary`` arrives with the inputs refused before the start;
    ``on_end(summary)`` is called once the worker has stopped.
    """

    def __init__(
        self,
        items: list[Any],
        handlers: dict[int, ReconstructionRun],
        summary: BatchSummary,
        model_path: Path | None,
        threads: int | None,
        status: RunStatus,
        on_end: Callable[[BatchSummary], None],
    ) -> None:
        self.items = items
        self.handlers = handlers
        self.summary = summary
        self.model_path = model_path
        self.threads = threads
        self.status = status
        self.on_end = on_end
        self.worker: Any = None
        self.aborted = False
        self.cancel_time: float | None = None  # monotonic time of Cancel (for its latency)
        self.stopped_time: float | None = None  # monotonic time the worker stopped
        self.current: int | None = None
        self._next = 0  # the first item not started or not finished
        self._stream: Any = None
        self._overall: Any = None
        self._file: Any = None
        self._start = 0.0

    def start(self) -> None:
        """Create the overall progress bar and the worker, then start it (or end at once when
        nothing is left to run)."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        from .batch_job import run_batch

        self._start = time.monotonic()
        if not self.items:
            self._end()
            return
        n = len(self.items)
        self._overall = progress(total=n, desc=f"CVDM batch: {n} inputs")
        self._stream = stream = run_batch(self.items, self.model_path, self.threads)

        def batch():  # a generator function, so napari makes a GeneratorWorker
            yield from stream

        self.worker = create_worker(batch, _start_thread=False)
        self.worker.yielded.connect(self.handle)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(self._on_finished)
        self.status.update(state=RunState.RUNNING, step=0, total=0, message="loading model")
        self.worker.start()

    def cancel(self) -> None:
        """Stop the current input at its next sampler step; the rest are not started."""
        if self.status.state is RunState.RUNNING and self.worker is not None:
            self.cancel_time = time.monotonic()
            self.status.update(state=RunState.CANCELLING, message="cancelling the batch")
            self.worker.quit()

    def _label(self) -> str:
        index = self.current if self.current is not None else self._next
        name = self.items[index].name if index < len(self.items) else ""
        return f"{index + 1}/{len(self.items)} {name}"

    def handle(self, event: Any) -> None:
        """One event of the worker (main thread)."""
        from napari.utils import progress

        from ..workflows.events import Finished, PartialResult, Progress

        if isinstance(event, ItemStarted):
            self.current = event.index
            self.status.update(step=0, total=0, message=self._label())
            bar = progress(total=0, desc=self._label())
            # napari's activity panel processes events while it adds the bar: this input may
            # have failed (and the batch ended) meanwhile, so keep the bar only if it still runs
            if self.current == event.index and self.worker is not None:
                self._file = bar
            else:
                bar.close()
        elif isinstance(event, Progress):
            message = f"{self._label()}: {event.stage}"
            self.status.update(step=event.step, total=event.total, message=message)
            bar = self._file
            if bar is not None:
                if bar.total != event.total:
                    bar.total = event.total
                bar.update(event.step - bar.n)
        elif isinstance(event, PartialResult | Finished):
            handler = self.handlers.get(self.current) if self.current is not None else None
            if handler is not None:
                handler.handle(event)
        elif isinstance(event, ItemDone):
            self.summary.done.append(event.name)
            self.summary.written += list(event.written)
            self._end_item(event.index)
        elif isinstance(event, ItemFailed):
            reason = common.describe_error(event.error).splitlines()[0]
            self.summary.failed.append((event.name, reason))
            handler = self.handlers.get(event.index)
            if handler is not None and handler.outputs.created:
                handler.outputs.mark(status="failed")
            self._end_item(event.index)
        elif isinstance(event, JobFailed):  # the model could not be loaded: nothing ran
            reason = common.describe_error(event.error).splitlines()[0]
            self.summary.failed += [(item.name, reason) for item in self.items]
            self._next = len(self.items)

    def _end_item(self, index: int) -> None:
        # the bookkeeping first: updating a napari progress bar may process the next events
        # (even the worker's ``finished``) before it returns
        self.current = None
        self._next = index + 1
        bar, self._file = self._file, None
        if bar is not None:
            bar.close()
        if self._overall is not None:
            self._overall.update(1)

    def _on_aborted(self) -> None:
        self.aborted = True

    def _on_finished(self) -> None:
        self.stopped_time = time.monotonic()
        if self._stream is not None:
            self._stream.close()  # the current input's cleanup: nothing written, model back
            self._stream = None
        if self.aborted and self.current is not None:
            item = self.items[self.current]
            handler = self.handlers.get(self.current)
            if handler is None:
                kept = "nothing written"
            elif handler.outputs.created:
                handler.outputs.mark(status="cancelled")
                kept = "its partial layers are marked cancelled"
            else:
                kept = "no layers added"
            self.summary.cancelled = f"{item.name} ({kept})"
            self._next = self.current + 1
        self.summary.not_started = [item.name for item in self.items[self._next :]]
        self._end()

    def _end(self) -> None:
        bars = (self._file, self._overall)
        self._file = self._overall = None
        self.summary.seconds = time.monotonic() - self._start
        for bar in bars:
            if bar is not None:
                bar.close()
        self.worker = None
        self.current = None
        self.status.update(state=RunState.IDLE, step=0, total=0, message="")
        self.on_end(self.summary)
