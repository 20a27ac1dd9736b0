"""VML-MAP, DPS and Richardson–Lucy over a denoiser and a linear forward model
(docs/architecture.md "Engine API", docs/benchmarks.md).

k-diffusion style: short functions over a denoiser callable ``denoiser(x, sigma) -> D`` (an
:class:`~napari_cvdm.engine.prior.EDMPrior` or any function, e.g. the exact denoiser of a
Gaussian prior in the tests), a differentiable ``forward(x) -> Hx`` (the operator's ``A``;
adjoints come from autograd), a measurement ``y`` and a weight ``w = Σ_y⁻¹`` broadcastable to
``y``. Tensors keep the caller's shape, dtype and device; the batch axis holds seeds.

* :func:`vml_map` — mode seeking (VML_S surrogate). At each Karras level σ_i, ``K`` Adam steps
  (learning rate ``c·σ_i``; the moments are kept across levels) on
  ``L_sur(x) = ½‖y − H D(x)‖²_w − ⟨sg[(D(x) − x)/σ²], D(x)⟩`` whose gradient is
  ``−Jᵀ[(D − x)/σ² + Hᵀw(y − HD)] = ∇VML_S``; then a probability-flow-ODE Euler step to
  σ_{i+1}; the result is the Tweedie read-out ``D(x, σ_N)``.
* :func:`dps` — diffusion posterior sampling in the same engine: Euler ODE steps along the
  same levels, each followed by ``x ← x − ζ·∇_x‖√w(y − H D(x))‖ / ‖√w(y − H D(x))‖·…``
  (the DPS step of Chung et al., normalised by the residual norm); one forward pass and one
  vector–Jacobian product per level.
* :func:`richardson_lucy` — multiplicative RL with the operator and its adjoint.

The solvers are generators: they yield a :class:`SolverStep` after every inner step (so a
consumer can stop within one inner step by closing them) and finally a :class:`SolverResult`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "SolverResult",
    "SolverStep",
    "dps",
    "karras_sigmas",
    "richardson_lucy",
    "rl_iterates",
    "surrogate_gradient",
    "vml_map",
]

Denoiser = Callable[[torch.Tensor, float], torch.Tensor]
Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SolverStep:
    """One inner step done: ``level`` of ``levels`` (1-based), ``step`` of ``steps`` inside it,
    at noise level ``sigma``; ``forward`` / ``vjp``: network passes so far."""

    level: int
    levels: int
    step: int
    steps: int
    sigma: float
    forward: int
    vjp: int


@dataclass
class SolverResult:
    """``x``: the estimate (Tweedie read-out for VML-MAP and DPS), like ``y``'s batch;
    ``forward``/``vjp``: network passes used; ``history``: per level σ and the weighted
    data residual ``mean(w·(y − H D)²)`` of the denoised estimate."""

    x: torch.Tensor
    forward: int
    vjp: int
    history: list[dict[str, float]] = field(default_factory=list)


def karras_sigmas(n: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> list[float]:
    """σ_i = (σ_max^{1/ρ} + (i−1)/(N−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, i = 1…N (descending)."""
    if n < 1 or not 0 < sigma_min <= sigma_max:
        raise ValueError(
            f"need n >= 1 and 0 < sigma_min <= sigma_max, got {n}, {sigma_min}, {sigma_max}"
        )
    if n == 1:
        return [float(sigma_min)]
    a, b = sigma_max ** (1.0 / rho), sigma_min ** (1.0 / rho)
    return [float((a + i / (n - 1) * (b - a)) ** rho) for i in range(n)]


def _residual(y: torch.Tensor, hd: torch.Tensor, weight: Any) -> float:
    return float((weight * (y - hd).square()).mean())


def surrogate_gradient(
    denoiser: Denoiser,
    x: torch.Tensor,
    sigma: float,
    y: torch.Tensor,
    forward: Forward,
    weight: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(∇VML_S(x), D(x))`` from one forward pass and one vector–Jacobian product."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        d = denoiser(x, sigma)
        score = ((d - x) / sigma**2).detach()
        loss = 0.5 * (weight * (y - forward(d)).square()).sum() - (score * d).sum()
        (grad,) = torch.autograd.grad(loss, x)
    return grad, d.detach()


def vml_map(
    denoiser: Denoiser,
    y: torch.Tensor,
    forward: Forward,
    weight: Any,
    sigmas: list[float],
    *,
    x_init: torch.Tensor,
    inner_steps: int = 5,
    lr_scale: float = 0.1,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    generator: torch.Generator | None = None,
) -> Iterator[SolverStep | SolverResult]:
    """VML-MAP along ``sigmas`` (descending) from ``x_init + σ₁·ε`` (``x_init`` zeros: a pure-
    noise start). ``generator`` draws ε on the CPU (same seed, same result). Yields
    :class:`SolverStep` after every inner step, then one :class:`SolverResult`."""
    if inner_steps < 1 or not sigmas:
        raise ValueError("need at least one level and one inner step")
    noise = torch.randn(x_init.shape, generator=generator, dtype=x_init.dtype)
    x = x_init.detach().clone() + sigmas[0] * noise.to(x_init.device)
    m = torch.zeros_like(x)
    v = torch.zeros_like(x)
    b1, b2 = betas
    t = n_fwd = n_vjp = 0
    history: list[dict[str, float]] = []
    levels = len(sigmas)
    d = x
    for i, sigma in enumerate(sigmas):
        lr = lr_scale * sigma
        for k in range(inner_steps):
            grad, _ = surrogate_gradient(denoiser, x, sigma, y, forward, weight)
            n_fwd, n_vjp, t = n_fwd + 1, n_vjp + 1, t + 1
            m.mul_(b1).add_(grad, alpha=1 - b1)
            v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
            m_hat = m / (1 - b1**t)
            v_hat = v / (1 - b2**t)
            x = x - lr * m_hat / (v_hat.sqrt() + eps)
            yield SolverStep(i + 1, levels, k + 1, inner_steps, sigma, n_fwd, n_vjp)
        with torch.no_grad():
            d = denoiser(x, sigma)
            n_fwd += 1
            history.append({"sigma": sigma, "residual": _residual(y, forward(d), weight)})
            if i + 1 < levels:
                x = x + (sigmas[i + 1] - sigma) * (x - d) / sigma
    yield SolverResult(d.detach(), n_fwd, n_vjp, history)


def dps(
    denoiser: Denoiser,
    y: torch.Tensor,
    forward: Forward,
    weight: Any,
    sigmas: list[float],
    *,
    x_init: torch.Tensor,
    zeta: float = 1.0,
    generator: torch.Generator | None = None,
) -> Iterator[SolverStep | SolverResult]:
    """DPS along ``sigmas`` from ``x_init + σ₁·ε``: per level one D(x) with its graph, an Euler
    PF-ODE step to the next level, then the guidance step ``x ← x − ζ·∇_x‖r‖`` with
    ``r = √w(y − H D(x))`` (Chung et al.'s step ζ/‖r‖ on ∇‖r‖²/2, per seed). The last level
    returns its D (Tweedie read-out)."""
    noise = torch.randn(x_init.shape, generator=generator, dtype=x_init.dtype)
    x = x_init.detach().clone() + sigmas[0] * noise.to(x_init.device)
    n_fwd = n_vjp = 0
    history: list[dict[str, float]] = []
    levels = len(sigmas)
    d = x
    for i, sigma in enumerate(sigmas):
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            d = denoiser(xg, sigma)
            r2 = (weight * (y - forward(d)).square()).flatten(1).sum(dim=1)  # per seed
            (grad,) = torch.autograd.grad(r2.sum(), xg)
        n_fwd, n_vjp = n_fwd + 1, n_vjp + 1
        d = d.detach()
        history.append({"sigma": sigma, "residual": float(r2.detach().mean()) / y[0].numel()})
        if i + 1 < levels:
            x = x + (sigmas[i + 1] - sigma) * (x - d) / sigma
            scale = zeta / (2.0 * r2.detach().clamp_min(1e-12).sqrt())
            x = x - scale.view(-1, *([1] * (x.ndim - 1))) * grad
        yield SolverStep(i + 1, levels, 1, 1, sigma, n_fwd, n_vjp)
    yield SolverResult(d, n_fwd, n_vjp, history)


def richardson_lucy(
    y: torch.Tensor,
    op: Any,
    iterations: int,
    x_init: torch.Tensor | None = None,
    eps: float = 1e-6,
) -> torch.Tensor:
    """Richardson–Lucy ``x ← x·Hᵀ(y/Hx)/Hᵀ1`` for y ≥ 0 with ``op.A``/``op.A_adjoint``.

    Start: a flat image of the mean flux per x pixel (``x_init`` when given). Pixels with
    Hᵀ1 below 5 % of its maximum (canvas margin, or the negative lobes of a target-corrected
    PSF) keep their value. Returns x ≥ 0."""
    y = y.clamp_min(0.0)
    norm = op.A_adjoint(torch.ones_like(y))
    if x_init is None:
        flux = float(y.mean()) * y[0].numel() / float(norm[0].sum().clamp_min(eps))
        x = torch.full_like(norm.expand(y.shape[0], *norm.shape[1:]), max(flux, eps))
    else:
        x = x_init.clamp_min(eps).clone()
    valid = norm > 0.05 * norm.max()  # margin pixels barely seen by the data keep their value
    safe = torch.where(valid, norm, torch.ones_like(norm))
    for _ in range(int(iterations)):
        ratio = y / op.A(x).clamp_min(eps)
        x = torch.where(valid, x * op.A_adjoint(ratio).clamp_min(0.0) / safe, x)
    return x


def rl_iterates(
    y: torch.Tensor, op: Any, checkpoints: list[int], eps: float = 1e-6
) -> dict[int, torch.Tensor]:
    """Richardson–Lucy estimates at several iteration counts (one run)."""
    out: dict[int, torch.Tensor] = {}
    x = None
    done = 0
    for target in sorted(set(int(c) for c in checkpoints)):
        x = richardson_lucy(y, op, target - done, x_init=x, eps=eps)
        done = target
        out[target] = x.clone()
    return out
