"""Task ``sr``: widefield → SIM-like super-resolution on a 2× finer grid.

* **input**: widefield frames (..., Y, X) in camera ADU (offset included); 9 or 15 raw SIM
  frames are averaged to one widefield image. Every leading plane is a frame. A frame whose
  pixel size differs from the model's is resampled so its PSF is as wide in pixels as in
  training (:func:`resample_factor`).
* **model units** (:func:`condition`, ``normalization``): the frame's (p_low, p_high)
  percentiles of the offset-subtracted ADU → [−1, 1] (unclipped), bicubic ×2 onto the target
  grid; with the rule's ``prior`` the Richardson–Lucy estimate comes first and is the residual
  base. **Target** (training): ``a·GT + c`` fitted to the up-sampled input.
* **output**: relative intensity on the input's ADU-above-offset scale, (..., 2Y', 2X').
* **training pair**: the SR simulator (recipe SR-B) or paired images (raw SIM stacks and
  (T, Y, X) time series included); **baselines** bicubic, Wiener, Richardson–Lucy;
  **metrics** PSNR/SSIM/NRMSE in the DL-SR and CVDM conventions.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..errors import InputError
from ..normalization import (
    SR_RL_ITERATIONS,
    SR_TARGET_BLUR_PX,
    PercentileNorm,
    denormalize,
    fit_input_norm,
    normalize_input,
    normalize_target_to_condition,
    sr_rl_prior,
    upsample_condition,
)
from .base import (
    BioimageioText,
    Example,
    OutputText,
    PreparedFrame,
    PreparedPair,
    Task,
    check_image,
)
from .base import json_number as number

__all__ = ["SRAdapter", "SRTask", "condition", "prepare_pair", "resample_factor", "rule"]

#: resampling factors closer to 1 than this are skipped
RESAMPLE_TOLERANCE = 0.02
#: raw SIM frames of a BioSR stack (3 angles × 3 phases) averaged to the widefield input
RAW_SIM_FRAMES = 9
#: the nominal physics of the SR recipes (used when the data do not say)
DEFAULT_PHYSICS = {"pixel_size_um": 0.0626, "upscale": 2.0, "wavelength_um": 0.525, "na": 1.49}
#: sampler clamp of |ŷ_0 + x_up| for SR models (targets in the input's units, see
#: normalization.normalize_target_to_condition); only a guard against diverging pixels
DENOISED_BOUND = 6.0
#: whether SR models trained from scratch condition on the Richardson–Lucy prior: not yet — in
#: the measured comparison on recipe SR-B (docs/models.md) the widefield-only condition after 733
#: fine-tuning steps beat the RL-residual one after 2,322 on SSIM at every level and on mean PSNR
DEFAULT_SR_PRIOR = False

_UPSAMPLE = {"factor": 2, "mode": "bicubic", "align_corners": False}


# --- the rule in model files ------------------------------------------------------------------


def rule(
    offset_adu: float = 100.0, p_low: float = 1.0, p_high: float = 99.8, prior: bool = False
) -> dict[str, Any]:
    """The SR normalisation rule (JSON-ready) stored in a model file's ``normalization``.

    ``offset_adu`` is the camera offset of the training data: the default for inference when
    the user gives none. ``prior``: the condition starts with the RL prior channel
    (:func:`condition`), the residual base.
    """
    out: dict[str, Any] = {
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
        out["prior"] = {"kind": "rl", "iterations": SR_RL_ITERATIONS}
    return out


def validate_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """Check an SR rule: keys, the percentile input map, bicubic ×2, the optional RL prior and
    the target (``minmax``, or ``fit_to_input`` with a positive ``blur_px``)."""
    if missing := {"task", "input", "target", "residual"} - set(rule):
        raise ValueError(f"normalization is missing {sorted(missing)}")
    if unknown := set(rule) - {"task", "input", "target", "residual", "upsample", "prior"}:
        raise ValueError(f"normalization has unknown keys {sorted(unknown)}")
    inp = rule["input"]
    if not isinstance(inp, dict) or inp.get("kind") != "percentile":
        raise ValueError("normalization.input.kind must be 'percentile'")
    if unknown := set(inp) - {"kind", "offset_adu", "p_low", "p_high", "clip"}:
        raise ValueError(f"normalization.input has unknown keys {sorted(unknown)}")
    for key in ("offset_adu", "p_low", "p_high"):
        number(inp.get(key), f"normalization.input.{key}")
    if not 0 <= inp["p_low"] < inp["p_high"] <= 100:
        raise ValueError("normalization.input needs 0 <= p_low < p_high <= 100")
    up = rule.get("upsample", _UPSAMPLE)
    if not isinstance(up, dict) or up.get("mode") != "bicubic" or up.get("factor") != 2:
        raise ValueError("normalization.upsample must be bicubic with factor 2")
    if "prior" in rule:
        prior = rule["prior"]
        if not isinstance(prior, dict) or prior.get("kind") != "rl":
            raise ValueError("normalization.prior.kind must be 'rl' for an sr model")
        iterations = prior.get("iterations")
        if isinstance(iterations, bool) or not isinstance(iterations, int) or iterations < 1:
            raise ValueError("normalization.prior.iterations must be a positive integer")
        if unknown := set(prior) - {"kind", "iterations"}:
            raise ValueError(f"normalization.prior has unknown keys {sorted(unknown)}")
    target = rule["target"]
    kind, extra = "minmax", set()
    if isinstance(target, dict) and target.get("kind") == "fit_to_input":
        kind, extra = "fit_to_input", {"blur_px"}
    if not isinstance(target, dict) or target.get("kind") != kind:
        raise ValueError(f"normalization.target.kind must be one of {[kind, 'fit_to_input']}")
    for key in extra:
        if number(target.get(key), f"normalization.target.{key}") <= 0:
            raise ValueError(f"normalization.target.{key} must be positive")
    if not isinstance(rule["residual"], bool):
        raise ValueError("normalization.residual must be true or false")
    return rule


# --- model units ------------------------------------------------------------------------------


def condition(
    frame_adu: np.ndarray,
    norm: PercentileNorm,
    rule: dict[str, Any],
    optics: dict[str, float] | None = None,
) -> np.ndarray:
    """The model condition of one SR frame (Y, X) ADU on the target grid, float32:
    (1, 2Y, 2X) ``[widefield ×2]``, or (2, 2Y, 2X) ``[RL prior, widefield ×2]`` when ``rule``
    has a ``prior``; ``optics`` then gives ``pixel_size_um``, ``na``, ``wavelength_um``."""
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


def _model_factor(physics: Mapping[str, Any], pixel_size_um: float, na: Any, lam: Any) -> float:
    """The zoom from the PSF widths in pixels of the input and the model (no tolerance)."""
    from ..physics.psf import psf_width_px, resample_factor_for_model

    r0 = psf_width_px(float(physics["na"]), float(physics["wavelength_um"]),
                      float(physics["pixel_size_um"]))  # fmt: skip
    na = float(physics["na"]) if na is None else float(na)
    lam = float(physics["wavelength_um"]) if lam is None else float(lam)
    return float(resample_factor_for_model(float(pixel_size_um), na, lam, r0))


def resample_factor(
    physics: Mapping[str, Any],
    pixel_size_um: float | None,
    na: float | None = None,
    wavelength_um: float | None = None,
) -> float:
    """The zoom an SR model applies to an input of ``pixel_size_um`` (1.0: none), as
    :class:`SRAdapter` does: its widefield PSF as wide in pixels as in the model's training
    data; missing NA/λ are the model's (``physics``); factors within 2 % of 1 are skipped; no
    pixel size means no resampling (the model's pixel size is assumed). The far-from-training
    warning is left to the adapter."""
    if not pixel_size_um or not physics.get("pixel_size_um"):
        return 1.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the far-from-training warning comes later
        factor = _model_factor(physics, pixel_size_um, na or None, wavelength_um or None)
    return 1.0 if abs(factor - 1.0) < RESAMPLE_TOLERANCE else float(factor)


class SRAdapter:
    """Widefield (..., Y, X) in ADU → SR frames; see the module docstring.

    ``pixel_size_um``, ``na``, ``wavelength_um``: the image's optics; when a pixel size is given
    the image is resampled to the model's PSF width in pixels (missing NA/λ default to the
    model's). ``offset_adu``: camera offset (default: the model's training offset).
    """

    task = "sr"

    def __init__(
        self,
        image: Any,
        metadata: dict[str, Any],
        *,
        pixel_size_um: float | None = None,
        na: float | None = None,
        wavelength_um: float | None = None,
        offset_adu: float | None = None,
        resample_method: str = "fourier",
    ) -> None:
        self.image = check_image(image, 2, "widefield image")
        self.physics = metadata["physics"]
        rule = metadata["normalization"]["input"]
        self.offset = float(rule["offset_adu"] if offset_adu is None else offset_adu)
        self.percentiles = (float(rule["p_low"]), float(rule["p_high"]))
        self.resample_method = resample_method
        self.residual = bool(metadata["architecture"].get("residual", False))
        self.rule = metadata["normalization"]
        self.lead = self.image.shape[:-2]
        self.factor = 1.0
        self.optics: dict[str, Any] = {
            "pixel_size_um": pixel_size_um,
            "na": na,
            "wavelength_um": wavelength_um,
        }
        if pixel_size_um is not None:
            self.factor = self._resample_factor(pixel_size_um, na, wavelength_um)
        h, w = self.image.shape[-2:]
        self.frame_shape = (max(1, round(h * self.factor)), max(1, round(w * self.factor)))
        if self.factor != 1.0:  # the exact factor realised by the integer output size
            self.factor = self.frame_shape[-1] / w
        self.output_shape = (*self.lead, 2 * self.frame_shape[0], 2 * self.frame_shape[1])
        self.norms = [self._fit(idx) for idx in np.ndindex(*self.lead)]  # validates every frame

    def _resample_factor(
        self, pixel_size_um: float, na: float | None, wavelength_um: float | None
    ) -> float:
        from ..physics.psf import psf_width_px, resample_factor_for_model

        p = self.physics
        na = float(na) if na is not None else float(p["na"])
        lam = float(wavelength_um) if wavelength_um is not None else float(p["wavelength_um"])
        self.optics.update(na=na, wavelength_um=lam, pixel_size_um=float(pixel_size_um))
        r0 = psf_width_px(float(p["na"]), float(p["wavelength_um"]), float(p["pixel_size_um"]))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            factor = resample_factor_for_model(float(pixel_size_um), na, lam, r0)
        for w in caught:
            warnings.warn(str(w.message), w.category, stacklevel=4)
        return 1.0 if abs(factor - 1.0) < RESAMPLE_TOLERANCE else factor

    def _frame(self, idx: tuple[int, ...]) -> np.ndarray:
        frame = np.asarray(self.image[idx], dtype=np.float64)
        if self.factor != 1.0:
            from ..physics.psf import resample_image

            frame = resample_image(frame, self.factor, self.resample_method).astype(np.float64)
        return frame

    def _fit(self, idx: tuple[int, ...]) -> Any:
        try:
            return fit_input_norm(np.asarray(self.image[idx]), self.offset, *self.percentiles)
        except InputError as exc:
            where = f" (frame {idx})" if idx else ""
            raise InputError(f"{exc}{where}") from None

    @property
    def frames(self) -> int:
        return math.prod(self.lead)

    def prior_optics(self) -> dict[str, float]:
        """Optics of the (resampled) frames for the RL prior: the stated NA/λ (else the model's)
        at the pixel size the frames have after resampling (else the model's)."""
        p = self.physics
        px = self.optics.get("pixel_size_um")
        return {
            "pixel_size_um": float(px) / self.factor if px else float(p["pixel_size_um"]),
            "na": float(self.optics.get("na") or p["na"]),
            "wavelength_um": float(self.optics.get("wavelength_um") or p["wavelength_um"]),
        }

    def prepare(self, index: int) -> PreparedFrame:
        """Frame ``index`` (C order over the leading axes) as a model condition (C_x, 2Y', 2X'):
        ``[widefield ×2]``, or ``[RL prior, widefield ×2]`` for models with the RL prior."""
        idx = np.unravel_index(index, self.lead) if self.lead else ()
        idx = tuple(int(i) for i in idx)
        norm = self.norms[index]
        # percentiles come from the original frame: resampling is linear, so the map is the same
        optics = self.prior_optics() if self.rule.get("prior") else None
        cond = condition(self._frame(idx), norm, self.rule, optics)
        x_up = cond[0] if self.residual else 0.0

        def to_physical(samples: np.ndarray) -> np.ndarray:
            return denormalize(np.asarray(samples, np.float64) + x_up, norm)

        return PreparedFrame(cond, to_physical, norm.to_dict())

    def output_pixel_size(self, pixel_size_um: float | None) -> float | None:
        """Output pixel (µm) for an input pixel ``pixel_size_um``: Δx / (2 · factor)."""
        return None if pixel_size_um is None else pixel_size_um / (2.0 * self.factor)

    def provenance(self) -> dict[str, Any]:
        return {
            "sr_factor": 2.0 * self.factor,
            "resample_factor": self.factor,
            "resample_method": self.resample_method if self.factor != 1.0 else None,
            "offset_adu": self.offset,
            "optics": {k: v for k, v in self.optics.items() if v is not None},
            "output_pixel_size_um": self.output_pixel_size(self.optics.get("pixel_size_um")),
        }


# --- training pairs ---------------------------------------------------------------------------


def prepare_pair(
    widefield: np.ndarray,
    target: np.ndarray,
    name: str = "",
    *,
    prior_optics: dict[str, float] | None = None,
) -> PreparedPair:
    """Widefield (Y, X) ADU + ground truth (2Y, 2X) → a :class:`PreparedPair`: the condition (C_x,
    2Y, 2X) made like inference's and the target ``a·GT + c`` (1, 2Y, 2X) fitted to it.

    ``prior_optics`` (``pixel_size_um`` of the widefield, ``na``, ``wavelength_um``: what the
    user of the data would state) adds the RL prior channel: condition ``[RL, widefield ×2]``;
    without it the condition is the widefield ×2 alone. The camera offset cancels in the
    percentile map (both percentiles are offset-subtracted), so none is needed here; inference
    stores it only to undo the map.
    """
    widefield = np.asarray(widefield)
    target = np.asarray(target)
    if widefield.ndim != 2 or target.ndim != 2:
        raise InputError(
            f"SR pair {name!r}: expected a 2-D widefield and a 2-D target, got shapes "
            f"{widefield.shape} and {target.shape}"
        )
    if target.shape != (2 * widefield.shape[0], 2 * widefield.shape[1]):
        raise InputError(
            f"SR pair {name!r}: the target must be exactly twice the widefield size in Y and X "
            f"(widefield {widefield.shape} → target {tuple(2 * s for s in widefield.shape)}), "
            f"got {target.shape}; crop or resample so the grids match"
        )
    norm = fit_input_norm(widefield)
    cond = condition(widefield, norm, rule(prior=prior_optics is not None), prior_optics)
    return PreparedPair(
        condition=cond,
        target=normalize_target_to_condition(target, cond[-1])[None],
        name=name,
    )


def simulated_physics(metadata: dict[str, Any]) -> dict[str, float]:
    """Nominal physical parameters of the SR recipe for the model file (µm, dimensionless):
    the widefield pixel size and the camera offset from the simulator's ``metadata``; NA and
    emission wavelength stay the recipe's nominal values (NA 1.49, 0.525 µm), since each
    sample draws its own jittered optics around them."""
    out = dict(DEFAULT_PHYSICS)
    value = metadata.get("widefield_pixel_size_um")
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        out["pixel_size_um"] = float(value)
    camera = metadata.get("camera")
    if isinstance(camera, dict) and (offset := camera.get("offset_adu")) is not None:
        out["camera_offset_adu"] = float(offset)
    return out


def _sr_readme(meta: dict[str, Any]) -> tuple[str, str]:
    """The README's input/normalisation/output lines of an SR package, and when ``predict``
    gives the same result."""
    physics = meta["physics"]
    inp = meta["normalization"]["input"]
    same = "a 2-D image without a pixel size, or with the model's, and no --offset"
    pre = f"""\
* **input** `raw`: (batch, 1, Y, X) float32, one widefield image per batch item in camera ADU
  (camera offset included), sampled like the training data: pixel {physics["pixel_size_um"]} µm
  at NA {physics["na"]}, λ {physics["wavelength_um"]} µm (the network does not resample; resample
  other pixel sizes first, or use `napari-cvdm predict --pixel-size`, which does).
* **normalisation** (inside the network, per image): subtract the camera offset
  {inp["offset_adu"]:g} ADU (the model's training value), map the {inp["p_low"]:g} and
  {inp["p_high"]:g} percentiles of the image to −1 and 1 (unclipped; the image's min and max
  when the two coincide), then bicubic ×2 (`align_corners=False`) onto the output grid.
* **outputs** `mean` and `std`: (batch, 1, 2Y, 2X) float32, relative intensity on the input's
  ADU-above-offset scale (the inverse of the input map applied to residual + up-sampled input),
  pixel {physics["pixel_size_um"] / 2:g} µm."""
    return same, pre


class SRTask(Task):
    """Widefield → SIM-like super-resolution (see the module docstring)."""

    name = "sr"
    label = "SR"
    reconstructs = True
    trainable = True
    default_model = "sr-fluorescence-2x"
    fixed_channels = (None, 1)
    physics_keys = ("pixel_size_um", "upscale", "wavelength_um", "na")
    default_physics = DEFAULT_PHYSICS
    adapter = SRAdapter

    # ------------------------------------------------------------------ input
    #: the Reconstruct widget's mode entry
    mode_label = "SR: widefield → 2× grid"
    min_input_ndim = 2
    #: the input is a through-focus stack (a focus axis and two planes to choose)
    focus_stack = False
    #: the optics the adapter takes (the form fields shown for this task)
    optics_fields = ("na", "wavelength_um", "offset_adu")
    #: what the form says when no image layer is there
    no_input_hint = "No image layer: open a 2-D widefield image (or a T/Z stack of them)."
    #: the input is in camera ADU above an offset: negative values are suspicious, the offset
    #: is checked against the image and said in the assumptions
    camera_input = True
    #: raw SIM frames (9 or 15 per image) are averaged to the widefield input
    raw_sim_input = True
    #: the input is resampled to the model's sampling (its PSF width in pixels)
    resamples_to_model = True
    #: the output grid is this much finer than the (resampled) input's
    upscale = 2.0
    #: the optics the assumptions line names: (label, key, unit)
    assumption_optics = (("NA", "na", ""), ("λ", "wavelength_um", " µm"))
    #: the optics read from a file's own provenance when no option gives them (none for SR:
    #: the options, else the model's)
    optics_from_file: tuple[str, ...] = ()

    def validate_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        return validate_rule(rule)

    def output_plan(
        self, shape: tuple[int, ...], metadata: dict[str, Any], options: dict[str, Any], name: str
    ) -> tuple[float, tuple[int, ...]]:
        """The resampling factor and the output shape of an input of ``shape`` (..., Y, X);
        refuses factors outside [1/MAX, MAX] of ``limits.MAX_RESAMPLE_FACTOR`` (usually a unit
        mistake) and frames that end up below the minimum size."""
        from ..limits import MAX_RESAMPLE_FACTOR
        from .base import MIN_SIZE

        h, w = int(shape[-2]), int(shape[-1])
        px = options.get("pixel_size_um")
        factor = 1.0
        if px is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                factor = _model_factor(
                    metadata["physics"], px, options.get("na"), options.get("wavelength_um")
                )
        if not 1.0 / MAX_RESAMPLE_FACTOR <= factor <= MAX_RESAMPLE_FACTOR:
            raise InputError(
                f"{name}: its pixel size ({px:g} µm) would need resampling by {factor:.3g} to "
                f"match the model (allowed 1/{MAX_RESAMPLE_FACTOR:g} to {MAX_RESAMPLE_FACTOR:g}); "
                "check the pixel size is in µm (62.6 nm is 0.0626; give --pixel-size to override "
                "the file's), or use a model trained for this sampling"
            )
        fh, fw = max(1, round(h * factor)), max(1, round(w * factor))
        if min(fh, fw) < MIN_SIZE:
            raise InputError(
                f"{name}: after resampling by {factor:.3g} to the model's sampling it would be "
                f"{fh}×{fw} pixels, below the minimum {MIN_SIZE}×{MIN_SIZE}; use a larger image "
                "or check the pixel size"
            )
        return factor, (*(int(s) for s in shape[:-2]), 2 * fh, 2 * fw)

    def implied_by(self, name: str, why: str, shape: tuple[int, ...]) -> str:
        """Why a layer that calls for this task (``why``) cannot go to another mode."""
        return (
            f"{name} is a widefield image ({why}), not a through-focus stack: switch "
            "the mode to SR (or pick a through-focus stack)."
        )

    def form_options(self, values: dict[str, Any], focus_axis: int | None) -> dict[str, Any]:
        """The adapter options of the Reconstruct form's ``values`` (NA, λ, offset if set)."""
        options = {"na": values["na"], "wavelength_um": values["wavelength_um"]}
        if values["offset_adu"] is not None:
            options["offset_adu"] = values["offset_adu"]
        return options

    def adapter_options(
        self, given: Any, pixel_size_um: float | None, shape: Any = None, file_meta: Any = None
    ) -> dict[str, Any]:
        """The adapter options of one input from the options ``given`` (``predict``'s parsed
        flags: ``na``, ``wavelength``, ``offset``) and its pixel size; None values left out
        (``file_meta``: unused, the SR optics come from the options or the model)."""
        opts = {
            "pixel_size_um": pixel_size_um,
            "na": given.na,
            "wavelength_um": given.wavelength,
            "offset_adu": given.offset,
        }
        return {k: v for k, v in opts.items() if v is not None}

    def output_pixel_size(self, pixel_size_um: float | None, factor: float = 1.0) -> float | None:
        """The output pixel (µm) of an input pixel resampled by ``factor``: Δx / (2 · factor)."""
        return None if pixel_size_um is None else pixel_size_um / (2.0 * factor)

    def dropped_axis(self, ndim: int, focus_axis: int | None) -> int | None:
        """The input axis the output does not have: none (every leading plane is a frame)."""
        return None

    def condition_channels_needed(self, rule: dict[str, Any]) -> tuple[int, str]:
        has_prior = bool(rule.get("prior"))
        return 1 + int(has_prior), f"{'with' if has_prior else 'without'} an RL prior"

    def rule(self, **options: Any) -> dict[str, Any]:
        """:func:`rule` (``offset_adu``, ``p_low``, ``p_high``, ``prior``)."""
        return rule(**options)

    # ------------------------------------------------------------------ outputs
    text = OutputText(
        value_unit="relative intensity (ADU − offset)",
        input_label="widefield input",
        input_unit="ADU",
        simulated_input_unit="ADU",
        truth_label="ground truth",
        truth_unit="relative intensity",
        mean_colormap_of_input=True,
    )
    #: `demo`: the simulated input's size per requested widefield size
    example_size_factor = 1

    def show_input(self, planes: np.ndarray) -> np.ndarray:
        """The input shown beside a result: the widefield frame of ``planes`` (1, Y, X)."""
        return planes[0]

    def example(self, rng: Any, physics: dict[str, Any], size: int) -> Example:
        """A simulated widefield microtubule image of ``size``² pixels at the model's NA and
        wavelength (1000 photons; the simulator's 0.0626 µm pixels) and its ground truth."""
        from ..physics.fluorescence import simulate_sr_pair

        sample = simulate_sr_pair(
            rng,
            size=int(size),
            structure="microtubules",
            photons=1000.0,
            na=physics["na"],
            wavelength_um=physics["wavelength_um"],
        )
        in_px = float(sample.metadata["widefield_pixel_size_um"])
        return Example(
            image=sample.widefield,
            truth=sample.target,
            input_pixel_um=in_px,
            output_pixel_um=float(sample.metadata["target_pixel_size_um"]),
            options={
                "pixel_size_um": in_px,
                "offset_adu": float(sample.metadata["camera"]["offset_adu"]),
            },
            metadata=sample.metadata,
            what="simulated widefield microtubules (1000 photons, seed 0)",
        )

    #: `demo`: with no bundled model, run an untrained one (with a banner) instead of skipping
    demo_untrained_fallback = True

    # ------------------------------------------------------------------ bioimage.io export
    bioimageio = BioimageioText(
        input_channels=("widefield",),
        output_channel="intensity",
        input_description="widefield image in camera ADU (offset included)",
        output_value="relative intensity (ADU above offset)",
        tags=("super-resolution", "fluorescence-light-microscopy", "widefield"),
    )
    #: the integer the TorchScript export branches on
    script_code = 0

    def export_input(self, image: np.ndarray) -> np.ndarray:
        """The network input (1, 1, Y, X) of an example's widefield (Y, X)."""
        return image[None, None]

    def export_frame(self, image: np.ndarray) -> np.ndarray:
        """What ``reconstruct`` takes for a network input (1, 1, Y, X): the frame (Y, X)."""
        return image[0, 0]

    def export_refusal(self, meta: dict[str, Any]) -> str | None:
        """Why a model cannot be exported (its RL prior runs in numpy, outside the network)."""
        if meta["normalization"].get("prior"):
            return (
                f"model {meta['name']!r} conditions on a Richardson-Lucy prior, which "
                "napari-cvdm computes in numpy/scipy outside the network; such models cannot be "
                "exported yet (export an SR model without --sr-prior rl)"
            )
        return None

    def script_defocus(self, metadata: dict[str, Any]) -> float:
        """The TIE prior's defocus number in the TorchScript export (none for SR)."""
        return 1.0

    def readme(self, meta: dict[str, Any]) -> tuple[str, str]:
        return _sr_readme(meta)

    # ------------------------------------------------------------------ metrics
    #: `evaluate --border` applies (the QPI phase metrics exclude a border)
    metric_border = False

    def evaluate(
        self, pred: np.ndarray, truth: np.ndarray, border: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """PSNR/SSIM/NRMSE in the DL-SR convention ([0, 1], data_range 1) and in CVDM units
        ([−1, 1], data_range 2) of a prediction against its ground truth (Y, X), and the
        conventions."""
        from ..metrics import sr_metrics

        conventions = {
            "psnr/ssim/nrmse": "each image min-max to [0, 1], data_range 1",
            "*_cvdm": "each image min-max to [-1, 1], data_range 2",
        }
        return sr_metrics(pred, truth), conventions

    def calibration_inputs(
        self, pred: np.ndarray, spread: np.ndarray, truth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Mean, std and truth in the units the calibration is measured in (relative
        intensities: min-max to [0, 1], the std scaled like the prediction), and those units."""
        from ..metrics import minmax01

        span = float(pred.max() - pred.min()) or 1.0
        units = "prediction and target min-max to [0, 1]; std scaled like the prediction"
        return minmax01(pred), spread / span, minmax01(truth), units

    # ------------------------------------------------------------------ training
    #: the option of training configs and data sources that shapes this task's condition
    condition_option = "sr_prior"
    #: the validation columns of the training log (the loss and :meth:`validation_metrics`)
    validation_keys = ("loss", "psnr", "ssim")
    recipe = "SR-B"
    #: the target grid is twice as fine: target pixel = input pixel / 2
    target_pixel_ratio = 2.0
    target_pixel_relation = "half the input's"
    denoised_bound = DENOISED_BOUND

    def train_rule(self, config: Any, physics: dict[str, Any] | None = None, source: Any = None):
        """The rule a training run writes: the data's camera offset, the RL prior if the run
        conditions on it (``config.sr_prior``)."""
        return rule(
            offset_adu=float((physics or {}).get("camera_offset_adu", 100.0)),
            prior=bool(getattr(config, "sr_prior", False)),
        )

    def check_train_options(self, config: Any) -> None:
        if config.qpi_extra_alphas:
            raise InputError("extra TIE prior channels are for QPI models; drop --qpi-priors")

    def settle_train_options(self, config: Any, resume: Any, base_rule: Any) -> None:
        """``config.sr_prior`` when not given: as the checkpoint (two condition channels) or
        the base model's rule has it, else :data:`DEFAULT_SR_PRIOR`; no QPI priors."""
        if config.sr_prior is None:
            if resume is not None:
                config.sr_prior = resume.info.get("architecture", {}).get("condition_channels") == 2
            elif config.base_model:
                config.sr_prior = bool(base_rule().get("prior"))
            else:
                config.sr_prior = DEFAULT_SR_PRIOR
        config.qpi_extra_alphas = tuple(float(a) for a in config.qpi_extra_alphas or ())

    def widen_positions(self, config: Any, missing: int) -> list[int]:
        """A base model without the run's RL prior channel gains it as channel 0."""
        return [0] if config.sr_prior and missing == 1 else []

    def adopt_data(self, source: Any, config: Any) -> None:
        """The data follow the model: with or without the RL prior channel."""
        adopt = getattr(source, "adopt_sr_prior", None)
        if adopt is not None:
            adopt(config.sr_prior)
        elif config.sr_prior:
            raise InputError(
                "this training data source cannot add the RL prior channel the model needs; "
                "give images or a folder, or train with --sr-prior none"
            )

    #: `simulate`: default widefield size (px), and the simulator's grid per input pixel (the
    #: SR simulator works on a 4× finer object grid, counted in its bytes per pixel)
    simulation_size = 128
    simulation_grid_factor = 1

    def simulated_planes(self, planes: int | None) -> int:
        """Image planes one simulated pair writes per input pixel: the widefield and its 2×
        target (4 input pixels' worth)."""
        return 1 + 4

    def simulator_overrides(self, args: Any) -> dict[str, Any]:
        """``simulate``'s flags as SR simulator options (None: not given); QPI-only flags are
        refused in one line."""
        sr_only = {"n-planes": args.planes, "dz": args.dz, "noise": args.noise}
        given = [f"--{k}" for k, v in sr_only.items() if v is not None]
        if given:
            raise InputError(f"{', '.join(given)} apply to qpi only; remove them for sr.")
        common = {"size": args.size, "photons": args.photons, "na": args.na}
        common.update(structure=args.structure, wavelength_um=args.wavelength)
        if args.pixel_size is not None:
            common["object_pixel_um"] = args.pixel_size / 4.0
        return common

    def simulated_files(self, rng: Any, overrides: dict[str, Any]) -> tuple[Any, ...]:
        """One simulated pair as ``simulate`` writes it: widefield (Y, X) ADU, ground truth
        (2Y, 2X), the metadata and the geometry (input pixel, target pixel, input axes)."""
        from ..physics.fluorescence import simulate_sr_pair

        s = simulate_sr_pair(rng, **overrides)
        meta = s.metadata
        geometry = (meta["widefield_pixel_size_um"], meta["target_pixel_size_um"], None)
        return s.widefield, s.target, meta, geometry

    def simulator_defaults(self) -> dict[str, Any]:
        from ..physics.fluorescence import SR_DEFAULTS

        return SR_DEFAULTS

    def simulate_pair(self, rng: Any, overrides: dict[str, Any], source: Any) -> tuple[Any, Any]:
        """One simulated pair normalised like inference inputs, and the simulator's metadata.
        With ``source.sr_prior`` the condition carries the RL prior computed with the sample's
        *nominal* optics (what a user would state; the true optics differ, as on a real
        microscope)."""
        from ..physics.fluorescence import simulate_sr_pair

        sample = simulate_sr_pair(rng, **overrides)
        md = sample.metadata
        optics = (
            {
                "pixel_size_um": float(md["widefield_pixel_size_um"]),
                "na": float(md["na"]),
                "wavelength_um": float(md["wavelength_um"]),
            }
            if source.sr_prior
            else None
        )
        pair = prepare_pair(sample.widefield, sample.target, "synthetic", prior_optics=optics)
        return pair, md

    def simulated_physics(self, metadata: dict[str, Any]) -> dict[str, float]:
        return simulated_physics(metadata)

    def prepare_pairs(
        self, x: np.ndarray, y: np.ndarray, name: str, input_px: float | None, source: Any
    ) -> list[PreparedPair]:
        """Pairs of one input/target: a widefield (Y, X) and its (2Y, 2X) ground truth, a raw
        SIM stack (9, Y, X) (its mean is the widefield) with a 2-D target, or a (T, Y, X) time
        series with a (T, 2Y, 2X) target (one pair per frame)."""
        from ..io import widefield_from_raw_sim

        optics = _prior_optics(source, input_px)
        if x.ndim == 3 and y.ndim == 2:
            if x.shape[0] != RAW_SIM_FRAMES:
                raise InputError(
                    f"SR pair {name!r}: a 3-D input with a 2-D target must be a raw-SIM stack of "
                    f"{RAW_SIM_FRAMES} frames, got {x.shape[0]} frames; give the widefield image"
                )
            x = widefield_from_raw_sim(x)
        if x.ndim == 3 and y.ndim == 3:
            if x.shape[0] != y.shape[0]:
                raise InputError(
                    f"SR pair {name!r}: input has {x.shape[0]} frames but target {y.shape[0]}"
                )
            return [
                prepare_pair(a, b, f"{name}[{t}]", prior_optics=optics)
                for t, (a, b) in enumerate(zip(x, y))
            ]
        return [prepare_pair(x, y, name, prior_optics=optics)]

    def validation_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        """Mean PSNR and SSIM of validation patches (N, 1, P, P) in model units."""
        from ..metrics import sr_metrics

        per = [_safe(sr_metrics, p[0], t[0]) for p, t in zip(pred, target)]
        return {k: float(np.nanmean([m.get(k, np.nan) for m in per])) for k in ("psnr", "ssim")}


def _safe(metric: Any, *args: Any, **kwargs: Any) -> dict[str, float]:
    """A metric dict, or {} for a patch the metric refuses (e.g. a blank target)."""
    try:
        return metric(*args, **kwargs)
    except InputError:
        return {}


def _prior_optics(source: Any, input_px: float | None) -> dict[str, float] | None:
    """The nominal optics of the RL prior of a paired-images source (None without it): the
    pair's pixel size, else the source's ``physics``, else the recipe's defaults."""
    if not source.sr_prior:
        return None
    merged = {**DEFAULT_PHYSICS, **source.physics}
    if input_px:
        merged["pixel_size_um"] = float(input_px)
    return {k: float(merged[k]) for k in ("pixel_size_um", "na", "wavelength_um")}


TASK = SRTask()
