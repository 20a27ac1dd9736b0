"""Checks of a reconstruction job before anything is allocated: resampling factor and memory.

:func:`check_job` computes the SR resampling factor the task adapter would use (the image's
pixel size and optics against the model's PSF sampling), refuses factors outside
[1/``MAX_RESAMPLE_FACTOR``, ``MAX_RESAMPLE_FACTOR``] (usually a unit mistake: nm typed as µm,
a 72-dpi resolution tag) and images that become smaller than the model's minimum, and refuses
jobs whose output arrays would not fit in the available memory — naming the number and the
remedy instead of crashing later. No torch here.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

from ..errors import InputError
from ..limits import MAX_RESAMPLE_FACTOR, check_memory, format_bytes

__all__ = ["BYTES_PER_OUTPUT_PIXEL", "check_job"]

#: float32 mean, std, λ map, γ and β stacks (5 t* each), float64 running stats and the partial
#: copies: bytes held per output pixel over a whole job
BYTES_PER_OUTPUT_PIXEL = 4 * (3 + 2 * 5) + 8 * 2 + 4 * 2
#: working bytes per pixel of the frame being sampled, per sample (condition, noise, model
#: activations of the tiny/small networks are bounded by the sampler's tiling)
BYTES_PER_FRAME_PIXEL_PER_SAMPLE = 64


def _sr_factor(metadata: dict[str, Any], pixel_size_um: float | None, na: Any, lam: Any) -> float:
    if pixel_size_um is None:
        return 1.0
    from ..physics.psf import psf_width_px, resample_factor_for_model

    p = metadata["physics"]
    r0 = psf_width_px(float(p["na"]), float(p["wavelength_um"]), float(p["pixel_size_um"]))
    na = float(p["na"]) if na is None else float(na)
    lam = float(p["wavelength_um"]) if lam is None else float(lam)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(resample_factor_for_model(float(pixel_size_um), na, lam, r0))


def check_job(
    task: str,
    shape: Sequence[int],
    metadata: dict[str, Any],
    options: dict[str, Any],
    n_samples: int,
    name: str = "the image",
    available: int | None = None,
) -> dict[str, Any]:
    """Refuse a job that cannot work; returns ``factor``, ``output_shape`` and ``bytes``.

    ``shape``: the input array's shape (..., Y, X); ``options``: the task options (SR:
    ``pixel_size_um``, ``na``, ``wavelength_um``); ``available``: bytes of RAM (default: ask
    the system).
    """
    from .task_adapters import MIN_SIZE

    if len(shape) < (2 if task == "sr" else 3):  # the task adapter explains what is needed
        return {"factor": 1.0, "output_shape": tuple(shape), "bytes": 0}
    h, w = int(shape[-2]), int(shape[-1])
    lead = [int(s) for s in shape[:-2]]
    factor = 1.0
    if task == "sr":
        factor = _sr_factor(
            metadata, options.get("pixel_size_um"), options.get("na"), options.get("wavelength_um")
        )
        if not 1.0 / MAX_RESAMPLE_FACTOR <= factor <= MAX_RESAMPLE_FACTOR:
            px = options.get("pixel_size_um")
            raise InputError(
                f"{name}: its pixel size ({px:g} µm) would need resampling by {factor:.3g} to "
                f"match the model (allowed 1/{MAX_RESAMPLE_FACTOR:g} to {MAX_RESAMPLE_FACTOR:g}); "
                "check the pixel size is in µm (62.6 nm is 0.0626; give --pixel-size to override "
                "the file's), or use a model trained for this sampling"
            )
        fh, fw = max(1, round(h * factor)), max(1, round(w * factor))
        if min(fh, fw) < MIN_SIZE:
            raise InputError(
                f"{name}: after resampling by {factor:.3g} to the model's sampling it would be "
                f"{fh}×{fw} pixels, below the minimum {MIN_SIZE}×{MIN_SIZE}; use a larger image "
                "or check the pixel size"
            )
        out = (*lead, 2 * fh, 2 * fw)
    else:
        frames = lead[:-1] if lead else []
        out = (*frames, h, w)
    frame_pixels = out[-1] * out[-2]
    need = math.prod(out) * BYTES_PER_OUTPUT_PIXEL + frame_pixels * (
        BYTES_PER_FRAME_PIXEL_PER_SAMPLE * (min(n_samples, 8) + 4)
    )
    check_memory(
        need,
        f"reconstructing {name} (output {'×'.join(map(str, out))})",
        "crop the image, split the stack into parts, or check the pixel size "
        f"(about {format_bytes(BYTES_PER_OUTPUT_PIXEL)} per output pixel)",
        available,
    )
    return {"factor": factor, "output_shape": out, "bytes": need}
