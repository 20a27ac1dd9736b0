"""Synthetic training pairs from the physics simulators (recipes SR-A and QPI-A), on the fly.

Each training batch is simulated from the generator the trainer passes in (seeded from
(seed, step, rank)), so a resumed run sees the same data and the trainer can build batches in a
background thread. Validation patches come from a fixed generator of their own, so they never
overlap the training stream's seeds. No torch at import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InputError
from .training_data import (
    PairBatch,
    PreparedPair,
    _grid_patches,
    _random_patches,
    prepare_qpi_pair,
    prepare_sr_pair,
)

__all__ = ["SyntheticPairs"]

_VALIDATION_STREAM = 0x5EED_0FF5  # distinct from every (seed, step, rank) training stream


def _simulate(
    task: str,
    rng: np.random.Generator,
    overrides: dict[str, Any],
    sr_prior: bool = False,
    qpi_extra_alphas: tuple[float, ...] = (),
) -> tuple[PreparedPair, Any]:
    """One simulated frame pair, normalised like inference inputs; returns it and the metadata.

    ``sr_prior``: the SR condition carries the RL prior computed with the sample's *nominal*
    optics (what a user would state; the true optics differ, as on a real microscope).
    ``qpi_extra_alphas``: the extra TIE prior channels of a multi-α QPI model."""
    if task == "sr":
        from ..physics.fluorescence import simulate_sr_pair

        sample = simulate_sr_pair(rng, **overrides)
        md = sample.metadata
        optics = (
            {
                "pixel_size_um": float(md["widefield_pixel_size_um"]),
                "na": float(md["na"]),
                "wavelength_um": float(md["wavelength_um"]),
            }
            if sr_prior
            else None
        )
        pair = prepare_sr_pair(sample.widefield, sample.target, "synthetic", prior_optics=optics)
        return pair, md
    from ..normalization import defocus_number
    from ..physics.qpi import simulate_qpi_stack

    sample = simulate_qpi_stack(rng, **overrides)
    md = sample.metadata
    D = defocus_number(md["wavelength_um"], _outer_dz(md), md["pixel_size_um"])
    pair = prepare_qpi_pair(
        sample.stack, sample.phase, "synthetic", defocus_D=D, extra_alphas=qpi_extra_alphas
    )
    return pair, md


def _outer_dz(metadata: dict[str, Any]) -> float:
    """±dz of the planes a QPI condition uses (the outermost: ±max|z|, = dz for 2 planes), µm."""
    return max(abs(float(z)) for z in metadata.get("z_offsets_um", [metadata["dz_um"]]))


def _physics_from(task: str, metadata: dict[str, Any]) -> dict[str, float]:
    """Nominal physical parameters of the recipe for the model file (µm, dimensionless).

    Pixel sizes, plane spacing and the camera offset come from the simulator's metadata; for SR
    the NA and emission wavelength are the recipe's nominal values (NA 1.49, 0.525 µm), since
    each sample draws its own jittered optics around them.
    """
    from .train_support import DEFAULT_PHYSICS

    out = dict(DEFAULT_PHYSICS[task])

    def number(value: Any) -> float | None:
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value > 0
        return float(value) if ok else None

    if task == "sr":
        if (px := number(metadata.get("widefield_pixel_size_um"))) is not None:
            out["pixel_size_um"] = px
        camera = metadata.get("camera")
        if isinstance(camera, dict) and (offset := camera.get("offset_adu")) is not None:
            out["camera_offset_adu"] = float(offset)
    else:
        for key in ("pixel_size_um", "wavelength_um", "dz_um", "na"):
            if (value := number(metadata.get(key))) is not None:
                out[key] = value
        out["dz_um"] = _outer_dz(metadata)  # the defocus of the two planes the model uses
    return out


@dataclass
class SyntheticPairs:
    """Training data simulated on the fly by the task's recipe (``overrides`` go to the simulator).

    ``patches_per_frame`` > 1 cuts that many random patches from each simulated frame (fewer
    simulations per batch when patches are much smaller than the frames; the batch then holds
    ``ceil(batch / patches_per_frame)`` distinct frames). ``physics`` holds the recipe's nominal
    parameters for the model file (the defaults of
    SR-A / QPI-A; jittered values vary per sample and are not recorded).
    """

    task: str
    seed: int = 0
    overrides: dict[str, Any] = field(default_factory=dict)
    patches_per_frame: int = 1
    physics: dict[str, float] = field(default_factory=dict)
    description: dict[str, Any] = field(default_factory=dict)
    sr_prior: bool = False
    qpi_extra_alphas: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.task not in ("sr", "qpi"):
            raise InputError(f"task must be 'sr' or 'qpi', got {self.task!r}")
        self._validation: dict[tuple[int, int], PairBatch] = {}
        recipe = "SR-B" if self.task == "sr" else "QPI-B"
        self.description = {
            "source": "synthetic",
            "recipe": recipe,
            "overrides": {k: repr(v) for k, v in self.overrides.items()},
            **self.description,
        }

    def adopt_sr_prior(self, flag: bool) -> None:
        """Simulate SR conditions with (or without) the RL prior channel, as the model needs."""
        if self.task == "sr" and bool(flag) != self.sr_prior:
            self.sr_prior = bool(flag)
            self._validation.clear()

    def adopt_qpi_priors(self, extra_alphas: tuple[float, ...]) -> None:
        """Simulate QPI conditions with the extra TIE prior channels the model needs."""
        extra = tuple(float(a) for a in extra_alphas)
        if self.task == "qpi" and extra != self.qpi_extra_alphas:
            self.qpi_extra_alphas = extra
            self._validation.clear()

    def _pair(self, rng: np.random.Generator) -> tuple[PreparedPair, Any]:
        """One simulated, normalised pair in this source's condition layout, and its metadata."""
        return _simulate(self.task, rng, self.overrides, self.sr_prior, self.qpi_extra_alphas)

    def train_batch(self, rng: np.random.Generator, batch: int, patch: int) -> PairBatch:
        """``batch`` augmented patches cut from freshly simulated frames."""
        if self.patches_per_frame < 1:
            raise InputError(f"patches_per_frame must be >= 1, got {self.patches_per_frame}")
        conditions, targets = [], []
        while len(targets) < batch:
            pair, _meta = self._pair(rng)
            if patch > min(pair.target.shape[-2:]):
                raise InputError(
                    f"patch size {patch} is larger than the simulated frames "
                    f"({pair.target.shape[-1]} px); use --patch {pair.target.shape[-1]} or less"
                )
            count = min(self.patches_per_frame, batch - len(targets))
            some = _random_patches([pair], rng, count, patch)
            conditions.extend(some.condition)
            targets.extend(some.target)
        return PairBatch(np.stack(conditions), np.stack(targets))

    def validation_batch(self, patch: int, count: int = 4) -> PairBatch:
        """``count`` fixed validation patches (centre crops of seeded simulations)."""
        key = (patch, count)
        if key not in self._validation:
            rng = np.random.default_rng([int(self.seed), _VALIDATION_STREAM])
            pairs, metas = [], []
            for _ in range(count):
                pair, meta = self._pair(rng)
                pairs.append(pair)
                metas.append(meta)
            side = min(patch, *(min(p.target.shape[-2:]) for p in pairs))
            self._validation[key] = _grid_patches(pairs, side - side % 8, count)
            if not self.physics:
                self.physics = _physics_from(self.task, dict(metas[0]))
        return self._validation[key]

    @property
    def defocus_D(self) -> float:
        """D = λ·dz/Δx² of the recipe's nominal QPI optics (what the model file records)."""
        from ..normalization import defocus_number

        p = self.nominal_physics()
        return defocus_number(p["wavelength_um"], p["dz_um"], p["pixel_size_um"])

    def nominal_physics(self) -> dict[str, float]:
        """The recipe's physical parameters, simulating one validation frame if needed."""
        if not self.physics:
            rng = np.random.default_rng([int(self.seed), _VALIDATION_STREAM])
            self.physics = _physics_from(self.task, dict(self._pair(rng)[1]))
        return self.physics
