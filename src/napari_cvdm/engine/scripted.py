"""A deterministic, TorchScript-compilable reconstruction: one image in, mean and std out.

:class:`ScriptedReconstruction` is the network that ``napari-cvdm export-bioimageio`` packages.
It computes, for each image of a batch, what :func:`napari_cvdm.workflows.predict.reconstruct`
computes for that image alone with a fixed sampler, step count, sample count and seed (no
resampling, the model's camera offset, the model's defocus number, no tiling):

1. **preprocessing** (torch ports of :mod:`napari_cvdm.normalization`, float64 like the numpy
   originals; ``tests/test_bioimageio.py`` checks them against those):

   * SR: input (1, Y, X) widefield in ADU. ``x' = 2 (x − offset − low)/(high − low) − 1`` with
     ``low``/``high`` the (p_low, p_high) percentiles of the offset-subtracted frame (min/max when
     they coincide), then bicubic ×2 (``align_corners=False``): the condition (1, 1, 2Y, 2X).
   * QPI: input (2, Y, X) = the planes [I(−dz), I(+dz)]; contrast ``c = I / median(I) − 1``; the
     TIE prior (FFT-Tikhonov on the mirror extension, pixel units, the model's defocus number
     D = λ·dz/Δx²), shifted so its floor percentile is 0 rad and mapped to ``2φ/φ_norm − 1``:
     the condition (1, 3, Y, X) = [φ_TIE, c₋, c₊] (one more TIE channel per extra Tikhonov
     weight of the rule, after the first).

2. **sampling**: λ(x) once, ρ on the uniform time grid (precomputed at export: the steps are
   fixed), then for each sample i its own CPU generator seeded with the project's per-sample seed
   (:func:`~napari_cvdm.engine.sampling.sample_seed` of the per-frame seed of frame 0), the
   initial noise and one noise draw per step but the last, the denoiser and the step rules of
   :mod:`~napari_cvdm.engine.samplers` (:func:`ancestral_step` / :func:`ddim_step`, ŷ₀ clamped
   to the model's bound around the residual base).

3. **postprocessing**: each sample + its residual base, mapped back to physical units (SR:
   relative intensity in the input's ADU-above-offset scale, on the 2× grid; QPI: phase in rad);
   the pixelwise mean and the unbiased std (×the model's std calibration scale) over the
   samples, accumulated in float64 (Welford), returned as float32.

Everything a consumer needs is in the module: it holds no Python objects, draws no global
random numbers and reads no files.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from . import schedule as sch
from .cvdm import denoiser_input, noise_level_map
from .samplers import ancestral_step, ddim_step
from .sampling import denoised_bound, sample_seed, time_grid

__all__ = [
    "ScriptedReconstruction",
    "condition_channels",
    "percentile",
    "quiet_jit",
    "script_reconstruction",
    "tie_prior",
    "torch_seed",
]


def condition_channels(task: str, rule: dict[str, Any]) -> int:
    """C_x the scripted preprocessing makes for a normalisation ``rule`` (the task's count):
    SR 1 (without the RL prior, which cannot be scripted); QPI 2 contrast channels plus one TIE
    prior per Tikhonov weight (``prior.alpha`` and any ``prior.extra_alphas``)."""
    from ..tasks import get

    return get(task).condition_channels_needed(rule)[0]


def torch_seed(seed: int) -> int:
    """A seed 0 ≤ s < 2⁶⁴ as the signed 64-bit integer TorchScript can hold (two's complement):
    ``Generator.manual_seed`` maps it back to ``s``."""
    seed = int(seed)
    if not 0 <= seed < 2**64:
        raise ValueError(f"seed must be in [0, 2**64), got {seed}")
    return seed - 2**64 if seed >= 2**63 else seed


def percentile(values: torch.Tensor, q: float) -> torch.Tensor:
    """The ``q``-th percentile (0–100) of all ``values`` with numpy's default ("linear")
    interpolation, as a 0-d tensor of the values' dtype (float64 in, float64 out)."""
    flat = values.flatten().sort().values
    n = flat.numel()
    position = q / 100.0 * float(n - 1)
    below = int(math.floor(position))
    above = min(below + 1, n - 1)
    t = position - float(below)
    a, b = flat[below], flat[above]
    diff = b - a
    if t >= 0.5:  # numpy's _lerp: from the upper neighbour for t ≥ 0.5
        return b - diff * (1.0 - t)
    return a + diff * t


def _mirror(a: torch.Tensor) -> torch.Tensor:
    """Even (half-sample symmetric) extension (Y, X) → (2Y, 2X), as ``np.pad(mode="symmetric")``."""
    a = torch.cat([a, a.flip(-1)], dim=-1)
    return torch.cat([a, a.flip(-2)], dim=-2)


def tie_prior(
    contrast: torch.Tensor, defocus_d: float, alpha: float, phi_norm: float, floor_percentile: float
) -> torch.Tensor:
    """TIE prior of a contrast pair (2, Y, X) [−dz, +dz] in model units: (Y, X) float32.

    The torch port of :func:`napari_cvdm.normalization.qpi_tie_prior` (two planes, so the axial
    fit is the central difference): φ = ∇⁻²(−2π ∂I/∂z / Ī₀) with the Tikhonov inverse
    −L/(L² + α), L = 4π²|u|² in cycles/pixel on the mirror extension, zero mean; then shifted
    so its ``floor_percentile`` is 0 rad and mapped to ``2φ/φ_norm − 1``.
    """
    planes = contrast.to(torch.float64) + 1.0
    i0 = 0.5 * (planes[0] + planes[1])
    didz = (planes[1] - planes[0]) / (2.0 * defocus_d)
    source = -2.0 * math.pi * didz
    source = source / max(float(i0.mean()), 1e-12)
    height, width = source.shape[-2], source.shape[-1]
    work = _mirror(source)
    uy = torch.fft.fftfreq(2 * height, dtype=torch.float64)[:, None]
    ux = torch.fft.rfftfreq(2 * width, dtype=torch.float64)[None, :]
    lap = 4.0 * math.pi**2 * (uy * uy + ux * ux)
    inverse = torch.where(lap > 0, -lap / (lap * lap + alpha), torch.zeros_like(lap))
    phi = torch.fft.irfft2(torch.fft.rfft2(work) * inverse, s=[2 * height, 2 * width])
    phi = phi[:height, :width]
    phi = (phi - phi.mean()).to(torch.float32)
    phi = phi - percentile(phi.to(torch.float64), floor_percentile).to(torch.float32)
    return (2.0 * phi.to(torch.float64) / phi_norm - 1.0).to(torch.float32)


class ScriptedReconstruction(nn.Module):
    """The export network (see the module doc): ``forward(image) -> (mean, std)``.

    ``image``: SR (B, 1, Y, X) widefield ADU → ``mean``, ``std`` (B, 1, 2Y, 2X) relative
    intensity (ADU above the camera offset); QPI (B, 2, Y, X) planes [I(−dz), I(+dz)] →
    (B, 1, Y, X) phase in rad. Each batch item is reconstructed on its own (same seeds).
    Build it with :func:`script_reconstruction`.
    """

    def __init__(
        self,
        model: Any,
        metadata: dict[str, Any],
        *,
        n_samples: int,
        steps: int,
        sampler: str,
        eta: float,
        seed: int,
        std_factor: float,
    ) -> None:
        super().__init__()
        from ..tasks import get
        from .sampling import SAMPLERS, frame_seed

        if sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {tuple(SAMPLERS)}, got {sampler!r}")
        task = metadata["task"]
        spec = get(task)
        rule = metadata["normalization"]
        self.task = spec.script_code  # 0: SR, 1: QPI (what forward branches on)
        self.lambda_net = model.lambda_net
        self.denoiser = model.denoiser
        self.target_channels = int(model.config.target_channels)
        self.residual = bool(model.config.residual)
        self.bound = float(denoised_bound(model))
        self.ancestral = sampler == "ancestral"
        self.eta = float(eta)
        self.steps = int(steps)
        frame = frame_seed(int(seed), 0)
        self.seeds = [torch_seed(sample_seed(frame, i)) for i in range(int(n_samples))]
        self.std_factor = float(std_factor)
        with torch.inference_mode():
            rho = model.rho(time_grid(self.steps)).float()
        self.register_buffer("rho_grid", rho.clone())
        # SR normalisation
        inp = rule["input"]
        self.offset = float(inp.get("offset_adu", 0.0))
        self.p_low = float(inp.get("p_low", 1.0))
        self.p_high = float(inp.get("p_high", 99.8))
        # QPI prior
        prior = rule.get("prior") or {}
        self.has_prior = bool(prior)
        # the Tikhonov weight of each TIE prior channel: the residual base's, then any extra ones
        self.alphas = [float(a) for a in [prior.get("alpha", 1e-6), *prior.get("extra_alphas", [])]]
        self.floor_percentile = float(prior.get("floor_percentile", 1.0))
        self.phi_norm = float(rule["target"].get("phi_norm", 3.5))
        self.defocus_d = float(spec.script_defocus(metadata))
        if spec.export_refusal(metadata):
            raise ValueError("SR models with the Richardson–Lucy prior channel cannot be scripted")
        if model.config.condition_channels != condition_channels(task, rule):
            raise ValueError(
                f"the model takes {model.config.condition_channels} condition channels but its "
                f"normalisation rule makes {condition_channels(task, rule)}"
            )

    # ---------------------------------------------------------------- preprocessing
    def _sr_condition(self, frame: torch.Tensor) -> tuple[torch.Tensor, float, float]:
        """Widefield (Y, X) ADU → condition (1, 1, 2Y, 2X) float32, and the map's low, scale."""
        arr = frame.to(torch.float64) - self.offset
        low = float(percentile(arr, self.p_low))
        high = float(percentile(arr, self.p_high))
        if not high > low:
            low, high = float(arr.min()), float(arr.max())
        if not high > low:
            raise ValueError("the input frame is constant: there is nothing to reconstruct")
        scale = high - low
        x = (2.0 * (arr - low) / scale - 1.0).to(torch.float32)
        up = F.interpolate(x[None, None], scale_factor=2.0, mode="bicubic", align_corners=False)
        return up, low, scale

    def _qpi_condition(self, planes: torch.Tensor) -> torch.Tensor:
        """Planes (2, Y, X) → condition (1, P + 2, Y, X) [φ_TIE(α) for each α, c₋, c₊]
        (P = 0 without a prior) float32."""
        arr = planes.to(torch.float64)
        background = float(percentile(arr, 50.0))
        if not background > 0.0:
            raise ValueError("the background (median) intensity of the planes must be positive")
        if float(arr.max()) == float(arr.min()):
            raise ValueError("the two planes are constant: there is no phase contrast")
        contrast = (arr / background - 1.0).to(torch.float32)
        if not self.has_prior:
            return contrast[None]
        channels: list[torch.Tensor] = []
        for alpha in self.alphas:
            prior = tie_prior(contrast, self.defocus_d, alpha, self.phi_norm, self.floor_percentile)
            channels.append(prior[None])
        channels.append(contrast)
        return torch.cat(channels, dim=0)[None]

    # ---------------------------------------------------------------- sampling
    def _sample(self, x: torch.Tensor, lam: torch.Tensor, seed: int) -> torch.Tensor:
        """One sample (1, C_y, H, W) in model units (residual base not added)."""
        c_y = self.target_channels
        height, width = x.shape[-2], x.shape[-1]
        generator = torch.Generator()
        generator.manual_seed(seed)
        y = torch.randn([c_y, height, width], generator=generator)[None]
        if self.residual:
            base = x[:, :c_y]
            bounds = (-self.bound - base, self.bound - base)
        else:
            zero = torch.zeros((), dtype=x.dtype)
            bounds = (zero - self.bound, zero + self.bound)
        for k in range(self.steps):
            noise: torch.Tensor | None = None
            if (self.ancestral or self.eta > 0.0) and k < self.steps - 1:
                noise = torch.randn([c_y, height, width], generator=generator)[None]
            log_snr = sch.log_snr(lam, self.rho_grid[k])
            global_cond: torch.Tensor | None = None
            if self.denoiser.embed is not None:
                global_cond = noise_level_map(log_snr.mean().reshape(1))
            eps_hat = self.denoiser(denoiser_input(y, x, log_snr), global_cond).float()
            log_gamma_t = sch.log_gamma(lam, self.rho_grid[k])
            log_gamma_s = sch.log_gamma(lam, self.rho_grid[k + 1])
            if self.ancestral:
                y = ancestral_step(y, eps_hat, log_gamma_t, log_gamma_s, noise, bounds)
            else:
                y = ddim_step(y, eps_hat, log_gamma_t, log_gamma_s, self.eta, noise, bounds)
        return y

    # ---------------------------------------------------------------- the whole image
    def reconstruct_one(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One image (C_in, Y, X) → mean, std (C_y, Y', X') float32 in physical units."""
        low, scale = 0.0, 1.0
        if self.task == 0:
            x, low, scale = self._sr_condition(image[0])
        else:
            x = self._qpi_condition(image)
        lam = self.lambda_net(x)
        base = x[:, : self.target_channels].to(torch.float64)
        if not self.residual:
            base = torch.zeros_like(base)
        mean = torch.zeros(base.shape, dtype=torch.float64)
        m2 = torch.zeros(base.shape, dtype=torch.float64)
        n = 0
        for seed in self.seeds:
            y = self._sample(x, lam, seed).to(torch.float64) + base
            if self.task == 0:
                physical = ((y + 1.0) * 0.5 * scale + low).to(torch.float32)
            else:
                physical = ((y + 1.0) * self.phi_norm * 0.5).to(torch.float32)
            value = physical.to(torch.float64)
            n += 1
            delta = value - mean
            mean = mean + delta / float(n)
            m2 = m2 + delta * (value - mean)
        if n > 1:
            std = torch.sqrt(m2 / float(n - 1)) * self.std_factor
        else:
            std = torch.zeros_like(mean)
        return mean[0].to(torch.float32), std[0].to(torch.float32)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``image`` (B, C_in, Y, X) float32 → ``(mean, std)`` (B, C_y, Y', X') float32."""
        with torch.no_grad():
            means: list[torch.Tensor] = []
            stds: list[torch.Tensor] = []
            for b in range(image.shape[0]):
                mean, std = self.reconstruct_one(image[b].to(torch.float32))
                means.append(mean)
                stds.append(std)
            return torch.stack(means), torch.stack(stds)


def script_reconstruction(
    loaded: Any,
    *,
    n_samples: int,
    steps: int,
    sampler: str,
    eta: float = 0.0,
    seed: int = 0,
    raw_std: bool = False,
) -> torch.jit.ScriptModule:
    """The TorchScript module of a loaded SR or QPI model (``LoadedModel``) for a fixed sampler.

    The std is multiplied by the model's calibration scale unless ``raw_std`` (as
    ``ReconstructionParams.raw_std``). Raises ``ValueError`` for models it cannot script (a
    prior, or SR with the RL prior channel, whose Richardson–Lucy runs in numpy).
    """
    from ..tasks import get
    from .header import std_scale

    meta = loaded.metadata
    if not get(meta["task"]).reconstructs:
        raise ValueError(f"models of task {meta['task']!r} cannot be exported; use SR or QPI")
    model = loaded.model.float().to("cpu").eval()
    model.to(memory_format=torch.contiguous_format)
    module = ScriptedReconstruction(
        model,
        meta,
        n_samples=n_samples,
        steps=steps,
        sampler=sampler,
        eta=eta,
        seed=seed,
        std_factor=std_scale(meta, raw=raw_std),
    ).eval()
    with quiet_jit():
        return torch.jit.script(module)


@contextmanager
def quiet_jit() -> Iterator[None]:
    """Silence recent torch's "torch.jit.* is deprecated" warning inside the block: the
    TorchScript format is still what bioimage.io runs for PyTorch models."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r".*torch\.jit\..* is deprecated", DeprecationWarning)
        yield
