"""Overlapping tiles with smooth blending, for ε̂ inside each reverse step (docs/architecture.md
"Engine API").

The image plane (H, W) is covered by equally sized tiles whose starts are spread evenly so that
neighbours overlap by at least ``overlap`` pixels. Each tile's prediction is weighted by a separable
window that is 1 in the interior and rises as ``sin²`` over ``overlap`` pixels on every edge that is
*inside* the image (edges on the image border stay at 1), and the blended result is
``Σ wᵢ·fᵢ / Σ wᵢ`` — a partition of unity by construction, whatever the tile layout.

A single tile covering the image has window 1 everywhere, so :func:`tiled_apply` then returns
exactly ``fn(whole image)`` (same function, same inputs). With smaller tiles the result differs only
through the network's receptive field being cut at tile borders; the tests bound this (see
tests/test_tiling.py for the documented tolerance). Tiles × batch items are evaluated together in
batches of at most ``max_batch``, so peak memory is bounded by that batch, not by the image size.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch


class TileBox(NamedTuple):
    """A tile: top-left corner (``y``, ``x``) and size (``height``, ``width``) in pixels."""

    y: int
    x: int
    height: int
    width: int


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``min(tile, length)`` covering ``[0, length)`` with neighbours
    overlapping by at least ``overlap`` pixels; first start 0, last start ``length − tile``."""
    if tile < 1 or not 0 <= overlap < tile:
        raise ValueError(
            f"need tile >= 1 and 0 <= overlap < tile, got tile={tile}, overlap={overlap}"
        )
    if tile >= length:
        return [0]
    count = math.ceil((length - tile) / (tile - overlap)) + 1
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def tile_grid(shape: Sequence[int], tile: int, overlap: int) -> list[TileBox]:
    """All tiles (row-major) covering an image of ``shape = (H, W)``, all of the same size."""
    height, width = int(shape[0]), int(shape[1])
    th, tw = min(tile, height), min(tile, width)
    return [
        TileBox(y, x, th, tw)
        for y in tile_starts(height, tile, overlap)
        for x in tile_starts(width, tile, overlap)
    ]


def ramp_window_1d(size: int, overlap: int, ramp_start: bool, ramp_end: bool) -> torch.Tensor:
    """1-D window (size,): 1 inside, ``sin²(π/2 · (i + ½)/overlap)`` over ``overlap`` pixels at a
    ramped edge (values in (0, 1], never 0)."""
    window = torch.ones(size, dtype=torch.float32)
    ramp_length = min(overlap, size)
    if ramp_length > 0:
        i = torch.arange(ramp_length, dtype=torch.float32)
        ramp = torch.sin(0.5 * math.pi * (i + 0.5) / ramp_length).square()
        if ramp_start:
            window[:ramp_length] = torch.minimum(window[:ramp_length], ramp)
        if ramp_end:
            window[size - ramp_length :] = torch.minimum(window[size - ramp_length :], ramp.flip(0))
    return window


def tile_window(box: TileBox, shape: Sequence[int], overlap: int) -> torch.Tensor:
    """Blending window (height, width) of ``box`` in an image of ``shape = (H, W)``."""
    wy = ramp_window_1d(box.height, overlap, box.y > 0, box.y + box.height < shape[0])
    wx = ramp_window_1d(box.width, overlap, box.x > 0, box.x + box.width < shape[1])
    return wy[:, None] * wx[None, :]


def tiled_apply(
    fn: Callable[..., torch.Tensor],
    *tensors: torch.Tensor,
    tile: int | None,
    overlap: int = 0,
    max_batch: int = 1,
    extras: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    """Evaluate ``fn`` on overlapping tiles of ``tensors`` and blend the outputs.

    Args:
        fn: ``fn(*tile_tensors, *tile_extras) -> (b, C_out, h, w)``, applied to batches of tiles.
        tensors: spatial inputs (B_i, C_i, H, W) with ``B_i`` either B or 1 (1 broadcasts to all
            items, e.g. a condition shared by all samples).
        tile: tile edge in pixels (``None``: one tile covering the image).
        overlap: minimum overlap between neighbouring tiles, and ramp length of the windows.
        max_batch: at most this many (tile, item) pairs per call of ``fn``.
        extras: non-spatial per-item inputs (B, ...), passed to ``fn`` indexed like the tiles.

    Returns:
        (B, C_out, H, W) float32 blended output on the device of the first tensor.
    """
    height, width = tensors[0].shape[-2:]
    batch = max(t.shape[0] for t in tensors)
    device = tensors[0].device
    boxes = tile_grid((height, width), tile or max(height, width), overlap if tile else 0)
    pairs = [(box, item) for box in boxes for item in range(batch)]
    windows = {box: tile_window(box, (height, width), overlap).to(device) for box in boxes}
    output: torch.Tensor | None = None
    weight_sum = torch.zeros((height, width), dtype=torch.float32, device=device)
    for box in boxes:
        weight_sum[box.y : box.y + box.height, box.x : box.x + box.width] += windows[box]
    for start in range(0, len(pairs), max(1, int(max_batch))):
        chunk = pairs[start : start + max(1, int(max_batch))]
        inputs = [
            torch.cat(
                [
                    t[
                        min(i, t.shape[0] - 1) : min(i, t.shape[0] - 1) + 1,
                        :,
                        b.y : b.y + b.height,
                        b.x : b.x + b.width,
                    ]
                    for b, i in chunk
                ]
            )
            for t in tensors
        ]
        items = torch.tensor([i for _, i in chunk], device=device)
        result = fn(*inputs, *(e[items] for e in extras)).float()
        if output is None:
            output = torch.zeros((batch, result.shape[1], height, width), device=device)
        for j, (b, i) in enumerate(chunk):
            output[i, :, b.y : b.y + b.height, b.x : b.x + b.width] += result[j] * windows[b]
    assert output is not None
    return output.div_(weight_sum)  # in place: one image-sized output, not two
