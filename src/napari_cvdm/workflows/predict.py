"""Reconstruction workflow: image + model + parameters → a stream of events.

:func:`reconstruct` validates the input at once (bad inputs raise
:class:`~napari_cvdm.errors.InputError` before any work) and returns a generator yielding

* :class:`~napari_cvdm.workflows.events.Progress` after every reverse step of every sample group
  of every frame, counted in sample-steps (``total`` = frames × samples × steps, reached by the
  last one),
* :class:`~napari_cvdm.workflows.events.PartialResult` after each sample group: copies of the
  running mean/std (unbiased) in physical units over the whole output (views with
  ``partial_copies=False``, for consumers that only count samples),
* a final :class:`~napari_cvdm.workflows.events.Finished` holding a :class:`Reconstruction`.

``generator.close()`` between events stops the job; device memory is freed either way.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import ETA, SAMPLER, SAMPLERS, SAMPLES, SAMPLING_STEPS
from ..engine.header import std_scale
from ..errors import InputError
from ..events import Finished, PartialResult, Progress
from ..normalization import upsample_condition
from ..tasks import make_adapter

__all__ = [
    "CURVE_POINTS",
    "Reconstruction",
    "ReconstructionParams",
    "RunningStats",
    "reconstruct",
    "upsample_condition",
]

#: number of diffusion times in the region-averaged γ(t), β(t) curves
CURVE_POINTS = 64
#: pixels above this percentile of the mean are "structure" in the curves, the rest "background"
STRUCTURE_PERCENTILE = 80.0


@dataclass(frozen=True)
class ReconstructionParams:
    """How to sample. ``group_size`` samples are drawn together (one ``PartialResult`` each);
    ``None`` (default): the first group is one sample and later sizes follow the measured
    throughput (``engine.group_sizer``), so the first mean/std appear early on every device.
    ``tile`` (target-grid pixels) enables per-step tiling with ``tile_overlap`` (default
    ``min(receptive radius, tile // 4)``); ``None`` tiles only when the sampler's memory budget
    requires it, ``0`` never tiles. ``t_star``: diffusion times of the γ/β map stacks."""

    n_samples: int = SAMPLES
    steps: int = SAMPLING_STEPS
    sampler: str = SAMPLER
    eta: float = ETA
    seed: int = 0
    device: str = "auto"
    tile: int | None = None
    tile_overlap: int | None = None
    t_star: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
    group_size: int | None = None
    #: False: multiply the std by the model's calibration scale (workflows/calibration.py)
    raw_std: bool = False
    #: False: ``PartialResult`` holds views of the running mean/std (valid until the next event)
    #: instead of copies: two output-sized arrays less per group, for consumers (the CLI, the
    #: Dask tasks) that only read the sample count
    partial_copies: bool = True
    #: activation memory (MiB) of one network call, which sizes the tiles; None: the device's
    #: default (``engine.tile_plan.default_memory_budget_mb``)
    memory_budget_mb: float | None = None

    def validate(self) -> ReconstructionParams:
        """Check ranges; raises ``InputError`` naming the bad parameter."""
        checks = [
            (self.n_samples >= 1, f"n_samples must be >= 1, got {self.n_samples}"),
            (self.steps >= 1, f"steps must be >= 1, got {self.steps}"),
            (
                self.sampler in SAMPLERS,
                f"sampler must be {' or '.join(map(repr, SAMPLERS))}, got {self.sampler!r}",
            ),
            (0.0 <= self.eta <= 1.0, f"eta must be in [0, 1], got {self.eta}"),
            (
                self.tile in (None, 0) or self.tile >= 16,
                f"tile must be >= 16 pixels, got {self.tile}",
            ),
            (
                self.tile_overlap is None or 0 <= self.tile_overlap < (self.tile or 2**31),
                f"tile_overlap must be >= 0 and smaller than the tile, got {self.tile_overlap}",
            ),
            (
                self.group_size is None or self.group_size >= 1,
                f"group_size must be >= 1, got {self.group_size}",
            ),
            (
                self.memory_budget_mb is None or self.memory_budget_mb >= 16,
                f"memory_budget_mb must be >= 16 MiB, got {self.memory_budget_mb}",
            ),
            (
                all(0.0 <= t <= 1.0 for t in self.t_star),
                f"t_star values must lie in [0, 1], got {self.t_star}",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        return self

    @property
    def groups(self) -> int:
        """Number of sample groups per frame (with ``group_size=None``: at most ``n_samples``)."""
        return math.ceil(self.n_samples / (self.group_size or 1))

    def group_sizes(self) -> list[int]:
        """Fixed group sizes; with ``group_size=None`` the sampler decides (listed as ones)."""
        size = self.group_size or 1
        return [min(size, self.n_samples - start) for start in range(0, self.n_samples, size)]


@dataclass
class Reconstruction:
    """Result in physical units (float32). Frames keep the input's leading axes.

    ``mean``, ``std``, ``schedule`` (λ map): (..., H, W); ``curves``: ``t`` (K,) and
    ``gamma_structure``, ``gamma_background``, ``beta_structure``, ``beta_background`` of shape
    (..., K); ``metadata``: the provenance dict. ``gamma``, ``beta`` (T*, ..., H, W) with
    ``t_star`` (T*,) leading are computed from the λ map when read (γ = exp(−λ ρ(t*)),
    β = λ ρ'(t*), with ``rho_star``/``drho_star`` the model's ρ, ρ' at ``t_star``): a job that
    never reads them (the CLI) never holds the 2·T* output-sized stacks.
    """

    mean: np.ndarray
    std: np.ndarray
    schedule: np.ndarray
    t_star: np.ndarray
    curves: dict[str, np.ndarray]
    metadata: dict[str, Any] = field(default_factory=dict)
    rho_star: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    drho_star: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def _stack(self, values: np.ndarray) -> np.ndarray:
        return np.asarray(values, np.float32).reshape(-1, *([1] * self.schedule.ndim))

    @property
    def gamma(self) -> np.ndarray:
        """γ(t*, x) = exp(−λ ρ(t*)), (T*, ..., H, W) float32 (computed on each read)."""
        return np.exp(-self.schedule[None] * self._stack(self.rho_star))

    @property
    def beta(self) -> np.ndarray:
        """β(t*, x) = λ ρ'(t*), (T*, ..., H, W) float32 (computed on each read)."""
        return self.schedule[None] * self._stack(self.drho_star)


class RunningStats:
    """Pixelwise running mean and unbiased std over batches of samples (float64, Chan's merge)."""

    def __init__(self) -> None:
        self.n = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, samples: np.ndarray) -> None:
        """Add a batch ``(S, ...)`` of samples (updated in place: about three pixel-sized
        float64 temporaries at most, whatever S)."""
        batch = np.asarray(samples)
        k = batch.shape[0]
        b_mean = batch.mean(axis=0, dtype=np.float64)
        b_m2 = np.zeros_like(b_mean)
        scratch = np.empty_like(b_mean)
        for item in batch:  # Σ (x − mean_b)², one sample at a time
            np.subtract(item, b_mean, out=scratch)
            np.square(scratch, out=scratch)
            b_m2 += scratch
        if self.n == 0:
            self.mean, self.m2 = b_mean, b_m2
        else:
            total = self.n + k
            np.subtract(b_mean, self.mean, out=scratch)  # delta
            self.m2 += b_m2
            del b_m2, b_mean
            self.mean += scratch * (k / total)
            np.square(scratch, out=scratch)
            scratch *= self.n * k / total
            self.m2 += scratch
        self.n += k

    @property
    def std(self) -> np.ndarray:
        """Unbiased (ddof = 1) std; zeros with a single sample."""
        if self.n < 2:
            return np.zeros_like(self.mean)
        return np.sqrt(self.m2 / (self.n - 1))


def _as_loaded(model: Any) -> Any:
    """A ``LoadedModel`` from a ``LoadedModel``, a model name or a path."""
    if hasattr(model, "model") and hasattr(model, "metadata"):
        return model
    if isinstance(model, str | Path):
        from ..engine.registry import load

        return load(model)
    raise InputError(
        f"model must be a loaded model, a model name or a file path, got {type(model).__name__}"
    )


def reconstruct(
    image: Any, model: Any, params: ReconstructionParams | None = None, **task_options: Any
) -> Iterator[Progress | PartialResult | Finished]:
    """Reconstruct ``image`` with ``model`` (``LoadedModel``, name or path); see the module doc.

    ``task_options`` go to the task's adapter (``tasks.<task>.adapter``): SR ``pixel_size_um``,
    ``na``, ``wavelength_um``, ``offset_adu``; QPI ``focus_axis``, ``planes``, ``background``,
    ``wavelength_um``, ``dz_um``, ``pixel_size_um``; both ``input_name`` (for the provenance).
    """
    params = (params or ReconstructionParams()).validate()
    loaded = _as_loaded(model)
    input_name = str(task_options.pop("input_name", ""))
    adapter = make_adapter(loaded.metadata["task"], image, loaded.metadata, **task_options)
    return _run(adapter, loaded, params, input_name)


def _provenance(
    adapter: Any, loaded: Any, params: ReconstructionParams, device: Any
) -> dict[str, Any]:
    from .. import __version__

    meta = loaded.metadata
    return {
        "plugin_version": __version__,
        "mode": adapter.task,
        "model": meta["name"],
        "model_path": str(loaded.path) if loaded.path else None,
        "weights_sha256": loaded.sha256,
        "untrained": bool(meta["training"].get("untrained", False)),
        "steps": params.steps,
        "sampler": params.sampler,
        "eta": params.eta,
        "samples_done": 0,
        "samples_total": params.n_samples,
        "seed": params.seed,
        "device": str(device),
        "tiling": {
            "tile": "auto" if params.tile is None else params.tile,
            "overlap": params.tile_overlap,
        },
        "frames": adapter.frames,
        "normalization": {"rule": meta["normalization"], "frames": []},
        "t_star": list(params.t_star),
        **adapter.provenance(),
        "status": "running",
    }


def _run(
    adapter: Any, loaded: Any, params: ReconstructionParams, input_name: str
) -> Iterator[Progress | PartialResult | Finished]:
    import torch

    from ..engine.device import free_device_memory, resolve_device
    from ..engine.sampling import frame_seed

    device = resolve_device(params.device)
    model = loaded.model
    home = next(model.parameters()).device
    frames = adapter.frames
    total = frames * params.n_samples * params.steps  # sample-steps
    meta = {**_provenance(adapter, loaded, params, device), "input_name": input_name}
    std_factor = std_scale(loaded.metadata, raw=params.raw_std)
    meta["std_calibration"] = {"scale": std_factor, "raw": params.raw_std}
    mean = np.zeros(adapter.output_shape, np.float32)
    std = np.zeros(adapter.output_shape, np.float32)
    schedule = np.zeros(adapter.output_shape, np.float32)
    lead = adapter.output_shape[:-2]
    curves = {name: np.zeros((*lead, CURVE_POINTS), np.float32) for name in _CURVE_NAMES}
    done = 0
    try:
        model.to(device)
        for index in range(frames):
            where = np.unravel_index(index, lead) if lead else ()
            prep = adapter.prepare(index)
            meta["normalization"]["frames"].append(prep.norm)
            x = torch.from_numpy(np.ascontiguousarray(prep.condition[None], np.float32)).to(device)
            stats = RunningStats()
            stage = f"frame {index + 1}/{frames}" if frames > 1 else "sampling"
            lam = _lambda_map(model, x, params)  # once per frame, tiled like the denoiser
            seed = frame_seed(params.seed, index)
            for event in _sample_frame(model, x, params, seed=seed, lam=lam):
                if isinstance(event, Progress):
                    done = index * params.n_samples * params.steps + event.step
                    yield Progress(done, total, stage)
                    continue
                stats.add(prep.to_physical(event))
                del event
                mean[where] = stats.mean
                std[where] = stats.std * std_factor
                meta["samples_done"] = stats.n
                copy = np.copy if params.partial_copies else (lambda a: a)
                yield PartialResult(copy(mean), copy(std), stats.n, params.n_samples, index, frames)
            del stats, prep
            maps = _schedule_outputs(model, x, mean[where], lam=lam)
            schedule[where] = maps["lambda"]
            for name in _CURVE_NAMES:
                curves[name][where] = maps[name]
            del x, lam, maps
        meta["status"] = "complete"
        meta["timestamp"] = _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")
        curves["t"] = _curve_times()
        rho_star, drho_star = _rho_at(model, params.t_star)
        result = Reconstruction(
            mean=mean,
            std=std,
            schedule=schedule,
            t_star=np.asarray(params.t_star, np.float32),
            curves=curves,
            metadata=meta,
            rho_star=rho_star,
            drho_star=drho_star,
        )
        yield Finished(result, info={"frames": frames, "steps": done})
    finally:
        model.to(home)
        free_device_memory(device)


# --- engine glue --------------------------------------------------------------------------

_CURVE_NAMES = ("gamma_structure", "gamma_background", "beta_structure", "beta_background")


def _curve_times() -> np.ndarray:
    """The times of the curves: ``CURVE_POINTS`` uniform in [0, 1] (as ``schedule_curves``)."""
    return np.linspace(0.0, 1.0, CURVE_POINTS, dtype=np.float32)


def _lambda_map(model: Any, x: Any, params: ReconstructionParams) -> Any:
    """λ(x) (1, C_y, H, W) of one frame, tiled with the run's tile settings."""
    from ..engine.sampling import lambda_map_tiled

    return lambda_map_tiled(
        model,
        x,
        tile=params.tile,
        overlap=params.tile_overlap,
        memory_budget_mb=params.memory_budget_mb,
    )


def _sample_frame(
    model: Any, x: Any, params: ReconstructionParams, seed: int, lam: Any = None
) -> Iterator[Any]:
    """Yield ``Progress`` per reverse step and each group's samples (g, H, W) in model units."""
    from ..engine.sampling import SampleGroup, sample

    for event in sample(
        model,
        x,
        n_samples=params.n_samples,
        steps=params.steps,
        sampler=params.sampler,
        eta=params.eta,
        seed=seed,
        tile=params.tile,
        tile_overlap=params.tile_overlap,
        group_size=params.group_size,
        memory_budget_mb=params.memory_budget_mb,
        lam=lam,
    ):
        if isinstance(event, SampleGroup):
            samples = event.samples.float().numpy()
            yield samples[:, 0]
        else:
            yield event


def _rho_at(model: Any, t_star: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """ρ(t*) and ρ'(t*) (T*,) float32: with the λ map they give the γ/β maps at ``t_star``."""
    import torch

    if not t_star:
        return np.zeros(0, np.float32), np.zeros(0, np.float32)
    with torch.inference_mode():
        rho, drho, _ = model.rho_derivatives(t_star)
    return rho.float().cpu().numpy(), drho.float().cpu().numpy()


def _schedule_outputs(
    model: Any, x: Any, mean: np.ndarray, lam: Any = None
) -> dict[str, np.ndarray]:
    """λ map (H, W) and the structure/background curves (K,) of one frame.

    Structure = pixels of the (physical) mean at or above its 80th percentile; a region
    with no pixel gives NaN curves. The γ/β maps at t* follow from the λ map
    (:class:`Reconstruction`), so none is made here.
    """
    import torch

    with torch.inference_mode():
        lam = model.lambda_map(x) if lam is None else lam
        mask = torch.from_numpy(mean >= np.percentile(mean, STRUCTURE_PERCENTILE)).to(lam.device)
        curves = model.schedule_curves(x, mask=mask, n_t=CURVE_POINTS, lam=lam)
    out = {"lambda": lam[0, 0].float().cpu().numpy()}
    for name in _CURVE_NAMES:
        out[name] = curves[name].float().cpu().numpy()
    return out
