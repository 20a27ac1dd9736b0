"""The CVDM model: learned schedule + denoiser + training loss (della
Maggiora et al., ICLR 2024, arXiv 2312.02246).

Symbols follow the paper: ``x`` is the condition (the measurement, already on the target grid),
``y0`` the target in model units (for ``residual=True`` models the caller has already subtracted
``x_up``; the model never adds or removes it). Tensors are (B, C, H, W) float32.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from . import schedule as sch
from .schedule import LambdaNet, MonotoneRho
from .unet import UNET_PRESETS, UNet, count_parameters

__all__ = [
    "CVDM",
    "CVDMConfig",
    "count_parameters",
    "denoiser_input",
    "insert_condition_channel",
    "noise_level_map",
]

#: Rate-map (λ) network architecture by preset; it runs once per image, so it stays small.
LAMBDA_PRESETS: dict[str, dict] = {
    "tiny": {"lambda_base_width": 8, "lambda_channel_mults": (1, 2)},
    "small": {"lambda_base_width": 16, "lambda_channel_mults": (1, 2, 4)},
    "base": {"lambda_base_width": 32, "lambda_channel_mults": (1, 2, 4)},
}

#: log-SNR is divided by this before the tanh that makes the denoiser's noise-level input channel.
LOG_SNR_SCALE = 10.0


def noise_level_map(log_snr: torch.Tensor, scale: float = LOG_SNR_SCALE) -> torch.Tensor:
    """Per-pixel log-SNR -> denoiser input channel in (−1, 1): ``tanh(log_snr / 10)``.

    Nearly linear for |log-SNR| ≲ 5 and bounded for the extreme values near t = 0 or large λ.
    (``scale`` is an argument so that TorchScript can compile this function.)
    """
    return torch.tanh(log_snr / scale)


def denoiser_input(y_t: torch.Tensor, x: torch.Tensor, log_snr: torch.Tensor) -> torch.Tensor:
    """The denoiser's input ``[y_t, x, tanh(log_snr / 10)]`` stacked on channels:
    (B, 2·C_y + C_x, H, W) from ``y_t`` (B, C_y, H, W), ``x`` (B, C_x, H, W), ``log_snr``
    (B, C_y, H, W). One home for :meth:`CVDM.denoise` and the TorchScript export."""
    return torch.cat([y_t, x, noise_level_map(log_snr)], dim=1)


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass
class CVDMConfig:
    """Everything needed to rebuild a :class:`CVDM` (stored in every model file as JSON).

    Architecture fields left as ``None`` are filled from ``preset`` (``tiny``/``small``/``base``),
    so ``to_dict()`` always lists the explicit numbers. Loss weights follow the spec table:
    ``total = w_diff·L_diff + w_boundary·L_boundary + w_prior·L_prior + w_gamma·α·(∂²γ)²``,
    plus ``w_x0·L_x0`` (0 by default: the paper's loss), the error of the implied estimate
    ``ŷ0`` — ε errors weighted by 1/SNR = (1 − γ)/γ per pixel, capped at ``x0_weight_cap`` —
    which puts weight on the noisy early steps where the coarse structure is decided.
    """

    condition_channels: int = 1
    target_channels: int = 1
    preset: str = "small"
    residual: bool = False
    # denoiser UNet
    base_width: int | None = None
    channel_mults: tuple[int, ...] | None = None
    blocks_per_level: int | tuple[int, ...] | None = None
    norm_groups: int = 0
    embed_dim: int = 0
    middle_blocks: int = 1
    # schedule
    lambda_base_width: int | None = None
    lambda_channel_mults: tuple[int, ...] | None = None
    lambda_min: float = 0.05
    lambda_init: float = 3.0
    rho_hidden: int = 16
    # loss
    weight_diff: float = 1.0
    weight_boundary: float = 2.0
    weight_prior: float = 2.0
    weight_gamma: float = 2.0
    gamma_curvature_alpha: float = 1e-3
    weight_x0: float = 0.0
    x0_weight_cap: float = 25.0
    t_prime: int = 200
    t_epsilon: float = 1e-4
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in UNET_PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; use one of {sorted(UNET_PRESETS)}")
        for key, value in {**UNET_PRESETS[self.preset], **LAMBDA_PRESETS[self.preset]}.items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        self.lambda_channel_mults = tuple(int(m) for m in self.lambda_channel_mults)
        if not isinstance(self.blocks_per_level, int):
            self.blocks_per_level = tuple(int(b) for b in self.blocks_per_level)
        self.validate()

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first inconsistent field."""
        checks = [
            (self.condition_channels >= 1, "condition_channels must be >= 1"),
            (self.target_channels >= 1, "target_channels must be >= 1"),
            (self.base_width >= 1 and self.lambda_base_width >= 1, "widths must be >= 1"),
            (len(self.channel_mults) >= 1 and min(self.channel_mults) >= 1, "bad channel_mults"),
            (len(self.lambda_channel_mults) >= 1, "bad lambda_channel_mults"),
            (
                isinstance(self.blocks_per_level, int)
                or len(self.blocks_per_level) == len(self.channel_mults),
                "blocks_per_level needs one entry per level of channel_mults",
            ),
            (self.norm_groups >= 0 and self.embed_dim >= 0, "norm_groups/embed_dim must be >= 0"),
            (self.embed_dim % 2 == 0, "embed_dim must be even"),
            (self.lambda_init > self.lambda_min > 0, "need lambda_init > lambda_min > 0"),
            (self.rho_hidden >= 1, "rho_hidden must be >= 1"),
            (self.t_prime >= 2, "t_prime must be >= 2"),
            (self.x0_weight_cap > 0, "x0_weight_cap must be > 0"),
            (0 < self.t_epsilon < 0.5, "t_epsilon must be in (0, 0.5)"),
            (
                min(
                    self.weight_diff,
                    self.weight_boundary,
                    self.weight_prior,
                    self.weight_gamma,
                    self.weight_x0,
                )
                >= 0,
                "loss weights must be >= 0",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid CVDM config: {message}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CVDMConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"invalid CVDM config: unknown field(s) {unknown}")
        return cls(**{k: _as_tuple(v) for k, v in data.items()})


class CVDM(nn.Module):
    """Conditional variational diffusion model with the schedule ``γ(t, x) = exp(−λ(x) ρ(t))``."""

    def __init__(self, config: CVDMConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.lambda_net = LambdaNet(
            c.condition_channels,
            c.target_channels,
            lambda_min=c.lambda_min,
            lambda_init=c.lambda_init,
            base_width=c.lambda_base_width,
            channel_mults=c.lambda_channel_mults,
            blocks_per_level=1,
        )
        self.rho_net = MonotoneRho(c.rho_hidden)
        self.denoiser = UNet(
            2 * c.target_channels + c.condition_channels,
            c.target_channels,
            base_width=c.base_width,
            channel_mults=c.channel_mults,
            blocks_per_level=c.blocks_per_level,
            norm_groups=c.norm_groups,
            embed_dim=c.embed_dim,
            middle_blocks=c.middle_blocks,
        )

    # ------------------------------------------------------------------ schedule
    def _times(self, t: torch.Tensor | Sequence[float] | float) -> torch.Tensor:
        device = self.rho_net.offset.device
        return torch.as_tensor(t, dtype=torch.float32, device=device).reshape(-1)

    def lambda_map(self, x: torch.Tensor) -> torch.Tensor:
        """Rate map λ(x): condition (B, C_x, H, W) -> (B, C_y, H, W), ≥ λ_min."""
        return self.lambda_net(x)

    def rho(self, t: torch.Tensor | Sequence[float]) -> torch.Tensor:
        """ρ(t) for scalar times (K,) -> (K,)."""
        return self.rho_net(self._times(t))

    def rho_derivatives(
        self, t: torch.Tensor | Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ρ, ρ', ρ'') at times (K,), each (K,); closed form, differentiable w.r.t. parameters."""
        return self.rho_net.derivatives(self._times(t))

    # ------------------------------------------------------------------ denoiser
    def denoise(
        self,
        y_t: torch.Tensor,
        x: torch.Tensor,
        log_snr: torch.Tensor,
        global_log_snr: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """ε̂ from ``y_t`` (B, C_y, H, W), condition ``x`` (B, C_x, H, W), per-pixel ``log_snr``
        (B, C_y, H, W). ``global_log_snr`` (B,) feeds the optional global embedding (default: the
        mean of ``log_snr`` per item; tiled inference passes the whole-image value)."""
        global_cond = None
        if self.config.embed_dim:
            if global_log_snr is None:
                global_log_snr = log_snr.mean(dim=(1, 2, 3))
            global_cond = noise_level_map(global_log_snr)
        return self.denoiser(denoiser_input(y_t, x, log_snr), global_cond)

    # ------------------------------------------------------------------ training
    def stratified_times(
        self, batch: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Antithetic draw ``t_i = (u + i/B) mod 1`` floored at ``t_epsilon``: (B,)."""
        u = torch.rand((), generator=generator)
        t = torch.remainder(u + torch.arange(batch, dtype=torch.float32) / batch, 1.0)
        return t.clamp_min(self.config.t_epsilon).to(self.rho_net.offset.device)

    def loss(
        self,
        x: torch.Tensor,
        y0: torch.Tensor,
        t: torch.Tensor | None = None,
        *,
        noise: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Training loss on condition ``x`` (B, C_x, H, W) and target ``y0`` (B, C_y, H, W).

        ``t`` (B,) defaults to a stratified draw; ``noise`` (like ``y0``) to ``N(0, I)`` (drawn with
        ``generator`` on the CPU when given). Returns scalars ``total``, ``diff``, ``boundary``,
        ``prior``, ``gamma_curvature`` (the last already multiplied by α, before the term weight)
        and ``x0`` (the capped 1/SNR-weighted ε error, see :class:`CVDMConfig`).
        """
        c = self.config
        if x.shape[0] != y0.shape[0] or x.shape[-2:] != y0.shape[-2:]:
            raise ValueError(
                f"condition {tuple(x.shape)} and target {tuple(y0.shape)} do not match"
            )
        batch = y0.shape[0]
        t = self.stratified_times(batch, generator) if t is None else self._times(t)
        if noise is None:
            noise = (
                torch.randn(y0.shape, generator=generator).to(y0.device)
                if generator is not None
                else torch.randn_like(y0)
            )
        lam = self.lambda_map(x)
        rho, drho, d2rho = self.rho_net.derivatives(t)
        rho_b, drho_b, d2rho_b = (sch.time_view(v) for v in (rho, drho, d2rho))

        # sqrt(γ) as exp(−λρ/2): sqrt of an underflowed γ = 0 would give an infinite gradient
        signal_scale = torch.exp(-0.5 * lam * rho_b)
        y_t = signal_scale * y0 + sch.one_minus_gamma(lam, rho_b).sqrt() * noise
        eps_hat = self.denoise(y_t, x, sch.log_snr(lam, rho_b))
        eps_error = (noise - eps_hat.float()).square()
        diff = eps_error.mean()
        # |ŷ0 − y0|² = (1 − γ)/γ · |ε̂ − ε|²; the weight is detached so that the schedule is not
        # pushed towards a higher SNR just to shrink this term's weight
        inverse_snr = torch.exp(-sch.log_snr(lam, rho_b)).detach()
        x0 = (inverse_snr.clamp_max(c.x0_weight_cap) * eps_error).mean()

        edges = self._times([1.0 / c.t_prime, 1.0 - 1.0 / c.t_prime])
        rho_edges = self.rho_net(edges)
        gamma_start_minus_one = torch.expm1(-lam * rho_edges[0])
        gamma_end = sch.gamma(lam, rho_edges[1])
        boundary = (gamma_start_minus_one.square() + gamma_end.square()).mean()

        one_minus_gamma_end = sch.one_minus_gamma(lam, rho_edges[1])
        prior = (
            0.5
            * (
                gamma_end * y0.square() + one_minus_gamma_end - torch.log(one_minus_gamma_end) - 1.0
            ).mean()
        )

        curvature = (
            c.gamma_curvature_alpha * sch.d2_gamma(lam, rho_b, drho_b, d2rho_b).square().mean()
        )
        total = (
            c.weight_diff * diff
            + c.weight_boundary * boundary
            + c.weight_prior * prior
            + c.weight_gamma * curvature
            + c.weight_x0 * x0
        )
        return {
            "total": total,
            "diff": diff,
            "boundary": boundary,
            "prior": prior,
            "gamma_curvature": curvature,
            "x0": x0,
        }

    # ------------------------------------------------------------------ schedule outputs
    def schedule_maps(
        self,
        x: torch.Tensor,
        t_star: torch.Tensor | Sequence[float],
        lam: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Schedule maps at chosen times ``t_star`` (K,).

        Returns ``lambda`` (B, C_y, H, W), ``gamma`` and ``beta`` (B, K, C_y, H, W) — γ(t*, x) and
        β(t*, x) = λρ'(t*) — and ``t`` (K,). Pass ``lam`` to reuse an already computed λ map.
        Runs in the caller's grad mode (use ``torch.inference_mode`` for display).
        """
        lam = self.lambda_map(x) if lam is None else lam
        t = self._times(t_star)
        rho, drho, _ = self.rho_net.derivatives(t)
        lam_k = lam[:, None]
        rho_k, drho_k = (v.reshape(1, -1, 1, 1, 1) for v in (rho, drho))
        return {
            "lambda": lam,
            "gamma": sch.gamma(lam_k, rho_k),
            "beta": sch.beta(lam_k, drho_k),
            "t": t,
        }

    def schedule_curves(
        self,
        x: torch.Tensor,
        mask: Any = None,
        n_t: int = 64,
        lam: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Region-averaged schedule curves on a uniform grid of ``n_t`` times in [0, 1].

        ``mask`` (bool, broadcastable to (B, C_y, H, W), e.g. (H, W)) marks *structure*; its
        complement is *background*. Default mask: pixels where the channel-mean condition exceeds
        its per-image mean. Returns ``t`` (n_t,), ``gamma_structure``, ``gamma_background``,
        ``beta_structure``, ``beta_background`` (n_t,) averaged over batch, channels and region
        pixels (NaN for an empty region), and ``structure_fraction`` (scalar).
        """
        lam = self.lambda_map(x) if lam is None else lam
        if mask is None:
            level = x.mean(dim=1, keepdim=True)
            mask = level > level.mean(dim=(2, 3), keepdim=True)
        mask = torch.as_tensor(mask, device=lam.device).bool().expand_as(lam)
        t = torch.linspace(0.0, 1.0, n_t, device=lam.device)
        rho, drho, _ = self.rho_net.derivatives(t)
        out: dict[str, torch.Tensor] = {"t": t, "structure_fraction": mask.float().mean()}
        for name, region in (("structure", mask), ("background", ~mask)):
            values = lam[region]
            if values.numel() == 0:
                nan = torch.full_like(t, float("nan"))
                out[f"gamma_{name}"], out[f"beta_{name}"] = nan, nan.clone()
                continue
            out[f"gamma_{name}"] = torch.stack([sch.gamma(values, r).mean() for r in rho])
            out[f"beta_{name}"] = drho * values.mean()
        return out


def insert_condition_channel(model: CVDM, index: int = 0) -> CVDM:
    """A copy of ``model`` that takes one more condition channel, inserted at ``index``.

    The new channel's input weights (denoiser stem and λ-network stem) are zero, so the copy
    computes exactly what ``model`` computes from the other channels: a warm start for adding
    a physics prior channel to a trained model. Returns a new float32 :class:`CVDM`.
    """
    c = model.config
    if not 0 <= index <= c.condition_channels:
        raise ValueError(f"index must be in [0, {c.condition_channels}], got {index}")
    config = CVDMConfig.from_dict({**c.to_dict(), "condition_channels": c.condition_channels + 1})
    widened = CVDM(config)
    state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}
    # input channels of the two stems: denoiser [y_t, x, level], λ network [x]
    for key, offset in (
        ("denoiser.stem.weight", c.target_channels),
        ("lambda_net.unet.stem.weight", 0),
    ):
        weight = state[key]
        at = offset + index
        zeros = weight.new_zeros(weight.shape[0], 1, *weight.shape[2:])
        state[key] = torch.cat([weight[:, :at], zeros, weight[:, at:]], dim=1)
    widened.load_state_dict(state, strict=True)
    return widened
