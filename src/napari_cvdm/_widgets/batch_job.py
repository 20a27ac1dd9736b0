"""What the Reconstruct widget's batch mode runs in its thread worker, and its summary.

A batch is a list of items run one after the other with one loaded model: image layers
(:class:`LayerItem`, a :class:`~._widgets.reconstruct_job.ReconstructionJob` each, results as
layers) or files of a folder (:class:`FileItem`, a :class:`napari_cvdm.batch.FileJob` each,
written by :func:`napari_cvdm.batch.file_events` exactly as ``napari-cvdm predict`` writes
them). :func:`run_batch` is the worker generator: it announces each item
(:class:`ItemStarted`), passes on the reconstruction's events and ends the item with
:class:`ItemDone` or :class:`ItemFailed` (a failing input never stops the others). Closing the
generator stops the current item within one sampler step and writes nothing for it.
:class:`BatchSummary` is what the user reads at the end.

No Qt and no torch at import.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from .reconstruct_job import JobFailed, ReconstructionJob

__all__ = [
    "BatchSummary",
    "FileItem",
    "ItemDone",
    "ItemFailed",
    "ItemStarted",
    "LayerItem",
    "folder_images",
    "folder_items",
    "run_batch",
]


@dataclass(frozen=True)
class LayerItem:
    """One image layer of a batch (its frozen job; the layers are made on the main thread)."""

    name: str
    job: ReconstructionJob


@dataclass(frozen=True)
class FileItem:
    """One file of a batch: a ``batch.FileJob`` and adapter options that replace the file's
    (see ``batch.file_events``)."""

    name: str
    job: Any
    task_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemStarted:
    """Item ``index`` (0-based) named ``name`` starts."""

    index: int
    name: str


@dataclass(frozen=True)
class ItemDone:
    """Item ``index`` finished in ``seconds``; ``written``: its output files (folder mode)."""

    index: int
    name: str
    seconds: float
    written: tuple[str, ...] = ()


@dataclass(frozen=True)
class ItemFailed:
    """Item ``index`` raised ``error`` (nothing written for it); the batch goes on."""

    index: int
    name: str
    error: BaseException


def run_batch(
    items: Sequence[LayerItem | FileItem], model_path: Path, threads: int | None
) -> Iterator[Any]:
    """Worker-thread generator: load the model once, then run every item in turn.

    Yields :class:`ItemStarted`, the items' ``Progress``/``PartialResult``/``Finished`` events
    and :class:`ItemDone`/:class:`ItemFailed`; a model that cannot be loaded gives one
    :class:`~._widgets.reconstruct_job.JobFailed` and nothing else.
    """
    try:
        import torch

        from ..engine.modelfile import load_model

        if threads:
            torch.set_num_threads(int(threads))
        loaded = load_model(model_path, "cpu")
    except Exception as exc:  # shown once, as the single run shows it
        yield JobFailed(exc)
        return
    from ..batch import file_events
    from ..workflows.predict import reconstruct

    for index, item in enumerate(items):
        yield ItemStarted(index, item.name)
        start = time.monotonic()
        written: list[Path] = []
        try:
            if isinstance(item, FileItem):
                written = yield from file_events(item.job, loaded, task_options=item.task_options)
            else:
                job = item.job
                stream = reconstruct(job.image, loaded, job.params, **job.task_options)
                try:
                    yield from stream
                finally:
                    stream.close()
        except Exception as exc:  # this item only: listed in the summary, the next one starts
            yield ItemFailed(index, item.name, exc)
            continue
        seconds = time.monotonic() - start
        yield ItemDone(index, item.name, seconds, tuple(str(p) for p in written))


def folder_images(folder: str | os.PathLike) -> list[Path]:
    """The images in ``folder`` that ``napari-cvdm predict`` reads (sorted, no hidden files).

    Raises ``InputError`` (one line) when the folder is missing or holds none.
    """
    from ..io import IMAGE_SUFFIXES, image_stem

    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"the input folder {folder} does not exist; choose a folder of images")
    found = [
        entry
        for entry in sorted(folder.iterdir())
        if not entry.name.startswith(".")
        and image_stem(entry)
        and (entry.is_file() or entry.name.lower().endswith(".zarr"))
    ]
    if not found:
        raise InputError(f"the input folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def folder_items(
    input_dir: str | os.PathLike,
    output_dir: str | os.PathLike,
    model_path: Path,
    params: Any,
    options: Any,
    *,
    overwrite: bool = False,
    threads: int | None = None,
    task_options: dict[str, Any] | None = None,
) -> tuple[list[FileItem], list[tuple[str, str]]]:
    """The files of ``input_dir`` as batch items writing into ``output_dir``, and the skipped
    ones as ``(name, reason)``: a file whose outputs exist is skipped unless ``overwrite``
    (so a cancelled batch continues where it stopped).

    ``params``: a ``ReconstructionParams``; ``options``: a ``batch.PredictOptions`` for every
    file. Creates the output folder and sweeps what killed runs left there. Raises
    ``UserError`` (one line) for a missing or unwritable folder, an output folder that is the
    input folder, or two inputs with the same name.
    """
    from ..batch import make_jobs
    from ..commands.predict import check_output_dir
    from ..outputset import sweep

    paths = folder_images(input_dir)
    if Path(output_dir).resolve() == Path(input_dir).resolve():
        raise InputError(
            "the output folder is the input folder: choose another one (its results would be "
            "read as inputs by the next batch)"
        )
    jobs = make_jobs(paths, model_path, output_dir, params, options, overwrite, threads)
    folder = check_output_dir(Path(output_dir))
    sweep(folder)
    items, skipped = [], []
    for path, job in zip(paths, jobs):
        if not overwrite and any(t.exists() or t.is_symlink() for t in job.targets):
            skipped.append((path.name, f"its outputs are already in {folder} (tick overwrite)"))
            continue
        items.append(FileItem(path.name, job, dict(task_options or {})))
    return items, skipped


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" + ("" if n == 1 else "s")


@dataclass
class BatchSummary:
    """What a batch did: inputs ``done``, ``failed`` and ``skipped`` (with one-line reasons),
    the one ``cancelled`` mid-way (its name and what was kept, e.g. ``"b.tif (nothing
    written)"``), those ``not_started`` after a cancel, and the wall time."""

    total: int
    done: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cancelled: str | None = None
    not_started: list[str] = field(default_factory=list)
    seconds: float = 0.0
    written: list[str] = field(default_factory=list)

    @property
    def stopped(self) -> bool:
        """Whether the batch was cancelled before its end."""
        return self.cancelled is not None or bool(self.not_started)

    def headline(self) -> str:
        """One line: how many done, failed, skipped, and the total time."""
        verb = "cancelled after" if self.stopped else "finished in"
        counts = f"{len(self.done)} done, {len(self.failed)} failed, {len(self.skipped)} skipped"
        line = f"Batch of {_plural(self.total, 'input')} {verb} {self.seconds:.1f} s: {counts}"
        if self.cancelled is not None:
            line += f"; stopped {self.cancelled}"
        if self.not_started:
            line += f"; {len(self.not_started)} not started"
        return line

    def lines(self) -> list[str]:
        """The headline, then one line per failed and per skipped input with its reason."""
        out = [self.headline()]
        out += [f"failed: {name}: {reason}" for name, reason in self.failed]
        out += [f"skipped: {name}: {reason}" for name, reason in self.skipped]
        return out

    def text(self) -> str:
        return "\n".join(self.lines())
