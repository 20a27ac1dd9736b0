"""Training patches: cut (condition, target) patch batches from whole prepared frame pairs.

:func:`random_patches` draws the augmented patches of a training step (images in proportion to
their area, a random position and a random dihedral transform), :func:`grid_patches` the fixed
validation patches; both return a :class:`PairBatch` in model units. numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..tasks.base import PreparedPair

__all__ = ["PairBatch", "PreparedPair", "dihedral", "grid_patches", "random_patches"]


@dataclass(frozen=True)
class PairBatch:
    """A batch in model units: ``condition`` (B, C_x, P, P), ``target`` (B, C_y, P, P), float32."""

    condition: np.ndarray
    target: np.ndarray


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """Symmetry ``k`` (0–7) of the square on the last two axes: rot90 ``k % 4``, then a flip of
    X when ``k ≥ 4``."""
    out = np.rot90(array, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return out


def random_patches(
    pairs: Sequence[PreparedPair], rng: np.random.Generator, batch: int, patch: int
) -> PairBatch:
    """``batch`` random patches, images drawn in proportion to their area, random dihedral."""
    areas = np.array([p.target.shape[-2] * p.target.shape[-1] for p in pairs], dtype=np.float64)
    conditions, targets = [], []
    for _ in range(batch):
        pair = pairs[int(rng.choice(len(pairs), p=areas / areas.sum()))]
        h, w = pair.target.shape[-2:]
        y0 = int(rng.integers(0, h - patch + 1))
        x0 = int(rng.integers(0, w - patch + 1))
        k = int(rng.integers(0, 8))
        window = (slice(None), slice(y0, y0 + patch), slice(x0, x0 + patch))
        conditions.append(dihedral(pair.condition[window], k))
        targets.append(dihedral(pair.target[window], k))
    return PairBatch(
        np.ascontiguousarray(np.stack(conditions), dtype=np.float32),
        np.ascontiguousarray(np.stack(targets), dtype=np.float32),
    )


def grid_patches(pairs: Sequence[PreparedPair], patch: int, count: int) -> PairBatch:
    """Up to ``count`` fixed, non-overlapping patches (centre first), no augmentation."""
    conditions, targets = [], []
    for pair in pairs:
        h, w = pair.target.shape[-2:]
        ny, nx = h // patch, w // patch
        oy, ox = (h - ny * patch) // 2, (w - nx * patch) // 2
        cells = sorted(
            ((i, j) for i in range(ny) for j in range(nx)),
            key=lambda ij: (ij[0] - (ny - 1) / 2) ** 2 + (ij[1] - (nx - 1) / 2) ** 2,
        )
        for i, j in cells:
            y0, x0 = oy + i * patch, ox + j * patch
            conditions.append(pair.condition[:, y0 : y0 + patch, x0 : x0 + patch])
            targets.append(pair.target[:, y0 : y0 + patch, x0 : x0 + patch])
            if len(targets) == count:
                break
        if len(targets) == count:
            break
    return PairBatch(np.stack(conditions).astype(np.float32), np.stack(targets).astype(np.float32))
