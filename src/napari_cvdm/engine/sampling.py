"""Reverse-diffusion sampling for CVDM: the driver of the registered samplers.

The step rules live in :mod:`~napari_cvdm.engine.samplers` (a name → short-function table);
:func:`sample` evaluates the denoiser (tiled when the memory budget needs it) as a closure and
applies a rule per step, as a generator that yields :class:`~napari_cvdm.events.Progress` after
every reverse step and a :class:`SampleGroup` after each group of samples, so the GUI, the CLI
and the tests consume one event stream and can stop it between steps with
``generator.close()``. :func:`sample` is a chain of named steps: check the options
(:func:`_check_options`), plan tiles and groups (:func:`_denoiser_plan`), build the denoiser call
(:func:`_denoiser_call`), the λ map (:func:`_frame_lambda`), the ŷ_0 clamp (:func:`_clamp`) and
the reverse step (:func:`_reverse_step`), then run the groups (:func:`_groups`).

Time grid: ``1 = t_N > … > t_0 = 0`` (uniform). The last step goes to ``s = 0`` where ``γ = 1``
exactly (ρ(0) = 0), so the result is ŷ_0 with no residual noise. Samples are in model target units:
for residual models the caller adds ``x_up`` back, then undoes the normalisation.
"""

from __future__ import annotations

import math
import time
from collections.abc import Generator
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..defaults import ETA, SAMPLER, SAMPLING_STEPS
from ..errors import InputError
from ..events import Progress
from . import schedule as sch
from .group_sizer import REFRESH_S, GroupSizer
from .samplers import SAMPLERS, Sampler, ancestral_step, ddim_step, get_sampler
from .tiling import tiled_apply

__all__ = [
    "SAMPLERS",
    "BatchPlan",
    "SampleGroup",
    "ancestral_step",
    "ddim_step",
    "denoised_bound",
    "frame_seed",
    "lambda_map_tiled",
    "plan_batches",
    "sample",
    "sample_all",
    "sample_generator",
    "sample_seed",
    "time_grid",
]


@dataclass(frozen=True)
class SampleGroup:
    """Finished samples of one group: ``samples`` float32 (g, C_y, H, W) on the CPU, model units
    (residual not added back); ``done`` samples finished so far out of ``total``."""

    samples: torch.Tensor
    done: int
    total: int


@dataclass(frozen=True)
class BatchPlan:
    """How a sampling job is cut to fit a memory budget.

    ``tile``: tile edge in pixels, or None for whole-image evaluation; ``overlap``: tile overlap;
    ``group_size``: samples advanced together (None: chosen from measured throughput, see
    :mod:`~napari_cvdm.engine.group_sizer`); ``max_batch``: (tile, sample) pairs per denoiser
    call.
    """

    tile: int | None
    overlap: int
    group_size: int | None
    max_batch: int


# ----------------------------------------------------------------------------- step rules

#: clamp of the absolute denoised estimate for models whose targets span [−1, 1]
DEFAULT_DENOISED_BOUND = 1.5


def denoised_bound(model: Any) -> float:
    """The clamp of ŷ_0 a model was trained for: ``config.extra["denoised_bound"]`` or 1.5."""
    extra = getattr(model.config, "extra", None) or {}
    return float(extra.get("denoised_bound", DEFAULT_DENOISED_BOUND))


def time_grid(steps: int) -> torch.Tensor:
    """Uniform grid ``[t_N = 1, …, t_0 = 0]`` of ``steps + 1`` times, descending."""
    return torch.linspace(1.0, 0.0, steps + 1)


# ----------------------------------------------------------------------------- planning


def plan_batches(
    height: int,
    width: int,
    n_samples: int,
    bytes_per_pixel: float,
    memory_budget_mb: float,
    tile: int | None = None,
    overlap: int | None = None,
    group_size: int | None = None,
    *,
    halo: int | None = None,
    multiple: int = 1,
) -> BatchPlan:
    """Choose tiling and batch sizes so one denoiser call stays within ``memory_budget_mb``.

    ``tile=None``: tile only if one whole-image pass exceeds the budget, with the tile and overlap
    of :func:`~napari_cvdm.engine.tile_plan.choose_tiling` (overlap = the network's receptive
    radius ``halo``, tile edge a multiple of ``multiple``; without ``halo``, power-of-two tiles
    with a quarter overlap); ``tile=0``: never tile; otherwise tiles of that edge with
    ``overlap`` (default ``min(halo, tile // 4)``, or ``tile // 4`` without ``halo``).
    ``group_size``: fixed samples per group, or None to let the sampler size groups from measured
    throughput (then ``BatchPlan.group_size`` is None and ``max_batch`` bounds each group).
    """
    from .tile_plan import choose_tiling

    budget = float(memory_budget_mb) * 2**20
    if tile is None and bytes_per_pixel * height * width > budget:
        if halo is None:
            side = math.sqrt(budget / bytes_per_pixel)
            tile = max(64, 2 ** int(math.log2(max(side, 1.0))))
        else:
            tile, auto_overlap = choose_tiling(
                height, width, bytes_per_pixel, memory_budget_mb, halo, multiple
            )
            overlap = auto_overlap if overlap is None else overlap
    tile = tile or None
    if tile is not None and tile < 8:
        raise InputError(f"tile size {tile} is too small; use at least 8 pixels (e.g. 256)")
    if tile is None:
        overlap = 0
    elif overlap is None:
        overlap = tile // 4 if halo is None else min(int(halo), tile // 4)
    overlap = int(overlap)
    if tile is not None and not 0 <= overlap < tile:
        raise InputError(f"tile overlap {overlap} must be >= 0 and smaller than the tile ({tile})")
    per_item = bytes_per_pixel * min(tile or height, height) * min(tile or width, width)
    fit = max(1, int(budget // per_item))
    if group_size is not None:
        group_size = max(1, min(int(group_size), n_samples))
    max_batch = fit if tile is not None else min(group_size or n_samples, fit)
    return BatchPlan(tile=tile, overlap=overlap, group_size=group_size, max_batch=max_batch)


def lambda_map_tiled(
    model: Any,
    x: torch.Tensor,
    *,
    tile: int | None = None,
    overlap: int | None = None,
    memory_budget_mb: float | None = None,
    channels_last: bool | None = None,
) -> torch.Tensor:
    """λ(x) (1, C_y, H, W) float32 of a condition (1, C_x, H, W), tiled like the denoiser.

    ``tile``/``overlap`` as :func:`plan_batches` (None: tiles only when the λ network's pass
    exceeds the budget, overlap its receptive radius; 0: never). ``channels_last`` as
    :func:`sample`, whose denoiser calls use the same layout. With one tile covering the image
    the result is exactly ``model.lambda_map(x)`` in that layout. Runs under
    ``torch.inference_mode``.
    """
    from .tile_plan import default_memory_budget_mb

    x = _check_condition(model, torch.as_tensor(x, dtype=torch.float32))
    unet = model.lambda_net.unet
    budget = default_memory_budget_mb(x.device) if memory_budget_mb is None else memory_budget_mb
    plan = plan_batches(
        *x.shape[-2:],
        1,
        unet.activation_bytes_per_pixel(),
        budget,
        tile,
        overlap,
        halo=unet.receptive_radius(),
        multiple=unet.stride,
    )
    memory_format = _memory_layout(model, x.device, channels_last)
    with torch.inference_mode():
        lam = tiled_apply(
            lambda t: model.lambda_map(t.contiguous(memory_format=memory_format)),
            x,
            tile=plan.tile,
            overlap=plan.overlap,
            max_batch=plan.max_batch,
        )
    return lam.float().contiguous()


def _memory_layout(model: Any, device: torch.device, channels_last: bool | None) -> Any:
    """The memory format of every network call (channels-last on CPU and CUDA unless
    ``channels_last=False``); converts the model's weights to it (values unchanged).

    The λ pass and the denoiser use the same layout, so a model's results do not depend on
    whether an earlier call already converted it (before, the first image of a process ran λ
    on contiguous weights and every later one on channels-last weights, which differ in the
    last bits)."""
    if channels_last is None:
        channels_last = device.type in ("cuda", "cpu")
    if not channels_last:
        return torch.contiguous_format
    model.to(memory_format=torch.channels_last)
    return torch.channels_last


#: pixels (× samples) per band of the pixelwise step update
STEP_BAND_PIXELS = 1 << 20


def _row_bands(height: int, width: int, items: int) -> list[slice]:
    """Row slices covering ``height`` rows with about ``STEP_BAND_PIXELS`` values each."""
    rows = max(1, STEP_BAND_PIXELS // max(1, width * items))
    return [slice(start, min(start + rows, height)) for start in range(0, height, rows)]


def sample_seed(seed: int, index: int) -> int:
    """The torch seed (0 ≤ s < 2⁶⁴) of sample ``index`` for the run seed ``seed``."""
    state = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, int(index)]).generate_state(
        1, np.uint64
    )
    return int(state[0])


def sample_generator(seed: int, index: int) -> torch.Generator:
    """CPU generator of sample ``index`` for ``seed`` (sample i's noise is independent of
    grouping)."""
    return torch.Generator().manual_seed(sample_seed(seed, index))


def _draw(generators: list[torch.Generator], shape: tuple[int, ...], device) -> torch.Tensor:
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


# ----------------------------------------------------------------------------- driver


def _model_device(model: torch.nn.Module) -> torch.device:
    return next(model.parameters()).device


def _check_condition(model, x: torch.Tensor) -> torch.Tensor:
    if x.ndim == 3:
        x = x[None]
    expected = model.config.condition_channels
    if x.ndim != 4 or x.shape[0] != 1 or x.shape[1] != expected:
        raise InputError(
            f"condition of shape {tuple(x.shape)} does not fit this model: expected "
            f"({expected}, H, W) or (1, {expected}, H, W)"
        )
    if not torch.isfinite(x).all():
        raise InputError("condition contains NaN or Inf values; clean the image first")
    return x


def frame_seed(seed: int, frame: int) -> int:
    """A distinct, reproducible sampler seed per frame of a stack (frame 0 of a stack and the
    same 2-D image alone get the same seed): what ``workflows.predict`` and the TorchScript
    export pass as ``seed`` for frame ``frame``."""
    state = np.random.SeedSequence([int(seed), int(frame)]).generate_state(1)
    return int(state[0])


def _check_options(sampler: str, steps: int, n_samples: int, eta: float) -> Sampler:
    """The registered sampler, after checking the step and sample counts and η."""
    spec = get_sampler(sampler)
    if int(steps) < 1 or int(n_samples) < 1:
        raise InputError(f"steps ({steps}) and n_samples ({n_samples}) must both be >= 1")
    if eta < 0:
        raise InputError(f"eta must be >= 0 (0 = deterministic DDIM), got {eta}")
    return spec


def _denoiser_plan(
    model: Any, x: torch.Tensor, n_samples: int, memory_budget_mb: float,
    tile: int | None, tile_overlap: int | None, group_size: int | None,
) -> BatchPlan:  # fmt: skip
    """:func:`plan_batches` for the denoiser of ``model`` on the condition ``x``: its activation
    bytes per pixel, receptive radius (the tile overlap) and stride (the tile multiple)."""
    return plan_batches(
        x.shape[-2],
        x.shape[-1],
        n_samples,
        model.denoiser.activation_bytes_per_pixel(),
        memory_budget_mb,
        tile,
        tile_overlap,
        group_size,
        halo=model.denoiser.receptive_radius(),
        multiple=model.denoiser.stride,
    )


def _denoiser_call(model: Any, device: torch.device, memory_format: Any) -> Any:
    """``call(y_t, x, log_snr, global_log_snr) -> ε̂`` float32: the network in the run's memory
    layout, under bf16 autocast on CUDA (what :func:`tiled_apply` evaluates per tile)."""
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        if device.type == "cuda"
        else nullcontext
    )

    def call(y_t, cond, log_snr, global_log_snr):
        with autocast():
            return model.denoise(
                y_t.contiguous(memory_format=memory_format),
                cond.contiguous(memory_format=memory_format),
                log_snr.contiguous(memory_format=memory_format),
                global_log_snr,
            ).float()

    return call


def _frame_lambda(model: Any, x: torch.Tensor, lam: Any, **tiling: Any) -> torch.Tensor:
    """The λ map (1, C_y, H, W) on the condition's device: ``lam`` if given (checked), else
    computed by :func:`lambda_map_tiled` with ``tiling``."""
    height, width = x.shape[-2:]
    if lam is None:
        lam = lambda_map_tiled(model, x, **tiling)
    lam = torch.as_tensor(lam).to(device=x.device, dtype=torch.float32)
    if lam.shape != (1, model.config.target_channels, height, width):
        raise InputError(
            f"lambda map of shape {tuple(lam.shape)} does not fit the condition; expected "
            f"(1, {model.config.target_channels}, {height}, {width})"
        )
    return lam


def _clamp(model: Any, x: torch.Tensor, clip_denoised: float | None) -> Any:
    """``bounds(rows)``: the ŷ_0 clamp of the rows ``rows`` (made per band: no image-sized pair
    is held), or None when ``clip_denoised`` is None. Residual models clamp the absolute
    estimate, so the bounds move with the residual's base (the condition's first C_y
    channels)."""
    with torch.inference_mode():
        offset = x[:, : model.config.target_channels] if model.config.residual else None

    def bounds(rows: slice) -> tuple[torch.Tensor, torch.Tensor] | None:
        if clip_denoised is None:
            return None
        c = float(clip_denoised)
        if offset is None:
            zero = torch.zeros((), device=x.device)
            return (zero - c, zero + c)
        part = offset[..., rows, :]
        return (-c - part, c - part)

    return bounds


def _reverse_step(
    denoise: Any, spec: Sampler, x: torch.Tensor, lam: torch.Tensor, rho_grid: torch.Tensor,
    plan: BatchPlan, bounds: Any, eta: float,
) -> Any:  # fmt: skip
    """``step(y, k, noise) -> y``: one reverse step t_k → t_{k+1} of a group of samples, in
    place: ε̂ from the (tiled) denoiser closure, then the sampler's rule on bands of rows."""
    height, width = x.shape[-2:]

    @torch.inference_mode()
    def step(y, k, noise):
        log_snr = sch.log_snr(lam, rho_grid[k])
        global_log_snr = log_snr.mean().reshape(1).expand(y.shape[0])
        eps_hat = tiled_apply(
            denoise,
            y,
            x,
            log_snr,
            tile=plan.tile,
            overlap=plan.overlap,
            max_batch=plan.max_batch,
            extras=(global_log_snr,),
        )
        del log_snr
        # the step rule is pixelwise: apply it to bands of rows in place, so its dozen
        # temporaries are band-sized, not image-sized (same values as one whole-image call)
        for rows in _row_bands(height, width, y.shape[0]):
            lam_rows = lam[..., rows, :]
            log_gamma_t = sch.log_gamma(lam_rows, rho_grid[k])
            log_gamma_s = sch.log_gamma(lam_rows, rho_grid[k + 1])
            z = None if noise is None else noise[..., rows, :]
            args = (y[..., rows, :], eps_hat[..., rows, :], log_gamma_t, log_gamma_s)
            y[..., rows, :] = spec.rule(*args, z, bounds(rows), eta)
        return y

    return step


def _groups(
    step: Any, *, n_samples: int, steps: int, seed: int, target_shape: tuple[int, ...],
    device: torch.device, noisy: bool, plan: BatchPlan, refresh_s: float,
) -> Generator[Progress | SampleGroup, None, torch.Tensor]:  # fmt: skip
    """Run ``step`` over the groups of samples: yields ``Progress`` per reverse step (in
    sample-steps) and a :class:`SampleGroup` per group; returns all samples on the CPU. Each
    sample draws its initial noise and its per-step noise (when ``noisy``, every step but the
    last) from its own seeded CPU generator."""
    total = n_samples * steps
    sizer = None
    if plan.group_size is None:
        max_group = plan.max_batch if plan.tile is None else n_samples
        sizer = GroupSizer(n_samples, max_group=max_group, refresh_s=refresh_s)
    finished: list[torch.Tensor] = []
    start = 0
    while start < n_samples:
        size = sizer.next_size() if sizer is not None else plan.group_size
        stop = min(start + size, n_samples)
        clock = time.perf_counter()
        spent = 0.0  # compute seconds of this group (time spent outside the yields)
        generators = [sample_generator(seed, i) for i in range(start, stop)]
        y = _draw(generators, target_shape, device)
        for k in range(steps):
            last = k == steps - 1
            noise = _draw(generators, target_shape, device) if noisy and not last else None
            y = step(y, k, noise)
            spent += time.perf_counter() - clock
            yield Progress(
                step=start * steps + (k + 1) * (stop - start), total=total, stage="sampling"
            )
            clock = time.perf_counter()
        samples = y.detach().float().cpu().clone()  # clone outside inference mode: a normal tensor
        del y
        spent += time.perf_counter() - clock
        if sizer is not None:
            sizer.record(stop - start, spent)
        finished.append(samples)
        yield SampleGroup(samples=samples, done=stop, total=n_samples)
        start = stop
    return torch.cat(finished)


def sample(
    model,
    x: torch.Tensor,
    *,
    n_samples: int = 1,
    steps: int = SAMPLING_STEPS,
    sampler: str = SAMPLER,
    eta: float = ETA,
    seed: int = 0,
    tile: int | None = None,
    tile_overlap: int | None = None,
    memory_budget_mb: float | None = None,
    group_size: int | None = None,
    channels_last: bool | None = None,
    clip_denoised: float | str | None = "model",
    lam: torch.Tensor | None = None,
    refresh_s: float = REFRESH_S,
) -> Generator[Progress | SampleGroup, None, torch.Tensor]:
    """Draw ``n_samples`` samples of y_0 given one condition ``x`` (C_x, H, W) or (1, C_x, H, W).

    Yields ``Progress(step, total, "sampling")`` after every reverse step of a group, counted in
    sample-steps (a step of a group of g samples advances ``step`` by g; ``total = n_samples ×
    steps``, reached by the last event), and a :class:`SampleGroup` after each group; returns all
    samples (n, C_y, H, W) on the CPU. ``sampler``: a name of :data:`~napari_cvdm.engine.samplers.
    SAMPLERS` (``"ancestral"``, the default of :mod:`napari_cvdm.defaults`, or ``"ddim"`` with
    ``eta``). Same ``seed`` → same samples on the same device, whatever the grouping
    (noise is drawn per sample from CPU generators). ``group_size``: fixed samples per group, or
    None (default): the first group is one sample and later sizes follow the measured throughput
    (:class:`~napari_cvdm.engine.group_sizer.GroupSizer`, groups of at most ``refresh_s``
    seconds when that costs no throughput). ``tile``/``tile_overlap``/``memory_budget_mb``: see
    :func:`plan_batches` (budget default: :func:`~napari_cvdm.engine.tile_plan.
    default_memory_budget_mb`). ``lam``: a precomputed λ map (1, C_y, H, W) (e.g. from
    :func:`lambda_map_tiled`), else it is computed here, tiled the same way; ρ once on the time
    grid. Runs under ``torch.inference_mode`` (only while computing, never across a ``yield``);
    bf16 autocast on CUDA; channels-last memory format on CUDA and CPU unless
    ``channels_last=False`` (this converts the model's conv weights in place; values are
    unchanged). ``clip_denoised`` (None turns it off): each step clamps ŷ_0 so that the absolute
    estimate (ŷ_0 plus the residual's offset channel) stays in [−c, c]. ``"model"`` (default)
    takes c from the model's ``config.extra["denoised_bound"]``, else 1.5.
    """
    from .tile_plan import default_memory_budget_mb

    if clip_denoised == "model":
        clip_denoised = denoised_bound(model)
    spec = _check_options(sampler, steps, n_samples, eta)
    steps, n_samples = int(steps), int(n_samples)
    device = _model_device(model)
    x = _check_condition(model, torch.as_tensor(x, dtype=torch.float32)).to(device)
    height, width = x.shape[-2:]
    if memory_budget_mb is None:
        memory_budget_mb = default_memory_budget_mb(device)
    plan = _denoiser_plan(model, x, n_samples, memory_budget_mb, tile, tile_overlap, group_size)
    denoise = _denoiser_call(model, device, _memory_layout(model, device, channels_last))
    lam = _frame_lambda(
        model,
        x,
        lam,
        tile=tile,
        overlap=tile_overlap,
        memory_budget_mb=memory_budget_mb,
        channels_last=channels_last,
    )
    with torch.inference_mode():
        rho_grid = model.rho(time_grid(steps).to(device)).float()  # (steps + 1,)
    step = _reverse_step(
        denoise, spec, x, lam, rho_grid, plan, _clamp(model, x, clip_denoised), eta
    )
    return (
        yield from _groups(
            step,
            n_samples=n_samples,
            steps=steps,
            seed=seed,
            target_shape=(model.config.target_channels, height, width),
            device=device,
            noisy=spec.draws_noise(eta),
            plan=plan,
            refresh_s=refresh_s,
        )
    )


def sample_all(model, x: torch.Tensor, **options) -> torch.Tensor:
    """Run :func:`sample` to the end and return all samples (n, C_y, H, W) on the CPU."""
    groups = [e.samples for e in sample(model, x, **options) if isinstance(e, SampleGroup)]
    return torch.cat(groups)
