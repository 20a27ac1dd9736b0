"""Plausible ranges of every option and physical parameter, checked before any work starts.

:data:`LIMITS` maps a parameter name to its :class:`Range` (bounds a real microscope or a sane
run can have). :func:`check_value` refuses NaN, infinities, non-integers where an integer is
needed and anything outside the range, with one line naming the option, the range, the unit
and a hint (e.g. "62.6 looks like nm"). :func:`check_args` applies it to parsed CLI options.

:func:`available_memory` and :func:`check_memory` refuse a job whose estimated memory does not
fit, naming the number and the remedy, before anything is allocated.

No torch, Qt or napari here.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InputError

__all__ = [
    "LIMITS",
    "MAX_RESAMPLE_FACTOR",
    "Range",
    "available_memory",
    "check_args",
    "check_memory",
    "check_value",
    "format_bytes",
]

#: SR inputs are resampled to the model's PSF sampling by at most this factor (or 1/this)
MAX_RESAMPLE_FACTOR = 4.0
#: fraction of the available memory a job may plan to use
MEMORY_FRACTION = 0.8


@dataclass(frozen=True)
class Range:
    """Closed interval ``[low, high]`` (``low`` excluded when ``open_low``) of a parameter.

    ``integer``: whole numbers only; ``zero_ok``: 0 is also accepted (e.g. ``--tile 0``);
    ``unit``: shown in messages; ``hint``: what the value means or a common mistake.
    """

    low: float
    high: float
    unit: str = ""
    integer: bool = False
    open_low: bool = False
    zero_ok: bool = False
    hint: str = ""

    def describe(self) -> str:
        kind = "an integer" if self.integer else "a number"
        lo = f"{self.low:g}" if not self.integer else str(int(self.low))
        hi = f"{self.high:g}" if not self.integer else str(int(self.high))
        unit = f" {self.unit}" if self.unit else ""
        bound = f"above {lo}" if self.open_low else f"from {lo}"
        zero = " (or 0)" if self.zero_ok else ""
        return f"{kind} {bound} to {hi}{unit}{zero}"


LIMITS: dict[str, Range] = {
    # optics and camera
    "pixel_size_um": Range(
        0.005, 20.0, "µm", hint="the pixel size in the sample plane in µm (62.6 nm is 0.0626)"
    ),
    "na": Range(0.05, 1.7, hint="the objective's numerical aperture (e.g. 1.49 for TIRF oil)"),
    "wavelength_um": Range(0.2, 2.0, "µm", hint="the wavelength in µm (525 nm is 0.525)"),
    "dz_um": Range(0.01, 200.0, "µm", hint="the defocus distance in µm; it cannot be 0"),
    "offset_adu": Range(0.0, 65535.0, "ADU", hint="the camera's dark level (often 100)"),
    "gain_adu_per_e": Range(0.01, 1000.0, "ADU/e-", hint="the camera's conversion gain"),
    # sampling
    "steps": Range(1, 10000, integer=True, hint="reverse diffusion steps (20-200 are typical)"),
    "samples": Range(1, 1000, integer=True, hint="samples per frame for mean and std"),
    "seed": Range(0, 2**63 - 1, integer=True, hint="any non-negative integer"),
    "eta": Range(0.0, 1.0, hint="DDIM eta"),
    "tile": Range(16, 16384, "px", integer=True, zero_ok=True, hint="0 never tiles"),
    "threads": Range(1, 1024, integer=True, hint="CPU threads for torch"),
    # training
    "lr": Range(0.0, 1.0, open_low=True, hint="the learning rate (1e-4 is typical)"),
    "train_steps": Range(1, 10_000_000, integer=True),
    "batch": Range(1, 4096, integer=True),
    "patch": Range(16, 2048, "px", integer=True, hint="a multiple of 8"),
    "val_every": Range(1, 10_000_000, integer=True),
    "val_count": Range(1, 1000, integer=True),
    "val_steps": Range(1, 1000, integer=True),
    "ckpt_every": Range(1, 10_000_000, integer=True),
    "patches_per_frame": Range(1, 1000, integer=True),
    # baselines, evaluation, simulation, demo
    "wiener_k": Range(0.0, 1e6, open_low=True, hint="the Wiener regularisation constant"),
    "iterations": Range(1, 100000, integer=True),
    "alpha": Range(0.0, 1e6, hint="the Tikhonov weight in pixel units"),
    "border": Range(0, 4096, "px", integer=True),
    "eval_samples": Range(2, 100000, integer=True),
    "n": Range(1, 1_000_000, integer=True),
    "size": Range(16, 4096, "px", integer=True),
    "photons": Range(0.0, 1e9, open_low=True, unit="e-"),
    "planes": Range(2, 101, integer=True),
}


def check_value(name: str, value: Any, flag: str | None = None) -> Any:
    """Return ``value`` if it lies in ``LIMITS[name]`` (``None`` passes), else raise
    :class:`InputError` naming ``flag`` (default ``--name``), the range and a hint."""
    if value is None:
        return None
    spec = LIMITS[name]
    flag = flag or "--" + name.removesuffix("_um").replace("_", "-")
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    number = float(value) if ok else math.nan
    if ok and spec.integer and not float(number).is_integer():
        ok = False
    if ok and spec.zero_ok and number == 0:
        return value
    if ok:
        lower_ok = number > spec.low if spec.open_low else number >= spec.low
        ok = math.isfinite(number) and lower_ok and number <= spec.high
    if not ok:
        hint = f" ({spec.hint})" if spec.hint else ""
        raise InputError(f"{flag} must be {spec.describe()}, got {value!r}{hint}")
    return value


def check_args(args: Any, names: Mapping[str, str], flags: Mapping[str, str] | None = None) -> None:
    """Check the attributes of ``args`` (``attribute -> LIMITS name``) that are present."""
    flags = flags or {}
    for attr, name in names.items():
        if hasattr(args, attr):
            default_flag = "--" + attr.removeprefix("physics_").removesuffix("_um").replace(
                "_", "-"
            )
            check_value(name, getattr(args, attr), flags.get(attr, default_flag))


def available_memory() -> int | None:
    """Bytes of RAM available to a new allocation (Linux ``MemAvailable``; else total / 2;
    None if unknown)."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2
    except (ValueError, OSError, AttributeError):
        return None


def format_bytes(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def check_memory(need: float, what: str, remedy: str, available: int | None = None) -> None:
    """Raise :class:`InputError` when ``need`` bytes exceed the usable part of the RAM.

    ``what`` names the job (e.g. "reconstructing cells.tif"), ``remedy`` what to change.
    """
    available = available_memory() if available is None else available
    if available is None:
        return
    if need > MEMORY_FRACTION * available:
        raise InputError(
            f"{what} needs about {format_bytes(need)} of memory but only "
            f"{format_bytes(available)} is available; {remedy}"
        )
