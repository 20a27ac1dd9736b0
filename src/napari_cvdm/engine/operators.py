"""Linear forward operators with adjoints for zero-shot restoration (torch).

``BlurOperator``: ``H = B_f ∘ crop ∘ (h ⊛ ·)`` — circular convolution with a transfer function
on the canvas of x (physics/forward_ops.py), crop to the field of view, f×f sum-binning
(f = 1: deblurring on the same grid; f = 2: super-resolution). ``H_adjoint`` is replicate ∘
zero-pad ∘ correlation. Tensors are (B, 1, Y, X), float32 or float64, on any device; x has the
canvas shape, y the measurement's.

``norm()`` is ‖H‖₂ by power iteration (cached); ``gram_solve`` solves (HᵀH + μI)z = r exactly
for circular, unbinned operators (FFT-diagonal).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["BlurOperator", "bin_sum", "bin_replicate"]


def bin_sum(x: torch.Tensor, f: int) -> torch.Tensor:
    """f×f sum-binning of the last two axes (sizes multiples of f)."""
    if f == 1:
        return x
    *lead, h, w = x.shape
    return x.reshape(*lead, h // f, f, w // f, f).sum(dim=(-3, -1))


def bin_replicate(y: torch.Tensor, f: int) -> torch.Tensor:
    """Adjoint of :func:`bin_sum`: each pixel copied into an f×f block."""
    if f == 1:
        return y
    return y.repeat_interleave(f, dim=-2).repeat_interleave(f, dim=-1)


class BlurOperator(nn.Module):
    """``y = B_f(crop(h ⊛ x))`` with an rfft transfer function ``otf`` on the canvas.

    Args:
        otf: complex or real (Yc, Xc//2+1) array on the canvas (zero frequency at [0, 0]).
        canvas_shape: (Yc, Xc), the shape of x.
        field_shape: (Y, X), the shape of y.
        margin: pixels of canvas on each side of the field of view (0: purely circular).
        binning: f (1 or 2); ``Yc = f·Y + 2·margin``.
    """

    def __init__(
        self,
        otf: Any,
        canvas_shape: tuple[int, int],
        field_shape: tuple[int, int],
        margin: int = 0,
        binning: int = 1,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        yc, xc = (int(s) for s in canvas_shape)
        y, x = (int(s) for s in field_shape)
        if (yc, xc) != (binning * y + 2 * margin, binning * x + 2 * margin):
            raise ValueError(
                f"canvas {canvas_shape} does not match field {field_shape}, margin {margin}, "
                f"binning {binning}"
            )
        otf = np.asarray(otf)
        if otf.shape != (yc, xc // 2 + 1):
            raise ValueError(f"otf shape {otf.shape} is not the rfft shape of {canvas_shape}")
        complex_dtype = torch.complex128 if dtype == torch.float64 else torch.complex64
        self.register_buffer("otf", torch.as_tensor(otf.astype(np.complex128)).to(complex_dtype))
        self.canvas_shape = (yc, xc)
        self.field_shape = (y, x)
        self.margin = int(margin)
        self.binning = int(binning)
        self._norm: float | None = None

    @property
    def crop(self) -> tuple[slice, slice]:
        m, f = self.margin, self.binning
        return slice(m, m + f * self.field_shape[0]), slice(m, m + f * self.field_shape[1])

    def _filter(self, x: torch.Tensor, conj: bool) -> torch.Tensor:
        otf = self.otf.conj() if conj else self.otf
        if otf.dtype != (torch.complex128 if x.dtype == torch.float64 else torch.complex64):
            otf = otf.to(torch.complex128 if x.dtype == torch.float64 else torch.complex64)
        return torch.fft.irfft2(torch.fft.rfft2(x) * otf, s=self.canvas_shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.A(x)

    def A(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, Yc, Xc) → (B, 1, Y, X)."""
        cy, cx = self.crop
        return bin_sum(self._filter(x, conj=False)[..., cy, cx], self.binning)

    def A_adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """(B, 1, Y, X) → (B, 1, Yc, Xc)."""
        up = bin_replicate(y, self.binning)
        m = self.margin
        if m:
            up = torch.nn.functional.pad(up, (m, m, m, m))
        return self._filter(up, conj=True)

    def norm(self, iterations: int = 50, seed: int = 0) -> float:
        """‖H‖₂ by power iteration on HᵀH (cached after the first call)."""
        if self._norm is None:
            gen = torch.Generator().manual_seed(seed)
            dtype = torch.float64 if self.otf.dtype == torch.complex128 else torch.float32
            v = torch.randn((1, 1, *self.canvas_shape), generator=gen, dtype=dtype)
            v = v.to(self.otf.device)
            value = 0.0
            for _ in range(iterations):
                v = v / v.norm()
                w = self.A_adjoint(self.A(v))
                value = float((v * w).sum())
                v = w
            self._norm = float(np.sqrt(max(value, 0.0)))
        return self._norm

    def gram_solve(self, r: torch.Tensor, mu: float) -> torch.Tensor:
        """``(HᵀH + μI)⁻¹ r`` for a circular (margin 0), unbinned operator (FFT-diagonal)."""
        if self.margin or self.binning != 1:
            raise NotImplementedError("gram_solve needs a circular operator without binning")
        power = self.otf.real.square() + self.otf.imag.square()
        return torch.fft.irfft2(torch.fft.rfft2(r) / (power + mu), s=self.canvas_shape)

    def ones_adjoint(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Hᵀ1 (the RL normaliser), (1, 1, Yc, Xc)."""
        ones = torch.ones((1, 1, *self.field_shape), dtype=dtype, device=self.otf.device)
        return self.A_adjoint(ones)
