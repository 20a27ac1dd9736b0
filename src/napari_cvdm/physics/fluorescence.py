"""Widefield → SIM-like super-resolution pair simulator, recipe SR-B (numpy/scipy).

Image formation (physics.md (b)), on box-aligned grids with BioSR's geometry::

    object o   Δo = 0.01565 µm   (4·size + 2·margin)² canvas, labelled density
    GT         2Δo = 0.0313 µm   GT  = B₂(o ⊛ h_SIM) + residue       (2·size)²
    widefield  4Δo = 0.0626 µm   x̄  = B₄(o ⊛ h_WF) + b, then camera  (size)², ADU

The margin (32 object px) is cropped after the convolutions. ``h_WF`` is the *true* widefield
PSF of the acquisition, which differs from the nominal NA/λ recorded in the metadata: an Airy
pupil with jittered NA/λ, an aberrated pupil (Zernike defocus, spherical, astigmatism, coma) or
the measured OTF of the BioSR microscope (physics/otf.py). ``h_SIM`` is the generalised-Wiener
SIM OTF of those true optics (seven bands at ±k0, three orientations, apodised to 0 at ρc + k0),
never a Gaussian; the target also carries a real reconstruction's residue: raw-frame noise
shaped by the reconstruction filter and, in some targets, a weak residual illumination pattern.
Because ``o ⊛ h_WF`` is band-limited below the widefield Nyquist frequency, ``B₄`` is computed
exactly in Fourier space (box transfer × crop of the spectrum).

Units: the widefield is in ADU (camera offset included, integer values), the target in
photo-electrons per GT pixel of a SIM-like image with the same total flux as the widefield
signal (relative intensity; SR intensities are not photometric).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import scipy.fft as sfft

from ..errors import InputError
from .camera import CameraModel, background_map, expose, photon_scale
from .otf import Optics, SIMParameters, otf_function, sim_noise_filter, sim_otf
from .points import cell_envelope, draw, points_to_px, splat_bilinear
from .psf import bin_sum, psf_width_px
from .structures import STRUCTURE_NAMES, generate_structure

#: Recipe SR-B. ``(lo, hi)`` pairs are drawn uniformly per sample (``photons`` log-uniformly);
#: scalars are fixed. Every key can be overridden as a keyword of :func:`simulate_sr_pair`.
#: ``na`` and ``wavelength_um`` are the *nominal* optics a user would state (recorded in the
#: metadata, used by baselines and models); the true optics differ (``*_jitter``, aberrations,
#: or the measured BioSR OTF), so nothing downstream knows the exact PSF.
SR_DEFAULTS: dict[str, Any] = {
    "recipe": "SR-B",
    "object_pixel_um": 0.01565,
    "size": 128,  # widefield pixels; the GT is twice as large
    "margin_px": 32,  # object pixels rendered around the patch, cropped after convolution
    "na": (1.30, 1.49),
    "wavelength_um": (0.500, 0.560),
    # true optics: odds of an ideal Airy pupil, an aberrated pupil and the measured BioSR OTF
    "optics_odds": {"airy": 0.3, "aberrated": 0.45, "measured": 0.25},
    "na_jitter": (-0.03, 0.02),  # true NA = nominal · (1 + jitter), at most 1.49
    "wavelength_jitter": (-0.02, 0.03),
    # RMS-normalised Zernike coefficients (waves) of aberrated pupils: N(0, σ) per term
    "aberration_sigma_waves": {
        "defocus": 0.08,
        "spherical": 0.05,
        "astig_0": 0.04,
        "astig_45": 0.04,
        "coma_x": 0.03,
        "coma_y": 0.03,
    },
    "measured_scale_jitter": (-0.03, 0.03),
    # SIM-like target: generalised-Wiener SIM OTF of the true optics (physics/otf.py)
    "k0_fraction": (0.80, 0.95),
    "wiener_w": (0.03, 0.3),  # log-uniform
    "apodization_gamma": (0.5, 1.2),
    "target_photons_ratio": (4.0, 40.0),  # GT acquisition brightness / widefield's, log-uniform
    "pattern_probability": 0.5,  # share of targets with a residual illumination pattern
    "pattern_strength": (0.0, 0.03),
    "photons": (20.0, 5000.0),  # foreground mean N_fg, e⁻/px, log-uniform
    "background_e": (5.0, 50.0),
    "background_variation": 0.3,
    "background_correlation_um": 2.0,
    "haze_fraction": (0.0, 0.2),  # β of the out-of-focus term β·(G_σ ⊛ o)
    "haze_sigma_um": (1.0, 2.0),
    "offset_adu": 100.0,
    "gain_adu_per_e": 2.0,
    "read_noise_e": 1.5,
    "structure": None,  # None: one of STRUCTURE_NAMES at equal odds, or a mixed patch
    "mixed_probability": 0.1,
    "envelope": True,
    "structure_params": None,  # {structure name: {parameter: value}} for the generators
}


@dataclass(frozen=True)
class SRSample:
    """One simulated pair: ``widefield`` float32 (size, size) ADU, ``target`` float32
    (2·size, 2·size) noise-free GT, and ``metadata`` (pixel sizes, optics, photons, camera...)."""

    widefield: np.ndarray
    target: np.ndarray
    metadata: dict[str, Any]


@lru_cache(maxsize=16)
def _k2(shape: tuple[int, int], pixel_um: float) -> np.ndarray:
    """|k|² (cycles²/µm²) on the rfft grid, float32, read-only."""
    ky = sfft.fftfreq(shape[0], d=pixel_um)[:, None]
    kx = sfft.rfftfreq(shape[1], d=pixel_um)[None, :]
    k2 = (ky**2 + kx**2).astype(np.float32)
    k2.flags.writeable = False
    return k2


@lru_cache(maxsize=16)
def _box4_crop(n: int) -> np.ndarray:
    """Transfer of the 4×4 box sum, on the rfft grid of the n/4 decimated canvas (complex64).

    B₄x[j] = Σ_{m=0..3} x[4j + m]; per axis S(f) = Σ_m exp(2πi·f·m), f in cycles/object px.
    """
    m = n // 4
    fy = sfft.fftfreq(m)[:, None] / 4.0
    fx = sfft.rfftfreq(m)[None, :] / 4.0
    s = sum(np.exp(2j * np.pi * fy * k) for k in range(4)) * sum(
        np.exp(2j * np.pi * fx * k) for k in range(4)
    )
    s = s.astype(np.complex64)
    s.flags.writeable = False
    return s


def _gauss(k2: np.ndarray, sigma_um: float) -> np.ndarray:
    return np.exp(np.float32(-2.0 * np.pi**2 * sigma_um**2) * k2)


def _crop_spectrum(spec: np.ndarray, m: int) -> np.ndarray:
    """Low-frequency block of an rfft2 spectrum (n, n//2+1) for an m-point grid (m, m//2+1)."""
    h = m // 2
    return np.concatenate([spec[:h, : h + 1], spec[spec.shape[0] - h :, : h + 1]], axis=0)


def form_images(
    layers: list[tuple[np.ndarray, float]],
    object_pixel_um: float,
    optics: Optics,
    sim: SIMParameters,
    margin_px: int = 32,
    haze_sigma_um: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Noise-free widefield and SIM-like GT images from object-grid densities.

    ``layers``: ``[(density (N, N), label_sigma_um), ...]`` on the object grid (N = 4·size +
    2·margin, margin a multiple of 4); each layer is blurred by its Gaussian label σ.
    ``optics``: the true widefield optics (:class:`~napari_cvdm.physics.otf.Optics`); ``sim``:
    the reconstruction parameters of the SIM-like target. Returns ``wf`` (size, size) =
    B₄(o ⊛ h_WF), ``gt`` (2·size, 2·size) = B₂(o ⊛ h_SIM) and, if ``haze_sigma_um`` is given,
    ``haze`` (size, size) = B₄(o ⊛ G_σ); all float64, in object mass units (sum-binned, flux
    conserving).
    """
    n = layers[0][0].shape[0]
    if margin_px % 4 or (n - 2 * margin_px) % 4 or layers[0][0].shape != (n, n):
        raise InputError("The object canvas must be square, with size and margin multiples of 4.")
    size = (n - 2 * margin_px) // 4
    m = n // 4
    k2 = _k2((n, n), object_pixel_um)
    spec = 0
    for density, sigma in layers:
        s = sfft.rfft2(np.asarray(density, dtype=np.float32), workers=1)
        spec = spec + (s * _gauss(k2, sigma) if sigma > 0 else s)
    h_sim = sim_otf((n, n), object_pixel_um, optics, sim, rfft=True).astype(np.float32)
    gt = sfft.irfft2(spec * h_sim, s=(n, n), workers=1)
    gt = bin_sum(gt.astype(np.float64), 2)[margin_px // 2 : margin_px // 2 + 2 * size]
    gt = gt[:, margin_px // 2 : margin_px // 2 + 2 * size]
    wf_px = 4 * object_pixel_um
    low = _crop_spectrum(spec, m) * _box4_crop(n)
    if optics.cutoff >= 0.5 / wf_px:
        raise InputError(
            f"the widefield cut-off {optics.cutoff:.2f} cycles/µm is beyond the widefield "
            f"Nyquist frequency {0.5 / wf_px:.2f}; use a larger object pixel or a lower NA"
        )
    ky, kx = np.broadcast_arrays(
        sfft.fftfreq(m, d=wf_px)[:, None], sfft.rfftfreq(m, d=wf_px)[None, :]
    )
    otf = otf_function(optics, (m, m), wf_px)(ky, kx).astype(np.complex64)
    wf = sfft.irfft2(low * otf, s=(m, m), workers=1) / 16.0  # exact: band-limited below Nyquist
    c = slice(margin_px // 4, margin_px // 4 + size)
    wf = np.asarray(wf, dtype=np.float64)[c, c]
    haze = None
    if haze_sigma_um is not None:
        g = _gauss(_k2((m, m), wf_px), haze_sigma_um)
        haze = np.asarray(sfft.irfft2(low * g, s=(m, m), workers=1), dtype=np.float64)[c, c] / 16.0
    return wf, gt, haze


def reconstruction_residue(
    rng: np.random.Generator,
    gt_e: np.ndarray,
    background_e: float,
    target_photons_ratio: float,
    gt_pixel_um: float,
    optics: Optics,
    sim: SIMParameters,
    pattern_strength: float = 0.0,
) -> np.ndarray:
    """What a real SIM reconstruction adds to its noise-free image (GT grid, e⁻ per pixel).

    * Raw-frame noise shaped by the reconstruction filter (:func:`sim_noise_filter`): Poisson
      statistics of an acquisition ``target_photons_ratio`` times brighter than the widefield
      input (SIM ground truths are recorded at high light), brought back to the target's scale.
    * Residual illumination pattern: ``pattern_strength`` · (the low-passed image) ·
      cos(2π p_j·x + φ_j) at the three illumination vectors ±k0 (imperfect band separation).

    ``gt_e`` (2Y, 2X) e⁻ per GT pixel, ``background_e`` per GT pixel. Returns float64 (2Y, 2X).
    """
    shape = gt_e.shape
    r = max(float(target_photons_ratio), 1e-6)
    variance = r * (np.clip(gt_e, 0.0, None) + background_e)
    white = rng.standard_normal(shape) * np.sqrt(variance)
    filt = sim_noise_filter(shape, gt_pixel_um, optics, sim, rfft=True)
    noise = sfft.irfft2(sfft.rfft2(white, workers=1) * filt, s=shape, workers=1) / r
    if pattern_strength <= 0:
        return noise
    from scipy.ndimage import gaussian_filter

    yy, xx = np.meshgrid(*(np.arange(n) * gt_pixel_um for n in shape), indexing="ij")
    k0 = sim.k0_fraction * optics.cutoff
    smooth = gaussian_filter(gt_e, 2.0)
    pattern = np.zeros(shape)
    for i in range(3):
        theta = sim.angle0_rad + i * np.pi / 3.0
        phase = rng.uniform(0, 2 * np.pi)
        amp = rng.uniform(0.3, 1.0)
        pattern += amp * np.cos(2 * np.pi * k0 * (np.sin(theta) * yy + np.cos(theta) * xx) + phase)
    return noise + pattern_strength * smooth * pattern


def _draw_log(rng: np.random.Generator, value) -> float:
    if isinstance(value, (tuple, list)):
        return float(np.exp(rng.uniform(np.log(value[0]), np.log(value[1]))))
    return float(value)


def _pick_structures(rng: np.random.Generator, p: dict) -> list[str]:
    choice = p["structure"]
    if choice is None:
        names = list(STRUCTURE_NAMES)
        if rng.random() < p["mixed_probability"]:
            return [str(s) for s in rng.choice(names, 2, replace=False)]
        return [names[rng.integers(len(names))]]
    chosen = choice.split("+") if isinstance(choice, str) else list(choice)
    for name in chosen:
        if name not in STRUCTURE_NAMES:
            raise InputError(
                f"Unknown structure {name!r}; choose one of {', '.join(STRUCTURE_NAMES)} "
                "(or two joined by '+')."
            )
    return chosen


def _resolve(overrides: dict) -> dict:
    unknown = set(overrides) - set(SR_DEFAULTS)
    if unknown:
        raise InputError(
            f"Unknown SR simulator option(s) {sorted(unknown)}; valid ones: {sorted(SR_DEFAULTS)}."
        )
    p = {**SR_DEFAULTS, **overrides}
    if int(p["size"]) < 8:
        raise InputError(f"size must be at least 8 widefield pixels, got {p['size']}.")
    if int(p["margin_px"]) % 4:
        raise InputError(f"margin_px must be a multiple of 4 object pixels, got {p['margin_px']}.")
    return p


def draw_optics(rng: np.random.Generator, p: dict) -> tuple[float, float, Optics]:
    """Nominal (NA, λ_em µm) and the true :class:`Optics` of one acquisition of recipe ``p``."""
    kinds = list(p["optics_odds"])
    odds = np.asarray([float(p["optics_odds"][k]) for k in kinds])
    kind = kinds[rng.choice(len(kinds), p=odds / odds.sum())] if len(kinds) > 1 else kinds[0]
    if kind == "measured":  # the BioSR system: 1.49 NA, GFP-like emission
        na, wl = 1.49, draw(rng, p["wavelength_um"])
        scale = (0.525 / wl) * (1.0 + draw(rng, p["measured_scale_jitter"]))
        return na, wl, Optics("measured", na, wl, measured_scale=scale)
    na, wl = draw(rng, p["na"]), draw(rng, p["wavelength_um"])
    na_true = min(na * (1.0 + draw(rng, p["na_jitter"])), 1.49)
    wl_true = wl * (1.0 + draw(rng, p["wavelength_jitter"]))
    if kind == "aberrated":
        sig = p["aberration_sigma_waves"]
        ab = {k: float(rng.normal(0.0, float(v))) for k, v in sig.items()}
        return na, wl, Optics("aberrated", na_true, wl_true, aberrations=ab)
    return na, wl, Optics("airy", na_true, wl_true)


def draw_sim(rng: np.random.Generator, p: dict) -> SIMParameters:
    """Reconstruction parameters of one SIM-like target of recipe ``p``."""
    return SIMParameters(
        k0_fraction=draw(rng, p["k0_fraction"]),
        angle0_rad=float(rng.uniform(0.0, np.pi / 3.0)),
        wiener_w=_draw_log(rng, p["wiener_w"]),
        apodization_gamma=draw(rng, p["apodization_gamma"]),
    )


def simulate_sr_pair(rng: np.random.Generator, **overrides: Any) -> SRSample:
    """Simulate one widefield/SIM-like pair of recipe SR-B (or the overridden recipe).

    ``overrides``: any key of :data:`SR_DEFAULTS`, e.g. ``photons=500``, ``structure="er"``,
    ``size=64`` (widefield pixels; the GT is 2× that), ``na=1.49``, ``optics_odds={"airy": 1}``,
    ``structure_params={"ccps": {"density_per_um2": 2.0}}``. Same generator state → same sample.
    """
    p = _resolve(overrides)
    size, margin = int(p["size"]), int(p["margin_px"])
    dxo = float(p["object_pixel_um"])
    n = 4 * size + 2 * margin
    extent = (n * dxo, n * dxo)
    na, wl, optics = draw_optics(rng, p)
    sim = draw_sim(rng, p)
    photons = _draw_log(rng, p["photons"])
    b_e = draw(rng, p["background_e"])
    beta, haze_sigma = draw(rng, p["haze_fraction"]), draw(rng, p["haze_sigma_um"])
    target_ratio = _draw_log(rng, p["target_photons_ratio"])
    pattern = draw(rng, p["pattern_strength"]) if rng.random() < p["pattern_probability"] else 0.0
    camera = CameraModel(p["offset_adu"], p["gain_adu_per_e"], p["read_noise_e"])
    names = _pick_structures(rng, p)
    params = p["structure_params"] or {}
    for _attempt in range(10):  # redraw the rare patch with no signal at all
        env = cell_envelope(rng, extent) if p["envelope"] else None
        layers, sigmas = [], []
        for name in names:
            st = generate_structure(rng, name, extent, env, **params.get(name, {}))
            density = splat_bilinear(points_to_px(st.points_um, dxo), st.weights, (n, n))
            layers.append((density, st.label_sigma_um))
            sigmas.append(st.label_sigma_um)
        wf, gt, haze = form_images(layers, dxo, optics, sim, margin, haze_sigma)
        scale = photon_scale(wf, photons)
        if scale > 0:
            break
    wf_px = 4 * dxo
    corr_px = p["background_correlation_um"] / wf_px
    background = background_map(
        rng, wf.shape, b_e, p["background_variation"], corr_px, scale * haze, beta
    )
    raw = expose(rng, scale * np.clip(wf, 0.0, None) + background, camera)
    target = scale * np.clip(gt, 0.0, None)
    target = target + reconstruction_residue(
        rng, target, b_e / 4.0, target_ratio, 2 * dxo, optics, sim, pattern
    )
    metadata = {
        "recipe": p["recipe"],
        "pixel_size_um": {"widefield": wf_px, "target": 2 * dxo},
        "widefield_pixel_size_um": wf_px,
        "target_pixel_size_um": 2 * dxo,
        "object_pixel_size_um": dxo,
        "na": na,
        "wavelength_um": wl,
        "true_optics": optics.to_metadata(),
        "sim": {
            **sim.to_metadata(),
            "target_photons_ratio": target_ratio,
            "pattern_strength": pattern,
        },
        "psf_width_px": psf_width_px(na, wl, wf_px),
        "photons": photons,
        "background": {
            "level_e": b_e,
            "variation": p["background_variation"],
            "haze_fraction": beta,
            "haze_sigma_um": haze_sigma,
        },
        "background_e": b_e,
        "camera": camera.to_metadata(),
        "structure": "+".join(names),
        "label_sigma_um": sigmas,
        "photon_scale": scale,
        "target_units": "e- per target pixel of a SIM reconstruction (same total flux as the "
        "widefield signal), with its residual noise and pattern",
    }
    return SRSample(raw, target.astype(np.float32), metadata)
