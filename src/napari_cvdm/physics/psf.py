"""Point-spread functions, transfer functions, binning and PSF-width resampling (numpy/scipy).

Conventions (physics.md (a)): lengths and wavelengths in µm, spatial frequencies in cycles/µm,
arrays (Y, X). Transfer functions are returned in FFT layout (zero frequency at index [0, 0],
``fftfreq(n, d=Δx)``); PSF images are centred at pixel ``(ny // 2, nx // 2)`` and sum to 1.

* Widefield: Airy PSF ``[2 J1(v)/v]²``, ``v = 2π·NA·r/λ``; its OTF is evaluated analytically,
  ``H(ρ) = (2/π)[arccos(ρ/ρc) − (ρ/ρc)·sqrt(1 − (ρ/ρc)²)]`` for ``ρ ≤ ρc = 2NA/λ``, else 0, so the
  PSF on the grid is exactly band-limited (and exactly non-negative when ρc is below Nyquist).
* SIM-like ground truth: a Gaussian with a requested FWHM (never an Airy with 1.9·NA).
* Binning ``B_k``: k×k sum of box pixels; its adjoint replicates into k×k blocks.
* PSF-width invariance: the model only sees ``r = 0.21·λ/(NA·Δx)`` pixels; user images are
  resampled to the pixel size that reproduces the training ``r₀``.
"""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import scipy.fft as sfft
from scipy.special import j1

from ..errors import InputError

#: Gaussian-approximation width of a widefield PSF: σ_WF ≈ 0.21·λ/NA.
SIGMA_WF_COEFF = 0.21
#: FWHM of the Airy disk intensity in units of λ/NA (0.5145; the spec's rule of thumb is 0.51).
AIRY_FWHM_COEFF = 0.5145
#: Resolution gain of the SIM-like ground truth over widefield (FWHM_WF / FWHM_SIM).
SIM_GAIN = 1.9
FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _pair(pixel_size_um: float | tuple[float, float]) -> tuple[float, float]:
    """Return ``(dy, dx)`` in µm from a scalar or a pair."""
    if np.ndim(pixel_size_um) == 0:
        return float(pixel_size_um), float(pixel_size_um)
    dy, dx = pixel_size_um
    return float(dy), float(dx)


@lru_cache(maxsize=64)
def _radial_frequency(
    shape: tuple[int, int], pixel_size: tuple[float, float], rfft: bool
) -> np.ndarray:
    ky = sfft.fftfreq(shape[0], d=pixel_size[0])[:, None]
    if rfft:
        kx = sfft.rfftfreq(shape[1], d=pixel_size[1])[None, :]
    else:
        kx = sfft.fftfreq(shape[1], d=pixel_size[1])[None, :]
    rho = np.sqrt(ky**2 + kx**2)
    rho.flags.writeable = False
    return rho


def radial_frequency(
    shape: tuple[int, int], pixel_size_um: float | tuple[float, float], rfft: bool = False
) -> np.ndarray:
    """|k| in cycles/µm on the FFT grid of ``shape`` (Y, X); ``rfft`` gives the half spectrum.

    Returns a read-only float64 array of shape ``shape`` or ``(ny, nx // 2 + 1)``.
    """
    return _radial_frequency(tuple(int(s) for s in shape), _pair(pixel_size_um), bool(rfft))


def airy_cutoff(na: float, wavelength_um: float) -> float:
    """Incoherent cut-off frequency ρc = 2·NA/λ in cycles/µm."""
    return 2.0 * na / wavelength_um


def airy_otf_profile(rho: np.ndarray, na: float, wavelength_um: float) -> np.ndarray:
    """Analytic widefield OTF at radial frequencies ``rho`` (cycles/µm); 1 at 0, 0 beyond ρc."""
    s = np.clip(np.asarray(rho, dtype=np.float64) / airy_cutoff(na, wavelength_um), 0.0, 1.0)
    return (2.0 / np.pi) * (np.arccos(s) - s * np.sqrt(1.0 - s * s))


def airy_intensity(r_um: np.ndarray, na: float, wavelength_um: float) -> np.ndarray:
    """Airy disk intensity ``[2 J1(v)/v]²`` (peak 1) at radii ``r_um``."""
    v = 2.0 * np.pi * na * np.asarray(r_um, dtype=np.float64) / wavelength_um
    out = np.ones_like(v)
    nz = v > 1e-12
    out[nz] = (2.0 * j1(v[nz]) / v[nz]) ** 2
    return out


@lru_cache(maxsize=32)
def _airy_otf_cached(shape, pixel_size, na, wavelength_um, rfft):
    otf = airy_otf_profile(_radial_frequency(shape, pixel_size, rfft), na, wavelength_um)
    otf.flags.writeable = False
    return otf


def airy_otf(
    shape: tuple[int, int],
    pixel_size_um: float | tuple[float, float],
    na: float,
    wavelength_um: float,
    rfft: bool = False,
) -> np.ndarray:
    """Widefield OTF sampled on the FFT grid of ``shape`` (read-only float64, cached)."""
    key = (tuple(int(s) for s in shape), _pair(pixel_size_um), float(na), float(wavelength_um))
    return _airy_otf_cached(*key, bool(rfft))


def airy_psf(
    shape: tuple[int, int],
    pixel_size_um: float | tuple[float, float],
    na: float,
    wavelength_um: float,
) -> np.ndarray:
    """Band-limited Airy PSF (Y, X) centred at ``n // 2``, non-negative, summing to 1 (float64).

    Computed as the inverse FFT of the analytic OTF, i.e. the periodised, sampled Airy pattern.
    """
    otf = airy_otf(shape, pixel_size_um, na, wavelength_um)
    psf = sfft.fftshift(sfft.ifft2(otf).real)
    psf = np.clip(psf, 0.0, None)
    return psf / psf.sum()


def airy_fwhm_um(na: float, wavelength_um: float) -> float:
    """FWHM of the Airy disk in µm (0.5145·λ/NA)."""
    return AIRY_FWHM_COEFF * wavelength_um / na


def sim_fwhm_um(na: float, wavelength_um: float, gain: float = SIM_GAIN) -> float:
    """Default FWHM of the SIM-like GT PSF: FWHM_WF / 1.9 (≈ 95 nm at NA 1.49, 0.525 µm)."""
    return airy_fwhm_um(na, wavelength_um) / gain


def gaussian_psf(
    shape: tuple[int, int], pixel_size_um: float | tuple[float, float], fwhm_um: float
) -> np.ndarray:
    """Sampled isotropic Gaussian PSF (Y, X) with the given FWHM, centred at ``n // 2``, sum 1."""
    dy, dx = _pair(pixel_size_um)
    sigma = fwhm_um / FWHM_PER_SIGMA
    y = (np.arange(shape[0]) - shape[0] // 2) * dy
    x = (np.arange(shape[1]) - shape[1] // 2) * dx
    psf = np.exp(-(y[:, None] ** 2 + x[None, :] ** 2) / (2.0 * sigma**2))
    return psf / psf.sum()


def gaussian_otf(
    shape: tuple[int, int],
    pixel_size_um: float | tuple[float, float],
    fwhm_um: float,
    rfft: bool = False,
) -> np.ndarray:
    """Analytic Gaussian transfer function exp(−2π²σ²|k|²) on the FFT grid (float64)."""
    sigma = fwhm_um / FWHM_PER_SIGMA
    rho = radial_frequency(shape, pixel_size_um, rfft)
    return np.exp(-2.0 * np.pi**2 * sigma**2 * rho**2)


def measure_fwhm(profile: np.ndarray, spacing: float = 1.0) -> float:
    """FWHM of a single-peaked 1-D profile by linear interpolation at half maximum.

    ``profile``: (N,) samples; ``spacing``: sample distance (result is in the same unit).
    """
    p = np.asarray(profile, dtype=np.float64)
    i = int(np.argmax(p))
    half = p[i] / 2.0
    left = i
    while left > 0 and p[left - 1] > half:
        left -= 1
    right = i
    while right < p.size - 1 and p[right + 1] > half:
        right += 1
    if left == 0 or right == p.size - 1:
        raise InputError("The profile does not fall below half maximum on both sides; widen it.")
    xl = left - (p[left] - half) / (p[left] - p[left - 1])
    xr = right + (p[right] - half) / (p[right] - p[right + 1])
    return float((xr - xl) * spacing)


def psf_fwhm_um(psf: np.ndarray, pixel_size_um: float) -> float:
    """FWHM (µm) of a centred 2-D PSF measured along its central row."""
    return measure_fwhm(psf[psf.shape[0] // 2], pixel_size_um)


# --- binning ------------------------------------------------------------------------------------


def bin_sum(image: np.ndarray, k: int) -> np.ndarray:
    """k×k sum-binning ``B_k`` over the last two axes: (..., Y, X) → (..., Y/k, X/k).

    Coarse pixel j holds fine pixels kj … kj+k−1 (box-aligned, never corner-aligned).
    """
    a = np.asarray(image)
    ny, nx = a.shape[-2:]
    if ny % k or nx % k:
        raise InputError(
            f"Image of {ny}×{nx} px cannot be binned by {k}; crop to a multiple of {k}."
        )
    return a.reshape(*a.shape[:-2], ny // k, k, nx // k, k).sum(axis=(-3, -1))


def bin_adjoint(image: np.ndarray, k: int) -> np.ndarray:
    """Adjoint ``B_kᵀ`` of :func:`bin_sum`: replicate each pixel into a k×k block (..., kY, kX)."""
    a = np.asarray(image)
    return np.repeat(np.repeat(a, k, axis=-2), k, axis=-1)


# --- PSF-width invariance -----------------------------------------------------------------------


def psf_width_px(na: float, wavelength_um: float, pixel_size_um: float) -> float:
    """Dimensionless widefield PSF width r = 0.21·λ/(NA·Δx) in pixels."""
    return SIGMA_WF_COEFF * wavelength_um / (na * pixel_size_um)


#: PSF width of recipe SR-A (NA 1.49, 0.525 µm, 0.0626 µm widefield pixels): r₀ ≈ 1.18 px.
SR_A_PSF_WIDTH_PX = psf_width_px(1.49, 0.525, 0.0626)


def resample_factor_for_model(
    pixel_size_um: float | None,
    na: float | None,
    wavelength_um: float | None,
    model_psf_width_px: float = SR_A_PSF_WIDTH_PX,
) -> float:
    """Zoom factor Δx_u/Δx′ that brings a user image to the model's PSF width.

    Δx′ = 0.21·λ_u/(NA_u·r₀). A factor > 1 up-samples. Warns (``UserWarning``) outside [0.5, 2],
    where the image's optics are far from what the model was trained on.
    """
    for name, value in (("pixel size", pixel_size_um), ("NA", na), ("wavelength", wavelength_um)):
        if value is None or not np.isfinite(value) or value <= 0:
            raise InputError(
                f"The {name} is unknown or invalid ({value!r}); enter the image's pixel size (µm), "
                "objective NA and emission wavelength (µm) so it can be matched to the model."
            )
    target = SIGMA_WF_COEFF * wavelength_um / (na * model_psf_width_px)
    factor = float(pixel_size_um / target)
    if not 0.5 <= factor <= 2.0:
        warnings.warn(
            f"Resampling by {factor:.2f} to match the model's PSF width (outside 0.5–2): the "
            "image's optics/pixel size differ strongly from the training data; results may suffer.",
            UserWarning,
            stacklevel=2,
        )
    return factor


# --- resampling (box-aligned) ------------------------------------------------------------------


def _cubic_weights(t: np.ndarray, a: float = -0.75) -> np.ndarray:
    """Keys cubic-convolution weights for taps −1, 0, 1, 2 at fractional offset t: (N, 4)."""
    x = np.stack([t + 1.0, t, 1.0 - t, 2.0 - t], axis=-1)
    near = ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    far = ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    return np.where(x <= 1.0, near, far)


@lru_cache(maxsize=32)
def cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) bicubic resampling matrix, ``torch.interpolate(mode='bicubic',
    align_corners=False)`` convention: source = (j + 0.5)·n_in/n_out − 0.5, A = −0.75, borders
    clamped (edge pixels replicated)."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    i0 = np.floor(src).astype(np.int64)
    w = _cubic_weights(src - i0)
    idx = np.clip(i0[:, None] + np.arange(-1, 3)[None, :], 0, n_in - 1)
    m = np.zeros((n_out, n_in))
    np.add.at(m, (np.repeat(np.arange(n_out), 4), idx.ravel()), w.ravel())
    m.flags.writeable = False
    return m


def cubic_resize(image: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Bicubic resize of the last two axes (…, Y, X) → (…, *out_shape), box-aligned (float64)."""
    a = np.asarray(image, dtype=np.float64)
    my = cubic_matrix(a.shape[-2], int(out_shape[0]))
    mx = cubic_matrix(a.shape[-1], int(out_shape[1]))
    return np.matmul(np.matmul(my, a), mx.T)


def fourier_resize(image: np.ndarray, out_shape: tuple[int, int]) -> np.ndarray:
    """Band-limited (DCT-II) resize of the last two axes, box-aligned, no wrap-around (float64).

    DCT-II interpolation evaluates the image's mirror-symmetric trigonometric interpolant at the
    output pixel centres (j + 0.5)·n_in/n_out − 0.5; down-sizing drops frequencies above the new
    Nyquist limit. Values (not sums) are preserved.
    """
    a = np.asarray(image, dtype=np.float64)
    ny, nx = a.shape[-2:]
    my, mx = int(out_shape[0]), int(out_shape[1])
    c = sfft.dctn(a, type=2, norm="ortho", axes=(-2, -1))
    out = np.zeros((*a.shape[:-2], my, mx))
    cy, cx = min(ny, my), min(nx, mx)
    out[..., :cy, :cx] = c[..., :cy, :cx] * np.sqrt(my * mx / (ny * nx))
    return sfft.idctn(out, type=2, norm="ortho", axes=(-2, -1))


def resample_image(image: np.ndarray, factor: float, method: str = "fourier") -> np.ndarray:
    """Zoom a (…, Y, X) image by ``factor`` (> 1 up-samples), box-aligned; returns float32.

    The output has ``round(n·factor)`` pixels per axis, so the exact factor is ``n_out/n_in``
    (use it, not ``factor``, for the new pixel size). ``method``: ``"fourier"`` or ``"bicubic"``.
    """
    a = np.asarray(image)
    if factor <= 0 or not np.isfinite(factor):
        raise InputError(f"Zoom factor must be a positive number, got {factor!r}.")
    out_shape = tuple(max(1, int(round(n * factor))) for n in a.shape[-2:])
    if method == "fourier":
        out = fourier_resize(a, out_shape)
    elif method == "bicubic":
        out = cubic_resize(a, out_shape)
    else:
        raise InputError(f"Unknown resampling method {method!r}; use 'fourier' or 'bicubic'.")
    return out.astype(np.float32)
