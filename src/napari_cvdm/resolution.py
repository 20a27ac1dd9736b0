"""Image resolution estimates: decorrelation analysis and Fourier ring correlation (numpy only).

* :func:`decorrelation_resolution` - single-image resolution by decorrelation analysis (Descloux,
  Grußmayer & Radenovic, *Nat. Methods* 16:918, 2019), an in-house reference implementation of the
  procedure described in docs/physics.md (e): edge apodisation, normalised spectrum, 50 disk radii,
  10 Gaussian high-pass copies, one refinement, the highest reliable peak.
* :func:`fourier_ring_correlation` - FRC of two images (Hann window, 1-px rings) with the 1/7 and
  half-bit thresholds.

Frequencies of the decorrelation curves are fractions of the Nyquist frequency (r = 1 at
1/(2Δx)); resolutions are in µm (``2Δx/k_c`` and ``1/q``). No torch, Qt or napari here.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import InputError

__all__ = [
    "DecorrelationResult",
    "FRCResult",
    "apodize_edges",
    "decorrelation_resolution",
    "fourier_ring_correlation",
    "half_bit_threshold",
]

_MIN_AMPLITUDE = 0.05  # peaks lower than this are numerical noise (reference implementation)
_PEAK_TOLERANCE = 1e-3  # a peak must stand this far above the minimum after it


@dataclass(frozen=True)
class DecorrelationResult:
    """Decorrelation analysis of one image.

    Attributes
    ----------
    resolution_um
        ``2·pixel_size_um / kc``; ``None`` when no reliable peak was found below Nyquist (a flat
        image, or structure up to the Nyquist frequency, e.g. white noise).
    kc
        Cut-off as a fraction of the Nyquist frequency (0–1]; 0 when no reliable peak.
    amplitude
        Peak height A0 of the un-filtered curve (an SNR-like contrast, 0–1).
    radii
        (N_r,) disk radii of ``curve``, fractions of Nyquist.
    curve
        (N_r,) decorrelation function d(r) of the un-filtered image.
    highpass_curves
        (N_g, N_r) curves of the refined high-pass copies (on ``highpass_radii``).
    highpass_radii
        (N_r,) radii of the refined sweep.
    """

    resolution_um: float | None
    kc: float
    amplitude: float
    radii: np.ndarray
    curve: np.ndarray
    highpass_curves: np.ndarray
    highpass_radii: np.ndarray


@dataclass(frozen=True)
class FRCResult:
    """Fourier ring correlation of two images.

    Attributes
    ----------
    frequencies
        (R,) ring frequencies in cycles/µm (ring i at i/(N·Δx)), from 0 to Nyquist.
    frc
        (R,) correlation per ring (ring 0 is the mean, after windowing).
    n_pixels
        (R,) pixel count of each ring.
    half_bit
        (R,) half-bit threshold curve.
    resolution_um
        1/q at the first crossing of 1/7 (linear interpolation), ``None`` if it never crosses.
    resolution_half_bit_um
        1/q at the first crossing of the half-bit curve, ``None`` if it never crosses.
    """

    frequencies: np.ndarray
    frc: np.ndarray
    n_pixels: np.ndarray
    half_bit: np.ndarray
    resolution_um: float | None
    resolution_half_bit_um: float | None


def _image_2d(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image, dtype=np.float64)
    if array.ndim != 2 or min(array.shape) < 16:
        raise InputError(f"{name} must be a 2-D image of at least 16x16 pixels; got {array.shape}.")
    if not np.all(np.isfinite(array)):
        raise InputError(f"{name} contains NaN or Inf values; remove or replace them first.")
    return array


def _positive(value: float, name: str) -> float:
    value = float(value)
    if not value > 0 or not np.isfinite(value):
        raise InputError(f"{name} must be a positive number of µm; got {value}.")
    return value


def apodize_edges(image: np.ndarray, width: int = 20) -> np.ndarray:
    """Mean-free copy of ``image`` (Y, X) with ``width``-px cosine-ramped borders."""
    array = np.asarray(image, dtype=np.float64)
    out = array - array.mean()
    for axis, n in enumerate(out.shape):
        w = max(1, min(width, n // 4))
        ramp = np.ones(n)
        edge = 0.5 - 0.5 * np.cos(np.pi * (np.arange(w) + 0.5) / w)
        ramp[:w] = edge
        ramp[n - w :] = edge[::-1]
        shape = [1, 1]
        shape[axis] = n
        out = out * ramp.reshape(shape)
    return out


def _normalised_radius(shape: tuple[int, int]) -> np.ndarray:
    """Spatial frequency of every FFT pixel as a fraction of Nyquist (1 at 0.5 cycles/px)."""
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return 2.0 * np.sqrt(fy**2 + fx**2)


def _peak(curve: np.ndarray) -> tuple[int, float]:
    """Index and height of the local maximum of d(r), ignoring a maximum at the last radius.

    A maximum at the end of the curve means the curve still rises there (no peak); then the
    highest earlier point that stands at least ``_PEAK_TOLERANCE`` above everything after it wins.
    """
    end = len(curve)
    index = int(np.argmax(curve[:end]))
    while index == end - 1:
        end -= 1
        if end == 0:
            return 0, 0.0
        index = int(np.argmax(curve[:end]))
        if curve[index] - curve[index:].min() <= _PEAK_TOLERANCE:
            end = index + 1  # not significant: discard it and look further down
    return index, float(curve[index])


def _curves(weights: np.ndarray, radius: np.ndarray, amplitude: np.ndarray, radii: np.ndarray):
    """d(r) for every row of ``weights`` (each a filter of the spectrum) at the disk ``radii``.

    With I = F·w and I_n = F/|F|: Re{I·I_n*} = |F|·w and |I_n|² = 1 where F ≠ 0, so each d(r) is a
    cumulative sum over pixels sorted by radius.
    """
    order = np.argsort(radius, kind="stable")
    r_sorted = radius[order]
    a_sorted = amplitude[order]
    nonzero = np.cumsum(a_sorted > 0)
    counts = np.searchsorted(r_sorted, radii, side="left")  # pixels with R < r
    out = np.zeros((weights.shape[0], len(radii)))
    for row, w in enumerate(weights):
        w_sorted = w[order]
        numerator = np.concatenate([[0.0], np.cumsum(a_sorted * w_sorted)])[counts]
        energy = np.sum((a_sorted * w_sorted) ** 2)
        n_norm = np.concatenate([[0], nonzero])[counts]
        denominator = np.sqrt(energy * n_norm)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[row] = np.where(denominator > 0, numerator / denominator, 0.0)
    return out


def _highpass(radius: np.ndarray, sigmas: np.ndarray) -> np.ndarray:
    """Transfer functions 1 − exp(−2π²σ²k²) of I − G_σ ⊛ I (σ in px, k = r/2 cycles/px)."""
    k2 = (radius / 2.0) ** 2
    return 1.0 - np.exp(-2.0 * np.pi**2 * sigmas[:, None] ** 2 * k2[None, :])


def decorrelation_resolution(
    image: np.ndarray,
    pixel_size_um: float = 1.0,
    n_radii: int = 50,
    n_highpass: int = 10,
    apodization_px: int = 20,
) -> DecorrelationResult:
    """Resolution of one image by decorrelation analysis (Descloux et al. 2019).

    Parameters
    ----------
    image
        (Y, X) image, any intensity scale, at least 16×16.
    pixel_size_um
        Pixel size Δx in µm; ``resolution_um = 2Δx/kc``. Pass 1 for a result in pixels.
    n_radii, n_highpass
        Radii per curve (N_r = 50) and high-pass copies per sweep (N_g = 10).
    apodization_px
        Width of the cosine edge apodisation.
    """
    array = _image_2d(image, "image")
    pixel = _positive(pixel_size_um, "pixel_size_um")
    spectrum = np.fft.fft2(apodize_edges(array, apodization_px))
    radius = _normalised_radius(array.shape).ravel()
    amplitude = np.abs(spectrum).ravel()
    amplitude[(radius >= 1.0) | (radius == 0)] = 0.0  # inside the Nyquist disk, no DC

    radii = np.linspace(0.0, 1.0, n_radii)
    curve = _curves(np.ones((1, radius.size)), radius, amplitude, radii)[0]
    index0, amplitude0 = _peak(curve)
    r0 = radii[index0]
    candidates = [(r0, amplitude0)]

    sigma_max = 2.0 / r0 if r0 > 0 else max(array.shape) / 4.0
    sigmas = np.geomspace(sigma_max, 0.14, n_highpass)
    sweep_radii = radii
    curves = np.zeros((0, n_radii))
    for refinement in range(2):
        curves = _curves(_highpass(radius, sigmas), radius, amplitude, sweep_radii)
        peaks = [_peak(c) for c in curves]
        kcs = np.array([sweep_radii[i] for i, _ in peaks])
        candidates += [(kc, a) for kc, (_, a) in zip(kcs, peaks)]
        if refinement == 0:
            best = int(np.flatnonzero(kcs == kcs.max())[-1])
            if best == 0:
                s1, s2 = sigmas[0] * 2.0, sigmas[0]
            else:
                s1, s2 = sigmas[best - 1], sigmas[best]
            sigmas = np.geomspace(s1, s2, n_highpass)
            step = radii[1] - radii[0]
            sweep_radii = np.linspace(
                max(kcs[best] - step, 0.0), min(kcs[best] + 0.4, 1.0), n_radii
            )

    reliable = [(kc, a) for kc, a in candidates if a >= _MIN_AMPLITUDE and kc > 0]
    if not reliable:
        kc_max = 0.0
        resolution = None
    else:
        kc_max = float(max(kc for kc, _ in reliable))
        resolution = 2.0 * pixel / kc_max
    return DecorrelationResult(
        resolution_um=resolution,
        kc=kc_max,
        amplitude=float(amplitude0),
        radii=radii,
        curve=curve,
        highpass_curves=curves,
        highpass_radii=sweep_radii,
    )


def half_bit_threshold(n_pixels: np.ndarray) -> np.ndarray:
    """Half-bit FRC threshold (0.2071 + 1.9102/√n)/(1.2071 + 0.9102/√n) for rings of n pixels."""
    root = np.sqrt(np.maximum(np.asarray(n_pixels, dtype=np.float64), 1.0))
    return (0.2071 + 1.9102 / root) / (1.2071 + 0.9102 / root)


def _first_crossing(freqs: np.ndarray, frc: np.ndarray, threshold: np.ndarray) -> float | None:
    """Frequency (linear interpolation) where ``frc`` first falls below ``threshold`` (ring ≥ 1)."""
    diff = frc - threshold
    for i in range(1, len(frc)):
        if diff[i] < 0:
            if i == 1 or diff[i - 1] <= 0:
                return float(freqs[i])
            t = diff[i - 1] / (diff[i - 1] - diff[i])
            return float(freqs[i - 1] + t * (freqs[i] - freqs[i - 1]))
    return None


def fourier_ring_correlation(
    image1: np.ndarray, image2: np.ndarray, pixel_size_um: float = 1.0
) -> FRCResult:
    """FRC(q) = Re Σ_ring F₁F₂* / sqrt(Σ|F₁|²·Σ|F₂|²) with a Hann window and 1-px rings.

    Both images must have the same shape; non-square images are cropped to their central square.
    Rings with no power in either image get FRC 0.
    """
    a = _image_2d(image1, "image1")
    b = _image_2d(image2, "image2")
    if a.shape != b.shape:
        raise InputError(f"FRC needs two images of the same shape; got {a.shape} and {b.shape}.")
    pixel = _positive(pixel_size_um, "pixel_size_um")
    n = min(a.shape)
    y0, x0 = (a.shape[0] - n) // 2, (a.shape[1] - n) // 2
    window = np.outer(np.hanning(n), np.hanning(n))
    f1 = np.fft.fft2((a[y0 : y0 + n, x0 : x0 + n] - a.mean()) * window)
    f2 = np.fft.fft2((b[y0 : y0 + n, x0 : x0 + n] - b.mean()) * window)
    rings = np.rint(_normalised_radius((n, n)) * (n / 2.0)).astype(np.int64).ravel()
    n_rings = n // 2 + 1
    keep = rings < n_rings
    rings = rings[keep]
    cross = np.bincount(rings, (f1 * np.conj(f2)).real.ravel()[keep], n_rings)
    p1 = np.bincount(rings, (np.abs(f1) ** 2).ravel()[keep], n_rings)
    p2 = np.bincount(rings, (np.abs(f2) ** 2).ravel()[keep], n_rings)
    counts = np.bincount(rings, minlength=n_rings)
    denominator = np.sqrt(p1 * p2)
    with np.errstate(invalid="ignore", divide="ignore"):
        frc = np.where(denominator > 0, cross / denominator, 0.0)
    freqs = np.arange(n_rings) / (n * pixel)
    half_bit = half_bit_threshold(counts)
    q7 = _first_crossing(freqs, frc, np.full(n_rings, 1.0 / 7.0))
    qh = _first_crossing(freqs, frc, half_bit)
    return FRCResult(
        frequencies=freqs,
        frc=frc,
        n_pixels=counts,
        half_bit=half_bit,
        resolution_um=None if q7 is None or q7 <= 0 else 1.0 / q7,
        resolution_half_bit_um=None if qh is None or qh <= 0 else 1.0 / qh,
    )
