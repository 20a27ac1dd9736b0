"""Reverse-diffusion samplers for CVDM (cvdm.md §5–7).

The step rules are short pure functions over per-pixel ``log γ`` maps; :func:`sample` drives them as
a generator that yields :class:`~napari_cvdm.workflows.events.Progress` after every reverse step and
a :class:`SampleGroup` after each group of samples, so the GUI, the CLI and the tests consume one
event stream and can stop it between steps with ``generator.close()``.

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

from napari_cvdm.defaults import SAMPLING_STEPS
from napari_cvdm.errors import InputError
from napari_cvdm.workflows.events import Progress

from . import schedule as sch
from .group_sizer import REFRESH_S, GroupSizer
from .tiling import tiled_apply

SAMPLERS = ("ddim", "ancestral")


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


# ----------------------------------------------------------------------------- pure step rules


#: clamp of the absolute denoised estimate for models whose targets span [−1, 1]
DEFAULT_DENOISED_BOUND = 1.5


def denoised_bound(model: Any) -> float:
    """The clamp of ŷ_0 a model was trained for: ``config.extra["denoised_bound"]`` or 1.5."""
    extra = getattr(model.config, "extra", None) or {}
    return float(extra.get("denoised_bound", DEFAULT_DENOISED_BOUND))


def time_grid(steps: int) -> torch.Tensor:
    """Uniform grid ``[t_N = 1, …, t_0 = 0]`` of ``steps + 1`` times, descending."""
    return torch.linspace(1.0, 0.0, steps + 1)


def _posterior(
    y_t: torch.Tensor,
    eps_hat: torch.Tensor,
    log_gamma_t: torch.Tensor,
    log_gamma_s: torch.Tensor,
    y0_bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """ŷ_0, posterior mean and variance of q(y_s | y_t, ŷ_0), a_s, σ_s² and the ε̂ consistent with
    ŷ_0 (all broadcast). ``y0_bounds`` (low, high) clamps ŷ_0 to the range the training targets
    span (the standard "clip the denoised estimate" of DDPM sampling): at high noise ŷ_0 divides by
    a tiny a_t, and a few pixels would otherwise run away over the steps."""
    a_t = torch.exp(0.5 * log_gamma_t)
    a_s = torch.exp(0.5 * log_gamma_s)
    var_t = -torch.expm1(log_gamma_t)  # σ_t² = 1 − γ_t
    var_s = -torch.expm1(log_gamma_s)  # σ_s² = 1 − γ_s (0 at s = 0)
    var_ts = -torch.expm1(log_gamma_t - log_gamma_s)  # σ²_ts = σ_t² − a_ts² σ_s² = 1 − γ_t/γ_s
    a_ts = torch.exp(0.5 * (log_gamma_t - log_gamma_s))
    y0_hat = (y_t - var_t.sqrt() * eps_hat) / a_t
    if y0_bounds is not None:
        y0_hat = torch.minimum(torch.maximum(y0_hat, y0_bounds[0]), y0_bounds[1])
        eps_hat = (y_t - a_t * y0_hat) / var_t.sqrt().clamp_min(1e-12)
    mean = (a_ts * var_s / var_t) * y_t + (a_s * var_ts / var_t) * y0_hat
    var = var_ts * var_s / var_t
    return y0_hat, mean, var, a_s, var_s, eps_hat


def ancestral_step(
    y_t: torch.Tensor,
    eps_hat: torch.Tensor,
    log_gamma_t: torch.Tensor,
    log_gamma_s: torch.Tensor,
    noise: torch.Tensor | None,
    y0_bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``y_s = mean + sqrt(var)·z`` from level t to s < t. ``noise`` z ~ N(0, I) like ``y_t``
    (may be None only when ``var = 0``, i.e. s = 0)."""
    _, mean, var, _, _, _ = _posterior(y_t, eps_hat, log_gamma_t, log_gamma_s, y0_bounds)
    return mean if noise is None else mean + var.sqrt() * noise


def ddim_step(
    y_t: torch.Tensor,
    eps_hat: torch.Tensor,
    log_gamma_t: torch.Tensor,
    log_gamma_s: torch.Tensor,
    eta: float = 0.0,
    noise: torch.Tensor | None = None,
    y0_bounds: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """``y_s = a_s ŷ_0 + sqrt(σ_s² − η² var)·ε̂ + η sqrt(var)·z`` (deterministic for η = 0)."""
    y0_hat, _, var, a_s, var_s, eps_hat = _posterior(
        y_t, eps_hat, log_gamma_t, log_gamma_s, y0_bounds
    )
    y_s = a_s * y0_hat + (var_s - eta * eta * var).clamp_min(0.0).sqrt() * eps_hat
    if eta > 0 and noise is not None:
        y_s = y_s + eta * var.sqrt() * noise
    return y_s


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


def sample(
    model,
    x: torch.Tensor,
    *,
    n_samples: int = 1,
    steps: int = SAMPLING_STEPS,
    sampler: str = "ddim",
    eta: float = 0.0,
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
    samples (n, C_y, H, W) on the CPU. ``sampler`` is ``"ddim"`` (with ``eta``) or
    ``"ancestral"``. Same ``seed`` → same samples on the same device, whatever the grouping
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
    if sampler not in SAMPLERS:
        raise InputError(f"unknown sampler {sampler!r}; use one of {', '.join(SAMPLERS)}")
    if int(steps) < 1 or int(n_samples) < 1:
        raise InputError(f"steps ({steps}) and n_samples ({n_samples}) must both be >= 1")
    if eta < 0:
        raise InputError(f"eta must be >= 0 (0 = deterministic DDIM), got {eta}")
    steps, n_samples = int(steps), int(n_samples)
    device = _model_device(model)
    x = _check_condition(model, torch.as_tensor(x, dtype=torch.float32)).to(device)
    height, width = x.shape[-2:]
    if memory_budget_mb is None:
        memory_budget_mb = default_memory_budget_mb(device)
    plan = plan_batches(
        height,
        width,
        n_samples,
        model.denoiser.activation_bytes_per_pixel(),
        memory_budget_mb,
        tile,
        tile_overlap,
        group_size,
        halo=model.denoiser.receptive_radius(),
        multiple=model.denoiser.stride,
    )
    memory_format = _memory_layout(model, device, channels_last)
    autocast = (
        (lambda: torch.autocast("cuda", dtype=torch.bfloat16))
        if device.type == "cuda"
        else nullcontext
    )

    def denoise(y_t, cond, log_snr, global_log_snr):
        with autocast():
            return model.denoise(
                y_t.contiguous(memory_format=memory_format),
                cond.contiguous(memory_format=memory_format),
                log_snr.contiguous(memory_format=memory_format),
                global_log_snr,
            ).float()

    if lam is None:
        lam = lambda_map_tiled(
            model,
            x,
            tile=tile,
            overlap=tile_overlap,
            memory_budget_mb=memory_budget_mb,
            channels_last=channels_last,
        )
    lam = torch.as_tensor(lam).to(device=device, dtype=torch.float32)
    if lam.shape != (1, model.config.target_channels, height, width):
        raise InputError(
            f"lambda map of shape {tuple(lam.shape)} does not fit the condition; expected "
            f"(1, {model.config.target_channels}, {height}, {width})"
        )
    with torch.inference_mode():
        rho_grid = model.rho(time_grid(steps).to(device)).float()  # (steps + 1,)
        c_y = model.config.target_channels
        offset = x[:, :c_y] if model.config.residual else None

    def bounds(rows: slice) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The ŷ_0 clamp of the rows ``rows`` (made per chunk: no image-sized pair is held)."""
        if clip_denoised is None:
            return None
        c = float(clip_denoised)
        if offset is None:
            zero = torch.zeros((), device=device)
            return (zero - c, zero + c)
        part = offset[..., rows, :]
        return (-c - part, c - part)

    @torch.inference_mode()
    def reverse_step(y, k, noise):
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
            if sampler == "ancestral":
                y[..., rows, :] = ancestral_step(*args, z, bounds(rows))
            else:
                y[..., rows, :] = ddim_step(*args, eta, z, bounds(rows))
        return y

    target_shape = (model.config.target_channels, height, width)
    needs_noise = sampler == "ancestral" or eta > 0
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
            noise = _draw(generators, target_shape, device) if needs_noise and not last else None
            y = reverse_step(y, k, noise)
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


def sample_all(model, x: torch.Tensor, **options) -> torch.Tensor:
    """Run :func:`sample` to the end and return all samples (n, C_y, H, W) on the CPU."""
    groups = [e.samples for e in sample(model, x, **options) if isinstance(e, SampleGroup)]
    return torch.cat(groups)
