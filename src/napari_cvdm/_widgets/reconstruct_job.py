"""What the Reconstruct widget hands to its thread worker: a frozen job and the job generator.

The job is snapshotted on the main thread when Run is pressed (numpy arrays and plain values,
never layers). :func:`run_job` runs in the worker thread: it loads the model, then passes on the
events of :func:`napari_cvdm.workflows.predict.reconstruct`. Exceptions travel as a
:class:`JobFailed` message (napari's worker would otherwise add its own notification, and a
torch ``RuntimeError`` would stop it without its ``finished`` signal). Closing the generator
stops the reconstruction and frees device memory.

No Qt and no torch at import.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "JobFailed",
    "ReconstructionJob",
    "default_threads",
    "group_size_for",
    "run_job",
    "select_frames",
]


@dataclass(frozen=True)
class JobFailed:
    """The job raised ``error``; the worker then ends normally."""

    error: BaseException


@dataclass(frozen=True)
class ReconstructionJob:
    """Everything one run needs, independent of the GUI.

    ``image`` is the selected part of the layer (all frames, or the current frame); ``params``
    a ``workflows.predict.ReconstructionParams``; ``task_options`` the adapter options (SR
    ``pixel_size_um``, ``na``, ``wavelength_um``, ``offset_adu``; QPI ``focus_axis``, ``planes``,
    ``wavelength_um``, ``dz_um``, ``pixel_size_um``; both ``input_name``).
    """

    image: np.ndarray
    model_path: Path
    params: Any
    task_options: dict[str, Any] = field(default_factory=dict)
    threads: int | None = None


def group_size_for(n_samples: int) -> int:
    """Samples drawn together: about a quarter of them, so the mean/std refine about 4 times."""
    return max(1, -(-int(n_samples) // 4))


def select_frames(
    data: Any,
    *,
    mode: str,
    focus_axis: int | None,
    current: Sequence[int] | None,
) -> tuple[np.ndarray, tuple[int, ...], int | None]:
    """The part of a layer's data to reconstruct.

    Parameters
    ----------
    data
        The layer data (numpy, dask, zarr ...), Y/X last.
    mode
        ``"sr"``: every axis before Y/X is a frame axis. ``"qpi"``: ``focus_axis`` is kept and the
        other leading axes are frame axes.
    focus_axis
        QPI focus axis of ``data`` (non-negative).
    current
        Data index of the current position (one entry per axis of ``data``) to reconstruct only
        that frame; ``None`` for all frames.

    Returns
    -------
    image, drop_axes, focus_axis
        The selected array (a float-safe copy), the input axes the output will not have (for
        :mod:`napari_cvdm.geometry`), and the focus axis of ``image`` (QPI) or ``None``.
    """
    ndim = len(data.shape)
    frame_axes = [a for a in range(ndim - 2) if not (mode == "qpi" and a == focus_axis)]
    drop = (focus_axis,) if mode == "qpi" and focus_axis is not None else ()
    if current is None or not frame_axes:
        return np.array(data, copy=True), drop, focus_axis
    index: list[Any] = [slice(None)] * ndim
    for axis in frame_axes:
        size = data.shape[axis]
        index[axis] = int(min(max(round(float(current[axis])), 0), size - 1))
    image = np.array(data[tuple(index)], copy=True)
    new_focus = None
    if mode == "qpi" and focus_axis is not None:
        new_focus = focus_axis - sum(1 for a in frame_axes if a < focus_axis)
    return image, tuple(sorted(set(frame_axes) | set(drop))), new_focus


def run_job(job: ReconstructionJob) -> Iterator[Any]:
    """Worker-thread generator: load the model on the CPU, then yield ``reconstruct``'s events.

    Yields ``Progress``/``PartialResult``/``Finished`` events, or one :class:`JobFailed`.
    """
    try:
        import torch

        from ..engine.modelfile import load_model
        from ..workflows.predict import reconstruct

        if job.threads:
            torch.set_num_threads(int(job.threads))
        loaded = load_model(job.model_path, "cpu")
        stream = reconstruct(job.image, loaded, job.params, **job.task_options)
        try:
            yield from stream
        finally:
            stream.close()
    except Exception as exc:  # travels to the main thread as a message, shown once
        yield JobFailed(exc)


def default_threads() -> int:
    """CPU threads for torch in the worker: every core napari-cvdm may use (at least 1)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)
