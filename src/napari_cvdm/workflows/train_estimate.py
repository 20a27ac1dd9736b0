"""How long a training run will take, measured on this machine before it starts.

:func:`estimate_training` builds the run's network (preset, condition channels) on the chosen
device, times a few optimiser steps at the run's batch and patch size on random tensors, and one
validation forward pass, and extrapolates to ``steps`` (plus the validations every
``val_every`` steps). Data loading (simulation or reading files) runs in a background thread
during training and is not included, so the estimate is a lower bound on a busy CPU. It takes a
few seconds (less on a GPU); the CLI prints it and the Train widget shows it before Run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

__all__ = ["TrainEstimate", "estimate_training", "format_duration"]


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``3 h 05 min`` or ``2.5 days``."""
    seconds = max(0.0, float(seconds))
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        hours, rest = divmod(int(round(seconds / 60)), 60)
        return f"{hours} h {rest:02d} min"
    return f"{seconds / 86400:.1f} days"


@dataclass(frozen=True)
class TrainEstimate:
    """Measured seconds per optimiser step and per validation, and the whole run's total."""

    device: str
    steps: int
    step_s: float
    validation_s: float
    validations: int

    @property
    def total_s(self) -> float:
        return self.steps * self.step_s + self.validations * self.validation_s

    def describe(self) -> str:
        """One line: the total, the steps and the per-step time it came from."""
        return (
            f"estimated training time on {self.device}: about {format_duration(self.total_s)} "
            f"for {self.steps} steps ({self.step_s:.2g} s per step measured, plus "
            f"{self.validations} validations; data loading not included)"
        )


def estimate_training(
    config: Any, *, timed_steps: int = 1, remaining_steps: int | None = None
) -> TrainEstimate:
    """Measure the run ``config`` (a ``workflows.train.TrainConfig``) on its device.

    ``remaining_steps``: steps still to run (a resumed run); default ``config.steps``. The
    network is fresh (random weights): the time does not depend on the weights.
    """
    import torch

    from .. import tasks
    from ..engine.cvdm import CVDM, CVDMConfig
    from ..engine.device import resolve_device

    device = resolve_device(config.device)
    task = tasks.get(config.task)  # the run's condition: its prior channels included
    cond = task.condition_channels_needed(task.train_rule(config))[0]
    arch = CVDMConfig(
        condition_channels=cond,
        target_channels=task.fixed_channels[1],
        preset=config.preset,
        residual=True,
    )
    generator = torch.Generator().manual_seed(0)
    model = CVDM(arch).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    patch = (int(config.patch), int(config.patch))

    def tensors(batch: int) -> tuple[Any, Any]:
        x = torch.randn((batch, cond, *patch), generator=generator).to(device)
        return x, torch.randn((batch, 1, *patch), generator=generator).to(device)

    def step(x: Any, y: Any) -> None:
        optimizer.zero_grad(set_to_none=True)
        model.loss(x, y)["total"].backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    step(*tensors(1))  # warm-up (allocations, kernel choice) at batch 1: cheap on a CPU
    x, y = tensors(int(config.batch))
    started = time.perf_counter()
    for _ in range(max(1, timed_steps)):
        step(x, y)
    step_s = (time.perf_counter() - started) / max(1, timed_steps)

    model.eval()
    count = max(1, int(getattr(config, "val_count", 4)))
    vx, vy = tensors(count)
    with torch.no_grad():
        started = time.perf_counter()
        model.denoise(vy, vx, torch.zeros_like(vy))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        forward_s = time.perf_counter() - started
    steps = int(config.steps if remaining_steps is None else remaining_steps)
    validations = steps // max(1, int(config.val_every))
    return TrainEstimate(
        device=str(device),
        steps=steps,
        step_s=step_s,
        validation_s=forward_s * int(getattr(config, "val_steps", 10)),
        validations=validations,
    )
