"""Widefield and SIM transfer functions of real instruments (numpy/scipy), physics.md (b).

A simulated microscope should never be exactly the one a baseline or a user assumes, and a
SIM-like ground truth must be made the way a SIM reconstruction is made:

* :func:`pupil_otf` — widefield OTF of an aberrated pupil, ``P(k) = circ(|k| ≤ NA/λ)·exp(2πi·W)``
  with ``W`` a sum of Zernike terms in waves (defocus, primary spherical, astigmatism, coma);
  ``OTF = F{|F⁻¹ P|²}`` normalised to 1 at k = 0. Zero aberration gives the Airy OTF.
* :func:`measured_otf` — the measured radial OTF of the BioSR microscope (TIRF, 1.49 NA,
  488 nm excitation; ``data/SOURCE.md``), optionally stretched in frequency.
* :func:`sim_otf` — generalised-Wiener SIM OTF: with the seven bands ``H_j(k) = H_WF(k − p_j)``,
  ``p_j ∈ {0, ±k0·e_θ}`` for three orientations 60° apart,
  ``H_SIM(k) = A(k)·Σ_j|H_j|² / (Σ_j|H_j|² + w²)`` normalised to H_SIM(0) = 1, with the
  apodisation ``A = (1 − |k|/(ρc + k0))₊^γ``. Its support is the widefield disc plus the six
  shifted copies (a flower, not a disc), and it falls to 0 at ``ρc + k0``.
* :func:`sim_noise_filter` — amplitude spectrum with which raw-frame noise reaches that
  reconstruction: ``A·sqrt(Σ_j|H_j|²)/(Σ_j|H_j|² + w²)``.

Transfer functions are sampled on FFT grids (zero frequency at [0, 0]; ``rfft=True`` for the
half spectrum), frequencies in cycles/µm, lengths in µm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import scipy.fft as sfft

from .psf import _pair, airy_cutoff, airy_otf_profile

__all__ = [
    "MEASURED_OTF_DK",
    "NOMINAL_SIM",
    "Optics",
    "SIMParameters",
    "measured_otf",
    "measured_otf_profile",
    "otf_function",
    "pupil_otf",
    "sim_noise_filter",
    "sim_otf",
]

#: frequency step of the bundled measured radial OTF (cycles/µm per sample)
MEASURED_OTF_DK = 0.0312
_MEASURED_OTF = Path(__file__).with_name("data") / "TIRF488_cam1_0_z30_OTF2d.mrc"
#: Zernike terms understood by :func:`pupil_otf` (Noll names; coefficients in waves, RMS-free)
ZERNIKE_TERMS = ("defocus", "spherical", "astig_0", "astig_45", "coma_x", "coma_y")


@dataclass(frozen=True)
class Optics:
    """The widefield optics of one simulated acquisition.

    ``kind``: ``"airy"`` (ideal pupil), ``"aberrated"`` (pupil with ``aberrations``, waves) or
    ``"measured"`` (the bundled BioSR OTF, its frequency axis scaled by ``measured_scale``).
    ``na``, ``wavelength_um``: the true values (the pupil's radius is NA/λ).
    """

    kind: str
    na: float
    wavelength_um: float
    aberrations: dict[str, float] = field(default_factory=dict)
    measured_scale: float = 1.0

    @property
    def cutoff(self) -> float:
        """Incoherent cut-off (cycles/µm): 2NA/λ, or where the measured OTF ends."""
        if self.kind == "measured":
            return measured_cutoff() * self.measured_scale
        return airy_cutoff(self.na, self.wavelength_um)

    def to_metadata(self) -> dict:
        out = {"kind": self.kind, "na": self.na, "wavelength_um": self.wavelength_um}
        if self.kind == "aberrated":
            out["aberrations_waves"] = dict(self.aberrations)
        if self.kind == "measured":
            out["measured_scale"] = self.measured_scale
        return out


@dataclass(frozen=True)
class SIMParameters:
    """Reconstruction parameters of a SIM-like target: illumination frequency ``k0_fraction``
    (of the widefield cut-off), ``angle0_rad`` of the first of three orientations 60° apart,
    Wiener parameter ``wiener_w`` and apodisation exponent ``apodization_gamma``."""

    k0_fraction: float = 0.9
    angle0_rad: float = 0.0
    wiener_w: float = 0.1
    apodization_gamma: float = 1.0

    def to_metadata(self) -> dict:
        return {
            "k0_fraction": self.k0_fraction,
            "angle0_rad": self.angle0_rad,
            "wiener_w": self.wiener_w,
            "apodization_gamma": self.apodization_gamma,
        }


#: what a baseline (or the model's nominal prior) assumes about a SIM reconstruction
NOMINAL_SIM = SIMParameters()


@lru_cache(maxsize=1)
def measured_otf_profile() -> np.ndarray:
    """The bundled measured radial OTF magnitude (257,), float64, 1 at k = 0, read-only."""
    from ..mrc import read_mrc_fallback

    data, _header = read_mrc_fallback(_MEASURED_OTF)
    profile = np.abs(np.asarray(data, dtype=np.complex128).ravel())
    profile = profile / profile[0]
    profile.flags.writeable = False
    return profile


@lru_cache(maxsize=1)
def measured_cutoff() -> float:
    """Frequency (cycles/µm) where the measured OTF first falls below 0.2 % (its support)."""
    profile = measured_otf_profile()
    below = np.nonzero(profile < 2e-3)[0]
    return float(below[0] * MEASURED_OTF_DK) if below.size else len(profile) * MEASURED_OTF_DK


def measured_otf(rho: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Measured OTF at radial frequencies ``rho`` (cycles/µm), frequency axis stretched by
    ``scale`` (> 1: a sharper system); 0 beyond the support. float64, same shape as ``rho``."""
    profile = measured_otf_profile()
    samples = np.asarray(rho, dtype=np.float64) / (MEASURED_OTF_DK * scale)
    out = np.interp(samples, np.arange(profile.size), profile, right=0.0)
    out[samples * MEASURED_OTF_DK >= measured_cutoff()] = 0.0  # drop the noise floor
    return out


def _zernike(ky: np.ndarray, kx: np.ndarray, radius: float, coeffs: dict[str, float]):
    """Wavefront (waves) of the Zernike terms ``coeffs`` on normalised pupil coordinates."""
    y, x = ky / radius, kx / radius
    r2 = x * x + y * y
    terms = {
        "defocus": np.sqrt(3.0) * (2.0 * r2 - 1.0),
        "spherical": np.sqrt(5.0) * (6.0 * r2 * r2 - 6.0 * r2 + 1.0),
        "astig_0": np.sqrt(6.0) * (x * x - y * y),
        "astig_45": np.sqrt(6.0) * 2.0 * x * y,
        "coma_x": np.sqrt(8.0) * (3.0 * r2 - 2.0) * x,
        "coma_y": np.sqrt(8.0) * (3.0 * r2 - 2.0) * y,
    }
    w = np.zeros_like(r2)
    for name, c in coeffs.items():
        if name not in terms:
            raise ValueError(f"unknown Zernike term {name!r}; use one of {ZERNIKE_TERMS}")
        w = w + float(c) * terms[name]
    return w


def pupil_otf(
    shape: tuple[int, int],
    pixel_size_um: float | tuple[float, float],
    na: float,
    wavelength_um: float,
    aberrations: dict[str, float] | None = None,
    rfft: bool = False,
) -> np.ndarray:
    """Widefield OTF of an (aberrated) circular pupil on the FFT grid of ``shape``, complex128.

    The pupil has radius NA/λ (cycles/µm) and the wavefront ``aberrations`` (waves per Zernike
    term, :data:`ZERNIKE_TERMS`). Without aberrations this is the Airy OTF (to FFT precision).
    The pupil must fit the grid: ``2·NA/λ`` below the grid's Nyquist frequency.
    """
    dy, dx = _pair(pixel_size_um)
    ky = sfft.fftfreq(shape[0], d=dy)[:, None]
    kx = sfft.fftfreq(shape[1], d=dx)[None, :]
    radius = na / wavelength_um
    inside = ky**2 + kx**2 <= radius**2
    phase = _zernike(ky, kx, radius, aberrations or {})
    pupil = np.where(inside, np.exp(2j * np.pi * phase), 0.0)
    psf = np.abs(sfft.ifft2(pupil)) ** 2
    otf = sfft.rfft2(psf) if rfft else sfft.fft2(psf)
    return otf / otf[0, 0].real


def otf_function(optics: Optics, shape: tuple[int, int], pixel_size_um: float) -> Callable:
    """A function ``H(ky, kx)`` (cycles/µm arrays → complex OTF) for ``optics``.

    Airy and measured OTFs are evaluated analytically / by interpolation at any frequency; an
    aberrated pupil is sampled once on the FFT grid of ``shape`` and looked up (nearest sample),
    so shifted copies ``H(k − p)`` fall on the same grid.
    """
    if optics.kind == "airy":
        return lambda ky, kx: airy_otf_profile(
            np.sqrt(ky**2 + kx**2), optics.na, optics.wavelength_um
        ).astype(np.complex128)
    if optics.kind == "measured":
        return lambda ky, kx: measured_otf(np.sqrt(ky**2 + kx**2), optics.measured_scale).astype(
            np.complex128
        )
    if optics.kind != "aberrated":
        raise ValueError(f"unknown optics kind {optics.kind!r}")
    table = pupil_otf(shape, pixel_size_um, optics.na, optics.wavelength_um, optics.aberrations)
    dk = (1.0 / (shape[0] * pixel_size_um), 1.0 / (shape[1] * pixel_size_um))

    def lookup(ky: np.ndarray, kx: np.ndarray) -> np.ndarray:
        iy = np.rint(np.asarray(ky) / dk[0]).astype(np.int64) % shape[0]
        ix = np.rint(np.asarray(kx) / dk[1]).astype(np.int64) % shape[1]
        out = table[iy, ix]
        # beyond the cut-off the periodic table would alias: no transfer there
        rho = np.sqrt(np.asarray(ky) ** 2 + np.asarray(kx) ** 2)
        return np.where(rho <= optics.cutoff * 1.001, out, 0.0)

    return lookup


def _grid(shape: tuple[int, int], pixel_size_um: float, rfft: bool):
    ky = sfft.fftfreq(shape[0], d=pixel_size_um)[:, None]
    kx = (sfft.rfftfreq if rfft else sfft.fftfreq)(shape[1], d=pixel_size_um)[None, :]
    return np.broadcast_arrays(ky, kx)


def _band_power(otf: Callable, ky, kx, k0: float, angle0: float) -> np.ndarray:
    """Σ_j |H(k − p_j)|² over the seven SIM bands (p_0 = 0, ±k0 at three orientations)."""
    total = np.abs(otf(ky, kx)) ** 2
    for i in range(3):
        theta = angle0 + i * np.pi / 3.0
        py, px = k0 * np.sin(theta), k0 * np.cos(theta)
        for sign in (1.0, -1.0):
            total = total + np.abs(otf(ky - sign * py, kx - sign * px)) ** 2
    return total


def _apodization(ky, kx, edge: float, gamma: float) -> np.ndarray:
    return np.clip(1.0 - np.sqrt(ky**2 + kx**2) / edge, 0.0, None) ** gamma


def sim_otf(
    shape: tuple[int, int],
    pixel_size_um: float,
    optics: Optics,
    sim: SIMParameters = NOMINAL_SIM,
    rfft: bool = False,
) -> np.ndarray:
    """Generalised-Wiener SIM OTF (real, float64) on the FFT grid of ``shape``; see module.

    H_SIM(0) = 1 (flux conserving) and H_SIM = 0 beyond ``ρc + k0``, with
    ``k0 = sim.k0_fraction · ρc`` and ρc the widefield cut-off of ``optics``.
    """
    ky, kx = _grid(shape, pixel_size_um, rfft)
    otf = otf_function(optics, shape, pixel_size_um)
    k0 = sim.k0_fraction * optics.cutoff
    power = _band_power(otf, ky, kx, k0, sim.angle0_rad)
    w2 = sim.wiener_w**2
    h = _apodization(ky, kx, optics.cutoff + k0, sim.apodization_gamma) * power / (power + w2)
    return h / h[0, 0]


def sim_noise_filter(
    shape: tuple[int, int],
    pixel_size_um: float,
    optics: Optics,
    sim: SIMParameters = NOMINAL_SIM,
    rfft: bool = False,
) -> np.ndarray:
    """Amplitude spectrum A·sqrt(Σ|H_j|²)/(Σ|H_j|² + w²) of the raw-frame noise in the SIM
    reconstruction (float64, FFT grid), 1 at k = 0."""
    ky, kx = _grid(shape, pixel_size_um, rfft)
    otf = otf_function(optics, shape, pixel_size_um)
    k0 = sim.k0_fraction * optics.cutoff
    power = _band_power(otf, ky, kx, k0, sim.angle0_rad)
    w2 = sim.wiener_w**2
    apod = _apodization(ky, kx, optics.cutoff + k0, sim.apodization_gamma)
    filt = apod * np.sqrt(power) / (power + w2)
    return filt / filt[0, 0]
