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

from ..errors import InputError
from ..normalization import (
    defocus_number,
    fit_input_norm,
    normalize_target_to_condition,
    phase_to_model,
    qpi_condition,
    qpi_contrast,
    qpi_rule,
    sr_condition,
    sr_rule,
)

__all__ = [
    "PairBatch",
    "PairedImages",
    "PreparedPair",
    "TrainingData",
    "condition_channels",
    "dihedral",
    "make_training_data",
    "paired_folders",
    "prepare_qpi_pair",
    "prepare_sr_pair",
]

TASK_CHANNELS = {"sr": (1, 1), "qpi": (3, 1)}  # QPI: [TIE prior, c−, c+]
RAW_SIM_FRAMES = 9
_PIXEL_TOLERANCE = 0.02  # relative mismatch of pixel sizes accepted


@dataclass(frozen=True)
class PairBatch:
    """A batch in model units: ``condition`` (B, C_x, P, P), ``target`` (B, C_y, P, P), float32."""

    condition: np.ndarray
    target: np.ndarray


@dataclass(frozen=True)
class PreparedPair:
    """One whole normalised frame pair: ``condition`` (C_x, H, W), ``target`` (1, H, W)."""

    condition: np.ndarray
    target: np.ndarray
    name: str = ""


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
    from .task_adapters import upsample_condition

    return np.asarray(upsample_condition(np.asarray(condition, dtype=np.float32)), np.float32)


def prepare_sr_pair(
    widefield: np.ndarray,
    target: np.ndarray,
    name: str = "",
    *,
    prior_optics: dict[str, float] | None = None,
) -> PreparedPair:
    """Widefield (Y, X) ADU + ground truth (2Y, 2X) → a :class:`PreparedPair`.

    ``prior_optics`` (``pixel_size_um`` of the widefield, ``na``, ``wavelength_um``: what the
    user of the data would state) adds the RL prior channel: condition ``[RL, widefield ×2]``
    (:func:`~napari_cvdm.normalization.sr_condition`); without it the condition is the
    widefield ×2 alone. The camera offset cancels in the percentile map (both percentiles are
    offset-subtracted), so none is needed here; inference stores it only to undo the map.
    """
    widefield = np.asarray(widefield)
    target = np.asarray(target)
    if widefield.ndim != 2 or target.ndim != 2:
        raise InputError(
            f"SR pair {name!r}: expected a 2-D widefield and a 2-D target, got shapes "
            f"{widefield.shape} and {target.shape}"
        )
    if target.shape != (2 * widefield.shape[0], 2 * widefield.shape[1]):
        raise InputError(
            f"SR pair {name!r}: the target must be exactly twice the widefield size in Y and X "
            f"(widefield {widefield.shape} → target {tuple(2 * s for s in widefield.shape)}), "
            f"got {target.shape}; crop or resample so the grids match"
        )
    norm = fit_input_norm(widefield)
    condition = sr_condition(widefield, norm, sr_rule(prior=prior_optics is not None), prior_optics)
    return PreparedPair(
        condition=condition,
        target=normalize_target_to_condition(target, condition[-1])[None],
        name=name,
    )


def condition_channels(task: str, prior: bool, qpi_extra_alphas: Sequence[float] = ()) -> int:
    """C_x of a task's condition: SR 1 (+1 with the RL prior); QPI 2 (+1 with the TIE prior, +1
    per extra TIE prior)."""
    extra = len(qpi_extra_alphas) if task == "qpi" and prior else 0
    return {"sr": 1, "qpi": 2}[task] + int(bool(prior)) + extra


def select_qpi_planes(stack: np.ndarray, planes: Sequence[int] | None = None) -> np.ndarray:
    """The two planes [I(−dz), I(+dz)] of a (Z, Y, X) stack: ``planes``, or the first and last
    (the inference default)."""
    stack = np.asarray(stack)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise InputError(
            f"a QPI input must be a (Z, Y, X) through-focus stack with at least 2 planes, got "
            f"shape {stack.shape}"
        )
    nz = stack.shape[0]
    lo, hi = (0, nz - 1) if planes is None else (int(p) for p in planes)
    if not (-nz <= lo < nz and -nz <= hi < nz) or lo % nz == hi % nz:
        raise InputError(
            f"planes {tuple(planes or ())} are not two distinct indices of a {nz}-plane stack; "
            f"give planes=(i, j) with 0 <= i, j < {nz}"
        )
    return stack[[lo % nz, hi % nz]]


def prepare_qpi_pair(
    stack: np.ndarray,
    phase: np.ndarray,
    name: str = "",
    planes: Sequence[int] | None = None,
    defocus_D: float | None = None,
    extra_alphas: Sequence[float] = (),
) -> PreparedPair:
    """Through-focus stack (Z, Y, X) + phase (Y, X) rad → a :class:`PreparedPair`.

    The condition is ``[TIE prior, c−, c+]`` (3, Y, X) (:func:`~napari_cvdm.normalization.
    qpi_condition`), the prior computed on the whole frame with the defocus number
    ``defocus_D`` = λ·dz/Δx² of the data (default: the QPI-A recipe's); ``extra_alphas`` adds
    one TIE prior channel per Tikhonov weight after the first (a multi-α model's condition).
    """
    two = select_qpi_planes(stack, planes)
    phase = np.asarray(phase)
    if phase.ndim != 2 or phase.shape != two.shape[1:]:
        raise InputError(
            f"QPI pair {name!r}: the phase target must be 2-D with the stack's Y, X size "
            f"{two.shape[1:]}, got {phase.shape}"
        )
    if defocus_D is None:
        defocus_D = _default_defocus_number()
    rule = qpi_rule(extra_alphas=tuple(float(a) for a in extra_alphas))
    condition = qpi_condition(qpi_contrast(two), defocus_D, rule)
    return PreparedPair(condition=condition, target=phase_to_model(phase)[None], name=name)


def _default_defocus_number(physics: dict[str, float] | None = None) -> float:
    """D = λ·dz/Δx² from ``physics`` (µm), each missing value taken from the QPI-A recipe."""
    from .train_support import DEFAULT_PHYSICS

    merged = {**DEFAULT_PHYSICS["qpi"], **(physics or {})}
    return defocus_number(merged["wavelength_um"], merged["dz_um"], merged["pixel_size_um"])


# --- patches ------------------------------------------------------------------------------


def dihedral(array: np.ndarray, k: int) -> np.ndarray:
    """Symmetry ``k`` (0–7) of the square on the last two axes: rot90 ``k % 4``, then a flip of
    X when ``k ≥ 4``."""
    out = np.rot90(array, k % 4, axes=(-2, -1))
    if k >= 4:
        out = out[..., ::-1]
    return out


def _random_patches(
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


def _grid_patches(pairs: Sequence[PreparedPair], patch: int, count: int) -> PairBatch:
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


# --- pairs of arrays / layers / folders ---------------------------------------------------


def _check_pixel_sizes(
    task: str, name: str, input_px: float | None, target_px: float | None
) -> None:
    if input_px is None or target_px is None:
        return
    want = input_px / 2.0 if task == "sr" else input_px
    if abs(target_px - want) > _PIXEL_TOLERANCE * want:
        relation = "half the input's" if task == "sr" else "the input's"
        raise InputError(
            f"pair {name!r}: the target pixel size {target_px:g} µm should be {relation} "
            f"({want:g} µm, input {input_px:g} µm); check the files' pixel sizes or resample"
        )


def _widefield_from_raw_sim(stack: np.ndarray) -> np.ndarray:
    from ..io import widefield_from_raw_sim

    return widefield_from_raw_sim(stack)


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
        if self.task not in TASK_CHANNELS:
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
        if self.task == "sr" and bool(flag) != self.sr_prior:
            self.sr_prior = bool(flag)
            self.__post_init__()

    def adopt_qpi_priors(self, extra_alphas: Sequence[float]) -> None:
        """Prepare the QPI conditions with the extra TIE prior channels the model needs."""
        extra = tuple(float(a) for a in extra_alphas)
        if self.task == "qpi" and extra != self.qpi_extra_alphas:
            self.qpi_extra_alphas = extra
            self.__post_init__()

    def _prior_optics(self, input_px: float | None) -> dict[str, float] | None:
        """The nominal optics of the SR RL prior (None without it): the pair's pixel size, else
        ``physics``, else the SR recipe's defaults."""
        if not self.sr_prior:
            return None
        from .train_support import DEFAULT_PHYSICS

        merged = {**DEFAULT_PHYSICS["sr"], **self.physics}
        if input_px:
            merged["pixel_size_um"] = float(input_px)
        return {k: float(merged[k]) for k in ("pixel_size_um", "na", "wavelength_um")}

    def _prepare(
        self, x: np.ndarray, y: np.ndarray, name: str, input_px: float | None = None
    ) -> list[PreparedPair]:
        if self.task == "qpi":
            return [
                prepare_qpi_pair(x, y, name, self.qpi_planes, self.defocus_D, self.qpi_extra_alphas)
            ]
        optics = self._prior_optics(input_px)
        if x.ndim == 3 and y.ndim == 2:
            if x.shape[0] != RAW_SIM_FRAMES:
                raise InputError(
                    f"SR pair {name!r}: a 3-D input with a 2-D target must be a raw-SIM stack of "
                    f"{RAW_SIM_FRAMES} frames, got {x.shape[0]} frames; give the widefield image"
                )
            x = _widefield_from_raw_sim(x)
        if x.ndim == 3 and y.ndim == 3:
            if x.shape[0] != y.shape[0]:
                raise InputError(
                    f"SR pair {name!r}: input has {x.shape[0]} frames but target {y.shape[0]}"
                )
            return [
                prepare_sr_pair(a, b, f"{name}[{t}]", prior_optics=optics)
                for t, (a, b) in enumerate(zip(x, y))
            ]
        return [prepare_sr_pair(x, y, name, prior_optics=optics)]

    @property
    def defocus_D(self) -> float:
        """D = λ·dz/Δx² of the TIE prior: the same merge of known values (``physics``, pixel
        sizes from the files) over the QPI-A recipe's that the model file records, so a model
        used on a stack of unknown optics computes the prior it was trained with."""
        known = [p for p in (self.input_pixel_size_um or []) if p]
        physics = {**({"pixel_size_um": float(known[0])} if known else {}), **self.physics}
        return _default_defocus_number(physics)

    def train_batch(self, rng: np.random.Generator, batch: int, patch: int) -> PairBatch:
        """``batch`` random augmented patches of side ``patch`` (target grid)."""
        smallest = min(min(p.target.shape[-2:]) for p in self.train_pairs)
        if patch > smallest:
            raise InputError(
                f"patch size {patch} is larger than the smallest training image ({smallest} px "
                "on the target grid); use a smaller patch size"
            )
        return _random_patches(self.train_pairs, rng, batch, patch)

    def validation_batch(self, patch: int, count: int = 4) -> PairBatch:
        """Fixed validation patches (side ≤ ``patch``, a multiple of 8) from the held-out data."""
        side = min(patch, *(min(p.target.shape[-2:]) for p in self.val_pairs))
        side -= side % 8
        if side < 8:
            raise InputError("the validation images are smaller than 8 px; give larger images")
        return _grid_patches(self.val_pairs, side, count)


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
