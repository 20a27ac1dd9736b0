"""What an input file holds, decided the same way by every command: raw SIM, RGB, plain image.

* Raw SIM (9 frames: 3 orientations × 3 phases) is recognised only for BioSR/rDL-SIM ``.mrc``
  files with 9 sections (``ImageMetadata.extra["raw_sim_frames"]``), or when the user asks
  (``--raw-sim``); it is averaged to a widefield frame for SR and refused for QPI (it is not a
  through-focus stack). A 9-plane TIFF z-stack is never averaged by itself.
* Interleaved RGB(A) images (tifffile axes ending in ``S``, 3 or 4 samples) are refused with
  that reason.
* Negative intensities are allowed for SR but noted (a warning): widefield ADU are ≥ 0.
* A camera offset above most of the image (:func:`check_offset`: above the median by more than
  the pixel noise) is refused when the user gave it, and noted when it is a model's default.

No torch, Qt or napari here.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["check_offset", "is_raw_sim", "offset_sample", "prepare_input", "warn_if_negative"]

#: pixels looked at by :func:`check_offset` (a strided sample of large images and stacks)
OFFSET_SAMPLE_PIXELS = 1 << 20


#: raw SIM frame counts of the BioSR / rDL-SIM convention: 3 angles × 3 or 5 phases
RAW_SIM_FRAMES = (9, 15)


def is_raw_sim(array: np.ndarray, meta: Any, requested: bool | None = None) -> bool:
    """Whether ``array`` (..., 9 or 15, Y, X) is to be treated as raw SIM frames.

    ``requested``: None (automatic: only files recognised as raw SIM, e.g. BioSR ``.mrc``),
    True (``--raw-sim``: always) or False (``--no-raw-sim``: never; frames are reconstructed one
    by one).
    """
    frames = array.ndim >= 3 and array.shape[-3] in RAW_SIM_FRAMES
    recognised = bool(getattr(meta, "extra", {}).get("raw_sim_frames", False))
    return frames and (recognised if requested is None else bool(requested))


def prepare_input(
    array: Any, meta: Any, task: str, name: str, raw_sim: bool | None = None
) -> np.ndarray:
    """The array a ``task`` ("sr"/"qpi") reconstruction should see; raises ``InputError``.

    A lazy (dask) array, e.g. an OME-Zarr level read with ``read_image(..., lazy=True)``, stays
    lazy (nothing is read) unless raw SIM frames are averaged; the caller checks its
    intensities with :func:`warn_if_negative` once it is in memory."""
    from .tasks import get

    spec = get(task)
    lazy = hasattr(array, "dask")
    if not lazy:
        array = np.asarray(array)
    axes = str(getattr(meta, "axes", "") or "")
    # interleaved colour (…YXS); planar "SYX" files are often plain 3-plane stacks: kept
    if axes.endswith("S") and array.ndim == len(axes) and array.shape[-1] in (3, 4):
        raise InputError(
            f"{name} is an RGB(A) colour image; give a single-channel intensity image "
            "(e.g. save one channel as a grayscale TIFF)"
        )
    if raw_sim and not (array.ndim >= 3 and array.shape[-3] in RAW_SIM_FRAMES):
        raise InputError(
            f"{name}: --raw-sim needs 9 or 15 frames (9 or 15, Y, X); got shape {array.shape}"
        )
    if is_raw_sim(array, meta, raw_sim):
        if not spec.raw_sim_input:
            raise InputError(
                f"{name} holds {array.shape[-3]} raw SIM frames, not a through-focus stack; QPI "
                "needs planes at -dz and +dz — use an SR model, or a through-focus stack"
            )
        from .io import widefield_from_raw_sim

        array = widefield_from_raw_sim(array)
    if spec.camera_input and not hasattr(array, "dask"):
        warn_if_negative(array, name, stacklevel=3)
    return array


def warn_if_negative(array: np.ndarray, name: str, stacklevel: int = 2) -> None:
    """Warn (``UserWarning``) when an SR input has negative intensities: widefield ADU are ≥ 0."""
    if np.issubdtype(array.dtype, np.number) and array.size:
        low = float(np.min(array))
        if low < 0:
            warnings.warn(
                f"{name} has negative intensities (min {low:.3g}); widefield images in ADU are "
                "≥ 0 — was it background-subtracted? Check --offset",
                UserWarning,
                stacklevel=stacklevel,
            )


def offset_sample(array: Any) -> np.ndarray:
    """A float64 sample of at most ~:data:`OFFSET_SAMPLE_PIXELS` pixels of ``array`` (..., Y, X):
    up to three frames (first, middle, last) of the leading axes, strided in Y and X. Reads only
    what it samples of lazy (dask, zarr, memory-mapped) arrays."""
    shape = tuple(int(s) for s in getattr(array, "shape", ()))
    if len(shape) < 2 or 0 in shape:
        return np.zeros(0)
    lead = shape[:-2]
    frames = sorted({0, (int(np.prod(lead)) - 1) // 2, int(np.prod(lead)) - 1}) if lead else [0]
    per_frame = OFFSET_SAMPLE_PIXELS // len(frames)
    stride = max(1, int(np.ceil(np.sqrt(shape[-2] * shape[-1] / per_frame))))
    parts = []
    for flat in frames:
        idx = np.unravel_index(flat, lead) if lead else ()
        part = np.asarray(array[(*idx, slice(None, None, stride), slice(None, None, stride))])
        parts.append(np.asarray(part, dtype=np.float64).ravel())
    sample = np.concatenate(parts)
    return sample[np.isfinite(sample)]


def check_offset(
    array: Any, offset_adu: float | None, name: str, given: bool, flag: str = "--offset"
) -> str | None:
    """Compare a camera offset with the image it is subtracted from.

    An offset above the image's median by more than the pixel noise (1.4826 × MAD) would make
    most pixels negative: a wrong offset (another camera's, an ADU/e- mix-up) or an image whose
    offset was already subtracted. ``given`` (the user typed it): raises :class:`InputError`;
    otherwise (a model's or a file's default) returns the note to show (None when it fits).
    """
    if offset_adu is None or not np.isfinite(float(offset_adu)):
        return None
    sample = offset_sample(array)
    if sample.size == 0:
        return None
    median = float(np.median(sample))
    noise = 1.4826 * float(np.median(np.abs(sample - median)))
    if float(offset_adu) <= median + noise:
        return None
    below = 100.0 * float(np.mean(sample < float(offset_adu)))
    if given:
        raise InputError(
            f"{flag} {float(offset_adu):g} ADU is above most of {name} (median {median:.4g} ADU; "
            f"{below:.0f} in 100 pixels are below it): subtracting it would leave mostly "
            "negative intensities; give the camera's dark level in ADU (often 100), or 0 if the "
            "offset was already subtracted"
        )
    return (
        f"the camera offset {float(offset_adu):g} ADU (the default) is above most of {name} "
        f"(median {median:.4g} ADU; {below:.0f} in 100 pixels are below it); if the offset was "
        f"already subtracted give {flag} 0, else give the camera's dark level"
    )
