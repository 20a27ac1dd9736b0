"""One run of the Reconstruct widget: the napari thread worker, its progress bar and layers.

:class:`ReconstructionRun` starts a napari ``GeneratorWorker`` over
:func:`~napari_cvdm._widgets.reconstruct_job.run_job` and handles its signals on the main
thread: ``Progress`` advances the napari progress bar, the first ``PartialResult`` creates the
mean/std layers and later ones refine them in place, ``Finished`` adds the schedule layers, a
``JobFailed`` becomes one notification. ``finished`` always restores the idle state, closes the
job (freeing device memory) and marks partial layers ``cancelled`` after a cancel.

No torch at import.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from . import common
from .common import RunState, RunStatus
from .outputs import OutputLayers
from .reconstruct_job import JobFailed, ReconstructionJob, run_job

__all__ = ["ReconstructionRun"]


class ReconstructionRun:
    """The worker, progress bar and output layers of one Run (main-thread object).

    ``provenance`` holds what the widget adds to the workflow's provenance (input name, frame
    selection, QPI NA); ``description`` labels the progress bar; ``assumed`` (the defaults the
    run used that the user may not know: no pixel size, the model's offset or optics, a
    resampling factor; an ``assumptions.Assumptions``) is notified once with the result, with
    the factor the run realised.
    """

    def __init__(
        self,
        job: ReconstructionJob,
        outputs: OutputLayers,
        status: RunStatus,
        mode: str,
        provenance: dict[str, Any],
        description: str,
        assumed: Any = None,
    ) -> None:
        self.job = job
        self.outputs = outputs
        self.status = status
        self.mode = mode
        self.extra_provenance = dict(provenance)
        self.description = description
        self.assumed = assumed
        self.worker: Any = None
        self.aborted = False
        self.failed: BaseException | None = None
        self.events: list[str] = []
        self._stream: Any = None
        self._pbar: Any = None

    def start(self) -> None:
        """Create the progress bar and the worker, then start it (status: running)."""
        from napari.qt.threading import create_worker
        from napari.utils import progress

        self._pbar = progress(total=0, desc=self.description)
        self._stream = stream = run_job(self.job)

        def reconstruction():  # a generator function, so napari makes a GeneratorWorker
            yield from stream

        self.worker = create_worker(reconstruction, _start_thread=False)
        self.worker.yielded.connect(self.handle)
        self.worker.aborted.connect(self._on_aborted)
        self.worker.finished.connect(self._on_finished)
        self.status.update(state=RunState.RUNNING, step=0, total=0, message="loading model")
        self.worker.start()

    def cancel(self) -> None:
        """Ask the worker to stop at its next yield (within one diffusion step)."""
        if self.status.state is RunState.RUNNING and self.worker is not None:
            self.status.update(state=RunState.CANCELLING, message="cancelling")
            self.worker.quit()

    # ------------------------------------------------------------------ main-thread callbacks

    def _provenance(self, base: dict[str, Any]) -> dict[str, Any]:
        extra = dict(self.extra_provenance)
        na = extra.pop("na", None)
        prov = {**base, **extra}
        if na:
            prov["optics"] = {**prov.get("optics", {}), "na": na}
        return prov

    def handle(self, event: Any) -> None:
        """One event of the job (main thread); the batch mode passes its layer items' events
        here too (``PartialResult`` and ``Finished``: this run's layers)."""
        from ..workflows.events import Finished, PartialResult, Progress

        self.events.append(type(event).__name__)
        if isinstance(event, Progress):
            if self._pbar is None:
                return
            if self._pbar.total != event.total:
                self._pbar.total = event.total
            self._pbar.update(event.step - self._pbar.n)
            self.status.update(step=event.step, total=event.total, message=event.stage)
        elif isinstance(event, PartialResult):
            running = {
                "mode": self.mode,
                "status": "running",
                "samples_done": event.samples_done,
                "samples_total": event.samples_total,
                "frame": event.frame,
                "frames": event.frames_total,
            }
            self.outputs.show_running(event.mean, event.std, self._provenance(running))
        elif isinstance(event, Finished):
            rec = event.result
            provenance = self._provenance(dict(rec.metadata))
            self.outputs.finish(rec.mean, rec.std, rec.schedule, rec.gamma, rec.t_star, provenance)
            if self.assumed is not None:  # with the result: a failed run gives only its error
                applied = replace(self.assumed, applied_factor=rec.metadata.get("resample_factor"))
                name = self.extra_provenance.get("input_name", "the input")
                common.notify(f"Assumed for {applied.line(name)}", "info")
        elif isinstance(event, JobFailed):
            self.failed = event.error
            common.notify(common.describe_error(event.error), "error")

    def _on_aborted(self) -> None:
        self.aborted = True

    def _on_finished(self) -> None:
        if self._pbar is not None:
            self._pbar.close()
            self._pbar = None
        if self._stream is not None:
            self._stream.close()  # runs the workflow's cleanup: model back, device memory freed
            self._stream = None
        if self.aborted and self.outputs.created:
            self.outputs.mark(status="cancelled")
        self.worker = None
        self.status.update(state=RunState.IDLE, step=0, total=0, message="")
