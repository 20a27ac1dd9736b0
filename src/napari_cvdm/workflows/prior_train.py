"""Training of the unconditional EDM prior (engine/prior.py) on clean simulated images.

Data: the noise-free SIM-like targets of the SR simulator (physics/fluorescence.py, recipe SR-B
geometry, 0.0313 µm pixels) with the reconstruction residue switched off (no illumination
pattern, a 10⁸× brighter target acquisition), each min–max normalised to [−1, 1]. A pool of
such images is kept in memory and one image is replaced every ``refresh_every`` steps; patches
are random crops with random flips and 90° rotations.

:func:`train_prior` is a generator of ``LossReport``, ``Progress``, ``Validation`` and a final
``Finished(path)`` like the CVDM trainer: closing it stops at the next step. It writes the EMA
weights as a model file of task ``prior`` and a checkpoint (weights, EMA, Adam moments, step)
to resume from; the model file records the cumulative steps and wall time of every run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..events import Finished, LossReport, Progress, Validation
from ..tasks.restore import PRIOR_NORMALIZATION, PRIOR_PIXEL_SIZE_UM

__all__ = [
    "PRIOR_NORMALIZATION",
    "PRIOR_PIXEL_SIZE_UM",
    "PriorTrainConfig",
    "clean_fluorescence_image",
    "denoising_psnr",
    "train_prior",
]

VALIDATION_SIGMAS = (0.05, 0.2, 0.5, 1.0)


@dataclass
class PriorTrainConfig:
    """One training run. ``steps`` counts this run's optimiser steps (a resume adds them)."""

    output: str
    name: str = "prior-fluorescence"
    preset: str = "small"
    steps: int = 1000
    batch: int = 8
    patch: int = 64
    lr: float = 2e-4
    ema: float = 0.999
    seed: int = 0
    pool: int = 256
    refresh_every: int = 4
    sim_size: int = 64
    sigma_data: float | None = 0.5  # None: the std of the normalised pool
    max_wall_s: float | None = None  # stop this run (and save) after this many seconds
    checkpoint: str | None = None
    checkpoint_every: int = 500
    resume: str | None = None
    #: on resume, restart the EMA from the live weights (and its warm-up from this run's step 1)
    reset_ema: bool = False
    validate_every: int = 500
    n_validation: int = 8
    dtype: str = "float16"
    log_every: int = 10


def clean_fluorescence_image(rng: np.random.Generator, size: int = 64) -> np.ndarray:
    """One clean SIM-like image (2·size, 2·size) at 0.0313 µm, min–max → [−1, 1], float32."""
    from ..physics.fluorescence import simulate_sr_pair

    target = simulate_sr_pair(
        rng, size=size, photons=5000.0, target_photons_ratio=1e8, pattern_probability=0.0
    ).target.astype(np.float64)
    lo, hi = float(target.min()), float(target.max())
    return (2.0 * (target - lo) / max(hi - lo, 1e-12) - 1.0).astype(np.float32)


def _patches(
    pool: list[np.ndarray], rng: np.random.Generator, batch: int, patch: int
) -> np.ndarray:
    out = np.empty((batch, 1, patch, patch), np.float32)
    for i in range(batch):
        image = pool[rng.integers(len(pool))]
        y = rng.integers(image.shape[0] - patch + 1)
        x = rng.integers(image.shape[1] - patch + 1)
        crop = image[y : y + patch, x : x + patch]
        crop = np.rot90(crop, rng.integers(4))
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        out[i, 0] = crop
    return out


def denoising_psnr(
    model: Any, images: np.ndarray, sigmas=VALIDATION_SIGMAS, seed: int = 1234
) -> dict[str, float]:
    """Mean PSNR (dB, data range 2 of [−1, 1]) of D(x₀ + σn, σ) against x₀ at each σ."""
    import torch

    x0 = torch.as_tensor(images, dtype=torch.float32)
    gen = torch.Generator().manual_seed(seed)
    out = {}
    with torch.inference_mode():
        for sigma in sigmas:
            noise = torch.randn(x0.shape, generator=gen)
            d = model(x0 + sigma * noise, sigma)
            mse = (d - x0).square().mean(dim=(1, 2, 3))
            out[f"psnr_sigma_{sigma:g}"] = float((10 * torch.log10(4.0 / mse)).mean())
    return out


def _metadata(cfg: PriorTrainConfig, totals: dict[str, Any], scores: dict[str, float]) -> dict:
    from .. import __version__

    return {
        "task": "prior",
        "name": cfg.name,
        "description": (
            "Unconditional EDM denoiser of clean SIM-like fluorescence images (0.0313 µm "
            "pixels) for zero-shot restoration (napari-cvdm restore)"
        ),
        "normalization": PRIOR_NORMALIZATION,
        "physics": {
            "pixel_size_um": PRIOR_PIXEL_SIZE_UM,
            "modality": "fluorescence",
            "image": "SIM-like (widefield OTF x ~1.9 resolution)",
        },
        "training": {
            "data": "clean SR-B simulator targets (no residue), min-max to [-1, 1]",
            "recipe": "SR-B",
            "config": {k: v for k, v in asdict(cfg).items() if k not in ("resume",)},
            "steps": totals["steps"],
            "cumulative_steps": totals["steps"],
            "cumulative_wall_time_s": round(totals["wall"], 1),
            "runs": totals["runs"],
            "validation": scores,
            "code_version": __version__,
            "date": time.strftime("%Y-%m-%d"),
        },
    }


def _data(cfg: PriorTrainConfig) -> tuple[np.random.Generator, list[np.ndarray], np.ndarray]:
    """The data generator (it also refreshes the pool and cuts patches later), the pool of
    clean images and the validation images (N, 1, 2P, 2P), from their own generator."""
    rng = np.random.default_rng(cfg.seed)
    val_rng = np.random.default_rng(10_000 + cfg.seed)
    pool = [clean_fluorescence_image(rng, cfg.sim_size) for _ in range(cfg.pool)]
    val = np.stack(
        [clean_fluorescence_image(val_rng, cfg.sim_size) for _ in range(cfg.n_validation)]
    )
    return rng, pool, val[:, None, : cfg.patch * 2, : cfg.patch * 2]


def _networks(cfg: PriorTrainConfig, sigma_data: float) -> tuple[Any, ...]:
    """(config, model, EMA, optimiser, totals, start step): fresh (σ_data from the pool), or
    resumed from ``cfg.resume`` (the EMA reset to the weights with ``cfg.reset_ema``)."""
    import torch

    from ..engine.prior import EDMPrior, PriorConfig
    from .checkpoint import load_checkpoint

    totals: dict[str, Any] = {"steps": 0, "wall": 0.0, "runs": []}
    start_step = 0
    if cfg.resume:
        ckpt = load_checkpoint(cfg.resume)
        config = PriorConfig.from_dict(ckpt.info["architecture"])
        totals = ckpt.info["totals"]
        start_step = ckpt.step
    else:
        config = PriorConfig(preset=cfg.preset, sigma_data=round(sigma_data, 4))
    model = EDMPrior(config)
    ema = EDMPrior(config)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    if cfg.resume:
        model.load_state_dict(ckpt.model_state)
        ema.load_state_dict(ckpt.model_state if cfg.reset_ema else ckpt.ema_state)
        optimizer.load_state_dict(ckpt.optimizer_state)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr
    else:
        ema.load_state_dict(model.state_dict())
    ema.requires_grad_(False).eval()
    model.train()
    return config, model, ema, optimizer, totals, start_step


def _step(
    cfg: PriorTrainConfig, model: Any, ema: Any, optimizer: Any, x0: Any, gen: Any, n_ema: int
) -> float:
    """One optimiser step on the patches ``x0`` and the EMA update; returns the loss. EMA
    warm-up: decay min(ema, (1 + n)/(10 + n)), so a short run is not dominated by the initial
    weights (0.999 alone keeps 61 % of them after 500 steps)."""
    import torch

    from ..engine.prior import prior_loss

    loss = prior_loss(model, x0, generator=gen)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    decay = min(cfg.ema, (1.0 + n_ema) / (10.0 + n_ema))
    with torch.no_grad():
        for p_ema, p in zip(ema.parameters(), model.parameters()):
            p_ema.lerp_(p, 1.0 - decay)
    return float(loss.detach())


def train_prior(cfg: PriorTrainConfig) -> Iterator[Any]:
    """Train (or resume) the EDM prior; see the module docstring. Yields events."""
    import torch

    from ..engine import registry
    from ..engine.modelfile import save_model
    from .checkpoint import save_checkpoint

    run_start = time.perf_counter()  # the wall time counts the data pool too
    rng, pool, val = _data(cfg)
    sigma_data = cfg.sigma_data or float(np.std(np.stack(pool)))
    config, model, ema, optimizer, totals, start_step = _networks(cfg, sigma_data)
    gen = torch.Generator().manual_seed(cfg.seed + start_step)
    run_steps, last = 0, None
    scores: dict[str, float] = {}

    def wall() -> float:
        return totals["wall"] + (time.perf_counter() - run_start)

    def save() -> Path:
        done = {**totals, "steps": start_step + run_steps, "wall": wall()}
        done["runs"] = [*totals["runs"], {"steps": run_steps, "lr": cfg.lr, "batch": cfg.batch}]
        path = save_model(cfg.output, ema, _metadata(cfg, done, scores), dtype=cfg.dtype)
        if cfg.checkpoint:
            save_checkpoint(
                cfg.checkpoint,
                step=start_step + run_steps,
                model_state=model.state_dict(),
                ema_state=ema.state_dict(),
                optimizer_state=optimizer.state_dict(),
                info={"architecture": config.to_dict(), "totals": done, "ema_warmup": True},
            )
        return path

    try:
        for i in range(1, cfg.steps + 1):
            if cfg.refresh_every and i % cfg.refresh_every == 0:
                pool[rng.integers(len(pool))] = clean_fluorescence_image(rng, cfg.sim_size)
            x0 = torch.from_numpy(_patches(pool, rng, cfg.batch, cfg.patch))
            step = start_step + i
            last = _step(cfg, model, ema, optimizer, x0, gen, i if cfg.reset_ema else step)
            run_steps = i
            if i % cfg.log_every == 0 or i == cfg.steps:
                yield LossReport(step, start_step + cfg.steps, {"total": last}, cfg.lr)
                yield Progress(i, cfg.steps, "training prior")
            if i % cfg.validate_every == 0 or i == cfg.steps:
                scores = denoising_psnr(ema, val)
                yield Validation(step, scores)
            if cfg.checkpoint_every and i % cfg.checkpoint_every == 0 and i < cfg.steps:
                save()
            if cfg.max_wall_s and time.perf_counter() - run_start > cfg.max_wall_s:
                scores = denoising_psnr(ema, val)
                yield Validation(step, scores)
                break
    except GeneratorExit:
        if run_steps:
            save()
        raise
    path = save()
    yield Finished(path, info={"metadata": registry.header(path).to_dict(), "last_loss": last})
