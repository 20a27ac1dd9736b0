"""Task ``prior``: the unconditional EDM prior of zero-shot restoration (``napari-cvdm restore``).

Its model files hold an :class:`~napari_cvdm.engine.prior.EDMPrior` (no condition channels) of
clean SIM-like fluorescence images on the 0.0313 µm grid, min–max mapped to [−1, 1] in
training. It does not reconstruct with ``predict``: ``workflows.restore`` solves the inverse
problem with it and a known PSF. Everything that makes the task what it is lives here.
"""

from __future__ import annotations

from typing import Any

from .base import Task

__all__ = ["PRIOR_NORMALIZATION", "PRIOR_PIXEL_SIZE_UM", "RestoreTask"]

#: pixel size of the fluorescence prior's images (the SR simulator's target grid), µm
PRIOR_PIXEL_SIZE_UM = 0.0313
#: the normalisation rule stored in prior model files: training images were min–max mapped to
#: [−1, 1]; at inference (a, s) come from robust percentiles of a classical estimate
PRIOR_NORMALIZATION = {
    "task": "prior",
    "target": {"kind": "minmax", "low": -1.0, "high": 1.0},
    "inference": {"kind": "percentile", "p_low": 0.1, "p_high": 99.9},
}


class RestoreTask(Task):
    """The zero-shot restoration prior (model-file task ``prior``)."""

    name = "prior"
    label = "PRIOR"
    network = "edm_prior"
    reconstructs = False
    trainable = False
    restores = True
    default_model = "prior-fluorescence"
    fixed_channels = (0, None)
    physics_keys = ()
    models_missing_note = (
        "no prior models found: no zero-shot restore prior is bundled with this version; "
        "prior model files you train or download go in {user_dir}"
    )

    def validate_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        """Any rule of task ``prior`` is accepted (its target rule is for training only)."""
        return rule

    def rule(self) -> dict[str, Any]:
        """The rule stored in prior model files (a copy of :data:`PRIOR_NORMALIZATION`)."""
        return {k: dict(v) if isinstance(v, dict) else v for k, v in PRIOR_NORMALIZATION.items()}


TASK = RestoreTask()
