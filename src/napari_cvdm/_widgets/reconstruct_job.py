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
    "describe_model",
    "group_size_for",
    "memory_warning",
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
) -> tuple[np.ndarray, tuple[int, ...], dict[int, int]]:
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
    image, drop_axes, frame_index
        The selected array (a copy; a single frame keeps its frame axes with length 1, so the
        output stays at that frame's position), the input axes the output will not have (the
        QPI focus axis), and ``{frame axis: index}`` of the selected frame (empty for all).
    """
    from .. import tasks

    stack = tasks.get(mode).focus_stack  # the focus axis is no frame axis, and is dropped
    ndim = len(data.shape)
    frame_axes = [a for a in range(ndim - 2) if not (stack and a == focus_axis)]
    drop = (focus_axis,) if stack and focus_axis is not None else ()
    if current is None or not frame_axes:
        return np.array(data, copy=True), drop, {}
    index: list[Any] = [slice(None)] * ndim
    chosen = {}
    for axis in frame_axes:
        size = data.shape[axis]
        i = int(min(max(round(float(current[axis])), 0), size - 1))
        index[axis] = slice(i, i + 1)
        chosen[axis] = i
    return np.array(data[tuple(index)], copy=True), drop, chosen


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
    """CPU threads for torch in the worker: the cores available minus one (at least 1).

    One core stays free for napari's event loop so the GUI remains responsive; on a busy
    2-core machine more intra-op threads than free cores made sampling several times slower.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        cores = os.cpu_count() or 1
    return max(1, cores - 1)


def _fmt(value: float) -> str:
    return f"{value:.4g}"


def describe_model(meta: dict[str, Any]) -> str:
    """One line: task, training pixel size and optics of a model header."""
    from .. import tasks

    physics = meta["physics"]
    parts = [meta["task"].upper()]
    if tasks.get(meta["task"]).upscale != 1.0:  # a finer output grid
        parts.append(f"×{_fmt(physics.get('upscale', 2))}")
    if physics.get("pixel_size_um"):
        parts.append(f"trained at {_fmt(physics['pixel_size_um'])} µm/px")
    if physics.get("na"):
        parts.append(f"NA {_fmt(physics['na'])}")
    if physics.get("wavelength_um"):
        parts.append(f"λ {_fmt(physics['wavelength_um'])} µm")
    if physics.get("dz_um"):
        parts.append(f"dz {_fmt(physics['dz_um'])} µm")
    parts.append(str(meta["architecture"].get("preset", "")))
    text = " · ".join(p for p in parts if p)
    if meta.get("training", {}).get("untrained"):
        text += " · UNTRAINED (random weights, demo only)"
    return text


def memory_warning(job: ReconstructionJob) -> str | None:
    """A warning when the output arrays would need more than half the RAM."""
    image, options = job.image, job.task_options
    if "planes" in options:  # QPI: same Y/X, the focus axis is gone
        out_pixels = image.size // max(image.shape[options.get("focus_axis") or 0], 1)
    else:  # SR: 2x on Y and X
        out_pixels = image.size * 4
    layers = 3 + 2 * len(job.params.t_star)  # mean, std, λ, γ and β stacks
    need = out_pixels * 4 * layers * 2  # float32; the worker's buffers and the layers' copies
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None
    if need > total / 2:
        return (
            f"The outputs need about {need / 1e9:.1f} GB, more than half of this computer's "
            f"{total / 1e9:.1f} GB of RAM. Reconstruct the current frame only if napari runs "
            "out of memory."
        )
    return None
