"""A small residual UNet, fully convolutional and tileable (the CVDM
denoiser and λ network, docs/architecture.md "Engine API").

Blocks are pre-activation residual blocks ``(skip(h) + conv(SiLU(norm(conv(SiLU(norm(h)))))))/√2``
with GroupNorm or no normalisation (default: none, so the output at a pixel depends only on a
neighbourhood and not on the statistics of the whole tile; tiled and untiled inference then agree
up to the receptive-field border). No attention. Down-sampling is 2×2 average pooling, up-sampling
is nearest-neighbour ×2 followed by concatenation with the skip of the same level.

Any input size works: inputs are reflect-padded (bottom/right) to a multiple of ``2**depth`` and
the output is cropped back. An optional global embedding (sinusoidal features of one scalar per
batch item, e.g. the mean log-SNR) modulates every block by a scale and shift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

#: Denoiser architectures by preset name. Parameters (denoiser for C_x = C_y = 1): tiny ≈ 0.08 M,
#: small ≈ 4.6 M, base ≈ 33 M.
UNET_PRESETS: dict[str, dict] = {
    # tests: ~0.1 M parameters
    "tiny": {"base_width": 8, "channel_mults": (1, 2, 4), "blocks_per_level": 1},
    # default shipped models, CPU-friendly: cheap full-resolution levels, capacity at coarse levels
    "small": {"base_width": 24, "channel_mults": (1, 2, 4, 8), "blocks_per_level": (1, 1, 2, 2)},
    # GPU training
    "base": {"base_width": 64, "channel_mults": (1, 2, 4, 8), "blocks_per_level": 2},
}


def _norm(channels: int, groups: int) -> nn.Module:
    if groups <= 0:
        return nn.Identity()
    return nn.GroupNorm(math.gcd(groups, channels), channels)


def sinusoidal_features(values: torch.Tensor, dim: int, max_period: float = 1000.0) -> torch.Tensor:
    """Sinusoidal features of scalars ``values`` (B,) -> (B, dim) (dim even)."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period) * torch.arange(half, device=values.device, dtype=torch.float32) / half
    )
    angles = values.float()[:, None] * freqs[None] * 10.0
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


class ResBlock(nn.Module):
    """Residual block ``in_channels -> out_channels`` at constant resolution (optional FiLM)."""

    def __init__(
        self, in_channels: int, out_channels: int, norm_groups: int, embed_dim: int
    ) -> None:
        super().__init__()
        self.norm1 = _norm(in_channels, norm_groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels, norm_groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.skip = (
            nn.Identity()
            if in_channels == out_channels
            else nn.Conv2d(in_channels, out_channels, 1)
        )
        self.film = nn.Linear(embed_dim, 2 * out_channels) if embed_dim > 0 else None

    def forward(self, h: torch.Tensor, embedding: torch.Tensor | None = None) -> torch.Tensor:
        r = self.conv1(F.silu(self.norm1(h)))
        if self.film is not None and embedding is not None:
            scale, shift = self.film(embedding)[:, :, None, None].chunk(2, dim=1)
            r = r * (1.0 + scale) + shift
        r = self.conv2(F.silu(self.norm2(r)))
        return (self.skip(h) + r) * (1.0 / math.sqrt(2.0))


class UNet(nn.Module):
    """Residual UNet ``(B, in_channels, H, W) -> (B, out_channels, H, W)`` for any H, W ≥ 1.

    Args:
        in_channels, out_channels: channel counts.
        base_width: channels at full resolution.
        channel_mults: width multiplier per level; ``len(channel_mults) - 1`` down-samplings.
        blocks_per_level: residual blocks per level on the way down (int or one per level); the way
            up has the same count.
        norm_groups: GroupNorm groups (0: no normalisation).
        embed_dim: size of the optional global embedding (0: none, ``global_cond`` is ignored).
        middle_blocks: residual blocks at the coarsest level between the two paths.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        *,
        base_width: int = 32,
        channel_mults: Sequence[int] = (1, 2, 4),
        blocks_per_level: int | Sequence[int] = 1,
        norm_groups: int = 0,
        embed_dim: int = 0,
        middle_blocks: int = 1,
    ) -> None:
        super().__init__()
        widths = [int(base_width * m) for m in channel_mults]
        if not widths or min(widths) < 1:
            raise ValueError(f"invalid widths {widths}")
        blocks = (
            [int(blocks_per_level)] * len(widths)
            if isinstance(blocks_per_level, int)
            else [int(b) for b in blocks_per_level]
        )
        if len(blocks) != len(widths) or min(blocks) < 1:
            raise ValueError(
                f"blocks_per_level {blocks_per_level} does not match {len(widths)} levels"
            )
        self.widths, self.blocks, self.depth = widths, blocks, len(widths) - 1
        self.embed_dim = int(embed_dim)
        # None without an embedding (not a missing attribute), so the network is scriptable
        self.embed: nn.Sequential | None = None
        if self.embed_dim:
            self.embed = nn.Sequential(
                nn.Linear(self.embed_dim, self.embed_dim),
                nn.SiLU(),
                nn.Linear(self.embed_dim, self.embed_dim),
            )
        self.stem = nn.Conv2d(in_channels, widths[0], 3, padding=1)
        self.down = nn.ModuleList()
        channels = widths[0]
        for width, count in zip(widths, blocks):
            level = nn.ModuleList()
            for _ in range(count):
                level.append(ResBlock(channels, width, norm_groups, self.embed_dim))
                channels = width
            self.down.append(level)
        self.middle = nn.ModuleList(
            ResBlock(channels, channels, norm_groups, self.embed_dim) for _ in range(middle_blocks)
        )
        self.up = nn.ModuleList()
        for level_index in reversed(range(len(widths))):
            width = widths[level_index]
            level = nn.ModuleList([ResBlock(channels + width, width, norm_groups, self.embed_dim)])
            for _ in range(blocks[level_index] - 1):
                level.append(ResBlock(width, width, norm_groups, self.embed_dim))
            self.up.append(level)
            channels = width
        self.out_norm = _norm(channels, norm_groups)
        self.out_conv = nn.Conv2d(channels, out_channels, 3, padding=1)

    @property
    def stride(self) -> int:
        """Inputs are padded to a multiple of this (``2**depth``)."""
        return 1 << self.depth

    def forward(self, x: torch.Tensor, global_cond: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, C_in, H, W), ``global_cond`` (B,) or None -> (B, C_out, H, W)."""
        height, width = x.shape[-2:]
        x = pad_to_multiple(x, self.stride)
        embedding: torch.Tensor | None = None
        embed = self.embed
        if embed is not None and global_cond is not None:
            features = sinusoidal_features(global_cond, self.embed_dim)
            embedding = embed(features.to(embed[0].weight.dtype))  # float64 models too
        h = self.stem(x)
        skips = []
        for index, level in enumerate(self.down):
            for block in level:
                h = block(h, embedding)
            skips.append(h)
            if index < self.depth:
                h = F.avg_pool2d(h, 2)
        for block in self.middle:
            h = block(h, embedding)
        for offset, level in enumerate(self.up):  # levels depth, depth − 1, …, 0
            index = self.depth - offset
            if index < self.depth:
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = torch.cat([h, skips[index]], dim=1)
            for block in level:
                h = block(h, embedding)
        out = self.out_conv(F.silu(self.out_norm(h)))
        return out[..., :height, :width]

    def receptive_radius(self) -> int:
        """Upper bound (pixels, input grid) on how far an input pixel can influence an output one.

        Walks the architecture: each 3×3 conv at level ``l`` adds ``2**l`` pixels, each 2× pooling
        or up-sampling adds ``2**l`` (conservative), 1×1 convs add nothing. An output pixel is
        unchanged by any input pixel further than this (Chebyshev distance), away from the
        bottom/right reflect padding; tiling uses it as the overlap a tile needs.
        """
        radius = 1  # stem
        for level, count in enumerate(self.blocks):
            radius += 2 * count * 2**level
            if level < self.depth:
                radius += 2**level  # pooling
        radius += 2 * len(self.middle) * 2**self.depth
        for offset, level in enumerate(self.up):  # levels depth, depth − 1, …, 0
            index = self.depth - offset
            if index < self.depth:
                radius += 2**index  # up-sampling
            radius += 2 * len(level) * 2**index
        return radius + 1  # out_conv

    def activation_bytes_per_pixel(self) -> float:
        """Rough peak float32 activation bytes per input pixel and batch item in inference.

        Skips kept for the way up plus a few transient tensors at the most expensive level, with a
        1.5× safety factor. Used to size tile and sample batches against a memory budget.
        """
        skips = sum(w / 4**level for level, w in enumerate(self.widths))
        transient = max(6 * w / 4**level for level, w in enumerate(self.widths))
        return 1.5 * 4.0 * (skips + transient)


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad (B, C, H, W) bottom/right to multiples of ``multiple`` (reflect; replicate if tiny)."""
    height, width = x.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return F.pad(x, (0, pad_w, 0, pad_h), mode=mode)


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) scalar parameters of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
