"""Reverse samplers as a registry of short step rules (the way k-diffusion writes them).

A sampler is one pure function from a reverse step's inputs to its output::

    rule(y_t, eps_hat, log_gamma_t, log_gamma_s, noise, bounds, eta) -> y_s

``y_t`` (g, C_y, H', W') are the current samples (g samples, any band of rows), ``eps_hat`` the
denoiser's noise estimate for them, ``log_gamma_t``/``log_gamma_s`` the per-pixel log γ maps at
the step's two times t > s (broadcastable), ``noise`` a draw z ~ N(0, I) like ``y_t`` or None,
``bounds`` the (low, high) clamp of ŷ_0 or None, ``eta`` the DDIM stochasticity. All in model
units. :data:`SAMPLERS` maps a name to its :class:`Sampler` (the rule and whether it draws noise);
:func:`napari_cvdm.engine.sampling.sample` drives any of them over its denoiser closure, and the
TorchScript export (:mod:`~napari_cvdm.engine.scripted`) calls the same rules.

Adding a sampler is adding one decorated function here and its name to
:data:`napari_cvdm.defaults.SAMPLERS` (the CLI's and the widgets' choices).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..defaults import SAMPLERS as SAMPLER_NAMES
from ..errors import InputError

__all__ = ["SAMPLERS", "Sampler", "ancestral_step", "ddim_step", "get_sampler"]

#: (low, high) clamp of ŷ_0, broadcastable like the samples, or None
Bounds = tuple[torch.Tensor, torch.Tensor] | None


def _posterior(
    y_t: torch.Tensor,
    eps_hat: torch.Tensor,
    log_gamma_t: torch.Tensor,
    log_gamma_s: torch.Tensor,
    y0_bounds: Bounds = None,
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
    y0_bounds: Bounds = None,
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
    y0_bounds: Bounds = None,
) -> torch.Tensor:
    """``y_s = a_s ŷ_0 + sqrt(σ_s² − η² var)·ε̂ + η sqrt(var)·z`` (deterministic for η = 0)."""
    y0_hat, _, var, a_s, var_s, eps_hat = _posterior(
        y_t, eps_hat, log_gamma_t, log_gamma_s, y0_bounds
    )
    y_s = a_s * y0_hat + (var_s - eta * eta * var).clamp_min(0.0).sqrt() * eps_hat
    if eta > 0 and noise is not None:
        y_s = y_s + eta * var.sqrt() * noise
    return y_s


#: the signature every sampler rule has (see the module doc)
Rule = Callable[
    [torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, Bounds, float],
    torch.Tensor,
]


@dataclass(frozen=True)
class Sampler:
    """One registered sampler: its ``rule`` and ``draws_noise(eta)``, whether a step (all but
    the last) needs a fresh noise draw z (the seeded per-sample streams advance only then)."""

    name: str
    rule: Rule
    draws_noise: Callable[[float], bool]
    summary: str


#: name → sampler, in registration order
SAMPLERS: dict[str, Sampler] = {}


def register(name: str, *, draws_noise: Callable[[float], bool], summary: str):
    """Decorator: add ``rule`` to :data:`SAMPLERS` under ``name``."""

    def add(rule: Rule) -> Rule:
        SAMPLERS[name] = Sampler(name, rule, draws_noise, summary)
        return rule

    return add


@register("ddim", draws_noise=lambda eta: eta > 0, summary="DDIM (η = 0 is deterministic)")
def ddim(y_t, eps_hat, log_gamma_t, log_gamma_s, noise, bounds, eta):
    """DDIM: :func:`ddim_step`."""
    return ddim_step(y_t, eps_hat, log_gamma_t, log_gamma_s, eta, noise, bounds)


@register("ancestral", draws_noise=lambda eta: True, summary="ancestral (DDPM posterior)")
def ancestral(y_t, eps_hat, log_gamma_t, log_gamma_s, noise, bounds, eta):
    """Ancestral sampling from the posterior q(y_s | y_t, ŷ_0): :func:`ancestral_step`."""
    return ancestral_step(y_t, eps_hat, log_gamma_t, log_gamma_s, noise, bounds)


if set(SAMPLERS) != set(SAMPLER_NAMES):  # pragma: no cover - a developer error
    raise ImportError(f"defaults.SAMPLERS {SAMPLER_NAMES} must name the registered samplers")


def get_sampler(name: str) -> Sampler:
    """The registered sampler ``name``; raises :class:`InputError` naming the choices."""
    try:
        return SAMPLERS[name]
    except (KeyError, TypeError):
        raise InputError(f"unknown sampler {name!r}; use one of {', '.join(SAMPLERS)}") from None
