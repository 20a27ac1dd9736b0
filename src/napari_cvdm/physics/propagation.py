"""Scalar free-space propagation of a complex field (angular spectrum and Fresnel).

One function family serves the QPI simulator, the TIE/CTF baselines and any physics operator.

Conventions
-----------
* Fields are complex128 arrays (Y, X) sampled with square pixels of ``pixel_size_um`` (µm);
  ``wavelength_um`` is the wavelength *in the medium* (µm); ``z_um`` is the propagation distance.
* Spatial frequencies come from ``numpy.fft.fftfreq(n, d=pixel_size_um)`` (cycles/µm), used
  unshifted (DC at index 0).
* Time dependence exp(−iωt), so a plane wave travelling to +z is exp(+ikz).
  **+z points downstream**: a positive phase bump (optically thicker at its centre) focuses like a
  converging lens, so the intensity at its centre obeys I(+dz) > I(−dz), and the transport of
  intensity equation holds as k·∂I/∂z = −∇·(I∇φ).
* Angular spectrum transfer: H = exp(i2πz·sqrt(1/λ² − |u|²)) for |u| < 1/λ, 0 otherwise (evanescent
  components are dropped, not decayed).
* Fresnel (paraxial) transfer: H = exp(−iπλz|u|²); the constant phase exp(ikz) is dropped.
* Pixel units: with u_px = u·Δx (cycles/pixel), the Fresnel transfer is exp(−iπD|u_px|²) with the
  dimensionless defocus D = λ·dz/Δx². Equal D and equal phase maps in pixels give identical
  intensities (with a detection pupil, NA·Δx/λ must match as well).
* Boundaries: by default the field is padded to twice its size (``pad="edge"`` or ``"mean"``) before
  the FFT and cropped afterwards, so wrap-around does not reach the image. ``pad="none"`` propagates
  periodically; only then is the propagator exactly unitary (energy-conserving, invertible, a group
  in z), which the property tests check.
* Optional detection pupil: circ(|u| ≤ NA/λ), applied in every plane (including z = 0).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.fft as sfft

from napari_cvdm.errors import InputError

PROPAGATION_METHODS = ("fresnel", "angular_spectrum")
PAD_MODES = ("edge", "mean", "none")

__all__ = [
    "PAD_MODES",
    "PROPAGATION_METHODS",
    "angular_spectrum_transfer",
    "defocus_number",
    "detection_pupil",
    "fresnel_transfer",
    "propagate",
    "propagate_planes",
    "propagate_px",
    "spatial_frequencies",
    "transfer_function",
]


def defocus_number(wavelength_um: float, dz_um: float, pixel_size_um: float) -> float:
    """Dimensionless defocus D = λ·dz/Δx² (λ 0.521, dz 1, Δx 0.21 µm give D ≈ 11.8)."""
    return float(wavelength_um) * float(dz_um) / float(pixel_size_um) ** 2


def spatial_frequencies(
    shape: tuple[int, int], pixel_size_um: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Unshifted spatial frequencies (cycles/µm) as broadcastable arrays uy (Y, 1) and ux (1, X)."""
    uy = np.fft.fftfreq(int(shape[0]), d=float(pixel_size_um))[:, None]
    ux = np.fft.fftfreq(int(shape[1]), d=float(pixel_size_um))[None, :]
    return uy, ux


def _u2(shape: tuple[int, int], pixel_size_um: float) -> np.ndarray:
    uy, ux = spatial_frequencies(shape, pixel_size_um)
    return uy**2 + ux**2


def fresnel_transfer(
    shape: tuple[int, int], wavelength_um: float, z_um: float, pixel_size_um: float
) -> np.ndarray:
    """Fresnel transfer function exp(−iπλz|u|²), complex128 (Y, X), unshifted."""
    return np.exp(-1j * np.pi * wavelength_um * z_um * _u2(shape, pixel_size_um))


def angular_spectrum_transfer(
    shape: tuple[int, int], wavelength_um: float, z_um: float, pixel_size_um: float
) -> np.ndarray:
    """Angular-spectrum transfer exp(i2πz·sqrt(1/λ² − |u|²)), evanescent 0; complex128 (Y, X)."""
    arg = 1.0 / wavelength_um**2 - _u2(shape, pixel_size_um)
    propagating = arg > 0
    kz = np.sqrt(np.where(propagating, arg, 0.0))
    return np.where(propagating, np.exp(2j * np.pi * z_um * kz), 0.0).astype(np.complex128)


def detection_pupil(
    shape: tuple[int, int], na: float, wavelength_um: float, pixel_size_um: float
) -> np.ndarray:
    """Binary pupil circ(|u| ≤ NA/λ) as float64 (Y, X), unshifted."""
    return (_u2(shape, pixel_size_um) <= (na / wavelength_um) ** 2).astype(np.float64)


def transfer_function(
    shape: tuple[int, int],
    wavelength_um: float,
    z_um: float,
    pixel_size_um: float,
    method: str = "fresnel",
    na: float | None = None,
) -> np.ndarray:
    """Transfer function of ``method`` (module docstring), times the pupil if ``na`` is given."""
    if method == "fresnel":
        h = fresnel_transfer(shape, wavelength_um, z_um, pixel_size_um)
    elif method == "angular_spectrum":
        h = angular_spectrum_transfer(shape, wavelength_um, z_um, pixel_size_um)
    else:
        raise InputError(
            f"Unknown propagation method {method!r}; use one of {', '.join(PROPAGATION_METHODS)}."
        )
    if na is not None:
        h = h * detection_pupil(shape, na, wavelength_um, pixel_size_um)
    return h


def _pad(field: np.ndarray, pad: str) -> tuple[np.ndarray, tuple[slice, slice]]:
    """Pad (Y, X) to (2Y, 2X) and return the padded field and the slices of the original."""
    if pad not in PAD_MODES:
        raise InputError(f"Unknown padding {pad!r}; use one of {', '.join(PAD_MODES)}.")
    ny, nx = field.shape
    if pad == "none":
        return field, (slice(0, ny), slice(0, nx))
    widths = ((ny // 2, ny - ny // 2), (nx // 2, nx - nx // 2))
    if pad == "edge":
        padded = np.pad(field, widths, mode="edge")
    else:
        padded = np.pad(field, widths, mode="constant", constant_values=field.mean())
    return padded, (slice(ny // 2, ny // 2 + ny), slice(nx // 2, nx // 2 + nx))


def _as_field(field: np.ndarray) -> np.ndarray:
    field = np.asarray(field)
    if field.ndim != 2:
        raise InputError(f"Expected a 2-D field (Y, X), got shape {field.shape}; pass one plane.")
    if not np.all(np.isfinite(field)):
        raise InputError(
            "The field contains NaN or Inf values; clean the input before propagating."
        )
    return field.astype(np.complex128, copy=False)


def propagate_planes(
    field: np.ndarray,
    wavelength_um: float,
    z_um: Sequence[float],
    pixel_size_um: float,
    method: str = "fresnel",
    pad: str = "edge",
    na: float | None = None,
) -> np.ndarray:
    """Propagate a field (Y, X) to every distance in ``z_um``; complex128 (Z, Y, X).

    The (padded) field is transformed once; each plane costs one inverse FFT.
    """
    field = _as_field(field)
    padded, crop = _pad(field, pad)
    spectrum = sfft.fft2(padded)
    out = np.empty((len(z_um), *field.shape), dtype=np.complex128)
    for i, z in enumerate(z_um):
        h = transfer_function(padded.shape, wavelength_um, float(z), pixel_size_um, method, na)
        out[i] = sfft.ifft2(spectrum * h)[crop]
    return out


def propagate(
    field: np.ndarray,
    wavelength_um: float,
    z_um: float,
    pixel_size_um: float,
    method: str = "fresnel",
    pad: str = "edge",
    na: float | None = None,
) -> np.ndarray:
    """Propagate a field (Y, X) by ``z_um`` (µm, +z downstream); complex128 (Y, X)."""
    return propagate_planes(field, wavelength_um, [z_um], pixel_size_um, method, pad, na)[0]


def propagate_px(field: np.ndarray, defocus: float, pad: str = "edge") -> np.ndarray:
    """Fresnel propagation in pixel units: exp(−iπ·defocus·|u_px|²), D = λ·dz/Δx² (signed)."""
    return propagate(field, wavelength_um=float(defocus), z_um=1.0, pixel_size_um=1.0, pad=pad)
