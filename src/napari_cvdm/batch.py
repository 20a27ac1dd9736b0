"""Many input files: one process, or a Dask cluster (``napari-cvdm predict --dask-scheduler``).

* :func:`predict_file` — one input file, start to end: read it, reconstruct it, write its
  output set (``<stem>_{mean,std,schedule}.tif``, :class:`~napari_cvdm.outputset.OutputSet`:
  all or nothing); :func:`file_events` is the same as a generator of the reconstruction's
  events (the Reconstruct widget's batch mode runs it in its thread worker; closing it writes
  nothing). The same function runs on a Dask worker, so a file gives the same pixels
  on a cluster as in one process with the same seed and torch thread count (the thread count
  changes the convolutions' rounding).
* :func:`reconstruct_many` — the notebook API: ``reconstruct_many(paths, model, out,
  client=client)`` sends one task per file to a ``dask.distributed`` cluster (``client=None``:
  in this process, one after the other) and returns the written paths per input.
* :func:`connect` — a client for a scheduler address, or a ``LocalCluster`` for ``"local"``;
  a dead or wrong address raises one :class:`~napari_cvdm.errors.UserError` line within
  ``CONNECT_TIMEOUT_S``.

On a worker, the model is loaded once per worker process (keyed by file and SHA-256) and one
task computes at a time per process (the torch threads do the parallel work). Progress is sent
to the client with ``Worker.log_event`` and summed there. When a worker dies, the scheduler
re-runs its tasks elsewhere; the re-run first sweeps what the dead process left in the output
folder (finishing a commit it had begun, removing its staging folder) and skips the file when
its outputs of this very run (``run_id`` in their provenance) are already complete, so no
output is lost or written twice.

Inputs, the model file and the output folder must be reachable under the same paths on the
workers (a shared file system; bundled model names need nothing). dask is imported only
inside the functions that use it (``pip install 'napari-cvdm[dask]'``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import InputError, UserError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "FileJob",
    "PredictOptions",
    "connect",
    "file_events",
    "predict_file",
    "reconstruct_many",
    "run_jobs",
]

#: seconds to wait for a scheduler before giving up with one line
CONNECT_TIMEOUT_S = 10.0
#: ``Worker.log_event`` topic of the progress messages
PROGRESS_TOPIC = "napari-cvdm-progress"
#: a worker sends at most one progress message per task this often (plus the last one)
PROGRESS_INTERVAL_S = 0.5
_INSTALL_HINT = "install it with `pip install 'napari-cvdm[dask]'` (dask.distributed)"


@dataclass(frozen=True)
class PredictOptions:
    """The per-input options of ``napari-cvdm predict`` (None: the file's or the model's)."""

    pixel_size: float | None = None
    na: float | None = None
    wavelength: float | None = None
    offset: float | None = None
    focus_axis: int | None = None
    planes: tuple[int, int] | None = None
    dz: float | None = None
    raw_sim: bool | None = None  # None: automatic (BioSR .mrc files only)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> PredictOptions:
        planes = getattr(args, "planes", None)
        return cls(
            pixel_size=getattr(args, "pixel_size", None),
            na=getattr(args, "na", None),
            wavelength=getattr(args, "wavelength", None),
            offset=getattr(args, "offset", None),
            focus_axis=getattr(args, "focus_axis", None),
            planes=None if planes is None else (int(planes[0]), int(planes[1])),
            dz=getattr(args, "dz", None),
            raw_sim=getattr(args, "raw_sim", None),
        )

    def namespace(self) -> argparse.Namespace:
        """As the CLI's parsed arguments (for ``commands.predict``'s helpers)."""
        ns = argparse.Namespace(**{k: getattr(self, k) for k in self.__dataclass_fields__})
        ns.planes = None if self.planes is None else list(self.planes)
        return ns


@dataclass(frozen=True)
class FileJob:
    """One input file to reconstruct and write: everything a worker needs (picklable)."""

    path: str
    stem: str
    output_dir: str
    params: Any  # workflows.predict.ReconstructionParams
    options: PredictOptions = field(default_factory=PredictOptions)
    overwrite: bool = False
    inputs: tuple[str, ...] = ()
    model_path: str = ""
    model_sha256: str | None = None
    run_id: str = ""
    threads: int | None = None  # torch threads on the worker (None: auto there)

    @property
    def targets(self) -> list[Path]:
        from .predict_io import OUTPUTS

        return [Path(self.output_dir) / f"{self.stem}_{suffix}.tif" for suffix in OUTPUTS]


def file_events(
    job: FileJob,
    loaded: Any,
    extra: dict[str, Any] | None = None,
    task_options: dict[str, Any] | None = None,
) -> Generator[Any, None, list[Path]]:
    """One input file as a generator: read and check it, yield the ``reconstruct`` events
    (``Progress``, ``PartialResult``, ``Finished``), then write its output set; returns the
    written paths. Closing it before the end stops within one sampler step and writes nothing.

    ``extra`` goes into every output's provenance; ``task_options`` replace adapter options
    derived from ``job.options`` (e.g. the Reconstruct widget's QPI ``dz_um``, the defocus of
    the chosen planes, where ``job.options.dz`` is the stack's step).
    """
    from . import tasks
    from .events import Finished
    from .predict_io import read_input, write_outputs
    from .workflows.predict import reconstruct
    from .workflows.preflight import check_job

    task = tasks.get(loaded.task)
    opts = job.options
    name = os.path.basename(job.path)
    with warnings.catch_warnings():  # printed when the inputs were checked
        warnings.simplefilter("ignore", UserWarning)
        array, pixel_size, meta = read_input(job.path, opts.pixel_size, task.name, opts.raw_sim)
    options = {**task.adapter_options(opts.namespace(), pixel_size, array.shape, meta)}
    options.update(task_options or {})
    check_job(task.name, array.shape, loaded.metadata, options, job.params.n_samples, name=name)
    events = reconstruct(array, loaded, job.params, input_name=name, **options)
    del array
    result = None
    try:
        for event in events:
            if isinstance(event, Finished):
                result = event.result
            yield event
    finally:
        events.close()
    if result is None:  # pragma: no cover - the workflow always finishes with a result
        raise RuntimeError("the reconstruction ended without a result")
    out_pixel = task.output_pixel_size(pixel_size, result.metadata.get("resample_factor", 1.0))
    provenance = {
        "source_metadata": {"pixel_size_um": meta.pixel_size_um, "axes": meta.axes},
        **(extra or {}),
    }
    return write_outputs(
        Path(job.output_dir),
        job.stem,
        result,
        out_pixel,
        provenance,
        overwrite=job.overwrite,
        inputs=job.inputs,
    )


def predict_file(
    job: FileJob,
    loaded: Any,
    consume: Callable[[Iterable[Any]], Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> list[Path]:
    """Reconstruct ``job.path`` with ``loaded`` and write its output set; returns the paths.

    ``consume(events)`` drains the events of :func:`file_events` (the CLI's progress bar;
    default: no display); the outputs are written when it reaches their end. ``extra`` goes
    into every output's provenance.
    """
    written: list[Path] = []

    def events() -> Iterator[Any]:
        written.extend((yield from file_events(job, loaded, extra)))

    stream = events()
    if consume is None:
        for _ in stream:
            pass
    else:
        consume(stream)
    return written


# ------------------------------------------------------------------------------ worker side

_MODELS: dict[tuple[str, str | None], Any] = {}
_MODELS_LOCK = threading.Lock()
_COMPUTE_LOCK = threading.Lock()
_THREADS: dict[str, int] = {}


def _worker_model(job: FileJob) -> Any:
    """The job's model, loaded once per process (checked against the client's SHA-256)."""
    from .engine.registry import load

    key = (job.model_path, job.model_sha256)
    with _MODELS_LOCK:
        loaded = _MODELS.get(key)
        if loaded is None:
            if not Path(job.model_path).is_file():
                raise UserError(
                    f"the model file {job.model_path} is not readable on this worker; put it "
                    "on a file system the workers share (or use a bundled model name)"
                )
            loaded = load(job.model_path)
            if job.model_sha256 and loaded.sha256 != job.model_sha256:
                raise UserError(
                    f"the model file {job.model_path} on this worker differs from the client's "
                    "(SHA-256 mismatch); give every machine the same file"
                )
            _MODELS[key] = loaded
    return loaded


def _set_threads(threads: int | None) -> None:
    import torch

    from .engine.threads import resolve_threads

    wanted = resolve_threads(threads if threads else "auto")
    if _THREADS.get("torch") != wanted:
        torch.set_num_threads(wanted)
        _THREADS["torch"] = wanted


def _provenance_run_id(path: Path) -> str | None:
    """The ``batch.run_id`` in a written output's provenance (header only, no pixels)."""
    import json

    import tifffile

    from .io import PROVENANCE_KEY

    try:
        with tifffile.TiffFile(path) as tif:
            info = (tif.imagej_metadata or {}).get("Info")
        data = json.loads(info) if isinstance(info, str) else {}
        return data[PROVENANCE_KEY]["batch"]["run_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _earlier_attempt(job: FileJob) -> tuple[bool, bool]:
    """``(complete, partial)``: whether all / some of ``job``'s outputs exist and were written
    by this run (an earlier attempt of the same task, on a worker that died before it could
    report, or during its commit)."""
    if not job.run_id:
        return False, False
    ours = [p.is_file() and _provenance_run_id(p) == job.run_id for p in job.targets]
    others = [p.is_file() and not mine for p, mine in zip(job.targets, ours)]
    return all(ours), any(ours) and not any(others)


def _run_task(job: FileJob) -> dict[str, Any]:
    """The Dask task of one file (runs on a worker)."""
    from .events import Finished, Progress
    from .outputset import sweep

    try:
        from distributed import get_worker

        worker = get_worker()
    except (ImportError, ValueError):  # called outside a worker (tests, in-process runs)
        worker = None
    address = getattr(worker, "address", "local")
    folder = Path(job.output_dir)
    sweep(folder)  # what a dead attempt of this (or another) task left here
    complete, partial = _earlier_attempt(job)
    if complete:
        return {"path": job.path, "written": [str(p) for p in job.targets], "worker": address}
    if partial:  # a commit cut short on another machine: replace only this run's own files
        job = replace(job, overwrite=True)
    loaded = _worker_model(job)
    last = [0.0]

    def send(done: int, total: int, force: bool = False) -> None:
        now = time.monotonic()
        if worker is None or not (force or now - last[0] >= PROGRESS_INTERVAL_S):
            return
        last[0] = now
        msg = {"run": job.run_id, "path": job.path, "done": done, "total": total}
        worker.log_event(PROGRESS_TOPIC, {**msg, "worker": address})

    def consume(events: Iterable[Any]) -> Any:
        result = None
        for event in events:
            if isinstance(event, Progress):
                send(event.step, event.total, force=event.step >= event.total)
            elif isinstance(event, Finished):
                result = event.result
        return result

    with _COMPUTE_LOCK:
        _set_threads(job.threads)
        written = predict_file(job, loaded, consume, extra={"batch": {"run_id": job.run_id}})
    return {"path": job.path, "written": [str(p) for p in written], "worker": address}


# ------------------------------------------------------------------------------ client side


def _require_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise UserError(
            f"Dask-distributed prediction needs dask.distributed; {_INSTALL_HINT}"
        ) from None
    return distributed


def connect(
    address: str, n_workers: int | None = None, timeout: float | None = None
) -> tuple[Any, Any]:
    """``(client, cluster)`` for a scheduler ``address`` (cluster None) or ``"local"`` (a new
    ``LocalCluster`` of ``n_workers`` single-threaded worker processes, default: the cores).

    Raises ``UserError`` (one line) when the scheduler cannot be reached within ``timeout``
    seconds (default ``CONNECT_TIMEOUT_S``) or the address is malformed.
    """
    distributed = _require_distributed()
    import logging

    timeout = CONNECT_TIMEOUT_S if timeout is None else float(timeout)
    if str(address).strip().lower() == "local":
        from .engine.threads import available_cores

        workers = int(n_workers or available_cores())
        if workers < 1:
            raise InputError(f"--dask-workers must be >= 1, got {workers}")
        cluster = distributed.LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
        return distributed.Client(cluster, timeout=timeout, set_as_default=False), cluster
    if n_workers is not None:
        raise InputError("--dask-workers applies to --dask-scheduler local only")
    try:
        # not the process's default dask scheduler: tasks go to the client explicitly, and a
        # failed connection must not leave later dask work (lazy OME-Zarr reads) pointing at it
        client = distributed.Client(str(address), timeout=timeout, set_as_default=False)
    except Exception as exc:  # OSError, TimeoutError, ValueError for a malformed address
        if isinstance(exc, OSError | TimeoutError | ValueError) and str(exc):
            reason = str(exc).splitlines()[0]
        else:  # e.g. MemoryError decoding a reply from something that is not a scheduler
            reason = f"what answered there is not a Dask scheduler: {type(exc).__name__}"
        raise UserError(
            f"cannot connect to the Dask scheduler at {address!r} within {timeout:g} s "
            f"({reason[:160]}); check the address (e.g. tcp://host:8786) and that the "
            "scheduler is running, or use --dask-scheduler local"
        ) from None
    return client, None


@dataclass
class BatchProgress:
    """What the client knows: per input, sample-steps ``done`` of ``total`` (0 until its task
    reports), inputs ``finished``, and the ``workers`` that reported."""

    inputs: int
    done: dict[str, int] = field(default_factory=dict)
    total: dict[str, int] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)
    workers: set[str] = field(default_factory=set)

    @property
    def fraction(self) -> float:
        """Overall fraction in [0, 1]: every input weighs the same."""
        parts = [
            1.0 if p in self.finished else self.done[p] / max(1, self.total.get(p, 1))
            for p in set(self.done) | self.finished
        ]
        return min(1.0, sum(parts) / max(1, self.inputs))


def _final_error(exc: BaseException, job: FileJob) -> BaseException:
    """A task's exception as the one line the user sees."""
    if isinstance(exc, UserError):
        return exc
    name = type(exc).__name__
    if name == "KilledWorker":
        return UserError(
            f"the workers running {job.path} died repeatedly (out of memory? see the worker "
            "logs); give the workers more memory or fewer threads, or use a smaller --tile"
        )
    if isinstance(exc, ImportError | ModuleNotFoundError):
        return UserError(
            f"a Dask worker cannot import what {job.path} needs ({exc}); install napari-cvdm "
            "(same version) in the workers' environment"
        )
    return exc


def run_jobs(
    client: Any,
    jobs: Sequence[FileJob],
    on_progress: Callable[[BatchProgress], None] | None = None,
    on_written: Callable[[FileJob, list[Path]], None] | None = None,
    poll_s: float = 0.2,
) -> dict[str, list[Path]]:
    """Run ``jobs`` as Dask tasks on ``client``; returns ``{input path: written paths}``.

    ``on_progress`` is called in this thread about every ``poll_s`` seconds with the summed
    progress; ``on_written`` as each input's outputs are committed. A task's error cancels the
    others and is raised (a ``UserError`` stays one line). Lost workers' tasks are re-run by the
    scheduler (``distributed.scheduler.allowed-failures``).
    """
    _require_distributed()
    progress = BatchProgress(inputs=len(jobs))
    lock = threading.Lock()
    run_ids = {job.run_id for job in jobs}

    def handler(event: Any) -> None:  # runs in the client's event-loop thread
        msg = event[1] if isinstance(event, tuple | list) and len(event) == 2 else event
        if not isinstance(msg, dict) or msg.get("run") not in run_ids:
            return
        with lock:
            path = msg["path"]
            progress.done[path] = max(progress.done.get(path, 0), int(msg["done"]))
            progress.total[path] = int(msg["total"])
            progress.workers.add(str(msg.get("worker")))

    client.subscribe_topic(PROGRESS_TOPIC, handler)
    futures = {
        client.submit(_run_task, job, key=f"napari-cvdm-{job.stem}-{job.run_id}", pure=False): job
        for job in jobs
    }
    written: dict[str, list[Path]] = {}
    try:
        pending = list(futures)
        while pending:
            for future in [f for f in pending if f.done()]:
                pending.remove(future)
                job = futures[future]
                if future.status != "finished":
                    error = future.exception() if future.status == "error" else None
                    raise _final_error(
                        error or UserError(f"the task of {job.path} was {future.status}"), job
                    )
                paths = [Path(p) for p in future.result()["written"]]
                written[job.path] = paths
                with lock:
                    progress.finished.add(job.path)
                if on_written is not None:
                    on_written(job, paths)
            if on_progress is not None:
                with lock:
                    on_progress(progress)
            if pending:
                time.sleep(poll_s)
    finally:
        for future in futures:
            if not future.done():
                future.cancel()
        with contextlib.suppress(Exception):  # a closing client cannot unsubscribe
            client.unsubscribe_topic(PROGRESS_TOPIC)
    return {job.path: written[job.path] for job in jobs}


def make_jobs(
    paths: Sequence[str | os.PathLike],
    model_path: str | os.PathLike,
    output_dir: str | os.PathLike,
    params: Any,
    options: PredictOptions | None = None,
    overwrite: bool = False,
    threads: int | None = None,
    model_sha256: str | None = None,
) -> list[FileJob]:
    """One :class:`FileJob` per input (stems must be distinct; one ``run_id`` for all)."""
    from .engine.modelfile import file_sha256
    from .io import image_stem

    run_id = uuid.uuid4().hex
    paths = [os.fspath(p) for p in paths]
    sha = model_sha256 or file_sha256(model_path)
    stems: dict[str, str] = {}
    jobs = []
    for path in paths:
        stem = image_stem(path) or Path(path).stem
        if stem in stems:
            raise InputError(f"{path} and {stems[stem]} would both write {stem}_*.tif; rename one")
        stems[stem] = path
        jobs.append(
            FileJob(
                path=str(Path(path).resolve()),
                stem=stem,
                output_dir=str(Path(output_dir).resolve()),
                params=params,
                options=options or PredictOptions(),
                overwrite=overwrite,
                inputs=tuple(str(Path(p).resolve()) for p in paths),
                model_path=str(Path(model_path).resolve()),
                model_sha256=sha,
                run_id=run_id,
                threads=threads,
            )
        )
    return jobs


def reconstruct_many(
    paths: Sequence[str | os.PathLike],
    model: str | os.PathLike,
    output_dir: str | os.PathLike,
    *,
    client: Any = None,
    params: Any = None,
    options: PredictOptions | None = None,
    overwrite: bool = False,
    threads: int | None = None,
    on_progress: Callable[[BatchProgress], None] | None = None,
) -> dict[str, list[Path]]:
    """Reconstruct every file in ``paths`` with ``model`` (name or path) into ``output_dir``.

    ``client``: a ``dask.distributed.Client`` (one task per file on its workers) or None (here,
    one file after the other). ``params``: a ``ReconstructionParams`` (default: the defaults);
    ``options``: :class:`PredictOptions` for every file. Existing outputs are refused unless
    ``overwrite``. Returns ``{input path: [mean, std, schedule paths]}``. Same seed and
    ``threads``, same pixels as ``napari-cvdm predict`` in one process.
    """
    from .engine.registry import resolve_model
    from .fsutil import refuse_existing
    from .outputset import sweep
    from .predict_io import check_output_dir
    from .workflows.predict import ReconstructionParams

    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    if not paths:
        raise InputError("no input files given")
    params = (params or ReconstructionParams()).validate()
    if client is not None:
        params = replace(params, partial_copies=False)
    model_path = resolve_model(model)
    jobs = make_jobs(paths, model_path, output_dir, params, options, overwrite, threads)
    refuse_existing([t for job in jobs for t in job.targets], jobs[0].inputs, overwrite)
    folder = check_output_dir(Path(output_dir))
    sweep(folder)
    if client is not None:
        return run_jobs(client, jobs, on_progress=on_progress)
    from .engine.registry import load

    loaded = load(model_path)
    if threads:
        _set_threads(threads)
    return {job.path: predict_file(job, loaded) for job in jobs}


def run_cli(
    args: argparse.Namespace, stems: dict[str, str], loaded: Any, params: Any, folder: Path
) -> int:
    """``napari-cvdm predict --dask-scheduler``: the checked inputs ``stems`` (stem → path) as
    one task each on the cluster, one progress bar summed over the workers, each input's
    written paths printed as they are committed."""
    import sys

    from .commands._progress import ProgressBar
    from .engine.threads import available_cores, parse_threads

    address = str(args.dask_scheduler)
    client, cluster = connect(address, getattr(args, "dask_workers", None))
    try:
        try:
            client.wait_for_workers(1, timeout=CONNECT_TIMEOUT_S)
        except Exception:  # TimeoutError (its class differs between versions)
            raise UserError(
                f"the Dask scheduler at {address!r} has no workers after "
                f"{CONNECT_TIMEOUT_S:g} s; start some (e.g. `dask worker {address}`)"
            ) from None
        n_workers = len(client.scheduler_info().get("workers", {}))
        threads = parse_threads(getattr(args, "threads", "auto"))
        if threads is None and cluster is not None:  # local: share this machine's cores
            threads = max(1, available_cores() // max(1, n_workers))
        jobs = make_jobs(
            list(stems.values()),
            loaded.path,
            folder,
            replace(params, partial_copies=False),
            PredictOptions.from_args(args),
            overwrite=bool(getattr(args, "overwrite", False)),
            threads=threads,
            model_sha256=loaded.sha256,
        )
        bar = ProgressBar(f"{len(jobs)} inputs on {n_workers} Dask workers")

        def on_progress(progress: BatchProgress) -> None:
            done = f"{len(progress.finished)}/{progress.inputs} inputs"
            bar.update(round(100 * progress.fraction), 100, done)

        def on_written(job: FileJob, paths: list[Path]) -> None:
            bar.close()
            print("\n".join(str(p) for p in paths), flush=True)

        try:
            run_jobs(client, jobs, on_progress=on_progress, on_written=on_written)
        finally:
            bar.close()
        sys.stdout.flush()
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return 0
