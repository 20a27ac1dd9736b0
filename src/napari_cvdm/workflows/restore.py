"""Zero-shot restoration workflow: image + PSF/optics + prior → a stream of events.

:func:`restore` checks everything at once (bad inputs raise ``InputError`` before any work,
see ``workflows/restore_problem.py``) and returns a generator yielding

* ``Progress(step, total, stage)`` after every inner step of the solver (``stage`` names the
  level, e.g. ``"level 3/8 σ=0.41"``), so closing the generator stops within one inner step;
* a final ``Finished(Restoration)``.

Methods: ``"vml"`` (VML-MAP, the default), ``"dps"`` and ``"rl"`` (comparison baselines in the
same engine, same operator, same normalisation). Several seeds run as one batch; their
spread is the ``variability`` map (variability, not calibrated uncertainty).

Python API::

    from napari_cvdm.workflows.restore import RestoreParams, restore_image
    result = restore_image(image, pixel_size_um=0.0626, na=1.49, wavelength_um=0.525)
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..events import Finished, Progress
from .restore_problem import DEFAULT_TARGET_FWHM_UM, Noise, Optics, build_problem

__all__ = [
    "BUDGETS",
    "Restoration",
    "RestoreParams",
    "Noise",
    "Optics",
    "restore",
    "restore_image",
]

#: solver settings per budget (tuned on validation images, docs/benchmarks.md)
BUDGETS: dict[str, dict[str, Any]] = {
    "fast": {"levels": 8, "inner_steps": 2, "sigma_max": 0.3, "sigma_min": 0.03, "lr_scale": 0.3},
    "quality": {
        "levels": 16,
        "inner_steps": 2,
        "sigma_max": 0.3,
        "sigma_min": 0.03,
        "lr_scale": 0.3,
    },
}
METHODS = ("vml", "dps", "rl")
DEFAULT_PRIOR = "prior-fluorescence"


@dataclass(frozen=True)
class RestoreParams:
    """How to solve. Fields left None come from ``budget`` (:data:`BUDGETS`)."""

    budget: str = "fast"
    method: str = "vml"
    seeds: int = 1
    seed: int = 0
    levels: int | None = None
    inner_steps: int | None = None
    sigma_max: float | None = None
    sigma_min: float | None = None
    lr_scale: float | None = None
    warm_start: bool = True
    rl_iterations: int | None = None  # warm start (None: discrepancy principle, ≤ 200)
    rl_baseline_iterations: int = 30  # method "rl"
    dps_zeta: float = 0.1
    binning: int | None = None
    target_correction: bool = True
    device: str = "cpu"

    def validate(self) -> RestoreParams:
        if self.budget not in BUDGETS:
            raise InputError(f"budget must be one of {sorted(BUDGETS)}, got {self.budget!r}")
        if self.method not in METHODS:
            raise InputError(f"method must be one of {METHODS}, got {self.method!r}")
        resolved = replace(
            self, **{k: v for k, v in BUDGETS[self.budget].items() if getattr(self, k) is None}
        )
        checks = [
            (1 <= resolved.seeds <= 16, f"seeds must be 1–16, got {resolved.seeds}"),
            (1 <= resolved.levels <= 1000, f"levels must be 1–1000, got {resolved.levels}"),
            (1 <= resolved.inner_steps <= 50, "inner steps must be 1–50"),
            (0 < resolved.sigma_min <= resolved.sigma_max <= 100, "need 0 < σ_min ≤ σ_max ≤ 100"),
            (0 < resolved.lr_scale <= 1, "lr_scale must be in (0, 1]"),
            (
                resolved.rl_iterations is None or 1 <= resolved.rl_iterations <= 1000,
                "RL iterations must be 1–1000",
            ),
            (1 <= resolved.rl_baseline_iterations <= 1000, "RL iterations must be 1–1000"),
            (resolved.seed >= 0, "seed must be >= 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise InputError(message)
        return resolved

    @property
    def network_evaluations(self) -> int:
        """Forward passes + VJPs of the VML-MAP solve (DPS runs the same number)."""
        p = self.validate()
        return p.levels * (2 * p.inner_steps + 1)


@dataclass
class Restoration:
    """``restored`` (Y', X') float32 on the prior's grid (ADU above the offset per output pixel;
    mean over seeds), ``variability`` (std over seeds; zeros for one seed), ``residual`` (Y, X)
    whitened data residual (y − Hx̂)/σ on the measurement grid (after resampling),
    ``pixel_size_um`` / ``residual_pixel_size_um`` and the provenance ``metadata``."""

    restored: np.ndarray
    variability: np.ndarray
    residual: np.ndarray
    pixel_size_um: float
    residual_pixel_size_um: float
    metadata: dict[str, Any]
    seeds: np.ndarray | None = None


def _as_prior(prior: Any) -> Any:
    if hasattr(prior, "model") and hasattr(prior, "metadata"):
        loaded = prior
    elif isinstance(prior, str | Path) or prior is None:
        from ..engine import registry

        loaded = registry.load(prior or DEFAULT_PRIOR)
    else:
        raise InputError(f"prior must be a loaded model, a name or a path, got {type(prior)}")
    from .. import tasks

    if not tasks.get(loaded.task).restores:
        raise InputError(
            f"model {loaded.name!r} is a {loaded.metadata['task']!r} model; zero-shot restore "
            "needs an unconditional prior (task 'prior', e.g. prior-fluorescence)"
        )
    return loaded


def restore(
    image: Any,
    prior: Any = None,
    params: RestoreParams | None = None,
    *,
    pixel_size_um: float | None,
    optics: Optics,
    noise: Noise | None = None,
    input_name: str = "",
) -> Iterator[Progress | Finished]:
    """Restore ``image`` (2-D, ADU) with ``prior`` (LoadedModel, name or path; default
    ``prior-fluorescence``); see the module docstring. Checks run before the generator."""
    import torch

    params = (params or RestoreParams()).validate()
    loaded = _as_prior(prior)
    prior_px = float(loaded.metadata["physics"].get("pixel_size_um") or 0.0313)
    target = loaded.metadata["physics"].get("target_fwhm_um", DEFAULT_TARGET_FWHM_UM)
    rl_iters = params.rl_baseline_iterations if params.method == "rl" else params.rl_iterations
    with torch.no_grad():
        problem = build_problem(
            image,
            pixel_size_um,
            optics,
            noise or Noise(),
            prior_pixel_um=prior_px,
            binning=params.binning,
            target_fwhm_um=target if params.target_correction else None,
            rl_iterations=rl_iters,
            device=params.device,
        )
    return _run(problem, loaded, params, input_name)


def _provenance(problem: Any, loaded: Any, params: RestoreParams, name: str) -> dict[str, Any]:
    from .. import __version__

    return {
        "plugin_version": __version__,
        "mode": "restore",
        "method": params.method,
        "input_name": name,
        "prior": loaded.name,
        "prior_path": str(loaded.path) if loaded.path else None,
        "weights_sha256": loaded.sha256,
        "params": asdict(params),
        **problem.info,
        "notes": list(problem.notes),
        "units": "ADU above the camera offset per output pixel (restored); "
        "residual in units of the noise σ",
        "variability_note": "spread over seeds; variability, not calibrated uncertainty",
    }


def _solve(problem: Any, model: Any, params: RestoreParams, meta: dict[str, Any]) -> Iterator[Any]:
    """The solver's steps as ``Progress`` events; returns (x in normalised units, network
    evaluations). ``rl``: the warm start itself; ``vml``/``dps``: the solver over the noise
    levels from the (warm or zero) start, one seed per batch item; the history goes to
    ``meta``."""
    import torch

    from ..engine.vml import SolverResult, dps, karras_sigmas, vml_map

    op, y, w = problem.op, problem.y, problem.weight
    if params.method == "rl":
        yield Progress(1, 1, "Richardson–Lucy")
        return problem.x_warm, {"forward": 0, "vjp": 0}
    sigmas = karras_sigmas(params.levels, params.sigma_min, params.sigma_max)
    base = problem.x_warm if params.warm_start else torch.zeros_like(problem.x_warm)
    x_init = base.expand(params.seeds, *base.shape[1:]).contiguous()
    gen = torch.Generator().manual_seed(params.seed)
    if params.method == "vml":
        events = vml_map(
            model,
            y,
            op.A,
            w,
            sigmas,
            x_init=x_init,
            inner_steps=params.inner_steps,
            lr_scale=params.lr_scale,
            generator=gen,
        )
        total = params.levels * params.inner_steps
    else:  # DPS at the same number of network evaluations
        n = params.levels * (2 * params.inner_steps + 1) // 2
        sigmas = karras_sigmas(n, params.sigma_min, params.sigma_max)
        events = dps(model, y, op.A, w, sigmas, x_init=x_init, zeta=params.dps_zeta, generator=gen)
        total = n
    result = None
    done = 0
    try:
        for event in events:
            if isinstance(event, SolverResult):
                result = event
                break
            done += 1
            stage = f"level {event.level}/{event.levels} σ={event.sigma:.3g}"
            yield Progress(done, total, stage)
    finally:
        events.close()
    meta["history"] = result.history
    return result.x, {"forward": result.forward, "vjp": result.vjp}


def _restoration(problem: Any, x_n: Any, meta: dict[str, Any], start: float) -> Restoration:
    """The result in ADU: the mean over seeds on the prior's grid, the spread over seeds and
    the whitened residual of the mean's fit on the measurement grid; completes ``meta``."""
    import torch

    op = problem.op
    with torch.no_grad():
        x = (x_n * problem.s + problem.a).float()
        restored_all = x[:, 0][(slice(None), *op.crop)].cpu().numpy()
        restored = restored_all.mean(axis=0)
        mean_x = x.mean(dim=0, keepdim=True)
        fit = op.A(mean_x)[0, 0].cpu().numpy().astype(np.float64)
    residual = (problem.y_adu - fit) / np.sqrt(problem.variance)
    variability = (
        restored_all.std(axis=0, ddof=1) if restored_all.shape[0] > 1 else np.zeros_like(restored)
    )
    meta.update(
        seconds=round(time.perf_counter() - start, 2),
        residual_rms=float(np.sqrt(np.mean(residual**2))),
        status="complete",
        timestamp=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    )
    return Restoration(
        restored=restored.astype(np.float32),
        variability=variability.astype(np.float32),
        residual=residual.astype(np.float32),
        pixel_size_um=problem.pixel_um,
        residual_pixel_size_um=problem.measurement_pixel_um,
        metadata=meta,
        seeds=restored_all.astype(np.float32) if restored_all.shape[0] > 1 else None,
    )


def _run(problem: Any, loaded: Any, params: RestoreParams, name: str) -> Iterator[Any]:
    """The restoration as events (:func:`_solve`, then :func:`_restoration`), the prior on
    ``params.device`` meanwhile."""
    import torch

    device = torch.device(params.device)
    model = loaded.model
    home = next(model.parameters()).device
    meta = _provenance(problem, loaded, params, name)
    start = time.perf_counter()
    try:
        model.to(device).eval().requires_grad_(False)
        x_n, nfe = yield from _solve(problem, model, params, meta)
        meta["network_evaluations"] = nfe
        yield Finished(_restoration(problem, x_n, meta, start), info={"network_evaluations": nfe})
    finally:
        model.to(home)


def restore_image(
    image: Any,
    prior: Any = None,
    params: RestoreParams | None = None,
    *,
    pixel_size_um: float,
    psf: Any = None,
    psf_pixel_um: float | None = None,
    na: float | None = None,
    wavelength_um: float | None = None,
    noise_sigma_adu: float | None = None,
    gain_adu_per_e: float | None = None,
    read_noise_e: float = 0.0,
    offset_adu: float | None = None,
) -> Restoration:
    """Run :func:`restore` to the end and return its :class:`Restoration` (Python API)."""
    optics = Optics(psf=psf, psf_pixel_um=psf_pixel_um, na=na, wavelength_um=wavelength_um)
    noise = Noise(noise_sigma_adu, gain_adu_per_e, read_noise_e, offset_adu)
    result = None
    for event in restore(
        image, prior, params, pixel_size_um=pixel_size_um, optics=optics, noise=noise
    ):
        if isinstance(event, Finished):
            result = event.result
    return result
