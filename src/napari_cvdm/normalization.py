"""Normalisation between physical units and the model's diffusion units (numpy only, no torch).

One set of functions serves training and inference (docs/architecture.md, physics.md (b), (c)):

* **SR input** (widefield, ADU): subtract the camera offset, map the frame's percentiles
  (``p_low``, ``p_high``) = (1, 99.8) to [0, 1], then ×2 − 1; never clipped. The percentiles are
  computed once per *frame* (never per tile) and kept in a :class:`PercentileNorm`, whose inverse
  maps model outputs back to the input's ADU-above-offset scale (relative intensities).
* **SR prior** (optional, rule ``prior.kind = "rl"``): Richardson–Lucy of the whole frame with
  the model's nominal optics (binning in the forward model, re-apodised to the nominal SIM OTF),
  on the target grid, mapped by the *same* percentile map (×4: a GT pixel is a quarter of a
  widefield pixel). It is condition channel 0 and the residual base: the model learns the
  correction of RL, and its input still holds the up-sampled widefield as channel 1.
* **SR target** (ground truth, training only): ``a·GT + c`` fitted so that the ground truth blurred
  to the widefield resolution matches the up-sampled input (:func:`normalize_target_to_condition`);
  models before it used min–max to [−1, 1] (DL-SR convention).
* **QPI input**: flat-field contrast ``I / I_bg − 1`` (unclipped) of the two planes, preceded by a
  **TIE prior** channel: the Tikhonov TIE phase of the same planes (global Poisson solve, so it
  carries the low spatial frequencies a patch-sized network cannot see), floored at its 1st
  percentile and mapped like the target. QPI models are residual: they learn target − prior.
  A rule may add ``extra_alphas``: TIE priors of the same planes at other Tikhonov weights, as
  channels after the first (``[TIE(α), TIE(α₁), …, c−, c+]``). No single α suits every noise
  level and scene (low noise and large cells want a weak one, noise and fine texture a strong
  one); with the set the network can pick per region what a global solve gets right.
  **QPI target**: the fixed map ``2 φ / φ_norm − 1`` with ``φ_norm = 3.5`` rad, never per image.

Every model file stores its rule (:func:`sr_rule`, :func:`qpi_rule`) under ``normalization``;
:func:`validate_rule` checks such a dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "DEFAULT_PHI_NORM",
    "PercentileNorm",
    "denormalize",
    "denormalize_scale",
    "fit_input_norm",
    "model_to_phase",
    "normalize_input",
    "normalize_target_minmax",
    "normalize_target_to_condition",
    "phase_to_model",
    "qpi_condition",
    "qpi_contrast",
    "qpi_prior_alphas",
    "qpi_rule",
    "qpi_tie_prior",
    "defocus_number",
    "sr_condition",
    "sr_rl_prior",
    "sr_rule",
    "validate_rule",
]

#: fixed phase scale of QPI models (rad): φ = (y + 1) · φ_norm / 2
DEFAULT_PHI_NORM = 3.5
#: Tikhonov weight of the TIE prior channel (pixel units): the TIE α tuned on the QPI-A
#: validation set, the same at all three noise levels (benchmarks/results/baselines.json)
QPI_TIE_ALPHA = 1e-6
#: the extra TIE prior channels of a multi-α QPI model (rule ``prior.extra_alphas``): a decade
#: apart around :data:`QPI_TIE_ALPHA`, spanning the α that suits σ = 0.003–0.1 of I₀ on QPI-B
QPI_TIE_EXTRA_ALPHAS = (1e-7, 1e-5, 1e-4)
#: the prior is shifted so this percentile is 0 (the recipes' phase maps start at 0 rad)
QPI_TIE_FLOOR_PERCENTILE = 1.0
#: Richardson–Lucy iterations of the SR prior channel: the network corrects the remaining
#: noise and mismatch, so fewer than the 150–200 tuned for RL alone on SR-B (and half the cost)
SR_RL_ITERATIONS = 100


@dataclass(frozen=True)
class PercentileNorm:
    """The input map of one frame: ``x' = 2 (x − offset − low) / (high − low) − 1``.

    ``low``/``high`` are the ``p_low``/``p_high`` percentiles of the offset-subtracted frame
    (ADU above offset); ``offset_adu`` is the camera offset that was subtracted.
    """

    offset_adu: float
    low: float
    high: float
    p_low: float = 1.0
    p_high: float = 99.8

    @property
    def scale(self) -> float:
        """``high − low`` in ADU (> 0)."""
        return self.high - self.low

    def to_dict(self) -> dict[str, float]:
        """JSON-ready dict (plain floats)."""
        return {k: float(v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PercentileNorm:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        unknown = set(data) - {"offset_adu", "low", "high", "p_low", "p_high"}
        if unknown:
            raise ValueError(f"unknown PercentileNorm keys: {sorted(unknown)}")
        return cls(**{k: float(v) for k, v in data.items()})


def _finite_frame(frame: np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(frame)
    if arr.size == 0:
        raise InputError(f"the {what} is empty (shape {arr.shape}); give a non-empty image")
    if not np.issubdtype(arr.dtype, np.number) or np.iscomplexobj(arr):
        raise InputError(f"the {what} has dtype {arr.dtype}; give a real-valued numeric image")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise InputError(
            f"the {what} contains NaN or Inf values; replace them (e.g. with the background) first"
        )
    return arr


def fit_input_norm(
    frame: np.ndarray, offset_adu: float = 0.0, p_low: float = 1.0, p_high: float = 99.8
) -> PercentileNorm:
    """Fit the SR input map of one whole frame (any shape, ADU including the camera offset).

    When the two percentiles coincide (e.g. a sparse image that is > 99 % background) the
    frame's min and max are used instead. Raises :class:`InputError` for an empty, non-finite
    or constant frame.
    """
    if not 0.0 <= p_low < p_high <= 100.0:
        raise InputError(
            f"percentiles must satisfy 0 <= p_low < p_high <= 100, got {p_low}, {p_high}"
        )
    arr = _finite_frame(frame, "input frame") - float(offset_adu)
    low, high = np.percentile(arr, [p_low, p_high])
    if not high > low:
        low, high = float(arr.min()), float(arr.max())
    if not high > low:
        raise InputError(
            f"the input frame is constant (every pixel is {low + offset_adu:g}); "
            "there is nothing to reconstruct — check that the right image or plane was chosen"
        )
    return PercentileNorm(float(offset_adu), float(low), float(high), float(p_low), float(p_high))


def normalize_input(frame: np.ndarray, norm: PercentileNorm) -> np.ndarray:
    """Frame in ADU (with offset) → diffusion units, float32, unclipped; same shape."""
    arr = np.asarray(frame, dtype=np.float64)
    out = 2.0 * (arr - norm.offset_adu - norm.low) / norm.scale - 1.0
    return out.astype(np.float32)


def denormalize(values: np.ndarray, norm: PercentileNorm) -> np.ndarray:
    """Inverse input map: diffusion units → ADU above the camera offset, float32.

    The offset is *not* added back: SR outputs are relative intensities on the input's
    ADU-above-offset scale. A standard deviation maps with :func:`denormalize_scale`.
    """
    arr = np.asarray(values, dtype=np.float64)
    return ((arr + 1.0) * 0.5 * norm.scale + norm.low).astype(np.float32)


def denormalize_scale(values: np.ndarray, norm: PercentileNorm) -> np.ndarray:
    """Map a spread (e.g. a std) from diffusion units to ADU: multiply by ``(high − low) / 2``."""
    return (np.asarray(values, dtype=np.float64) * 0.5 * norm.scale).astype(np.float32)


def normalize_target_minmax(target: np.ndarray) -> np.ndarray:
    """Ground truth → [−1, 1] by its own min and max (float32, same shape).

    A constant target (a blank patch) maps to −1 everywhere, i.e. "all at the minimum".
    """
    arr = _finite_frame(target, "target")
    lo, hi = float(arr.min()), float(arr.max())
    if not hi > lo:
        return np.full(arr.shape, -1.0, dtype=np.float32)
    return (2.0 * (arr - lo) / (hi - lo) - 1.0).astype(np.float32)


#: σ (target-grid px) of the Gaussian that takes an SR-A ground truth (SIM PSF, σ ≈ 1.28 px) to
#: about the widefield resolution (σ ≈ 2.36 px): sqrt(2.36² − 1.28²) ≈ 2
SR_TARGET_BLUR_PX = 2.0


def normalize_target_to_condition(
    target: np.ndarray, condition_up: np.ndarray, blur_px: float = SR_TARGET_BLUR_PX
) -> np.ndarray:
    """Ground truth (2Y, 2X) → the input's diffusion units: ``a·GT + c`` (float32).

    ``a`` and ``c`` are the least-squares fit of the up-sampled condition (model units, same
    shape) by the ground truth blurred to about the widefield resolution (Gaussian ``blur_px``).
    The target then has the local intensity scale of the input, so the network learns a local
    sharpening; a per-frame min–max map instead ties every patch's scale to the brightest pixel
    of the whole frame, which a patch cannot see. Falls back to min–max when the fit is
    degenerate (constant or anti-correlated ground truth).
    """
    from scipy.ndimage import gaussian_filter

    gt = _finite_frame(target, "target").astype(np.float64)
    x = np.asarray(condition_up, dtype=np.float64)
    if x.shape != gt.shape:
        raise InputError(f"target {gt.shape} and up-sampled condition {x.shape} differ in shape")
    blurred = gaussian_filter(gt, float(blur_px), mode="reflect")
    design = np.stack([blurred.ravel(), np.ones(blurred.size)], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, x.ravel(), rcond=None)
    if not (np.isfinite(scale) and scale > 0):
        return normalize_target_minmax(target)
    return (scale * gt + offset).astype(np.float32)


def sr_rl_prior(
    frame_adu: np.ndarray,
    norm: PercentileNorm,
    *,
    pixel_size_um: float,
    na: float,
    wavelength_um: float,
    iterations: int = SR_RL_ITERATIONS,
) -> np.ndarray:
    """Richardson–Lucy estimate of one widefield frame (Y, X) ADU in model units (2Y, 2X).

    RL with 2×2 binning in the forward model and the nominal (Airy) optics ``na``,
    ``wavelength_um`` at the widefield pixel ``pixel_size_um``, re-apodised to the nominal SIM
    OTF (:func:`~napari_cvdm.physics.sr_baselines.richardson_lucy_iterates`), computed on the
    whole frame; intensities per GT pixel ×4 plus the estimated constant background are mapped
    by ``norm`` like the widefield, so the prior and the up-sampled input share units. float32.
    """
    from .physics.sr_baselines import estimate_background, richardson_lucy_iterates

    frame = _finite_frame(frame_adu, "widefield frame")
    background = estimate_background(frame - norm.offset_adu)  # ADU per widefield pixel
    rl = richardson_lucy_iterates(
        frame,
        pixel_size_um=float(pixel_size_um),
        na=float(na),
        wavelength_um=float(wavelength_um),
        checkpoints=[int(iterations)],
        offset_adu=norm.offset_adu,
        gain_adu_per_e=1.0,  # RL is scale-equivariant: ADU in, ADU per GT pixel out
        background_e=background,
    )[int(iterations)]
    # per widefield-pixel area, background added back: the units of the up-sampled widefield
    out = 2.0 * (4.0 * rl.astype(np.float64) + background - norm.low) / norm.scale - 1.0
    return out.astype(np.float32)


def sr_condition(
    frame_adu: np.ndarray,
    norm: PercentileNorm,
    rule: dict[str, Any],
    optics: dict[str, float] | None = None,
) -> np.ndarray:
    """The model condition of one SR frame (Y, X) ADU on the target grid, float32:
    (1, 2Y, 2X) ``[widefield ×2]``, or (2, 2Y, 2X) ``[RL prior, widefield ×2]`` when ``rule``
    has a ``prior``; ``optics`` then gives ``pixel_size_um``, ``na``, ``wavelength_um``."""
    from .workflows.task_adapters import upsample_condition

    up = np.asarray(upsample_condition(normalize_input(frame_adu, norm)), np.float32)[None]
    prior = rule.get("prior")
    if not prior:
        return up
    if not optics or any(optics.get(k) is None for k in ("pixel_size_um", "na", "wavelength_um")):
        raise InputError(
            "the RL prior of this SR model needs the pixel size, NA and wavelength; give them"
        )
    rl = sr_rl_prior(
        frame_adu,
        norm,
        pixel_size_um=optics["pixel_size_um"],
        na=optics["na"],
        wavelength_um=optics["wavelength_um"],
        iterations=int(prior["iterations"]),
    )
    return np.concatenate([rl[None], up]).astype(np.float32)


def qpi_contrast(stack: np.ndarray, background: float | np.ndarray | None = None) -> np.ndarray:
    """Flat-field contrast ``I / I_bg − 1`` of a through-focus stack (..., Z, Y, X), float32.

    ``background`` is the flat-field intensity (scalar or broadcastable array); when omitted
    it is estimated as the median of the whole stack. Unclipped.
    """
    arr = _finite_frame(stack, "through-focus stack")
    if background is None:
        bg: float | np.ndarray = float(np.median(arr))
    else:
        bg = np.asarray(background, dtype=np.float64)
    if np.any(np.asarray(bg) <= 0) or not np.all(np.isfinite(bg)):
        raise InputError(
            "the background (flat-field) intensity must be positive and finite; "
            "give intensities above the camera offset, or pass the flat field explicitly"
        )
    return (arr / bg - 1.0).astype(np.float32)


def defocus_number(wavelength_um: float, dz_um: float, pixel_size_um: float) -> float:
    """Dimensionless defocus ``D = λ·dz/Δx²`` (physics.md (c)): all a Fresnel pair depends on."""
    return float(wavelength_um) * float(dz_um) / float(pixel_size_um) ** 2


def qpi_tie_prior(
    contrast: np.ndarray,
    defocus_D: float,
    alpha: float | tuple[float, ...] = QPI_TIE_ALPHA,
    phi_norm: float = DEFAULT_PHI_NORM,
    floor_percentile: float = QPI_TIE_FLOOR_PERCENTILE,
) -> np.ndarray:
    """TIE phase of a contrast pair (2, Y, X) [−dz, +dz] in model units: (Y, X) float32.

    FFT-Tikhonov TIE with mirror boundaries in pixel units, where only ``D = λ·dz/Δx²``
    matters; the result is shifted so its ``floor_percentile`` is 0 rad, then mapped by
    :func:`phase_to_model`. Computed on the whole frame, never per tile or patch. A tuple of
    ``alpha`` gives one prior per weight, stacked: (len(alpha), Y, X).
    """
    from .physics.tie import tie_fft

    planes = _finite_frame(contrast, "QPI contrast").astype(np.float64) + 1.0
    if planes.ndim != 3 or planes.shape[0] != 2:
        raise InputError(f"the TIE prior needs two planes (2, Y, X), got shape {planes.shape}")
    alphas = alpha if isinstance(alpha, tuple) else (alpha,)
    priors = []
    for a in alphas:
        phi = tie_fft(planes, 1.0, float(defocus_D), 1.0, alpha=float(a), boundary="mirror")
        phi = phi - np.percentile(phi, floor_percentile)
        priors.append(phase_to_model(phi, phi_norm))
    return np.stack(priors) if isinstance(alpha, tuple) else priors[0]


def qpi_prior_alphas(rule: dict[str, Any]) -> tuple[float, ...]:
    """The Tikhonov weights of a QPI rule's TIE prior channels, in channel order (() without a
    prior): the residual base's ``alpha``, then ``extra_alphas``."""
    prior = rule.get("prior")
    if not prior:
        return ()
    return (float(prior["alpha"]), *(float(a) for a in prior.get("extra_alphas", ())))


def qpi_condition(contrast: np.ndarray, defocus_D: float, rule: dict[str, Any]) -> np.ndarray:
    """The model condition of one QPI frame: (P + 2, Y, X) ``[TIE prior(s), c−, c+]`` with the
    P priors of :func:`qpi_prior_alphas` (the first is the residual base), or the contrast pair
    (2, Y, X) itself when ``rule`` has no ``prior``. float32."""
    contrast = np.asarray(contrast, dtype=np.float32)
    alphas = qpi_prior_alphas(rule)
    if not alphas:
        return contrast
    prior = rule["prior"]
    tie = qpi_tie_prior(
        contrast,
        defocus_D,
        alpha=alphas,
        phi_norm=float(rule["target"]["phi_norm"]),
        floor_percentile=float(prior["floor_percentile"]),
    )
    return np.concatenate([tie, contrast]).astype(np.float32)


def phase_to_model(phi: np.ndarray, phi_norm: float = DEFAULT_PHI_NORM) -> np.ndarray:
    """Phase in rad → model units ``2 φ / φ_norm − 1`` (float32)."""
    return (2.0 * np.asarray(phi, dtype=np.float64) / phi_norm - 1.0).astype(np.float32)


def model_to_phase(values: np.ndarray, phi_norm: float = DEFAULT_PHI_NORM) -> np.ndarray:
    """Model units → phase in rad ``(y + 1) · φ_norm / 2`` (float32)."""
    return ((np.asarray(values, dtype=np.float64) + 1.0) * phi_norm * 0.5).astype(np.float32)


# --- the rule stored in model files --------------------------------------------------------

_UPSAMPLE = {"factor": 2, "mode": "bicubic", "align_corners": False}


def sr_rule(
    offset_adu: float = 100.0,
    p_low: float = 1.0,
    p_high: float = 99.8,
    prior: bool = False,
) -> dict[str, Any]:
    """The SR normalisation rule (JSON-ready) stored in a model file's ``normalization``.

    ``offset_adu`` is the camera offset of the training data: the default for inference when
    the user gives none. ``prior``: the condition starts with the RL prior channel
    (:func:`sr_condition`), the residual base.
    """
    rule: dict[str, Any] = {
        "task": "sr",
        "input": {
            "kind": "percentile",
            "offset_adu": float(offset_adu),
            "p_low": float(p_low),
            "p_high": float(p_high),
            "clip": False,
        },
        "target": {"kind": "fit_to_input", "blur_px": SR_TARGET_BLUR_PX},
        "residual": True,
        "upsample": dict(_UPSAMPLE),
    }
    if prior:
        rule["prior"] = {"kind": "rl", "iterations": SR_RL_ITERATIONS}
    return rule


def qpi_rule(
    phi_norm: float = DEFAULT_PHI_NORM,
    defocus_D: float | None = None,
    extra_alphas: tuple[float, ...] = (),
) -> dict[str, Any]:
    """The QPI normalisation rule (JSON-ready): TIE prior + contrast input, fixed-scale phase
    target, residual on the prior. ``defocus_D``: the D the prior was computed with in training
    (inference uses it for stacks whose optics are not given). ``extra_alphas``: further TIE
    prior channels (e.g. :data:`QPI_TIE_EXTRA_ALPHAS`) after the residual base."""
    rule = {
        "task": "qpi",
        "input": {"kind": "contrast", "background": "median", "clip": False},
        "prior": {
            "kind": "tie",
            "alpha": QPI_TIE_ALPHA,
            "floor_percentile": QPI_TIE_FLOOR_PERCENTILE,
        },
        "target": {"kind": "phase", "phi_norm": float(phi_norm)},
        "residual": True,
    }
    if defocus_D is not None:
        rule["prior"]["defocus_D"] = float(defocus_D)
    if extra_alphas:
        rule["prior"]["extra_alphas"] = [float(a) for a in extra_alphas]
    return rule


_RULE_KEYS = {
    "sr": (
        {"task", "input", "target", "residual", "upsample", "prior"},
        {"task", "input", "target", "residual"},
    ),
    "qpi": (
        {"task", "input", "prior", "target", "residual"},
        {"task", "input", "target", "residual"},
    ),
}
_INPUT_KEYS = {
    "sr": {"kind", "offset_adu", "p_low", "p_high", "clip"},
    "qpi": {"kind", "background", "clip"},
}
_INPUT_KIND = {"sr": "percentile", "qpi": "contrast"}
_TARGET = {"sr": ("minmax", set()), "qpi": ("phase", {"phi_norm"})}
#: other accepted target kinds (training only; inference never reads the target rule)
_TARGET_ALSO = {"sr": {"fit_to_input": {"blur_px"}}, "qpi": {}}


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise ValueError(f"{where} must be a finite number, got {value!r}")
    return float(value)


def validate_rule(rule: Any, task: str | None = None) -> dict[str, Any]:
    """Check a normalisation rule dict; returns it unchanged or raises ``ValueError``.

    ``task`` (``"sr"``/``"qpi"``), when given, must match ``rule["task"]``. A ``prior`` model
    has no conditional input and uses ``{"task": "prior", ...}`` with any target rule.
    """
    if not isinstance(rule, dict):
        raise ValueError(f"normalization must be a JSON object, got {type(rule).__name__}")
    rtask = rule.get("task")
    if task is not None and rtask != task:
        raise ValueError(f"normalization.task is {rtask!r} but the model task is {task!r}")
    if rtask == "prior":
        return rule
    if rtask not in _RULE_KEYS:
        raise ValueError(f"normalization.task must be 'sr', 'qpi' or 'prior', got {rtask!r}")
    allowed, required = _RULE_KEYS[rtask]
    if missing := required - set(rule):
        raise ValueError(f"normalization is missing {sorted(missing)}")
    if unknown := set(rule) - allowed:
        raise ValueError(f"normalization has unknown keys {sorted(unknown)}")
    inp = rule["input"]
    if not isinstance(inp, dict) or inp.get("kind") != _INPUT_KIND[rtask]:
        raise ValueError(f"normalization.input.kind must be {_INPUT_KIND[rtask]!r}")
    if unknown := set(inp) - _INPUT_KEYS[rtask]:
        raise ValueError(f"normalization.input has unknown keys {sorted(unknown)}")
    if rtask == "sr":
        for key in ("offset_adu", "p_low", "p_high"):
            _number(inp.get(key), f"normalization.input.{key}")
        if not 0 <= inp["p_low"] < inp["p_high"] <= 100:
            raise ValueError("normalization.input needs 0 <= p_low < p_high <= 100")
        up = rule.get("upsample", _UPSAMPLE)
        if not isinstance(up, dict) or up.get("mode") != "bicubic" or up.get("factor") != 2:
            raise ValueError("normalization.upsample must be bicubic with factor 2")
    if rtask == "sr" and "prior" in rule:
        prior = rule["prior"]
        if not isinstance(prior, dict) or prior.get("kind") != "rl":
            raise ValueError("normalization.prior.kind must be 'rl' for an sr model")
        iterations = prior.get("iterations")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError("normalization.prior.iterations must be a positive integer")
        if unknown := set(prior) - {"kind", "iterations"}:
            raise ValueError(f"normalization.prior has unknown keys {sorted(unknown)}")
    if rtask == "qpi" and "prior" in rule:
        prior = rule["prior"]
        if not isinstance(prior, dict) or prior.get("kind") != "tie":
            raise ValueError("normalization.prior.kind must be 'tie'")
        if _number(prior.get("alpha"), "normalization.prior.alpha") <= 0:
            raise ValueError("normalization.prior.alpha must be positive")
        floor = _number(prior.get("floor_percentile"), "normalization.prior.floor_percentile")
        if not 0 <= floor < 100:
            raise ValueError("normalization.prior.floor_percentile must be in [0, 100)")
        if "defocus_D" in prior and _number(prior["defocus_D"], "prior.defocus_D") <= 0:
            raise ValueError("normalization.prior.defocus_D must be positive")
        extra = prior.get("extra_alphas", [])
        if not isinstance(extra, list) or any(
            _number(a, "normalization.prior.extra_alphas[]") <= 0 for a in extra
        ):
            raise ValueError("normalization.prior.extra_alphas must be a list of positive numbers")
        if unknown := set(prior) - {
            "kind", "alpha", "floor_percentile", "defocus_D", "extra_alphas"
        }:  # fmt: skip
            raise ValueError(f"normalization.prior has unknown keys {sorted(unknown)}")
    target = rule["target"]
    kind, extra = _TARGET[rtask]
    also = _TARGET_ALSO[rtask]
    if isinstance(target, dict) and target.get("kind") in also:
        kind, extra = target["kind"], also[target["kind"]]
    if not isinstance(target, dict) or target.get("kind") != kind:
        raise ValueError(f"normalization.target.kind must be one of {[kind, *also]}")
    for key in extra:
        if _number(target.get(key), f"normalization.target.{key}") <= 0:
            raise ValueError(f"normalization.target.{key} must be positive")
    if not isinstance(rule["residual"], bool):
        raise ValueError("normalization.residual must be true or false")
    return rule
