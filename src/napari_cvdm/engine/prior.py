"""Unconditional EDM denoiser D(x, σ): the prior of zero-shot restoration (EDM,
Karras et al., arXiv 2206.00364).

Variance-exploding conventions (Karras et al., arXiv 2206.00364): a noisy sample is
``x_σ = x₀ + σ·n``; the denoiser estimates ``E[x₀ | x_σ]``. Preconditioning::

    D(x, σ) = c_skip(σ)·x + c_out(σ)·F(c_in(σ)·x, c_noise(σ))
    c_skip = σ_d²/(σ² + σ_d²),  c_out = σ·σ_d/sqrt(σ² + σ_d²),  c_in = 1/sqrt(σ² + σ_d²),
    c_noise = ¼·ln σ

F is the project's residual UNet (engine/unet.py) with one input and one output channel; σ
enters through its global (FiLM) embedding of c_noise. Loss: ``λ(σ)·‖D(x₀ + σn, σ) − x₀‖²``
with ``λ = (σ² + σ_d²)/(σ·σ_d)²`` and ``ln σ ~ N(P_mean, P_std²)``.

The model is saved with :func:`~napari_cvdm.engine.modelfile.save_model` (task ``"prior"``,
``architecture = PriorConfig.to_dict()``, condition channels 0). Images are (B, 1, H, W)
float32 in model units ([−1, 1] for min–max normalised training targets).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .unet import UNet

__all__ = [
    "PRIOR_PRESETS",
    "EDMPrior",
    "PriorConfig",
    "edm_coefficients",
    "prior_loss",
]

#: UNet sizes of the prior by preset (one input, one output channel; σ via the embedding).
PRIOR_PRESETS: dict[str, dict] = {
    "tiny": {"base_width": 8, "channel_mults": (1, 2), "blocks_per_level": 1, "embed_dim": 16},
    # CPU-trainable (~0.53 M parameters, receptive radius 60 px)
    "small": {
        "base_width": 16,
        "channel_mults": (1, 2, 4),
        "blocks_per_level": (1, 1, 2),
        "embed_dim": 64,
    },
    "base": {
        "base_width": 64,
        "channel_mults": (1, 2, 4, 8),
        "blocks_per_level": 2,
        "embed_dim": 128,
    },
}


def _as_tuple(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value


@dataclass
class PriorConfig:
    """Everything needed to rebuild an :class:`EDMPrior` (stored in the model file as JSON).

    ``condition_channels`` is 0 (unconditional; the model-file validator checks it).
    ``sigma_data`` is σ_d of the normalised training images; ``sigma_min``/``sigma_max`` the
    range the network was trained for; ``p_mean``/``p_std`` the log-normal σ draw of training.
    """

    condition_channels: int = 0
    target_channels: int = 1
    preset: str = "small"
    base_width: int | None = None
    channel_mults: tuple[int, ...] | None = None
    blocks_per_level: int | tuple[int, ...] | None = None
    embed_dim: int | None = None
    middle_blocks: int = 1
    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    p_mean: float = -1.2
    p_std: float = 1.2
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.preset not in PRIOR_PRESETS:
            raise ValueError(
                f"unknown prior preset {self.preset!r}; use one of {sorted(PRIOR_PRESETS)}"
            )
        for key, value in PRIOR_PRESETS[self.preset].items():
            if getattr(self, key) is None:
                setattr(self, key, value)
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        if not isinstance(self.blocks_per_level, int):
            self.blocks_per_level = tuple(int(b) for b in self.blocks_per_level)
        checks = [
            (self.condition_channels == 0, "condition_channels must be 0 (unconditional)"),
            (self.target_channels == 1, "target_channels must be 1"),
            (self.base_width >= 1 and len(self.channel_mults) >= 1, "bad widths"),
            (self.embed_dim >= 2 and self.embed_dim % 2 == 0, "embed_dim must be even and >= 2"),
            (self.sigma_data > 0, "sigma_data must be > 0"),
            (0 < self.sigma_min < self.sigma_max, "need 0 < sigma_min < sigma_max"),
            (self.p_std > 0, "p_std must be > 0"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(f"invalid prior config: {message}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PriorConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        names = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(data) - names):
            raise ValueError(f"invalid prior config: unknown field(s) {unknown}")
        return cls(**{k: _as_tuple(v) for k, v in data.items()})


def edm_coefficients(
    sigma: torch.Tensor, sigma_data: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(c_skip, c_out, c_in, c_noise)`` at noise levels ``sigma`` (any shape, > 0)."""
    s2, d2 = sigma * sigma, sigma_data * sigma_data
    c_skip = d2 / (s2 + d2)
    c_out = sigma * sigma_data / torch.sqrt(s2 + d2)
    c_in = 1.0 / torch.sqrt(s2 + d2)
    c_noise = 0.25 * torch.log(sigma)
    return c_skip, c_out, c_in, c_noise


class EDMPrior(nn.Module):
    """``D(x, σ)``: (B, 1, H, W), σ scalar or (B,) → (B, 1, H, W) (the denoised estimate).

    ``raw(x, σ)`` is F itself. Any H, W work (the UNet pads internally); the output at a pixel
    depends only on a neighbourhood (``receptive_radius()`` pixels), so tiles can be blended.
    """

    def __init__(self, config: PriorConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.net = UNet(
            1,
            1,
            base_width=c.base_width,
            channel_mults=c.channel_mults,
            blocks_per_level=c.blocks_per_level,
            norm_groups=0,
            embed_dim=c.embed_dim,
            middle_blocks=c.middle_blocks,
        )

    @property
    def sigma_data(self) -> float:
        return float(self.config.sigma_data)

    def receptive_radius(self) -> int:
        return self.net.receptive_radius()

    def _sigma(self, sigma: Any, x: torch.Tensor) -> torch.Tensor:
        s = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1)
        if s.numel() == 1:
            s = s.expand(x.shape[0])
        if s.numel() != x.shape[0]:
            raise ValueError(f"sigma has {s.numel()} values for a batch of {x.shape[0]}")
        return s

    def forward(self, x: torch.Tensor, sigma: Any) -> torch.Tensor:
        s = self._sigma(sigma, x)
        c_skip, c_out, c_in, c_noise = edm_coefficients(s, self.sigma_data)
        view = (-1, 1, 1, 1)
        f = self.net((c_in.view(view) * x).to(self.net.stem.weight.dtype), c_noise)
        return c_skip.view(view) * x + c_out.view(view) * f.to(x.dtype)


def prior_loss(
    model: EDMPrior,
    x0: torch.Tensor,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """EDM loss on clean images ``x0`` (B, 1, H, W): mean of λ(σ)·(D(x₀ + σn, σ) − x₀)².

    σ is drawn log-normally (``p_mean``, ``p_std`` of the config) with ``generator`` on the
    CPU when given, and clamped to the config's [sigma_min, sigma_max].
    """
    c = model.config
    batch = x0.shape[0]
    ln_sigma = torch.randn(batch, generator=generator) * c.p_std + c.p_mean
    sigma = ln_sigma.exp().clamp(c.sigma_min, c.sigma_max).to(x0.device, x0.dtype)
    noise = torch.randn(x0.shape, generator=generator).to(x0.device, x0.dtype)
    denoised = model(x0 + sigma.view(-1, 1, 1, 1) * noise, sigma)
    d2 = c.sigma_data**2
    weight = (sigma**2 + d2) / (sigma * c.sigma_data) ** 2
    return (weight.view(-1, 1, 1, 1) * (denoised - x0).square()).mean()


def log_uniform_levels(n: int, sigma_min: float, sigma_max: float) -> list[float]:
    """``n`` noise levels evenly spaced in ln σ (for validation curves)."""
    if n == 1:
        return [math.sqrt(sigma_min * sigma_max)]
    a, b = math.log(sigma_min), math.log(sigma_max)
    return [math.exp(a + (b - a) * i / (n - 1)) for i in range(n)]
