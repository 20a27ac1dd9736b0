"""What an input file holds, decided the same way by every command: raw SIM, RGB, plain image.

* Raw SIM (9 frames: 3 orientations × 3 phases) is recognised only for BioSR/rDL-SIM ``.mrc``
  files with 9 sections (``ImageMetadata.extra["raw_sim_frames"]``), or when the user asks
  (``--raw-sim``); it is averaged to a widefield frame for SR and refused for QPI (it is not a
  through-focus stack). A 9-plane TIFF z-stack is never averaged by itself.
* Interleaved RGB(A) images (tifffile axes ending in ``S``, 3 or 4 samples) are refused with
  that reason.
* Negative intensities are allowed for SR but noted (a warning): widefield ADU are ≥ 0.

No torch, Qt or napari here.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from .errors import InputError

__all__ = ["is_raw_sim", "prepare_input"]


def is_raw_sim(array: np.ndarray, meta: Any, requested: bool = False) -> bool:
    """Whether ``array`` (..., 9, Y, X) is to be treated as raw SIM frames."""
    nine = array.ndim >= 3 and array.shape[-3] == 9
    recognised = bool(getattr(meta, "extra", {}).get("raw_sim_frames", False))
    return nine and (recognised or requested)


def prepare_input(
    array: Any, meta: Any, task: str, name: str, raw_sim: bool = False
) -> np.ndarray:
    """The array a ``task`` ("sr"/"qpi") reconstruction should see; raises ``InputError``."""
    array = np.asarray(array)
    axes = str(getattr(meta, "axes", "") or "")
    # interleaved colour (…YXS); planar "SYX" files are often plain 3-plane stacks: kept
    if axes.endswith("S") and array.ndim == len(axes) and array.shape[-1] in (3, 4):
        raise InputError(
            f"{name} is an RGB(A) colour image; give a single-channel intensity image "
            "(e.g. save one channel as a grayscale TIFF)"
        )
    if raw_sim and not (array.ndim >= 3 and array.shape[-3] == 9):
        raise InputError(f"{name}: --raw-sim needs 9 frames (9, Y, X); got shape {array.shape}")
    if is_raw_sim(array, meta, raw_sim):
        if task != "sr":
            raise InputError(
                f"{name} holds 9 raw SIM frames, not a through-focus stack; QPI needs planes at "
                "-dz and +dz — use an SR model, or a through-focus stack"
            )
        from .io import widefield_from_raw_sim

        array = widefield_from_raw_sim(array)
    if task == "sr" and np.issubdtype(array.dtype, np.number) and array.size:
        low = float(np.min(array))
        if low < 0:
            warnings.warn(
                f"{name} has negative intensities (min {low:.3g}); widefield images in ADU are "
                "≥ 0 — was it background-subtracted? Check --offset",
                UserWarning,
                stacklevel=2,
            )
    return array
