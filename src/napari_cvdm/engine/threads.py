"""How many CPU threads torch should use, accounting for other load on the machine.

On a 2-core machine with another job running, 1 torch thread was 3.2× faster than 2; on a quiet
one 2 threads were 1.85× faster than 1. So ``"auto"`` takes the cores this process may use minus
the other runnable work (the 1-minute load average, read before this job starts its own work).
No torch at import.
"""

from __future__ import annotations

import os

from ..errors import InputError

__all__ = ["auto_threads", "available_cores", "parse_threads", "resolve_threads"]


def available_cores() -> int:
    """CPU cores this process may run on (affinity where supported)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def auto_threads(cores: int | None = None, load: float | None = None) -> int:
    """``round(cores − load)`` clamped to [1, cores]; ``load`` default: 1-min load average."""
    cores = available_cores() if cores is None else max(1, int(cores))
    if load is None:
        try:
            load = os.getloadavg()[0]
        except (AttributeError, OSError):  # Windows
            load = 0.0
    return max(1, min(cores, int(round(cores - float(load)))))


def parse_threads(value: str | int | None) -> int | None:
    """``"auto"``/None → None; a positive integer → itself; anything else → ``InputError``."""
    if value is None or str(value).strip().lower() == "auto":
        return None
    try:
        threads = int(str(value).strip())
    except ValueError:
        threads = 0
    if threads < 1:
        raise InputError(f"--threads must be a positive integer or 'auto', got {value!r}")
    return threads


def resolve_threads(value: str | int | None) -> int:
    """The thread count for ``value`` (``"auto"``, None or a positive integer)."""
    threads = parse_threads(value)
    return auto_threads() if threads is None else threads
