"""Training data: normalised (condition on the target grid, target) patch pairs for the trainer.

Every source prepares whole frames exactly as ``workflows/predict.py`` prepares inference inputs
(the same normalisation functions, the same bicubic ×2), then cuts random patches with a random
dihedral transform (flips / 90° rotations). Shapes and units:

* ``condition``: (C_x, H, W) float32 diffusion units on the *target* grid. SR: the widefield
  frame's percentile map, bicubic ×2 (C_x = 1). QPI: contrast ``I/I_bg − 1`` of the planes
  [I(−dz), I(+dz)] (C_x = 2).
* ``target``: (C_y = 1, H, W) float32 model units. SR: ground truth min–max → [−1, 1] (the full
  target; the trainer forms the residual). QPI: ``2 φ / 3.5 − 1``.

Sources: :class:`PairedImages` (arrays, napari layers; raw-SIM stacks become widefield by the
9-frame mean), :func:`paired_folders` (``input/`` + ``target/`` with matching names) and
:class:`SyntheticPairs` (physics simulators, seeded per step so a resumed run draws the same
data). Every batch is a pure function of the ``numpy.random.Generator`` passed in; the trainer
seeds that generator from (seed, step, rank). No torch at import (the bicubic ×2 imports it).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .. import tasks
from ..errors import InputError
from ..tasks.qpi import default_defocus_number
from ..tasks.qpi import prepare_pair as prepare_qpi_pair
from ..tasks.sr import prepare_pair as prepare_sr_pair
from .patches import PairBatch, PreparedPair, dihedral, grid_patches, random_patches

__all__ = [
    "PairBatch",
    "PairedImages",
    "PreparedPair",
    "TrainingData",
    "dihedral",
    "make_training_data",
    "paired_folders",
    "prepare_qpi_pair",
    "prepare_sr_pair",
]

_PIXEL_TOLERANCE = 0.02  # relative mismatch of pixel sizes accepted


class TrainingData(Protocol):
    """What the trainer needs from a data source."""

    task: str
    physics: dict[str, float]
    description: dict[str, Any]

    def train_batch(self, rng: np.random.Generator, batch: int, patch: int) -> PairBatch: ...

    def validation_batch(self, patch: int) -> PairBatch: ...


# --- preparation (the same functions inference uses) -------------------------------------


def upsample_to_target_grid(condition: np.ndarray) -> np.ndarray:
    """Bicubic ×2 of a (..., Y, X) SR condition onto the target grid (inference's function)."""
    from ..normalization import upsample_condition

    return np.asarray(upsample_condition(np.asarray(condition, dtype=np.float32)), np.float32)


# --- pairs of arrays / layers / folders ---------------------------------------------------


def _check_pixel_sizes(
    task: str, name: str, input_px: float | None, target_px: float | None
) -> None:
    if input_px is None or target_px is None:
        return
    spec = tasks.get(task)
    want = input_px / spec.target_pixel_ratio
    if abs(target_px - want) > _PIXEL_TOLERANCE * want:
        raise InputError(
            f"pair {name!r}: the target pixel size {target_px:g} µm should be "
            f"{spec.target_pixel_relation} "
            f"({want:g} µm, input {input_px:g} µm); check the files' pixel sizes or resample"
        )


@dataclass
class PairedImages:
    """Training data from pairs of whole images (arrays, napari layers, files).

    ``inputs[i]``: SR widefield (Y, X) in ADU, a raw-SIM stack (9, Y, X) (→ 9-frame mean) or a
    (T, Y, X) time series paired with a (T, 2Y, 2X) target; QPI a (Z, Y, X) stack (planes
    ``qpi_planes`` or the first and last). ``targets[i]``: SR ground truth (2Y, 2X); QPI
    phase (Y, X) in rad. Pixel sizes (µm), when known, are checked (SR target = input / 2).
    ``val_fraction`` of the pairs (at least one, when there are ≥ 2) is held out for
    validation; a single pair is split spatially (its bottom band).
    """

    task: str
    inputs: Sequence[np.ndarray]
    targets: Sequence[np.ndarray]
    names: Sequence[str] | None = None
    input_pixel_size_um: Sequence[float | None] | None = None
    target_pixel_size_um: Sequence[float | None] | None = None
    val_fraction: float = 0.2
    qpi_planes: Sequence[int] | None = None
    physics: dict[str, float] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)
    sr_prior: bool = False
    qpi_extra_alphas: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in tasks.names(trainable=True):
            raise InputError(f"task must be 'sr' or 'qpi', got {self.task!r}")
        if len(self.inputs) != len(self.targets):
            raise InputError(
                f"{len(self.inputs)} inputs but {len(self.targets)} targets; "
                "give one target per input"
            )
        if not self.inputs:
            raise InputError("no training pairs; give at least one input/target pair")
        n = len(self.inputs)
        names = list(self.names) if self.names is not None else [f"pair {i}" for i in range(n)]
        in_px = list(self.input_pixel_size_um or [None] * n)
        tg_px = list(self.target_pixel_size_um or [None] * n)
        prepared: list[PreparedPair] = []
        for x, y, name, ipx, tpx in zip(self.inputs, self.targets, names, in_px, tg_px):
            _check_pixel_sizes(self.task, name, ipx, tpx)
            prepared.extend(self._prepare(np.asarray(x), np.asarray(y), name, ipx))
        known = [p for p in in_px if p]
        if known and "pixel_size_um" not in self.physics:
            self.physics = {**self.physics, "pixel_size_um": float(known[0])}
        self.train_pairs, self.val_pairs = _split(prepared, self.val_fraction)
        self.description = {
            "source": "pairs",
            "pairs": n,
            "frames": len(prepared),
            "names": names[:50],
            "validation_frames": len(self.val_pairs),
            **self.description,
        }

    def adopt_sr_prior(self, flag: bool) -> None:
        """Prepare the SR conditions with (or without) the RL prior channel, as the model needs
        (the trainer calls this once it knows the model)."""
        self._adopt("sr_prior", bool(flag))

    def adopt_qpi_priors(self, extra_alphas: Sequence[float]) -> None:
        """Prepare the QPI conditions with the extra TIE prior channels the model needs."""
        self._adopt("qpi_extra_alphas", tuple(float(a) for a in extra_alphas))

    def _adopt(self, option: str, value: Any) -> None:
        """Re-prepare the pairs when the task's condition option changes (an option of another
        task is ignored)."""
        if tasks.get(self.task).condition_option == option and value != getattr(self, option):
            setattr(self, option, value)
            self.__post_init__()

    def _prepare(
        self, x: np.ndarray, y: np.ndarray, name: str, input_px: float | None = None
    ) -> list[PreparedPair]:
        return tasks.get(self.task).prepare_pairs(x, y, name, input_px, self)

    @property
    def defocus_D(self) -> float:
        """D = λ·dz/Δx² of the TIE prior: the same merge of known values (``physics``, pixel
        sizes from the files) over the QPI-A recipe's that the model file records, so a model
        used on a stack of unknown optics computes the prior it was trained with."""
        known = [p for p in (self.input_pixel_size_um or []) if p]
        physics = {**({"pixel_size_um": float(known[0])} if known else {}), **self.physics}
        return default_defocus_number(physics)

    def train_batch(self, rng: np.random.Generator, batch: int, patch: int) -> PairBatch:
        """``batch`` random augmented patches of side ``patch`` (target grid)."""
        smallest = min(min(p.target.shape[-2:]) for p in self.train_pairs)
        if patch > smallest:
            raise InputError(
                f"patch size {patch} is larger than the smallest training image ({smallest} px "
                "on the target grid); use a smaller patch size"
            )
        return random_patches(self.train_pairs, rng, batch, patch)

    def validation_batch(self, patch: int, count: int = 4) -> PairBatch:
        """Fixed validation patches (side ≤ ``patch``, a multiple of 8) from the held-out data."""
        side = min(patch, *(min(p.target.shape[-2:]) for p in self.val_pairs))
        side -= side % 8
        if side < 8:
            raise InputError("the validation images are smaller than 8 px; give larger images")
        return grid_patches(self.val_pairs, side, count)


def _split(
    pairs: list[PreparedPair], val_fraction: float
) -> tuple[list[PreparedPair], list[PreparedPair]]:
    """Hold out whole frames (≥ 2 frames) or the bottom band of a single frame for validation."""
    if val_fraction <= 0:
        return pairs, pairs
    if len(pairs) >= 2:
        n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
        return pairs[: len(pairs) - n_val], pairs[len(pairs) - n_val :]
    pair = pairs[0]
    h = pair.target.shape[-2]
    band = max(16, int(round(h * val_fraction)))
    band -= band % 2  # keep the split on the widefield grid (even target rows)
    if h - band < 16:
        return pairs, pairs  # too small to split: validate on the training frame
    top = PreparedPair(pair.condition[:, : h - band], pair.target[:, : h - band], pair.name)
    bottom = PreparedPair(pair.condition[:, h - band :], pair.target[:, h - band :], pair.name)
    return [top], [bottom]


def _lateral_pixel_size(pixel_size_um: Sequence[float] | None) -> float | None:
    """The X pixel size (µm) of an ``ImageMetadata.pixel_size_um`` tuple, or None."""
    if not pixel_size_um:
        return None
    return float(pixel_size_um[-1])


def paired_folders(
    task: str, folder: str | os.PathLike, *, val_fraction: float = 0.2, **options: Any
) -> PairedImages:
    """Training pairs from ``folder/input`` and ``folder/target`` (TIFF/OME-TIFF/MRC files with
    matching names; see :func:`napari_cvdm.io.find_image_pairs`)."""
    from ..io import find_image_pairs, read_image

    folder = Path(folder)
    inputs, targets, names, in_px, tg_px = [], [], [], [], []
    for pair in find_image_pairs(folder):
        x, x_meta = read_image(pair.input_path)
        y, y_meta = read_image(pair.target_path)
        inputs.append(x)
        targets.append(y)
        names.append(pair.name)
        in_px.append(_lateral_pixel_size(x_meta.pixel_size_um))
        tg_px.append(_lateral_pixel_size(y_meta.pixel_size_um))
    return PairedImages(
        task,
        inputs,
        targets,
        names=names,
        input_pixel_size_um=in_px,
        target_pixel_size_um=tg_px,
        val_fraction=val_fraction,
        description={"source": "folder", "path": str(folder)},
        **options,
    )


def make_training_data(
    task: str,
    data: Any,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    overrides: dict[str, Any] | None = None,
    patches_per_frame: int = 1,
    physics: dict[str, float] | None = None,
    sr_prior: bool = False,
) -> TrainingData:
    """The data source for ``data``: ``"synthetic"`` (:class:`SyntheticPairs`), a folder
    (:func:`paired_folders`), or a ready source (returned as is). ``sr_prior``: SR conditions
    carry the RL prior channel (:func:`prepare_sr_pair`)."""
    if not isinstance(data, str | os.PathLike):
        if not hasattr(data, "train_batch"):
            raise InputError(
                "training data must be 'synthetic', a folder or a data source, got "
                f"{type(data).__name__}"
            )
        return data
    if str(data) == "synthetic":
        from .synthetic_data import SyntheticPairs

        return SyntheticPairs(
            task,
            seed=seed,
            overrides=dict(overrides or {}),
            patches_per_frame=patches_per_frame,
            sr_prior=sr_prior,
        )
    folder = Path(data)
    if not folder.is_dir():
        raise InputError(
            f"training data {str(data)!r} is neither 'synthetic' nor a folder; give a folder with "
            "input/ and target/ subfolders of matching file names"
        )
    return paired_folders(
        task,
        folder,
        val_fraction=val_fraction,
        physics=dict(physics or {}),
        sr_prior=sr_prior,
    )
