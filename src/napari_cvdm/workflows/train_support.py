"""Pieces of the training loop kept apart from ``train.py``: per-step seeding, background batch
prefetching, the distributed context, validation (few-step sampling + metrics + preview) and the
model-file metadata. torch is imported at module level (workflows layer).
"""

from __future__ import annotations

import datetime as _dt
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .. import tasks

__all__ = [
    "DistributedContext",
    "Prefetcher",
    "build_metadata",
    "distributed_context",
    "preview_montage",
    "run_validation",
    "seed_step",
    "step_rng",
    "weights_digest",
]


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's state (names, shapes and float32 bytes): equal digests, equal weights."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        data = tensor.detach().to("cpu", torch.float32).contiguous()
        digest.update(f"{name}{tuple(data.shape)}".encode())
        digest.update(data.numpy().tobytes())
    return digest.hexdigest()


def step_rng(seed: int, step: int, rank: int = 0) -> np.random.Generator:
    """The data generator of one step: a pure function of (seed, step, rank)."""
    return np.random.default_rng([int(seed), int(step), int(rank)])


def seed_step(seed: int, step: int, rank: int = 0) -> None:
    """Seed torch (CPU and CUDA: t and ε draws) from (seed, step, rank)."""
    state = np.random.SeedSequence([int(seed), int(step), int(rank), 1]).generate_state(2)
    torch.manual_seed(int(state[0]) << 32 | int(state[1]))


class Prefetcher:
    """Builds the batches of the next steps in one background thread (numpy releases the GIL).

    Each batch depends only on (seed, step, rank), so prefetching never changes results.
    """

    def __init__(self, source: Any, config: Any, rank: int, world: int, first_step: int) -> None:
        self._source = source
        self._seed = config.seed
        self._batch = config.batch // world
        self._patch = config.patch
        self._rank = rank
        self._depth = max(0, int(config.prefetch))
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="cvdm-data") if self._depth else None
        self._pending: dict[int, Future] = {}
        self._next = first_step

    def _make(self, step: int) -> Any:
        return self._source.train_batch(
            step_rng(self._seed, step, self._rank), self._batch, self._patch
        )

    def get(self, step: int) -> Any:
        """The batch of ``step`` (steps are requested in increasing order)."""
        if self._pool is None:
            return self._make(step)
        for ahead in range(max(step, self._next), step + self._depth + 1):
            self._pending[ahead] = self._pool.submit(self._make, ahead)
        self._next = step + self._depth + 1
        for old in [s for s in self._pending if s < step]:
            self._pending.pop(old).cancel()
        return self._pending.pop(step).result()

    def close(self) -> None:
        """Cancel pending batches and stop the thread."""
        if self._pool is not None:
            for future in self._pending.values():
                future.cancel()
            self._pending.clear()
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None


@dataclass
class DistributedContext:
    """Rank, world size and device of this process; ``owns_group`` if we initialised it."""

    device: torch.device
    rank: int = 0
    world: int = 1
    owns_group: bool = False

    def any_rank(self, flag: bool) -> bool:
        """True if ``flag`` is set on any rank (so every rank stops at the same step)."""
        if self.world == 1:
            return flag
        value = torch.tensor([1.0 if flag else 0.0], device=self.device)
        torch.distributed.all_reduce(value, op=torch.distributed.ReduceOp.MAX)
        return bool(value.item() > 0)

    def close(self) -> None:
        """Tear down the process group if this run created it."""
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
            self.owns_group = False


def distributed_context(device: str, resolve_device: Any) -> DistributedContext:
    """Set up DistributedDataParallel when launched by torchrun (``WORLD_SIZE`` > 1).

    gloo on CPU, nccl on CUDA (device ``cuda:LOCAL_RANK``). Single process otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    resolved = resolve_device(device)
    if world <= 1:
        return DistributedContext(resolved)
    import torch.distributed as tdist

    if resolved.type == "cuda":
        resolved = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(resolved)
    owns = False
    if not tdist.is_initialized():
        tdist.init_process_group("nccl" if resolved.type == "cuda" else "gloo")
        owns = True
    return DistributedContext(resolved, tdist.get_rank(), tdist.get_world_size(), owns)


# --- validation ---------------------------------------------------------------------------


def _scaled(panel: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(panel, [0.5, 99.5])
    return np.clip((panel - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(panel)


def preview_montage(
    condition: np.ndarray, prediction: np.ndarray, target: np.ndarray
) -> np.ndarray:
    """A display image (rows = validation patches; columns = input, prediction, target).

    Inputs (N, C, P, P); each panel is percentile-scaled to [0, 1] on its own. float32 (N·P, 3·P).
    """
    rows = [
        np.concatenate([_scaled(c[0]), _scaled(p[0]), _scaled(t[0])], axis=-1)
        for c, p, t in zip(condition, prediction, target)
    ]
    return np.concatenate(rows, axis=0).astype(np.float32)


def _sample_patches(model: torch.nn.Module, x: torch.Tensor, steps: int, seed: int) -> torch.Tensor:
    """One few-step DDIM sample per validation patch: (N, C_y, P, P) model units (residual
    not yet added back). Seeded per patch, so the same EMA weights give the same result."""
    from ..engine.sampling import SampleGroup, sample

    out = []
    for index in range(x.shape[0]):
        samples = None
        for event in sample(
            model,
            x[index : index + 1],
            n_samples=1,
            steps=steps,
            sampler="ddim",
            seed=seed + index,
            channels_last=False,
        ):
            if isinstance(event, SampleGroup):
                samples = event.samples
        if samples is None:
            raise RuntimeError("the sampler finished without a sample group")
        out.append(samples.reshape(-1, *samples.shape[-3:])[:1].float().cpu())
    return torch.cat(out)


def run_validation(
    ema: torch.nn.Module, batch: Any, config: Any, device: torch.device
) -> tuple[dict[str, float], np.ndarray]:
    """Validation loss, few-step sampling metrics (the task's: SR psnr, ssim; QPI phase_mae)
    and a preview."""
    x = torch.from_numpy(batch.condition).to(device)
    y = torch.from_numpy(batch.target).to(device)
    residual = bool(getattr(ema.config, "residual", False))
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(config.seed + 7919)
        losses = ema.loss(x, y - x[:, : y.shape[1]] if residual else y)
    metrics = {"loss": float(losses["total"].detach())}
    pred = _sample_patches(ema, x, config.val_steps, config.seed)
    if residual:
        pred = pred + x[:, : pred.shape[1]].float().cpu()
    pred_np = pred.numpy()
    target_np = batch.target
    metrics.update(tasks.get(config.task).validation_metrics(pred_np, target_np))
    return metrics, preview_montage(batch.condition, pred_np, target_np)


# --- model-file metadata ------------------------------------------------------------------


def build_metadata(
    config: Any,
    source: Any,
    origin: dict[str, Any],
    steps: int,
    wall_time_s: float,
    validation: dict[str, float],
    cancelled: bool,
) -> dict[str, Any]:
    """The model header (task, name, description, normalization, physics, training)."""
    from .. import __version__

    task = tasks.get(config.task)
    physics: dict[str, Any] = dict(task.default_physics)
    assumed = sorted(
        set(physics)
        - set(source.physics)
        - set(config.physics)
        - set(origin.get("base_physics", {}))
    )
    physics.update(origin.get("base_physics", {}))
    physics.update(source.physics)
    physics.update(config.physics)
    normalization = task.train_rule(config, physics, source)
    data = source.description
    base = origin.get("base_training", {})
    name = config.name or os.path.splitext(os.path.basename(os.fspath(config.output)))[0]
    description = config.description or (
        f"CVDM {config.task.upper()} model ({config.preset if not origin else 'fine-tuned'}) "
        f"trained for {steps} steps on {data.get('source', 'data')} data"
        + (f", fine-tuned from {origin['base_model']}" if origin.get("base_model") else "")
    )
    training = {
        "data": data,
        "steps": int(steps),
        "target_steps": int(config.steps),
        "stopped_early": bool(cancelled),
        "batch": int(config.batch),
        "patch": int(config.patch),
        "lr": float(config.learning_rate()),
        "optimizer": "AdamW (no weight decay), EMA weights",
        "ema_decay": float(config.ema_decay),
        "seed": int(config.seed),
        "wall_time_s": round(float(wall_time_s), 1),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "code_version": __version__,
        "command": config.command,
        "device": str(config.device),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "freeze_schedule": bool(config.freeze_schedule),
        "validation": {k: float(v) for k, v in validation.items()},
        # over every run this model went through (fine-tuning adds to its base model's totals)
        "cumulative_steps": int(base.get("cumulative_steps", 0) + steps),
        "cumulative_wall_time_s": round(
            float(base.get("cumulative_wall_time_s", 0.0) + wall_time_s), 1
        ),
        "assumed_physics": assumed,
        **{k: v for k, v in origin.items() if k in ("base_model", "base_model_sha256")},
    }
    return {
        "task": config.task,
        "name": name,
        "description": description,
        "normalization": normalization,
        "physics": {k: float(v) for k, v in physics.items()},
        "training": training,
    }
