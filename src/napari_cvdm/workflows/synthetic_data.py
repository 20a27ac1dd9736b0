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

from .. import tasks
from ..errors import InputError
from .patches import PairBatch, PreparedPair, grid_patches, random_patches

__all__ = ["SyntheticPairs"]

_VALIDATION_STREAM = 0x5EED_0FF5  # distinct from every (seed, step, rank) training stream


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
        if self.task not in tasks.names(trainable=True):
            raise InputError(f"task must be 'sr' or 'qpi', got {self.task!r}")
        self._validation: dict[tuple[int, int], PairBatch] = {}
        self.description = {
            "source": "synthetic",
            "recipe": tasks.get(self.task).recipe,
            "overrides": {k: repr(v) for k, v in self.overrides.items()},
            **self.description,
        }

    def adopt_sr_prior(self, flag: bool) -> None:
        """Simulate SR conditions with (or without) the RL prior channel, as the model needs."""
        self._adopt("sr_prior", bool(flag))

    def adopt_qpi_priors(self, extra_alphas: tuple[float, ...]) -> None:
        """Simulate QPI conditions with the extra TIE prior channels the model needs."""
        self._adopt("qpi_extra_alphas", tuple(float(a) for a in extra_alphas))

    def _adopt(self, option: str, value: Any) -> None:
        """Simulate with a changed condition option of the task (another task's is ignored)."""
        if tasks.get(self.task).condition_option == option and value != getattr(self, option):
            setattr(self, option, value)
            self._validation.clear()

    def _pair(self, rng: np.random.Generator) -> tuple[PreparedPair, Any]:
        """One simulated, normalised pair in this source's condition layout, and its metadata
        (the task's :meth:`simulate_pair`)."""
        return tasks.get(self.task).simulate_pair(rng, self.overrides, self)

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
            some = random_patches([pair], rng, count, patch)
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
            self._validation[key] = grid_patches(pairs, side - side % 8, count)
            if not self.physics:
                self.physics = tasks.get(self.task).simulated_physics(dict(metas[0]))
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
            self.physics = tasks.get(self.task).simulated_physics(dict(self._pair(rng)[1]))
        return self.physics
