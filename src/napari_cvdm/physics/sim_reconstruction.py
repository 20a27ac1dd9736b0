"""2-D structured-illumination reconstruction of raw SIM frames (numpy/scipy), Gustafsson-style.

This reconstructs real raw data (e.g. BioSR / rDL-SIM ``.mrc`` files: 3 orientations × 3 phases)
with parameters estimated from the data itself; it is what ``benchmarks/real_biosr.py`` uses as
its reference. It is *a* SIM reconstruction, not a ground truth.

Model (continuous coordinates x in µm, coarse pixel i at x = i·Δ; FT convention
``D(k) = Σ_x d(x)·exp(−2πi k·x)``, k in cycles/µm). Frame n of orientation d is

    d_n(x) = [s(x)·(1 + m_d·cos(2π p_d·x + φ_n))] ⊛ h(x),
    D_n(k) = H(k)·[S(k) + c·e^{iφ_n}·S(k − p_d) + c·e^{−iφ_n}·S(k + p_d)],   c = m_d / 2.

Parameter estimation (:func:`estimate_parameters`):

1. **Clean and taper** (:func:`prepare_frames`): isolated dead/hot pixels are replaced by their
   3×3 median; a cosine edge taper of ``taper_px`` pulls each frame to its mean, so the modulated
   part is 0 at the border (no FFT edge cross). Each frame is scaled to its orientation's mean
   at k = 0 (laser/bleaching fluctuations: a gain error leaks band 0 into the side bands).
2. **Band separation** with the mixing matrix ``M[n] = (1, e^{iφ_n}, e^{−iφ_n})``:
   (B₀, B₊, B₋) = M⁻¹·(D_0, D_1, D_2); first with equal phase steps, then with the estimates.
3. **Alignment spectrum** R: what the side band B₊ is cross-correlated with. In TIRF-SIM k0 is
   close to the cut-off and the classic overlap of B₀ and the moved B₊ (the lens |k| < ρc,
   |k + p| < ρc) holds too little signal at low SNR (BioSR's MT.mrc: nothing above noise). R
   is therefore by default the spectrum of the Richardson–Lucy object of the 9-frame widefield
   on the 2× grid: positivity extrapolates it beyond the band-0 signal, where the *strong* low
   frequencies of B₊ land once moved by −p. R only aligns; it never enters the image.
4. **k0 search**: z²(q) = |Σ_k R*(k)·(B₊H)(k + q)|² / Σ_k |R(k)|²·|(B₊H)(k + q)|² for all q at
   once (FFT of real-space products, half-pixel steps); noise gives z² ~ Exp(1). The three
   orientations are searched jointly: common |k0| in ``k0_range``·2NA/λ, directions π/3 apart
   (either handedness), each at ±p; the maximum of Σ_d z_d² is the start.
5. **Sub-pixel k0**: per orientation, z(q) with B₊ moved by −q through a phase ramp
   ``exp(−2πi q·x)`` on the 2× grid (nothing wraps), maximised by Nelder–Mead to 0.01 px.
6. **Phases**: per frame, C_n = Σ_k R*(k)·(D_nH)(k + p) = L + A·e^{iφ_n} + X·e^{−iφ_n}; the
   C_n lie on a circle about L (the object's own correlation at p, common to all frames), so
   φ_n = arg(C_n − L) with L the centre of the circle through them (absolute phases, gains drop
   out); on clean data R = B₀ (Wiener-deconvolved) with L from the other orientations and X
   solved for. Deviations from equal steps are shrunk towards them by τ²/(τ² + SE²).
   Steps 2, 5 and 6 run twice.
7. **Modulation**: the complex band ratio a over the overlap lens (noise power taken off,
   |k| < 0.15 ρc left out so an unmodulated offset does not bias it); m = 2|a|, arg a = residual
   phase. An orientation whose lens is mostly noise takes the median m of those that are not.
8. **Intensity**: each orientation's mean frame is fitted to the 9-frame mean at low
   frequencies: per-orientation brightness differences of real data.

Reconstruction (:func:`reconstruct_sim`) on the 2× grid (pixel Δ/2), with the bands moved to their
true positions ``B̂_{d,m}(k) = B_{d,m}(k + m·p_d) = a_{d,m}·H(k + m·p_d)·S(k)`` (a₀ = 1):

    Ŝ(k) = A(k)·Σ_{d,m} conj(a_{d,m}·H(k + m p_d))·B̂_{d,m}(k) / (Σ_{d,m}|a_{d,m}H(k + m p_d)|² + w²)

with the apodisation ``A = (1 − |k|/(ρc + k0))₊^γ`` of :mod:`.otf` (ρc the OTF's support, k0 the
mean pattern frequency). The effective transfer function is :func:`reconstruction_otf`; its support
is the widefield disc plus the six copies shifted by ±p_d. Output grid: ``grid="box"`` (default)
puts output pixel j at input coordinate j/2 − 1/4 (the project's 2× convention: bicubic with
``align_corners=False``, 2×2 binning); ``grid="nodes"`` at j/2.

Arrays are (Y, X); frames (9, Y, X) orientation-major (BioSR order) or (3, 3, Y, X); lengths in
µm, frequencies in cycles/µm. Default optics: the measured BioSR TIRF488 OTF
(:func:`.otf.measured_otf`), NA 1.49, emission 0.525 µm. No torch, Qt or napari here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage, optimize

from ..errors import InputError
from .otf import Optics, otf_function
from .psf import airy_cutoff

__all__ = [
    "DEFAULT_OPTICS",
    "DEFAULT_WIENER_W",
    "OrientationParameters",
    "SIMReconstruction",
    "estimate_parameters",
    "prepare_frames",
    "reconstruct_sim",
    "reconstruction_otf",
    "separate_bands",
    "simulate_raw_sim",
]

#: the BioSR Multi-SIM microscope: measured TIRF488 OTF, 1.49 NA, ~525 nm emission
DEFAULT_OPTICS = Optics("measured", 1.49, 0.525)
#: Wiener parameter of :func:`reconstruct_sim` (OTF units); see docs/benchmarks.md
DEFAULT_WIENER_W = 0.1
#: phases come from the band-0 alignment when all its standard errors are below this (rad)
_BAND0_PHASE_SE = 0.05
#: modulation used when no orientation's band overlap determines it
DEFAULT_MODULATION = 0.5
#: frequencies below this fraction of ρc are left out of the modulation / intensity fits
_LOW_CUT = 0.15


@dataclass(frozen=True)
class OrientationParameters:
    """SIM parameters of one pattern orientation.

    ``k0``: pattern vector (ky, kx) in cycles/µm; ``phases_rad``: phase φ_n of each frame (rad,
    relative to x = 0 at the centre of pixel [0, 0]); ``modulation``: m (0–1: the contrast of
    the pattern in the data); ``band_phase_rad``: residual phase of band +1 after separation
    (≈ 0 when the phases are right); ``correlation``: z of the band cross-correlation at k0
    (in noise standard deviations; noise alone stays below about 4); ``intensity_scale``:
    factor applied to this orientation's frames to match the 9-frame mean; ``frame_gains``:
    each frame's intensity relative to its orientation's mean (divided out);
    ``phase_errors_rad``, ``modulation_error``: standard errors; ``modulation_source``:
    ``"band overlap"``, a fallback, or ``"given"``.
    """

    k0: tuple[float, float]
    phases_rad: tuple[float, ...]
    modulation: float = 1.0
    band_phase_rad: float = 0.0
    correlation: float = float("nan")
    intensity_scale: float = 1.0
    phase_errors_rad: tuple[float, ...] = ()
    frame_gains: tuple[float, ...] = ()
    modulation_error: float = float("nan")
    modulation_source: str = "given"

    @property
    def magnitude(self) -> float:
        """|k0| in cycles/µm."""
        return float(np.hypot(*self.k0))

    @property
    def angle_rad(self) -> float:
        """Direction of k0, atan2(ky, kx) folded into [0, π)."""
        return float(np.arctan2(self.k0[0], self.k0[1]) % np.pi)

    def to_metadata(self, cutoff: float | None = None) -> dict[str, Any]:
        out = {
            "k0_cycles_per_um": [float(v) for v in self.k0],
            "k0_magnitude_cycles_per_um": self.magnitude,
            "angle_deg": float(np.degrees(self.angle_rad)),
            "phases_rad": [float(v) for v in self.phases_rad],
            "phase_steps_deg": [
                float(np.degrees((b - a) % (2 * np.pi)))
                for a, b in zip(self.phases_rad[:-1], self.phases_rad[1:], strict=True)
            ],
            "modulation": float(self.modulation),
            "band_phase_rad": float(self.band_phase_rad),
            "correlation": float(self.correlation),
            "intensity_scale": float(self.intensity_scale),
            "phase_standard_errors_rad": [float(v) for v in self.phase_errors_rad],
            "frame_gains": [float(v) for v in self.frame_gains],
            "modulation_standard_error": float(self.modulation_error),
            "modulation_source": self.modulation_source,
        }
        if cutoff:
            out["k0_fraction_of_2na_over_lambda"] = self.magnitude / cutoff
        return out


@dataclass
class SIMReconstruction:
    """Result of :func:`reconstruct_sim`.

    ``image``: (2Y, 2X) float32 on the 2× grid, in the frames' intensity units per output pixel
    (values, not sums: a uniform frame of value v gives ≈ v). ``pixel_size_um``: Δ/2.
    ``parameters``: one :class:`OrientationParameters` per orientation (estimated or given).
    ``widefield``: (Y, X) float32 mean of the 9 raw frames (BioSR's widefield).
    """

    image: np.ndarray
    pixel_size_um: float
    parameters: list[OrientationParameters]
    widefield: np.ndarray
    settings: dict[str, Any] = field(default_factory=dict)

    def to_metadata(self) -> dict[str, Any]:
        cutoff = self.settings.get("cutoff_2na_over_lambda")
        return {
            "pixel_size_um": self.pixel_size_um,
            "orientations": [p.to_metadata(cutoff) for p in self.parameters],
            **self.settings,
        }


# --- frames -----------------------------------------------------------------------------------


def _as_frames(frames: Any, n_orientations: int, n_phases: int) -> np.ndarray:
    """(n_orientations, n_phases, Y, X) float64 view of (n_o·n_p, Y, X) or (n_o, n_p, Y, X)."""
    arr = np.asarray(frames)
    n = n_orientations * n_phases
    if arr.ndim == 3 and arr.shape[0] == n:
        arr = arr.reshape(n_orientations, n_phases, *arr.shape[1:])
    if arr.ndim != 4 or arr.shape[:2] != (n_orientations, n_phases):
        raise InputError(
            f"Raw SIM data must be ({n}, Y, X) or ({n_orientations}, {n_phases}, Y, X) frames, "
            f"orientation-major; got shape {arr.shape}."
        )
    if min(arr.shape[-2:]) < 32:
        raise InputError(f"Raw SIM frames must be at least 32×32 pixels; got {arr.shape[-2:]}.")
    arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise InputError("The raw SIM frames contain NaN or Inf values; remove them first.")
    return arr


def _taper(shape: tuple[int, int], width: int) -> np.ndarray:
    """Separable cosine edge window (Y, X): 0 at the outermost pixel, 1 from ``width`` inwards."""

    def ramp(n: int) -> np.ndarray:
        w = np.ones(n)
        if width > 0:
            t = 0.5 - 0.5 * np.cos(np.pi * np.arange(width) / width)
            w[:width] = t
            w[n - width :] = t[::-1]
        return w

    return ramp(shape[0])[:, None] * ramp(shape[1])[None, :]


def prepare_frames(
    frames: Any, n_orientations: int = 3, n_phases: int = 3, taper_px: int = 16, outlier_z=8.0
) -> tuple[np.ndarray, int]:
    """Cleaned, edge-tapered frames (n_o, n_p, Y, X) float64 and the number of pixels replaced.

    A pixel is replaced by its 3×3 median when it differs from it by more than ``outlier_z``
    robust standard deviations (1.4826·MAD of the frame's median residual) *and* by more than
    half the median: isolated dead or saturated camera pixels (BioSR's MT.mrc has a few exact
    0s and a 65535), never band-limited structure (a PSF ≥ 2 px wide cannot jump that much).
    Then each frame is pulled to its mean by a cosine edge window ``taper_px`` wide.
    """
    arr = _as_frames(frames, n_orientations, n_phases).copy()
    replaced = 0
    window = _taper(arr.shape[-2:], int(taper_px))
    for idx in np.ndindex(*arr.shape[:2]):
        frame = arr[idx]
        med = ndimage.median_filter(frame, size=3, mode="reflect")
        resid = frame - med
        sigma = 1.4826 * float(np.median(np.abs(resid - np.median(resid))))
        if sigma > 0:
            bad = (np.abs(resid) > outlier_z * sigma) & (np.abs(resid) > 0.5 * np.abs(med))
            replaced += int(bad.sum())
            frame[bad] = med[bad]
        mean = float(frame.mean())
        arr[idx] = mean + window * (frame - mean)
    return arr, replaced


# --- grids and shifts -----------------------------------------------------------------------


def _freqs(shape: tuple[int, int], pixel_um: float) -> tuple[np.ndarray, np.ndarray]:
    return (
        sfft.fftfreq(shape[0], d=pixel_um)[:, None],
        sfft.fftfreq(shape[1], d=pixel_um)[None, :],
    )


def _embed(spectra: np.ndarray, factor: int = 2) -> np.ndarray:
    """Zero-pad spectra (..., Y, X) (FFT layout) to (..., fY, fX); values are kept in real space."""
    ny, nx = spectra.shape[-2:]
    out = np.zeros((*spectra.shape[:-2], factor * ny, factor * nx), dtype=np.complex128)
    # non-negative then negative frequencies; the Nyquist row/column of an even size is dropped
    ys = (slice(0, (ny + 1) // 2), slice(ny - (ny - 1) // 2, None))
    xs = (slice(0, (nx + 1) // 2), slice(nx - (nx - 1) // 2, None))
    for sy in ys:
        for sx in xs:
            fy = sy if sy.start == 0 else slice(factor * ny - (ny - 1) // 2, None)
            fx = sx if sx.start == 0 else slice(factor * nx - (nx - 1) // 2, None)
            out[..., fy, fx] = spectra[..., sy, sx]
    return out * factor * factor


class _Shifter:
    """Moves a band on the fine grid: B(k) → B(k + q) via ``b(x)·exp(−2πi q·x)``."""

    def __init__(self, band_fine: np.ndarray, pixel_um: float) -> None:
        self.field = sfft.ifft2(band_fine)
        ny, nx = band_fine.shape
        self.y = np.arange(ny) * pixel_um
        self.x = np.arange(nx) * pixel_um

    def __call__(self, q: np.ndarray) -> np.ndarray:
        ramp = np.exp(-2j * np.pi * q[0] * self.y)[:, None] * np.exp(-2j * np.pi * q[1] * self.x)
        return sfft.fft2(self.field * ramp, workers=1)


def _upsample_periodic(values: np.ndarray, factor: int) -> np.ndarray:
    """Linear interpolation of a periodic (FFT-layout) 2-D array onto a ``factor``× finer grid:
    output [i·f + j] = value at i + j/f, wrapping at the end."""
    out = values
    for axis in (0, 1):
        following = np.roll(out, -1, axis=axis)
        parts = [(1.0 - t) * out + t * following for t in np.arange(factor) / factor]
        stacked = np.stack(parts, axis=axis + 1)
        shape = list(out.shape)
        shape[axis] *= factor
        out = stacked.reshape(shape)
    return out


def _mixing(phases: np.ndarray) -> np.ndarray:
    """Mixing matrix M (n_p, 3): row n = (1, e^{iφ_n}, e^{−iφ_n})."""
    e = np.exp(1j * np.asarray(phases, dtype=np.float64))
    return np.stack([np.ones_like(e), e, np.conj(e)], axis=1)


def separate_bands(spectra: np.ndarray, phases: Any) -> np.ndarray:
    """Bands (3, ...) = (B₀, B₊, B₋) from the frame spectra (n_p, ...) of one orientation.

    ``phases``: φ_n of each frame (rad); the least-squares inverse of :func:`_mixing` is used,
    so more than 3 phases are allowed. B₊ holds c·H(k)·S(k − p), B₋ holds c·H(k)·S(k + p).
    """
    spectra = np.asarray(spectra)
    unmix = np.linalg.pinv(_mixing(phases))
    return np.tensordot(unmix, spectra, axes=(1, 0))


# --- estimation -----------------------------------------------------------------------------


class _Orientation:
    """Working data of one orientation: frame spectra (coarse grid) and OTF on the 2× grid."""

    def __init__(self, frames: np.ndarray, pixel_um: float, optics: Optics, support: float):
        self.n_phases = frames.shape[0]
        self.shape = frames.shape[-2:]
        self.pixel = pixel_um
        self.fine_pixel = pixel_um / 2.0
        spectra = sfft.fft2(frames)
        ky, kx = _freqs(self.shape, pixel_um)
        rho = np.sqrt(ky**2 + kx**2)
        self.mask = rho < support
        # noise power per pixel of one frame's spectrum, from beyond the OTF support
        outside = rho > 1.05 * support
        self.noise = float(np.mean(np.abs(spectra[:, outside]) ** 2)) if outside.any() else 0.0
        # frame-to-frame intensity (laser, bleaching): each frame scaled to the orientation's
        # mean at k = 0, where the side bands hold only c·S(∓p) ≪ S(0)
        dc = spectra[:, 0, 0].real
        self.gains = dc / dc.mean()
        self.spectra = spectra / self.gains[:, None, None] * self.mask
        # where band 0 is strong and the side bands average out in a mean over the phases
        self.gain_region = (rho > 0.05 * support) & (rho < 0.3 * support)
        self.fine_shape = (2 * self.shape[0], 2 * self.shape[1])
        self.fky, self.fkx = _freqs(self.fine_shape, self.fine_pixel)
        self.otf = otf_function(optics, self.fine_shape, self.fine_pixel)
        frho = np.sqrt(self.fky**2 + self.fkx**2)
        self.inner = frho < support  # where band 0 lives
        self.reach = frho < 1.9 * support  # where an alignment spectrum may live
        self.support = support
        self.low = frho < _LOW_CUT * support
        self.dc = frho < 0.05 * support
        self.ring = np.rint(frho * self.shape[0] * pixel_um).astype(np.int64)  # 1/(NΔ) rings
        self.h0 = self.otf(self.fky, self.fkx)

    def otf_at(self, q: np.ndarray) -> np.ndarray:
        """H(k + q) on the fine grid."""
        return self.otf(self.fky + q[0], self.fkx + q[1])

    def bands_fine(self, phases: np.ndarray) -> np.ndarray:
        return _embed(separate_bands(self.spectra, phases))

    def band_noise(self, phases: np.ndarray) -> np.ndarray:
        """Noise power per pixel of (B₀, B₊, B₋) embedded in the 2× grid (values ×4 → ×16)."""
        unmix = np.linalg.pinv(_mixing(phases))
        return 16.0 * self.noise * np.sum(np.abs(unmix) ** 2, axis=1)

    def object_estimate(self, b0: np.ndarray, noise0: float) -> np.ndarray:
        """Ŝ₀ = B₀·f/H: band 0 deconvolved with the Wiener factor f = max(0, 1 − σ₀²/P₀(|k|))
        (P₀ the ring-averaged power of B₀, σ₀² its noise power), 0 below 0.05 ρc (the DC and
        its taper leakage carry no alignment information) and where H < 10⁻³."""
        power = np.bincount(self.ring.ravel(), weights=np.abs(b0.ravel()) ** 2)
        counts = np.bincount(self.ring.ravel())
        mean = power / np.maximum(counts, 1)
        safe = np.where(mean > 0, mean, 1.0)
        wiener = np.where(mean > 0, np.clip(1.0 - noise0 / safe, 0.0, None), 0.0)[self.ring]
        h = np.abs(self.h0)
        out = np.where(h > 1e-3, b0 * wiener / np.maximum(h, 1e-3), 0.0)
        return np.where(self.inner & ~self.dc, out, 0.0)

    def set_reference(self, spectrum: np.ndarray, noise: float) -> None:
        """Band 0 to correlate against (coarse spectrum, this orientation's units) and its noise
        power per coarse pixel: the mean of the *other* orientations, which holds none of this
        orientation's side bands whatever its phases (its own mean leaks them when the phase
        steps are unequal). Default: this orientation's mean."""
        self.reference = _embed(spectrum * self.mask)
        self.reference_noise = 16.0 * float(noise)
        self.object = self.object_estimate(self.reference, self.reference_noise)

    def prepared(self, phases: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(alignment spectrum, bands (B₀, B₊, B₋) of ``phases`` on the fine grid)."""
        if getattr(self, "object", None) is None:
            self.set_reference(self.spectra.mean(axis=0), self.noise / self.n_phases)
        align = getattr(self, "align", None)
        return (self.object if align is None else align), self.bands_fine(phases)

    def set_alignment(self, spectrum_fine: np.ndarray) -> None:
        """Object spectrum on the fine grid (nodes convention) that the side bands are aligned
        against (k0 search, sub-pixel k0, phases): e.g. the Richardson–Lucy object of the
        widefield, whose positivity-driven extrapolation beyond the band-0 signal overlaps the
        strong low frequencies of a side band when k0 is close to the cut-off. Default: Ŝ₀."""
        self.align = np.where(self.dc, 0.0, spectrum_fine)

    def zmap(self, phases: np.ndarray, pad: int = 2) -> tuple[np.ndarray, float]:
        """z²(q) on a frequency grid ``pad``× finer than 1/(NΔ) (FFT layout, step 1/(pad·NΔ)).

        z(q) = |C(q)|/sqrt(V(q)), C(q) = Σ_k R*(k)·(B₊H)(k + q) (the alignment spectrum R —
        default Ŝ₀ — against band +1 moved by −q and weighted by its OTF: the matched weighting
        for a weak side band) and V(q) = Σ_k |R(k)|²·|(B₊H)(k + q)|², the variance of C when
        the phases do not line up: z² ~ Exp(1) away from the pattern vector. All q at once:
        products in real space, zero padded. Returns (z², frequency step)."""
        s0, bands = self.prepared(phases)
        bh1 = bands[1] * self.h0
        shape = (pad * self.fine_shape[0], pad * self.fine_shape[1])

        def correlate(a: np.ndarray, b: np.ndarray) -> np.ndarray:
            field = np.conj(sfft.ifft2(a)) * sfft.ifft2(b)
            return sfft.fft2(field, s=shape, workers=1)  # zero-padded at the end

        cross = correlate(s0, bh1)
        # V at the integer shifts (exact there), linearly interpolated to the finer grid: the
        # zero-padded transform of a correlation of powers rings between the integer shifts
        field = np.conj(sfft.ifft2(np.abs(s0) ** 2)) * sfft.ifft2(np.abs(bh1) ** 2)
        var = _upsample_periodic(sfft.fft2(field, workers=1).real, pad)
        size = self.fine_shape[0] * self.fine_shape[1]
        var = np.clip(var, 1e-6 * float(var.max()), None)  # far outside: no overlap
        return np.abs(cross) ** 2 * size / var, 1.0 / (shape[0] * self.fine_pixel)

    @staticmethod
    def _z(s0: np.ndarray, moved: np.ndarray) -> tuple[complex, float]:
        cross = np.vdot(s0, moved)
        var = float(np.sum(np.abs(s0) ** 2 * np.abs(moved) ** 2))
        return cross, abs(cross) / np.sqrt(var) if var > 0 else 0.0

    def refine(
        self, phases: np.ndarray, q: np.ndarray, search: bool = True
    ) -> tuple[np.ndarray, float]:
        """Sub-pixel k0: maximise z(q) of :meth:`zmap` (Nelder–Mead in units of the frequency
        pixel 1/(NΔ), after the best of the 3×3 integer neighbours when ``search``), to 0.01 px.
        Returns (q, z(q))."""
        s0, bands = self.prepared(phases)
        inner = self.reach
        s0 = s0[inner]
        shifter = _Shifter(bands[1], self.fine_pixel)
        dk = 1.0 / (self.shape[0] * self.pixel)
        q = np.asarray(q, dtype=np.float64)

        def cost(v: np.ndarray) -> float:
            qq = q + v * dk
            return -self._z(s0, (shifter(qq) * self.otf_at(qq))[inner])[1]

        grid = [np.array([a, b], float) for a in (-1, 0, 1) for b in (-1, 0, 1)] if search else []
        start = min(grid, key=cost) if search else np.zeros(2)
        simplex = start + np.array([[0.0, 0.0], [0.4, 0.0], [0.0, 0.4]])
        res = optimize.minimize(
            cost,
            start,
            method="Nelder-Mead",
            options={"xatol": 1e-2, "fatol": 1e-6, "maxfev": 80, "initial_simplex": simplex},
        )
        return q + res.x * dk, -float(res.fun)

    def phases_at(self, q: np.ndarray, band0: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Per-frame phase and its standard error (rad), from the frames themselves.

        With the raw frame D_n moved by −q, C_n = Σ_k R*(k)·(D_nH)(k + q) = L + e^{iφ_n}·A +
        e^{−iφ_n}·X (R the alignment spectrum): A = c·Σ R*S·H(k+q)² is real and positive when
        R is a faithful object estimate (so φ_n is the absolute phase); L, the object's own
        correlation at q (band 0 of every frame), is the same for all frames and can be much
        larger than A; X, the correlation at 2q, is a few % of A and is neglected. So the C_n
        lie on a circle about L: L is the centre of the circle through them (least squares for
        more than 3 phases) and φ_n = arg(C_n − L). ``band0``: R = Ŝ₀, L from the band 0 of the
        other orientations (:meth:`set_reference`) and, when every standard error is below
        0.05 rad, X solved for too (:func:`_ellipse_phases`): unbiased when the band overlap
        itself is strong, weak otherwise; infinite errors when the frames' own circle centre
        disagrees with L by more than 20 % of the radius (the orientations differ). A frame's
        gain scales C_n about 0 and leaves φ_n nearly alone. Standard error: √2 × noise
        standard deviation of C_n / |C_n − L|."""
        s0, _ = self.prepared(np.zeros(self.n_phases))
        if band0:  # align against Ŝ₀ (the overlap lens only) instead of the alignment spectrum
            s0 = self.object
        # the side band's strong low frequencies pair with |k| ≈ |q|; leaving out |k| beyond
        # |q| + ρc/2 drops most of X (which pairs |k| ≈ 2|q| with them)
        inner = self.reach & (np.hypot(self.fky, self.fkx) < np.hypot(*q) + 0.5 * self.support)
        s0 = s0[inner]
        hq = self.otf_at(q)

        def correlate(spectrum: np.ndarray) -> complex:
            return complex(np.vdot(s0, (_Shifter(spectrum, self.fine_pixel)(q) * hq)[inner]))

        signals = np.array([correlate(spectrum) for spectrum in _embed(self.spectra)])
        noise = 16.0 * self.noise * float(np.sum(np.abs(s0) ** 2 * np.abs(hq[inner]) ** 2))
        if band0:
            # L from the other orientations' band 0; X solved for when the data are clean
            centre = correlate(self.reference)
            radius = np.abs(signals - centre)
            errors = np.sqrt(noise) / np.maximum(radius, 1e-300)
            # the other orientations must describe this one's band 0 (no motion, bleaching):
            # the frames' own circle centre has to agree with L
            if abs(_circle_centre(signals) - centre) > 0.2 * float(np.mean(radius)):
                return np.angle(signals - centre), np.full(signals.size, np.inf)
            angles = np.angle(signals - centre)
            if np.max(errors) < _BAND0_PHASE_SE:
                angles = _ellipse_phases(signals - centre, angles)
            return angles, errors
        centre = _circle_centre(signals)
        # the fitted centre carries the noise too: ~√2 × the noise over the radius
        errors = np.sqrt(2.0 * noise) / np.maximum(np.abs(signals - centre), 1e-300)
        return np.angle(signals - centre), errors

    def band_ratio(self, phases: np.ndarray, q: np.ndarray) -> tuple[complex, float, float]:
        """a = c·e^{iψ} from the band overlap: X₀ = B₀·H(k+q), X₁ = B₊(k+q)·H(k) over the lens
        H(k)·H(k+q) > 0.01 (|k| ≥ 0.15 ρc, so an unmodulated offset does not enter), a =
        Σ X₀*X₁ / (Σ|X₀|² − σ₀²·ΣH(k+q)²) with the noise power σ₀² of B₀ taken off.

        Returns (a, its standard error, the signal fraction of Σ|X₀|²): when the fraction is
        small the overlap is mostly noise and |a| is poorly determined."""
        bands = self.bands_fine(phases)
        noise = self.band_noise(phases)
        hq = np.abs(self.otf_at(q))
        h0 = np.abs(self.h0)
        region = (h0 * hq > 0.01) & self.inner & ~self.low
        if not region.any():
            return 0j, float("inf"), 0.0
        x0 = (bands[0] * hq)[region]
        x1 = (_Shifter(bands[1], self.fine_pixel)(q) * h0)[region]
        raw = float(np.sum(np.abs(x0) ** 2))
        den = raw - noise[0] * float(np.sum(hq[region] ** 2))
        if den <= 0:
            return 0j, float("inf"), 0.0
        a = complex(np.vdot(x0, x1) / den)
        error = float(np.sqrt(raw * noise[1] * float(np.mean(h0[region] ** 2))) / den)
        return a, error, den / raw


def _rl_alignment(
    widefield: np.ndarray, pixel_size_um: float, optics: Optics, iterations: int
) -> np.ndarray:
    """Spectrum (2Y, 2X) of the Richardson–Lucy object of ``widefield`` on the 2× grid, moved
    from the box to the nodes convention (−½ fine pixel), mean removed. Used only to align the
    side bands (:meth:`_Orientation.set_alignment`), never as image content."""
    from .sr_baselines import richardson_lucy_iterates

    wf = np.asarray(widefield, dtype=np.float64)
    wf = wf - min(0.0, float(wf.min()))
    obj = richardson_lucy_iterates(
        wf, pixel_size_um=pixel_size_um, na=optics.na, wavelength_um=optics.wavelength_um,
        checkpoints=[max(1, iterations)], offset_adu=0.0, gain_adu_per_e=1.0, sim_filter=False,
    )[max(1, iterations)].astype(np.float64)  # fmt: skip
    ky, kx = _freqs(obj.shape, pixel_size_um / 2.0)
    return sfft.fft2(obj - obj.mean()) * np.exp(1j * np.pi * (ky + kx) * pixel_size_um / 2.0)


def _circle_centre(points: np.ndarray) -> complex:
    """Centre of the circle through complex ``points`` (3: the circumcentre; more: the
    algebraic least-squares fit |z|² = 2·Re(c̄z) + k)."""
    origin = complex(np.mean(points))
    scale = float(np.max(np.abs(points - origin))) or 1.0
    z = (points - origin) / scale  # well conditioned
    x, y = z.real, z.imag
    design = np.stack([2.0 * x, 2.0 * y, np.ones_like(x)], axis=1)
    sol, *_ = np.linalg.lstsq(design, x * x + y * y, rcond=None)
    return origin + scale * complex(sol[0], sol[1])


def _ellipse_phases(signals: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Phases φ_n with C'_n = A·e^{iφ_n} + X·e^{−iφ_n} (A > 0 real, X complex, unknown).

    z ↦ A·z + X·z̄ is the symmetric real 2×2 map M = A·I + [[Re X, Im X], [Im X, −Re X]], so
    the C'_n are images of unit vectors: C'ᵀ·Q·C' = 1 with Q = M⁻², three linear equations in
    the three entries of Q (least squares for more phases). M = Q^{−1/2}; u_n = M⁻¹·C'_n. Falls
    back to ``fallback`` when Q is not positive definite or |X| > A/2 (noise, degenerate)."""
    scale = float(np.max(np.abs(signals))) or 1.0
    z = signals / scale
    x, y = z.real, z.imag
    design = np.stack([x * x, 2.0 * x * y, y * y], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.ones(z.size), rcond=None)
    q = np.array([[coef[0], coef[1]], [coef[1], coef[2]]])
    values, vectors = np.linalg.eigh(q)
    if not np.all(values > 0):
        return fallback
    m = vectors @ np.diag(values**-0.5) @ vectors.T  # symmetric positive Q^{-1/2}
    a, x_mag = 0.5 * np.trace(m), np.hypot(0.5 * (m[0, 0] - m[1, 1]), m[0, 1])
    if x_mag > 0.5 * a:
        return fallback
    u = np.linalg.solve(m, np.stack([x, y]))
    return np.arctan2(u[1], u[0])


def _joint_search(
    maps: list[tuple[np.ndarray, float]],
    rmin: float,
    rmax: float,
    n_orientations: int,
) -> list[np.ndarray]:
    """Pattern vectors (one per orientation) maximising Σ_d z_d² over a common |k0| in
    [rmin, rmax] and orientations π/n_o apart (either handedness), each at +p or −p (the
    band order depends on the phase order); half-pixel steps. A weak pattern, invisible in each
    orientation alone, is found when the orientations agree (noise: Σ z² ~ Gamma(n_o))."""
    z2, step = maps[0]
    shape = z2.shape
    radii = np.arange(rmin, rmax + 0.5 * step, step)
    n_theta = int(np.ceil(np.pi * rmax / step))
    theta = np.arange(n_theta) * (np.pi / n_theta)
    best, best_vectors = -1.0, None
    for hand in (1.0, -1.0):
        total = np.zeros((radii.size, theta.size))
        chosen = []
        for d, (zd, _) in enumerate(maps):
            ang = theta[None, :] + hand * d * np.pi / n_orientations
            ky = radii[:, None] * np.sin(ang)
            kx = radii[:, None] * np.cos(ang)
            iy = np.rint(ky / step).astype(np.int64) % shape[0]
            ix = np.rint(kx / step).astype(np.int64) % shape[1]
            plus, minus = zd[iy, ix], zd[-iy % shape[0], -ix % shape[1]]
            total += np.maximum(plus, minus)
            chosen.append(np.where(plus >= minus, 1.0, -1.0))
        i, j = np.unravel_index(int(np.argmax(total)), total.shape)
        if total[i, j] > best:
            best = float(total[i, j])
            best_vectors = []
            for d in range(n_orientations):
                ang = theta[j] + hand * d * np.pi / n_orientations
                vec = chosen[d][i, j] * radii[i] * np.array([np.sin(ang), np.cos(ang)])
                best_vectors.append(vec)
    return best_vectors


def _shrink_phases(
    raw: np.ndarray, errors: np.ndarray, steps: np.ndarray, prior: float
) -> np.ndarray:
    """Phases φ_n = ψ + step_n + δ_n: ψ the precision-weighted circular mean of raw − step,
    δ_n = wrap(raw_n − step_n − ψ)·τ²/(τ² + SE_n²) (Gaussian prior τ on the step errors)."""
    weights = 1.0 / np.maximum(errors, 1e-6) ** 2
    psi = float(np.angle(np.sum(weights * np.exp(1j * (raw - steps)))))
    dev = np.angle(np.exp(1j * (raw - steps - psi)))
    if prior <= 0:
        return psi + steps
    return psi + steps + dev * prior**2 / (prior**2 + errors**2)


def _check_optics(pixel_size_um: float, optics: Optics) -> float:
    if not (np.isfinite(pixel_size_um) and pixel_size_um > 0):
        raise InputError(f"pixel_size_um must be a positive number of µm, got {pixel_size_um!r}.")
    support = float(optics.cutoff)
    nyquist = 0.5 / pixel_size_um
    if support >= nyquist:
        raise InputError(
            f"The OTF support ({support:.2f} cycles/µm) reaches the Nyquist frequency of "
            f"{pixel_size_um} µm pixels ({nyquist:.2f}); SIM frames must be sampled finer."
        )
    return support


# Over 80 lines by choice (issue 12): a public entry point whose 12 options are documented in
# one docstring (half its length), and a body that is the module docstring's estimation steps
# in order over shared per-orientation state; split, the steps would pass that state around.
def estimate_parameters(
    frames: Any,
    pixel_size_um: float,
    optics: Optics = DEFAULT_OPTICS,
    *,
    n_orientations: int = 3,
    n_phases: int = 3,
    k0_range: tuple[float, float] = (0.5, 1.2),
    taper_px: int = 16,
    prepared: bool = False,
    iterations: int = 2,
    phase_prior_rad: float = 0.1,
    alignment: str = "rl",
    rl_iterations: int = 50,
) -> list[OrientationParameters]:
    """Estimate k0, phases, modulation and intensity of every orientation from the raw frames.

    ``frames``: (n_o·n_p, Y, X) orientation-major or (n_o, n_p, Y, X), any intensity units;
    ``pixel_size_um``: camera pixel (µm); ``optics``: OTF used for the band weights (default the
    measured BioSR OTF); ``k0_range``: search annulus as fractions of 2NA/λ (at most 1.9× the
    OTF support); ``prepared``: the frames already went through :func:`prepare_frames`;
    ``iterations``: rounds of (sub-pixel k0, phases); ``phase_prior_rad``: standard deviation
    of the phase-step errors expected of the instrument (the estimated deviations from equal
    steps are shrunk by τ²/(τ² + SE²), so noisy data keeps near-equal steps and clean data
    gets its own); ``alignment``: what the side bands are aligned against, ``"rl"`` (the
    Richardson–Lucy object of the 9-frame widefield, ``rl_iterations`` iterations, nominal
    Airy optics of ``optics.na``/``optics.wavelength_um``) or ``"widefield"`` (band 0 of the
    other orientations, Wiener-deconvolved). See the module docstring for the method.
    """
    if alignment not in ("rl", "widefield"):
        raise InputError(f"alignment must be 'rl' or 'widefield', got {alignment!r}.")
    support = _check_optics(pixel_size_um, optics)
    if prepared:
        arr = _as_frames(frames, n_orientations, n_phases)
    else:
        arr, _ = prepare_frames(frames, n_orientations, n_phases, taper_px)
    nominal = airy_cutoff(optics.na, optics.wavelength_um)
    rmin, rmax = float(k0_range[0]) * nominal, min(float(k0_range[1]) * nominal, 1.9 * support)
    widefield = sfft.fft2(arr.mean(axis=(0, 1)))
    works = [_Orientation(arr[d], pixel_size_um, optics, support) for d in range(n_orientations)]
    if n_orientations > 1:
        means = [w.spectra.mean(axis=0) for w in works]
        total = np.mean(means, axis=0)
        fit = works[0].gain_region
        scales = [
            float(np.vdot(m[fit], total[fit]).real / np.vdot(m[fit], m[fit]).real) for m in means
        ]
        for d, work in enumerate(works):
            others = [means[e] * scales[e] for e in range(n_orientations) if e != d]
            noise = work.noise / (n_phases * len(others))
            work.set_reference(np.mean(others, axis=0) / scales[d], noise)
    if alignment == "rl":
        align = _rl_alignment(arr.mean(axis=(0, 1)), pixel_size_um, optics, int(rl_iterations))
        for work in works:
            work.set_alignment(np.where(np.hypot(work.fky, work.fkx) < 1.9 * support, align, 0))
    nominal_steps = 2.0 * np.pi * np.arange(n_phases) / n_phases
    starts = _joint_search([w.zmap(nominal_steps) for w in works], rmin, rmax, n_orientations)
    out: list[OrientationParameters] = []
    for d, work in enumerate(works):
        phases, q, corr = nominal_steps, starts[d], 0.0
        errors = np.full(n_phases, np.nan)
        for round_ in range(max(1, int(iterations))):
            q, corr = work.refine(phases, q, search=round_ == 0)
            raw, errors = work.phases_at(q)
            if alignment == "rl":  # the band-0 alignment, when the overlap is strong enough
                raw0, errors0 = work.phases_at(q, band0=True)
                if np.max(errors0) < _BAND0_PHASE_SE:
                    raw, errors = raw0, errors0
            phases = _shrink_phases(raw, errors, nominal_steps, phase_prior_rad)
        a, a_error, fraction = work.band_ratio(phases, q)
        b0 = work.spectra.mean(axis=0)
        fit = work.gain_region
        scale = float(np.vdot(b0[fit], widefield[fit]).real / np.vdot(b0[fit], b0[fit]).real)
        reliable = fraction >= 0.25 and a_error <= 0.3 * abs(a) and 0.0 < 2 * abs(a) <= 1.2
        out.append(
            OrientationParameters(
                k0=(float(q[0]), float(q[1])),
                phases_rad=tuple(float(v) for v in np.angle(np.exp(1j * phases))),
                modulation=float(min(2.0 * abs(a), 1.0)),
                band_phase_rad=float(np.angle(a)) if a != 0 else 0.0,
                correlation=float(corr),
                intensity_scale=scale,
                phase_errors_rad=tuple(float(v) for v in errors),
                frame_gains=tuple(float(v) for v in work.gains),
                modulation_error=float(2.0 * a_error),
                modulation_source="band overlap" if reliable else "",
            )
        )
    # a modulation the overlap cannot pin down: the median of the orientations that it can
    good = [p.modulation for p in out if p.modulation_source]
    fallback = float(np.median(good)) if good else DEFAULT_MODULATION
    source = "median of the other orientations" if good else "default"
    out = [
        p if p.modulation_source else replace(p, modulation=fallback, modulation_source=source)
        for p in out
    ]
    return out


# --- reconstruction -------------------------------------------------------------------------


def _band_terms(parameters: list[OrientationParameters]):
    """(orientation, order m, complex weight a, shift m·p) for all 3·n_o bands."""
    for d, p in enumerate(parameters):
        a = 0.5 * p.modulation * np.exp(1j * p.band_phase_rad)
        k0 = np.asarray(p.k0, dtype=np.float64)
        yield d, 0, 1.0 + 0j, 0.0 * k0
        yield d, 1, a, k0
        yield d, -1, np.conj(a), -k0


def reconstruction_otf(
    shape: tuple[int, int],
    pixel_size_um: float,
    parameters: list[OrientationParameters],
    optics: Optics = DEFAULT_OPTICS,
    wiener_w: float = DEFAULT_WIENER_W,
    apodization_gamma: float = 1.0,
) -> np.ndarray:
    """Effective transfer function of :func:`reconstruct_sim` on the FFT grid ``shape`` of the
    output (pixel ``pixel_size_um``, i.e. Δ/2): ``A·Σ|aH|²/(Σ|aH|² + w²)``, real, 1 at k = 0
    up to the Wiener factor."""
    ky, kx = _freqs(shape, pixel_size_um)
    otf = otf_function(optics, shape, pixel_size_um)
    power = np.zeros(shape)
    for _d, _m, a, shift in _band_terms(parameters):
        power += np.abs(a * otf(ky + shift[0], kx + shift[1])) ** 2
    k0 = float(np.mean([p.magnitude for p in parameters]))
    apod = np.clip(1.0 - np.sqrt(ky**2 + kx**2) / (optics.cutoff + k0), 0.0, None)
    return apod**apodization_gamma * power / (power + wiener_w**2)


# Over 80 lines by choice (issue 12): as estimate_parameters, a documented public entry point
# (13 options) whose body is the reconstruction steps of the module docstring in order.
def reconstruct_sim(
    frames: Any,
    pixel_size_um: float,
    optics: Optics = DEFAULT_OPTICS,
    parameters: list[OrientationParameters] | None = None,
    *,
    wiener_w: float = DEFAULT_WIENER_W,
    apodization_gamma: float = 1.0,
    n_orientations: int = 3,
    n_phases: int = 3,
    k0_range: tuple[float, float] = (0.5, 1.2),
    taper_px: int = 16,
    grid: str = "box",
    clip_negative: bool = False,
    alignment: str = "rl",
) -> SIMReconstruction:
    """Reconstruct raw SIM frames on the 2× grid; see the module docstring.

    ``frames``: (n_o·n_p, Y, X) orientation-major or (n_o, n_p, Y, X), camera units;
    ``pixel_size_um``: camera pixel Δ (µm); ``parameters``: known SIM parameters (default:
    estimated with :func:`estimate_parameters`); ``wiener_w``: Wiener parameter (OTF units);
    ``apodization_gamma``: exponent of the apodisation; ``taper_px``: edge taper (coarse px; the
    outer ``taper_px`` pixels of the result are tapered, leave them out of any score);
    ``grid``: ``"box"`` or ``"nodes"`` output pixel placement; ``clip_negative``: clip the
    Wiener undershoot to 0. Returns a :class:`SIMReconstruction` (image (2Y, 2X) float32).
    """
    if grid not in ("box", "nodes"):
        raise InputError(f"grid must be 'box' or 'nodes', got {grid!r}.")
    if not (wiener_w > 0 and np.isfinite(wiener_w)):
        raise InputError(f"wiener_w must be > 0, got {wiener_w!r}.")
    support = _check_optics(pixel_size_um, optics)
    raw = _as_frames(frames, n_orientations, n_phases)
    arr, replaced = prepare_frames(raw, n_orientations, n_phases, taper_px)
    estimated = parameters is None
    if parameters is None:
        parameters = estimate_parameters(
            arr, pixel_size_um, optics, n_orientations=n_orientations, n_phases=n_phases,
            k0_range=k0_range, prepared=True, alignment=alignment,
        )  # fmt: skip
    if len(parameters) != n_orientations:
        raise InputError(
            f"Need {n_orientations} orientation parameter sets, got {len(parameters)}."
        )
    ny, nx = arr.shape[-2:]
    fine_shape, fine_px = (2 * ny, 2 * nx), pixel_size_um / 2.0
    ky, kx = _freqs(fine_shape, fine_px)
    cky, ckx = _freqs((ny, nx), pixel_size_um)
    mask = (cky**2 + ckx**2) < support**2
    otf = otf_function(optics, fine_shape, fine_px)
    numerator = np.zeros(fine_shape, dtype=np.complex128)
    power = np.zeros(fine_shape)
    bands = []
    for d, p in enumerate(parameters):
        gains = np.asarray(p.frame_gains or np.ones(n_phases), dtype=np.float64)
        spectra = sfft.fft2(arr[d] * (p.intensity_scale / gains[:, None, None])) * mask
        bands.append(_embed(separate_bands(spectra, np.asarray(p.phases_rad))))
    for d, m, a, shift in _band_terms(parameters):
        band = bands[d][{0: 0, 1: 1, -1: 2}[m]]
        moved = band if m == 0 else _Shifter(band, fine_px)(shift)
        h = a * otf(ky + shift[0], kx + shift[1])
        numerator += np.conj(h) * moved
        power += np.abs(h) ** 2
    k0 = float(np.mean([p.magnitude for p in parameters]))
    apod = np.clip(1.0 - np.sqrt(ky**2 + kx**2) / (support + k0), 0.0, None) ** apodization_gamma
    spectrum = apod * numerator / (power + wiener_w**2)
    spectrum /= apod[0, 0] * power[0, 0] / (power[0, 0] + wiener_w**2)  # DC transfer 1
    if grid == "box":  # pixel j at coarse coordinate j/2 − 1/4: content moves by +½ fine pixel
        spectrum = spectrum * np.exp(-1j * np.pi * (ky + kx) * fine_px)
    image = sfft.ifft2(spectrum).real
    if clip_negative:
        image = np.clip(image, 0.0, None)
    nominal = airy_cutoff(optics.na, optics.wavelength_um)
    settings = {
        "wiener_w": float(wiener_w),
        "apodization_gamma": float(apodization_gamma),
        "apodization_edge_cycles_per_um": support + k0,
        "otf": optics.to_metadata(),
        "otf_support_cycles_per_um": support,
        "cutoff_2na_over_lambda": nominal,
        "taper_px": int(taper_px),
        "pixels_replaced": replaced,
        "grid": grid,
        "estimated": estimated,
    }
    return SIMReconstruction(
        image.astype(np.float32),
        fine_px,
        list(parameters),
        raw.mean(axis=(0, 1)).astype(np.float32),
        settings,
    )


# --- simulation (tests, validation) ----------------------------------------------------------


def simulate_raw_sim(
    obj: np.ndarray,
    pixel_size_um: float,
    parameters: list[OrientationParameters],
    optics: Optics = DEFAULT_OPTICS,
    *,
    photons: float | None = None,
    background: float = 0.0,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Raw SIM frames (n_o·n_p, Y, X) float64 of an object on the 2× grid.

    ``obj``: (2Y, 2X) non-negative density on pixels of ``pixel_size_um / 2`` (pixel j of the
    fine grid at coarse coordinate j/2 − 1/4, the box convention); ``parameters``: k0 (cycles/µm),
    phases and modulation of each orientation (``intensity_scale`` multiplies its frames).
    Each frame: ``[(obj·(1 + m cos(2π p·x + φ_n))) ⊛ h + background]``, sampled at the coarse
    pixel centres (exact: the OTF is band-limited below the coarse Nyquist); ``photons``: the
    mean expected count of a frame, then Poisson noise (``rng`` required).
    """
    obj = np.asarray(obj, dtype=np.float64)
    fy, fx = obj.shape
    if fy % 2 or fx % 2:
        raise InputError(f"The object grid must have even sizes, got {obj.shape}.")
    fine_px = pixel_size_um / 2.0
    ky, kx = _freqs(obj.shape, fine_px)
    h = otf_function(optics, obj.shape, fine_px)(ky, kx)
    # fine pixel j sits at coarse coordinate x = (j − ½)/2 → physical position (j − ½)·fine_px
    y = (np.arange(fy) - 0.5) * fine_px
    x = (np.arange(fx) - 0.5) * fine_px
    # sample the coarse pixel centres: move the field by −½ fine pixel, then take every other one
    back = np.exp(1j * np.pi * (ky + kx) * fine_px)
    frames = []
    for p in parameters:
        for phi in p.phases_rad:
            illum = 1.0 + p.modulation * np.cos(
                2 * np.pi * (p.k0[0] * y[:, None] + p.k0[1] * x[None, :]) + phi
            )
            img = sfft.ifft2(sfft.fft2(obj * illum) * h * back).real[::2, ::2]
            frames.append(p.intensity_scale * (img + background))
    out = np.clip(np.asarray(frames), 0.0, None)
    if photons is not None:
        if rng is None:
            raise InputError("simulate_raw_sim needs an rng for Poisson noise.")
        out = rng.poisson(out * (photons / max(out.mean(), 1e-12))) / (photons / out.mean())
    return out
