"""Classical widefield → 2× super-resolution baselines (numpy/scipy), physics.md (d).

Every baseline takes the raw widefield frame in ADU (Y, X) plus the physics of the recording
(``pixel_size_um`` of the widefield grid, ``na``, emission ``wavelength_um``, camera
``offset_adu`` and ``gain_adu_per_e``) and returns float32 (2Y, 2X) on the GT grid, in
photo-electrons per GT pixel (flux conserving, like the simulator's target).

* ``bicubic``: the conditioning up-sampler itself (``torch.nn.functional.interpolate(mode=
  "bicubic", align_corners=False)`` convention), the lower bound.
* ``wiener``: Ô = H_SIM·H_WF*·Ŷ_up/(|H_WF|² + K) on the GT grid, re-apodised to the nominal
  SIM OTF (generalised Wiener, :data:`~napari_cvdm.physics.otf.NOMINAL_SIM`, of an ideal pupil
  with the stated NA/λ) so the output is band-limited like a SIM image; parameter K.
* ``rl``: Richardson–Lucy with the 2×2 binning inside the forward model y = D(h ⊛ o) + b (y in
  e⁻ ≥ 0, b the background), flat start, result filtered by the nominal H_SIM; parameter:
  iterations.

Regularisation rule (documented, physics.md (d)): K or the iteration count is grid-searched on
*validation* pairs by mean PSNR (DL-SR convention, both images min–max normalised), one value
per recipe and noise level, and never on test data (:func:`tune_baseline`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from ..errors import InputError
from .otf import NOMINAL_SIM, Optics, sim_otf
from .psf import airy_otf, bin_adjoint, bin_sum, cubic_resize

#: Default grids searched by :func:`tune_baseline`.
DEFAULT_GRIDS: dict[str, tuple] = {
    "wiener": tuple(float(k) for k in np.logspace(-4, -1, 7)),
    "rl": (5, 10, 20, 30, 50, 75, 100, 150, 200),
}
#: Defaults used when no tuned value is given (tuned on SR-A validation pairs at N_fg ≥ 1500).
DEFAULT_WIENER_K = 1e-3
DEFAULT_RL_ITERATIONS = 100


def _electrons(widefield_adu: np.ndarray, offset_adu: float, gain_adu_per_e: float) -> np.ndarray:
    y = np.asarray(widefield_adu, dtype=np.float64)
    if y.ndim != 2 or min(y.shape) < 4:
        raise InputError(f"SR baselines need one 2-D widefield frame (≥ 4×4 px); got {y.shape}.")
    if not np.all(np.isfinite(y)):
        raise InputError("The widefield frame contains NaN or Inf values; remove them first.")
    if gain_adu_per_e <= 0:
        raise InputError(f"Camera gain must be > 0 ADU/e⁻, got {gain_adu_per_e}.")
    return (y - offset_adu) / gain_adu_per_e


def _check_optics(pixel_size_um: float, na: float, wavelength_um: float) -> None:
    for name, v in (("pixel_size_um", pixel_size_um), ("na", na), ("wavelength_um", wavelength_um)):
        if v is None or not np.isfinite(v) or v <= 0:
            raise InputError(
                f"{name} is missing or invalid ({v!r}); give the widefield pixel size (µm), the "
                "objective NA and the emission wavelength (µm)."
            )


def nominal_sim_otf(
    shape: tuple[int, int], pixel_size_um: float, na: float, wavelength_um: float, rfft=False
) -> np.ndarray:
    """The SIM OTF a user of the stated optics would assume: :data:`NOMINAL_SIM` over an ideal
    (Airy) pupil of ``na``, ``wavelength_um``; real float64 on the FFT grid of ``shape``."""
    return sim_otf(shape, pixel_size_um, Optics("airy", na, wavelength_um), NOMINAL_SIM, rfft)


def bicubic_sr(
    widefield_adu: np.ndarray,
    *,
    offset_adu: float = 100.0,
    gain_adu_per_e: float = 2.0,
    **_physics: Any,
) -> np.ndarray:
    """Bicubic ×2 of the offset-free widefield, (Y, X) ADU → (2Y, 2X) e⁻ per GT pixel, float32.

    Optics arguments are accepted and ignored (uniform baseline signature).
    """
    e = _electrons(widefield_adu, offset_adu, gain_adu_per_e)
    up = cubic_resize(e, (2 * e.shape[0], 2 * e.shape[1])) / 4.0
    return up.astype(np.float32)


def wiener_filter(
    image: np.ndarray, otf_wf: np.ndarray, otf_sim: np.ndarray, k: float
) -> np.ndarray:
    """Ô = H_SIM·H_WF*·Ŷ/(|H_WF|² + K) for one image (Y, X) and OTFs on its full FFT grid."""
    spec = sfft.fft2(image)
    out = otf_sim * np.conj(otf_wf) * spec / (np.abs(otf_wf) ** 2 + k)
    return sfft.ifft2(out).real


def wiener_sr(
    widefield_adu: np.ndarray,
    *,
    pixel_size_um: float,
    na: float,
    wavelength_um: float,
    offset_adu: float = 100.0,
    gain_adu_per_e: float = 2.0,
    k: float = DEFAULT_WIENER_K,
    pad_px: int = 16,
    clip_negative: bool = True,
    **_ignored: Any,
) -> np.ndarray:
    """Wiener deconvolution on the GT grid re-apodised to the SIM OTF; float32 (2Y, 2X) e⁻/px.

    The bicubic-up-sampled, offset-free frame is mirror-padded by ``pad_px`` GT pixels (no
    wrap-around), filtered with H_WF sampled on the GT grid (pixel ``pixel_size_um/2``) and
    the nominal H_SIM (:func:`nominal_sim_otf`), then cropped.

    ``clip_negative``: intensities cannot be negative, so the Gibbs undershoot left by the
    truncation at the widefield cut-off (H_SIM(ρc) ≈ 0.3, so it cannot be apodised away by K)
    is clipped to 0. Without it the undershoot sets the minimum of the min–max normalisation
    and costs several dB of PSNR.
    """
    _check_optics(pixel_size_um, na, wavelength_um)
    if k <= 0:
        raise InputError(f"The Wiener constant K must be > 0, got {k}.")
    up = bicubic_sr(widefield_adu, offset_adu=offset_adu, gain_adu_per_e=gain_adu_per_e)
    padded = np.pad(up.astype(np.float64), pad_px, mode="reflect")
    gt_px = pixel_size_um / 2.0
    h_wf = airy_otf(padded.shape, gt_px, na, wavelength_um)
    h_sim = nominal_sim_otf(padded.shape, gt_px, na, wavelength_um)
    out = wiener_filter(padded, h_wf, h_sim, k)
    if clip_negative:
        out = np.clip(out, 0.0, None)
    return out[pad_px : pad_px + up.shape[0], pad_px : pad_px + up.shape[1]].astype(np.float32)


def estimate_background(electrons: np.ndarray) -> float:
    """Constant background (e⁻) estimate: 1st percentile of the frame smoothed by σ = 2 px."""
    return max(float(np.percentile(ndimage.gaussian_filter(electrons, 2.0), 1.0)), 0.0)


def richardson_lucy_iterates(
    widefield_adu: np.ndarray,
    *,
    pixel_size_um: float,
    na: float,
    wavelength_um: float,
    checkpoints: Sequence[int],
    offset_adu: float = 100.0,
    gain_adu_per_e: float = 2.0,
    background_e: float | None = None,
    pad_px: int = 8,
    sim_filter: bool = True,
) -> dict[int, np.ndarray]:
    """Richardson–Lucy with binning in the forward model; outputs at each checkpoint iteration.

    Model y = D(h ⊛ o) + b, D the 2×2 sum-binning GT → WF, h the WF PSF on the GT grid. Update
    o ← o·[hᵀ ⊛ Dᵀ(y/(D(h ⊛ o) + b))]/[hᵀ ⊛ Dᵀ1] from a flat start; hᵀ ⊛ Dᵀ1 = 1 for a PSF of
    unit sum with periodic convolution on the mirror-padded frame (``pad_px`` WF pixels). Each
    returned image is filtered by the nominal H_SIM (unless ``sim_filter`` is False: the raw RL
    object) and cropped: float32 (2Y, 2X), e⁻ per GT pixel.
    """
    _check_optics(pixel_size_um, na, wavelength_um)
    steps = sorted({int(c) for c in checkpoints})
    if not steps or steps[0] < 1:
        raise InputError(f"RL iteration counts must be ≥ 1, got {list(checkpoints)}.")
    e = _electrons(widefield_adu, offset_adu, gain_adu_per_e)
    b = estimate_background(e) if background_e is None else float(background_e)
    # float32 throughout: twice as fast as float64, results equal to ~1e-6 relative
    y = np.clip(np.pad(e, pad_px, mode="reflect"), 0.0, None).astype(np.float32)
    shape = (2 * y.shape[0], 2 * y.shape[1])
    gt_px = pixel_size_um / 2.0
    h = airy_otf(shape, gt_px, na, wavelength_um, rfft=True).astype(np.complex64)
    h_sim = (
        nominal_sim_otf(shape, gt_px, na, wavelength_um, rfft=True).astype(np.complex64)
        if sim_filter
        else 1.0
    )
    obj = np.full(shape, max(float(np.mean(y)) - b, 1e-3) / 4.0, dtype=np.float32)
    crop = (
        slice(2 * pad_px, 2 * pad_px + 2 * e.shape[0]),
        slice(2 * pad_px, 2 * pad_px + 2 * e.shape[1]),
    )
    out: dict[int, np.ndarray] = {}
    for it in range(1, steps[-1] + 1):
        blurred = sfft.irfft2(sfft.rfft2(obj) * h, s=shape)
        estimate = np.maximum(bin_sum(blurred, 2) + np.float32(b), np.float32(1e-6))
        ratio = bin_adjoint(y / estimate, 2)
        obj = obj * np.clip(sfft.irfft2(sfft.rfft2(ratio) * h, s=shape), 0.0, None)
        if it in steps:
            final = sfft.irfft2(sfft.rfft2(obj) * h_sim, s=shape)
            out[it] = np.clip(final[crop], 0.0, None).astype(np.float32)  # FFT round-off
    return out


def richardson_lucy_sr(
    widefield_adu: np.ndarray,
    *,
    pixel_size_um: float,
    na: float,
    wavelength_um: float,
    iterations: int = DEFAULT_RL_ITERATIONS,
    **options: Any,
) -> np.ndarray:
    """Richardson–Lucy SR after ``iterations`` steps; float32 (2Y, 2X) e⁻ per GT pixel.

    ``options``: ``offset_adu``, ``gain_adu_per_e``, ``background_e`` (None:
    :func:`estimate_background`), ``pad_px``; see :func:`richardson_lucy_iterates`.
    """
    return richardson_lucy_iterates(
        widefield_adu,
        pixel_size_um=pixel_size_um,
        na=na,
        wavelength_um=wavelength_um,
        checkpoints=[int(iterations)],
        **options,
    )[int(iterations)]


#: name → (function, name of its regularisation keyword or None)
SR_BASELINES = {
    "bicubic": (bicubic_sr, None),
    "wiener": (wiener_sr, "k"),
    "rl": (richardson_lucy_sr, "iterations"),
}


def physics_from_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """Baseline keyword arguments from a simulator metadata dict (:class:`SRSample`)."""
    camera = metadata.get("camera", {})
    return {
        "pixel_size_um": float(metadata["widefield_pixel_size_um"]),
        "na": float(metadata["na"]),
        "wavelength_um": float(metadata["wavelength_um"]),
        "offset_adu": float(camera.get("offset_adu", 100.0)),
        "gain_adu_per_e": float(camera.get("gain_adu_per_e", 2.0)),
    }


def run_sr_baseline(name: str, widefield_adu: np.ndarray, value=None, **physics: Any) -> np.ndarray:
    """Run baseline ``name`` (``bicubic``, ``wiener``, ``rl``) with its parameter ``value``
    (None: the default) on one frame; returns float32 (2Y, 2X)."""
    if name not in SR_BASELINES:
        raise InputError(f"Unknown SR baseline {name!r}; choose one of {', '.join(SR_BASELINES)}.")
    fn, key = SR_BASELINES[name]
    if key is not None and value is not None:
        physics[key] = value
    return fn(widefield_adu, **physics)


def _minmax01(image: np.ndarray) -> np.ndarray:
    """float64 copy mapped so its minimum is 0 and its maximum 1 (zeros when constant), as
    ``metrics.minmax01`` (physics does not import the metrics module)."""
    x = np.asarray(image, dtype=np.float64)
    lo, hi = float(x.min()), float(x.max())
    return np.zeros_like(x) if hi <= lo else (x - lo) / (hi - lo)


def _psnr_minmax(prediction: np.ndarray, target: np.ndarray) -> float:
    """PSNR (dB, data range 1) of the min–max normalised images, as ``metrics.psnr`` of
    ``metrics.minmax01`` of both: ``inf`` when they are equal."""
    from skimage.metrics import peak_signal_noise_ratio

    p, g = _minmax01(prediction), _minmax01(target)
    if p.shape != g.shape:
        raise InputError(
            f"prediction and target must have the same shape; got {p.shape} and {g.shape}."
        )
    if np.array_equal(p, g):
        return float("inf")
    return float(peak_signal_noise_ratio(g, p, data_range=1.0))


def _unpack(pair) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    if hasattr(pair, "widefield"):
        return pair.widefield, pair.target, pair.metadata
    widefield, target, metadata = pair
    return widefield, target, metadata


def baseline_scores(
    name: str, validation_pairs: Iterable, grid: Sequence | None = None
) -> dict[Any, float]:
    """Mean PSNR (min–max normalised, dB) of baseline ``name`` for every value of ``grid``.

    ``validation_pairs``: :class:`SRSample` objects or ``(widefield_adu, target, metadata)``
    tuples with simulator-style metadata.
    """
    if name not in SR_BASELINES:
        raise InputError(f"Unknown SR baseline {name!r}; choose one of {', '.join(SR_BASELINES)}.")
    grid = list(DEFAULT_GRIDS.get(name, (None,)) if grid is None else grid)
    totals = dict.fromkeys(grid, 0.0)
    count = 0
    for pair in validation_pairs:
        wf, target, meta = _unpack(pair)
        physics = physics_from_metadata(meta)
        if name == "rl":
            outs = richardson_lucy_iterates(wf, checkpoints=grid, **physics)
        else:
            outs = {v: run_sr_baseline(name, wf, v, **physics) for v in grid}
        for v in grid:
            totals[v] += _psnr_minmax(outs[int(v) if name == "rl" else v], target)
        count += 1
    if count == 0:
        raise InputError("No validation pairs given; tuning needs at least one pair.")
    return {v: t / count for v, t in totals.items()}


def tune_baseline(name: str, validation_pairs: Iterable, grid: Sequence | None = None):
    """Pick the regularisation value (Wiener K, RL iterations) with the best mean validation
    PSNR over ``grid`` (default :data:`DEFAULT_GRIDS`). Use validation data only, never test
    data. Returns the chosen value (None for ``bicubic``, which has no parameter)."""
    if SR_BASELINES.get(name, (None, None))[1] is None and name in SR_BASELINES:
        return None
    scores = baseline_scores(name, validation_pairs, grid)
    return max(scores, key=scores.get)
