"""Classical phase retrieval from a through-focus stack: TIE, US-TIE and CTF inversion.

Inputs: ``stack`` (Z, Y, X) intensities normalised to a background of 1 (divide by the flat field),
``wavelength_um`` (µm, in the medium), ``dz_um`` (a plane spacing, giving offsets [−dz, +dz] for 2
planes or {−k, …, k}·dz for 2k + 1 planes, or the explicit list of plane offsets in µm),
``pixel_size_um`` (µm) and a Tikhonov weight ``alpha``. Outputs: float32 phase (Y, X) in rad with
zero mean (the piston is not recoverable). Sign convention: see :mod:`.propagation` (+z
downstream, k·∂I/∂z = −∇·(I∇φ)).

All solvers work in pixel units (lengths in pixels, frequencies in cycles/pixel), so ``alpha`` is
dimensionless and transfers between set-ups. The Laplacian symbol is L = 4π²|u_px|² and the
regularised inverse is ∇⁻²f := F⁻¹{−f̂·L/(L² + α)}, with φ̂(0) := 0. Boundaries are Neumann-like:
``"mirror"`` extends the data symmetrically to (2Y, 2X) before the FFT; the DCT-II solver solves the
same problem without the extension (the two agree to rounding); ``"periodic"`` is plain FFT.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.fft as sfft

from napari_cvdm.errors import InputError
from napari_cvdm.physics.phase_metrics import phase_errors
from napari_cvdm.physics.qpi import plane_offsets

__all__ = [
    "DEFAULT_ALPHA_GRID",
    "TIE_METHODS",
    "TieTuning",
    "USTIEResult",
    "axial_derivative",
    "ctf_inversion",
    "inverse_laplacian",
    "reconstruct_phase",
    "tie_dct",
    "tie_fft",
    "tune_tie",
    "us_tie",
    "us_tie_solve",
]

#: α grid of :func:`tune_tie`: 10⁻⁸ … 10⁻¹, half-decade steps (on QPI-B at σ 0.01 of I₀ plain
#: TIE is best near 10⁻⁷, below the spec's 10⁻⁶ starting range).
DEFAULT_ALPHA_GRID = tuple(float(a) for a in np.logspace(-8, -1, 15))


def _offsets(stack: np.ndarray, dz_um: float | Sequence[float]) -> np.ndarray:
    stack = np.asarray(stack)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise InputError(f"Expected a through-focus stack (Z ≥ 2, Y, X), got shape {stack.shape}.")
    if not np.all(np.isfinite(stack)):
        raise InputError("The stack contains NaN or Inf values; clean it before phase retrieval.")
    if np.ndim(dz_um) == 0:
        return np.asarray(plane_offsets(stack.shape[0], float(dz_um)))
    z = np.asarray(dz_um, dtype=np.float64)
    if z.shape != (stack.shape[0],):
        raise InputError(f"{z.size} plane offsets given for a stack of {stack.shape[0]} planes.")
    return z


def axial_derivative(
    stack: np.ndarray, z_offsets_um: Sequence[float], degree: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """In-focus intensity I(0) and ∂I/∂z (per µm) at z = 0, float64 (Y, X) each.

    Per-pixel least-squares polynomial in z of ``degree`` (default min(Z − 1, 3), 1 for two planes:
    (I₊ − I₋)/(2dz) and (I₊ + I₋)/2). Linear fits average noise; a cubic on five planes removes the
    O(dz²) error of the central difference.
    """
    z = np.asarray(z_offsets_um, dtype=np.float64)
    degree = min(len(z) - 1, 3) if degree is None else int(degree)
    if not 1 <= degree < len(z):
        raise InputError(f"Polynomial degree {degree} needs at least {degree + 1} planes.")
    vander = np.vander(z, degree + 1, increasing=True)  # (Z, degree + 1)
    coef = np.linalg.pinv(vander)[:2] @ np.asarray(stack, np.float64).reshape(len(z), -1)
    shape = stack.shape[1:]
    return coef[0].reshape(shape), coef[1].reshape(shape)


def _laplacian_symbol(shape: tuple[int, int], half: bool = False) -> np.ndarray:
    """L = 4π²|u_px|² on the FFT grid of ``shape`` (rfft layout when ``half``)."""
    uy = np.fft.fftfreq(shape[0])[:, None]
    ux = (np.fft.rfftfreq if half else np.fft.fftfreq)(shape[1])[None, :]
    return 4 * np.pi**2 * (uy**2 + ux**2)


def _inverse_symbol(lap: np.ndarray, alpha: float) -> np.ndarray:
    """−L/(L² + α) with the DC term set to 0 (also for α = 0)."""
    out = np.zeros_like(lap)
    nonzero = lap > 0
    out[nonzero] = -lap[nonzero] / (lap[nonzero] ** 2 + float(alpha))
    return out


def _mirror(a: np.ndarray) -> np.ndarray:
    """Even (half-sample symmetric) extension (Y, X) → (2Y, 2X)."""
    return np.pad(a, ((0, a.shape[0]), (0, a.shape[1])), mode="symmetric")


def inverse_laplacian(f: np.ndarray, alpha: float, boundary: str = "mirror") -> np.ndarray:
    """Tikhonov-regularised solution of ∇²φ = f in pixel units; float64 (Y, X), zero DC.

    ``boundary``: "mirror" (FFT of the even extension), "dct" (DCT-II, same Neumann problem) or
    "periodic".
    """
    f = np.asarray(f, dtype=np.float64)
    if boundary == "dct":
        ky = np.arange(f.shape[0])[:, None] / (2 * f.shape[0])
        kx = np.arange(f.shape[1])[None, :] / (2 * f.shape[1])
        lap = 4 * np.pi**2 * (ky**2 + kx**2)
        spec = sfft.dctn(f, type=2, norm="ortho")
        return sfft.idctn(spec * _inverse_symbol(lap, alpha), type=2, norm="ortho")
    if boundary not in ("mirror", "periodic"):
        raise InputError(f"Unknown boundary {boundary!r}; use 'mirror', 'dct' or 'periodic'.")
    work = _mirror(f) if boundary == "mirror" else f
    lap = _laplacian_symbol(work.shape, half=True)
    phi = sfft.irfft2(sfft.rfft2(work) * _inverse_symbol(lap, alpha), s=work.shape)
    return phi[: f.shape[0], : f.shape[1]]


def _tie_source(stack, wavelength_um, dz_um, pixel_size_um, degree):
    """(I0 per pixel, s = −k·Δx²·∂I/∂z in pixel units) from a stack."""
    z = _offsets(stack, dz_um)
    i0, didz = axial_derivative(stack, z, degree)
    k = 2 * np.pi / float(wavelength_um)
    return i0, -k * float(pixel_size_um) ** 2 * didz


def tie_fft(
    stack: np.ndarray,
    wavelength_um: float,
    dz_um: float | Sequence[float],
    pixel_size_um: float,
    alpha: float = 1e-4,
    boundary: str = "mirror",
    degree: int | None = None,
) -> np.ndarray:
    """FFT-Tikhonov TIE, φ̂ = (k/I₀)·F{∂_zI}·L/(L² + α) with scalar I₀ = mean in-focus intensity.

    Uniform-intensity approximation; mirror extension by default. Returns float32 (Y, X) rad.
    """
    i0, src = _tie_source(stack, wavelength_um, dz_um, pixel_size_um, degree)
    phi = inverse_laplacian(src / max(float(i0.mean()), 1e-12), alpha, boundary)
    return (phi - phi.mean()).astype(np.float32)


def tie_dct(
    stack: np.ndarray,
    wavelength_um: float,
    dz_um: float | Sequence[float],
    pixel_size_um: float,
    alpha: float = 1e-4,
    degree: int | None = None,
) -> np.ndarray:
    """TIE with a DCT-II Poisson solver (Neumann boundaries); float32 (Y, X) rad."""
    return tie_fft(stack, wavelength_um, dz_um, pixel_size_um, alpha, "dct", degree)


@dataclass
class USTIEResult:
    """US-TIE output: phase float32 (Y, X) rad and relative residuals ‖r_n‖/‖k·∂_zI‖, n = 0, 1, …"""

    phase: np.ndarray
    residuals: list[float] = field(default_factory=list)


def us_tie_solve(
    stack: np.ndarray,
    wavelength_um: float,
    dz_um: float | Sequence[float],
    pixel_size_um: float,
    alpha: float = 1e-4,
    max_iter: int = 30,
    tol: float = 1e-3,
    degree: int | None = None,
) -> USTIEResult:
    """Universal-solution TIE (Zhang, Chen, Sun, Tian & Zuo, Opt. Lett. 45:3649, 2020).

    φ₀ = ∇⁻²(−k·∂_zI/I_max); r_n = −k·∂_zI − ∇·(I∇φ_n); φ_{n+1} = φ_n + ∇⁻²(r_n/I_max), with ∇⁻²
    the regularised inverse of :func:`inverse_laplacian` on the mirror-extended grid and I the
    in-focus estimate. Stops when ‖r_n‖/‖k·∂_zI‖ < ``tol`` or after ``max_iter`` updates. The mean
    of the source is removed first (solvability of the Neumann problem). Never divides by I.
    """
    i0, src = _tie_source(stack, wavelength_um, dz_um, pixel_size_um, degree)
    ny, nx = i0.shape
    b = _mirror(src - src.mean())
    intensity = _mirror(i0)
    i_max = max(float(i0.max()), 1e-12)
    shape = b.shape
    lap = _laplacian_symbol(shape, half=True)
    inv = _inverse_symbol(lap, alpha)
    uy = np.fft.fftfreq(shape[0])[:, None].copy()
    ux = np.fft.rfftfreq(shape[1])[None, :].copy()
    uy[shape[0] // 2, 0] = 0.0  # no derivative at the Nyquist frequencies (shapes are even)
    ux[0, -1] = 0.0
    b_hat = sfft.rfft2(b)
    b_norm = max(float(np.linalg.norm(b)), 1e-300)

    phi_hat = inv * b_hat / i_max
    residuals: list[float] = []
    for n in range(max_iter + 1):
        gy = sfft.irfft2(2j * np.pi * uy * phi_hat, s=shape) * intensity
        gx = sfft.irfft2(2j * np.pi * ux * phi_hat, s=shape) * intensity
        div_hat = 2j * np.pi * (uy * sfft.rfft2(gy) + ux * sfft.rfft2(gx))
        r_hat = b_hat - div_hat
        residuals.append(float(np.linalg.norm(sfft.irfft2(r_hat, s=shape))) / b_norm)
        if residuals[-1] < tol or n == max_iter:
            break
        phi_hat = phi_hat + inv * r_hat / i_max
    phi = sfft.irfft2(phi_hat, s=shape)[:ny, :nx]
    return USTIEResult((phi - phi.mean()).astype(np.float32), residuals)


def us_tie(
    stack: np.ndarray,
    wavelength_um: float,
    dz_um: float | Sequence[float],
    pixel_size_um: float,
    alpha: float = 1e-4,
    max_iter: int = 30,
    tol: float = 1e-3,
    degree: int | None = None,
) -> np.ndarray:
    """US-TIE phase, float32 (Y, X) rad (see :func:`us_tie_solve`)."""
    return us_tie_solve(
        stack, wavelength_um, dz_um, pixel_size_um, alpha, max_iter, tol, degree
    ).phase


def ctf_inversion(
    stack: np.ndarray,
    wavelength_um: float,
    dz_um: float | Sequence[float],
    pixel_size_um: float,
    alpha: float = 1e-3,
) -> np.ndarray:
    """Weak-object transfer-function (CTF) inversion from symmetric plane pairs (±z_j).

    φ̂ = Σ_j s_j(Î_{+j} − Î_{−j})/(4Σ_j s_j² + α), s_j = sin(πλz_j|u|²) = sin(πD_j|u_px|²); the
    symmetric difference cancels weak absorption. Mirror extension; float32 (Y, X) rad.
    """
    z = _offsets(stack, dz_um)
    stack = np.asarray(stack, dtype=np.float64)
    pairs = []
    for j in np.flatnonzero(z > 0):
        match = np.flatnonzero(np.isclose(z, -z[j], rtol=1e-6, atol=1e-9))
        if match.size:
            pairs.append((j, int(match[0])))
    if not pairs:
        raise InputError(
            f"CTF inversion needs planes at symmetric offsets ±z; got offsets {z.tolist()} µm."
        )
    ny, nx = stack.shape[1:]
    u2 = _laplacian_symbol((2 * ny, 2 * nx), half=True) / (4 * np.pi**2)
    num = np.zeros(u2.shape, dtype=np.complex128)
    den = np.zeros(u2.shape)
    for jp, jm in pairs:
        d = float(wavelength_um) * z[jp] / float(pixel_size_um) ** 2
        s = np.sin(np.pi * d * u2)
        num += s * sfft.rfft2(_mirror(stack[jp] - stack[jm]))
        den += s**2
    phi_hat = num / (4 * den + alpha)
    phi_hat[0, 0] = 0.0
    phi = sfft.irfft2(phi_hat, s=(2 * ny, 2 * nx))[:ny, :nx]
    return (phi - phi.mean()).astype(np.float32)


#: CLI/benchmark names → solver(stack, wavelength_um, dz_um, pixel_size_um, alpha) → phase.
TIE_METHODS: dict[str, Callable[..., np.ndarray]] = {
    "tie": tie_fft,
    "tie-dct": tie_dct,
    "us-tie": us_tie,
    "ctf": ctf_inversion,
}


def reconstruct_phase(
    method: str,
    stack: np.ndarray,
    wavelength_um: float,
    dz_um: float | Sequence[float],
    pixel_size_um: float,
    alpha: float | None = None,
) -> np.ndarray:
    """Run the baseline named ``method`` (a key of :data:`TIE_METHODS`); float32 (Y, X) rad."""
    if method not in TIE_METHODS:
        raise InputError(f"Unknown phase baseline {method!r}; use one of {sorted(TIE_METHODS)}.")
    kwargs = {} if alpha is None else {"alpha": float(alpha)}
    return TIE_METHODS[method](stack, wavelength_um, dz_um, pixel_size_um, **kwargs)


@dataclass
class TieTuning:
    """Result of :func:`tune_tie`: chosen ``alpha`` and mean RMSE (rad) for every grid value."""

    method: str
    alpha: float
    rmse_by_alpha: dict[float, float]


def tune_tie(
    method: str,
    validation_samples: Iterable,
    grid: Sequence[float] | None = None,
    border: int = 16,
) -> TieTuning:
    """Pick α for ``method`` on validation data (never test data).

    Rule: for every α in ``grid`` (default 10⁻⁸ … 10⁻¹, 15 log-spaced values) reconstruct every
    sample (objects with ``stack``, ``phase`` and ``metadata`` holding ``wavelength_um``,
    ``z_offsets_um`` (or ``dz_um``) and ``pixel_size_um``, e.g. :class:`~.qpi.QPISample`) and
    compute the piston-removed phase RMSE excluding a ``border``-px frame; choose the α with the
    lowest mean RMSE, the larger α on ties (within 1e-12 rad).
    """
    samples = list(validation_samples)
    if not samples:
        raise InputError("tune_tie needs at least one validation sample.")
    grid = DEFAULT_ALPHA_GRID if grid is None else tuple(float(a) for a in grid)
    scores: dict[float, float] = {}
    for alpha in grid:
        errs = []
        for s in samples:
            md = s.metadata
            dz = md.get("z_offsets_um", md.get("dz_um"))
            est = reconstruct_phase(
                method, s.stack, md["wavelength_um"], dz, md["pixel_size_um"], alpha
            )
            errs.append(phase_errors(est, s.phase, border)["rmse"])
        scores[alpha] = float(np.mean(errs))
    best = min(scores.values())
    chosen = max(a for a, v in scores.items() if v <= best + 1e-12)
    return TieTuning(method, chosen, scores)
