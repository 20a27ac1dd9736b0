"""The learned CVDM variance schedule ``γ(t, x) = exp(−λ(x) ρ(t))`` (CVDM, della
Maggiora et al., arXiv 2312.02246).

* ``ρ(t)`` (:class:`MonotoneRho`) is a scalar function of diffusion time ``t ∈ [0, 1]``, monotone
  increasing with ``ρ(0) = 0`` for *every* parameter value. It is evaluated on a ``(K,)`` batch of
  scalar times, never on a full-resolution time map. Its derivatives ρ', ρ'' are in closed form,
  so they work under ``torch.inference_mode`` and stay differentiable w.r.t. the parameters.
* ``λ(x)`` (:class:`LambdaNet`) is a small UNet on the condition: one positive rate per target pixel
  and channel, ``softplus(U(x)) + λ_min``.
* Pure log-space helpers turn ``(λ, ρ, ρ', ρ'')`` into ``log γ``, ``1 − γ``, log-SNR, β and ∂²γ/∂t².
  They broadcast: pass ``λ`` as ``(B, C, H, W)`` and ρ reshaped with :func:`time_view` as
  ``(B, 1, 1, 1)`` (one time per batch item) or ``(B, K, 1, 1, 1)`` against ``λ[:, None]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .unet import UNet

# smallest λρ used inside log(1 − γ) for the log-SNR (log-SNR ≈ 46 there); only guards log(0) at t=0
_MIN_LAMBDA_RHO = 1e-20


def inverse_softplus(value: float) -> float:
    """The ``p`` with ``softplus(p) = value`` (value > 0)."""
    return value + math.log(-math.expm1(-value))


class MonotoneRho(nn.Module):
    """``ρ(t) = t · softplus(g(t))`` with a monotone non-decreasing scalar network ``g``.

    ``g(t) = a + w⁺ t + Σ_j v⁺_j tanh(u⁺_j t + b_j)`` where ``p⁺ = softplus(p)`` makes the slopes
    positive, so ``g' ≥ 0``; then ``ρ' = softplus(g) + t σ(g) g' > 0`` for ``t ≥ 0`` and
    ``ρ(0) = 0`` exactly, whatever the parameters. The default initialisation gives, with λ ≈ 3,
    a log-SNR going from about +11 at ``t = 1/200`` through about +1 at ``t = 0.5`` to about −11
    at ``t = 1``.

    Args:
        hidden: number of tanh units in ``g``.
    """

    def __init__(self, hidden: int = 16, *, g0: float = -6.0, slope: float = 9.0) -> None:
        super().__init__()
        self.offset = nn.Parameter(torch.tensor(float(g0)))
        self.raw_slope = nn.Parameter(torch.tensor(inverse_softplus(slope)))
        self.raw_in = nn.Parameter(torch.full((hidden,), inverse_softplus(4.0)))
        self.bias_in = nn.Parameter(torch.linspace(-4.0, 0.0, hidden))
        self.raw_out = nn.Parameter(torch.full((hidden,), inverse_softplus(0.05)))

    def _g_and_derivatives(
        self, t: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``g, g', g''`` at times ``t`` (K,), each (K,)."""
        slope = F.softplus(self.raw_slope)
        u = F.softplus(self.raw_in)  # (H,)
        v = F.softplus(self.raw_out)  # (H,)
        h = torch.tanh(t[:, None] * u + self.bias_in)  # (K, H)
        sech2 = 1.0 - h * h
        g = self.offset + slope * t + (v * h).sum(-1)
        dg = slope + (v * u * sech2).sum(-1)
        d2g = (v * u * u * (-2.0 * h * sech2)).sum(-1)
        return g, dg, d2g

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """``ρ(t)`` for times ``t`` of shape (K,) in [0, 1]; returns (K,)."""
        g, _, _ = self._g_and_derivatives(t)
        return t * F.softplus(g)

    def derivatives(self, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(ρ, ρ', ρ'')`` at times ``t`` (K,), each (K,), in closed form (autograd-free in t)."""
        g, dg, d2g = self._g_and_derivatives(t)
        soft = F.softplus(g)
        sig = torch.sigmoid(g)
        rho = t * soft
        drho = soft + t * sig * dg
        d2rho = 2.0 * sig * dg + t * (sig * (1.0 - sig) * dg * dg + sig * d2g)
        return rho, drho, d2rho

    rho_derivatives = derivatives


class LambdaNet(nn.Module):
    """Per-pixel rate map ``λ(x) = softplus(U(x)) + λ_min`` from the condition.

    Args:
        condition_channels: C_x of the condition on the target grid.
        target_channels: C_y; one rate per target channel.
        lambda_min: lower bound of λ (> 0).
        lambda_init: value of λ everywhere at initialisation (approximately).
        **unet_kwargs: architecture of ``U`` (see :class:`~napari_cvdm.engine.unet.UNet`).
    """

    def __init__(
        self,
        condition_channels: int,
        target_channels: int,
        *,
        lambda_min: float = 0.05,
        lambda_init: float = 3.0,
        **unet_kwargs,
    ) -> None:
        super().__init__()
        if not lambda_init > lambda_min > 0:
            raise ValueError(f"need lambda_init > lambda_min > 0, got {lambda_init}, {lambda_min}")
        self.lambda_min = float(lambda_min)
        self.unet = UNet(condition_channels, target_channels, **unet_kwargs)
        with torch.no_grad():  # start near a uniform λ = lambda_init, but keep every gradient alive
            self.unet.out_conv.weight.mul_(0.1)
            self.unet.out_conv.bias.fill_(inverse_softplus(lambda_init - lambda_min))

    def forward(self, condition: torch.Tensor) -> torch.Tensor:
        """``condition`` (B, C_x, H, W) -> λ (B, C_y, H, W), positive."""
        return F.softplus(self.unet(condition)) + self.lambda_min


# ----------------------------------------------------------------------------- pure helpers


def time_view(values: torch.Tensor, ndim: int = 4) -> torch.Tensor:
    """Reshape a per-item vector (B,) to (B, 1, ..., 1) with ``ndim`` dims, for broadcasting."""
    return values.reshape(values.shape[0], *([1] * (ndim - 1)))


def log_gamma(lam: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """``log γ = −λρ`` (broadcast)."""
    return -lam * rho


def gamma(lam: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Signal variance ``γ = exp(−λρ)`` in (0, 1]; exactly 1 where ρ = 0."""
    return torch.exp(-lam * rho)


def one_minus_gamma(lam: torch.Tensor, rho: torch.Tensor) -> torch.Tensor:
    """Noise variance ``1 − γ = −expm1(−λρ)``, accurate for small λρ."""
    return -torch.expm1(-lam * rho)


def log_snr(lam: torch.Tensor, rho: torch.Tensor, floor: float = _MIN_LAMBDA_RHO) -> torch.Tensor:
    """``log(γ / (1 − γ)) = −λρ − log(−expm1(−λρ))``; λρ is floored at ``floor`` (1e-20) inside
    the log only. (The floor is an argument so that TorchScript can compile this function.)"""
    lam_rho = lam * rho
    return -lam_rho - torch.log(-torch.expm1(-lam_rho.clamp_min(floor)))


def beta(lam: torch.Tensor, drho: torch.Tensor) -> torch.Tensor:
    """Noise rate ``β = −∂_t log γ = λρ'`` (≥ 0)."""
    return lam * drho


def d_gamma(lam: torch.Tensor, rho: torch.Tensor, drho: torch.Tensor) -> torch.Tensor:
    """``∂_t γ = −λρ'γ``."""
    return -lam * drho * gamma(lam, rho)


def d2_gamma(
    lam: torch.Tensor, rho: torch.Tensor, drho: torch.Tensor, d2rho: torch.Tensor
) -> torch.Tensor:
    """``∂²_t γ = (λ²ρ'² − λρ'')γ``."""
    return (lam * lam * drho * drho - lam * d2rho) * gamma(lam, rho)


d2gamma = d2_gamma  # short alias used in the design notes
