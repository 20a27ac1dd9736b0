"""Choosing tile size and overlap from a network's receptive field and a memory budget.

A tile must overlap its neighbours by about the network's receptive radius (pixels further away
cannot change an output pixel), and one network call on one tile must fit the memory budget.
Within those two limits the fewest, largest tiles that cover the image are chosen, with the tile
edge shrunk so the tiles split the image evenly: the pixels computed per pass then stay close to
the image's own (a fixed 1024-px tile with 256-px overlap computed 2.25× the pixels of a 2048²
image; this plan computes ≈ 1.15×).

No torch at import; :func:`default_memory_budget_mb` imports it to ask the device.
"""

from __future__ import annotations

import math
import os
from typing import Any

__all__ = [
    "MIN_TILE",
    "choose_tiling",
    "default_memory_budget_mb",
    "tile_overhead",
]

#: smallest automatic tile edge (pixels)
MIN_TILE = 64
#: CPU budget: this fraction of the available RAM, at most CPU_BUDGET_CAP_MB. 2 GiB (was 4,
#: with which the untiled λ pass alone took 3 GB at a 2048² output): the peak RSS of predict on
#: a 1024² input fell from 3.4 to 1.6 GB (benchmarks/memory.py, docs/benchmarks.md); the
#: denoiser's tiles up to 2048² outputs stay the same, at 4096² it computes about 7 % more halo
#: pixels
CPU_BUDGET_FRACTION, CPU_BUDGET_CAP_MB = 0.25, 2048.0
#: CUDA budget: this fraction of the device's free memory
CUDA_BUDGET_FRACTION = 0.5
#: budget when the free memory cannot be asked (MPS, unknown)
FALLBACK_BUDGET_MB = 2048.0


def _round_up(value: float, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def choose_tiling(
    height: int,
    width: int,
    bytes_per_pixel: float,
    memory_budget_mb: float,
    halo: int,
    multiple: int = 1,
) -> tuple[int | None, int]:
    """``(tile, overlap)`` in pixels for one item of ``height × width``; ``(None, 0)`` if it fits.

    ``bytes_per_pixel``: peak activation bytes per pixel of one network call; ``halo``: the
    network's receptive radius (pixels); ``multiple``: tile edges are rounded up to this (the
    UNet's stride, so tiles need no padding). The overlap is ``halo`` unless the budget only
    allows tiles smaller than ``4 × halo``: then a quarter of the largest tile that fits.
    """
    budget = float(memory_budget_mb) * 2**20
    if bytes_per_pixel * height * width <= budget:
        return None, 0
    multiple = max(1, int(multiple))
    largest = int(math.sqrt(budget / bytes_per_pixel)) // multiple * multiple
    largest = max(largest, _round_up(MIN_TILE, multiple))
    overlap = int(halo) if 4 * halo <= largest else largest // 4
    longest = max(height, width)
    count = 2
    while True:
        tile = _round_up((longest + (count - 1) * overlap) / count, multiple)
        if tile <= largest:
            return tile, overlap
        count += 1


def tile_overhead(height: int, width: int, tile: int | None, overlap: int) -> float:
    """Pixels one tiled pass computes divided by the image's pixels (1.0 untiled)."""
    from .tiling import tile_grid

    if tile is None:
        return 1.0
    boxes = tile_grid((height, width), tile, overlap)
    return sum(b.height * b.width for b in boxes) / float(height * width)


def _available_ram_mb() -> float | None:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (ValueError, OSError, AttributeError):
        return None


def default_memory_budget_mb(device: Any) -> float:
    """Activation memory one sampler call may use on ``device`` (a ``torch.device`` or str).

    CPU: a quarter of the available RAM, at most 2 GiB; CUDA: half the free device memory;
    otherwise 2 GiB.
    """
    kind = getattr(device, "type", str(device).split(":")[0])
    if kind == "cpu":
        ram = _available_ram_mb()
        if ram is None:
            return FALLBACK_BUDGET_MB
        return min(CPU_BUDGET_CAP_MB, CPU_BUDGET_FRACTION * ram)
    if kind == "cuda":
        import torch

        try:
            free, _ = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):  # pragma: no cover - driver trouble
            return FALLBACK_BUDGET_MB
        return CUDA_BUDGET_FRACTION * free / 2**20
    return FALLBACK_BUDGET_MB
