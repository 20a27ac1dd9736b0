"""Task ``qpi``: through-focus brightfield → quantitative phase in radians.

* **input**: a through-focus stack (..., Z, Y, X) (focus axis chosen, default the one before
  Y); the planes at −dz and +dz (default the first and the last) are used. Every other leading
  index is a frame. The output drops the focus axis.
* **model units** (:func:`condition`, ``normalization``): the flat-field contrast
  ``c = I / I_bg − 1`` of the two planes, preceded by the TIE prior(s) of the same planes
  (FFT-Tikhonov, the residual base first, then any ``extra_alphas``), mapped like the target.
  **Target**: ``2 φ / φ_norm − 1`` with φ_norm = 3.5 rad (fixed).
* **output**: phase in rad on the input's grid, up to a constant.
* **training pair**: the QPI simulator (recipe QPI-B) or paired stacks and phase maps;
  **baselines** TIE, TIE-DCT, US-TIE, CTF; **metrics** piston-removed phase MAE/RMSE (rad).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import InputError
from ..normalization import (
    DEFAULT_PHI_NORM,
    QPI_TIE_ALPHA,
    QPI_TIE_FLOOR_PERCENTILE,
    defocus_number,
    model_to_phase,
    phase_to_model,
    qpi_contrast,
    qpi_tie_prior,
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

__all__ = [
    "QPIAdapter",
    "QPITask",
    "condition",
    "prepare_pair",
    "prior_alphas",
    "rule",
    "select_planes",
]

#: the nominal physics of the QPI recipes (used when the data do not say)
DEFAULT_PHYSICS = {"pixel_size_um": 0.21, "wavelength_um": 0.521, "dz_um": 1.0}
#: the extra TIE prior channels of QPI models trained from scratch: none until a measured
#: comparison shows the multi-α condition (normalization.QPI_TIE_EXTRA_ALPHAS) is better
DEFAULT_QPI_EXTRA_ALPHAS: tuple[float, ...] = ()


# --- the rule in model files ------------------------------------------------------------------


def rule(
    phi_norm: float = DEFAULT_PHI_NORM,
    defocus_D: float | None = None,
    extra_alphas: tuple[float, ...] = (),
) -> dict[str, Any]:
    """The QPI normalisation rule (JSON-ready): TIE prior + contrast input, fixed-scale phase
    target, residual on the prior. ``defocus_D``: the D the prior was computed with in training
    (inference uses it for stacks whose optics are not given). ``extra_alphas``: further TIE
    prior channels (e.g. ``normalization.QPI_TIE_EXTRA_ALPHAS``) after the residual base."""
    out = {
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
        out["prior"]["defocus_D"] = float(defocus_D)
    if extra_alphas:
        out["prior"]["extra_alphas"] = [float(a) for a in extra_alphas]
    return out


def validate_rule(rule: dict[str, Any]) -> dict[str, Any]:
    """Check a QPI rule: keys, the contrast input, the optional TIE prior (α, floor, D and any
    extra weights) and the fixed-scale phase target."""
    if missing := {"task", "input", "target", "residual"} - set(rule):
        raise ValueError(f"normalization is missing {sorted(missing)}")
    if unknown := set(rule) - {"task", "input", "prior", "target", "residual"}:
        raise ValueError(f"normalization has unknown keys {sorted(unknown)}")
    inp = rule["input"]
    if not isinstance(inp, dict) or inp.get("kind") != "contrast":
        raise ValueError("normalization.input.kind must be 'contrast'")
    if unknown := set(inp) - {"kind", "background", "clip"}:
        raise ValueError(f"normalization.input has unknown keys {sorted(unknown)}")
    if "prior" in rule:
        _validate_prior(rule["prior"])
    target = rule["target"]
    if not isinstance(target, dict) or target.get("kind") != "phase":
        raise ValueError("normalization.target.kind must be one of ['phase']")
    if number(target.get("phi_norm"), "normalization.target.phi_norm") <= 0:
        raise ValueError("normalization.target.phi_norm must be positive")
    if not isinstance(rule["residual"], bool):
        raise ValueError("normalization.residual must be true or false")
    return rule


def _validate_prior(prior: Any) -> None:
    if not isinstance(prior, dict) or prior.get("kind") != "tie":
        raise ValueError("normalization.prior.kind must be 'tie'")
    if number(prior.get("alpha"), "normalization.prior.alpha") <= 0:
        raise ValueError("normalization.prior.alpha must be positive")
    floor = number(prior.get("floor_percentile"), "normalization.prior.floor_percentile")
    if not 0 <= floor < 100:
        raise ValueError("normalization.prior.floor_percentile must be in [0, 100)")
    if "defocus_D" in prior and number(prior["defocus_D"], "prior.defocus_D") <= 0:
        raise ValueError("normalization.prior.defocus_D must be positive")
    extra = prior.get("extra_alphas", [])
    if not isinstance(extra, list) or any(
        number(a, "normalization.prior.extra_alphas[]") <= 0 for a in extra
    ):
        raise ValueError("normalization.prior.extra_alphas must be a list of positive numbers")
    if unknown := set(prior) - {"kind", "alpha", "floor_percentile", "defocus_D", "extra_alphas"}:
        raise ValueError(f"normalization.prior has unknown keys {sorted(unknown)}")


def prior_alphas(rule: dict[str, Any]) -> tuple[float, ...]:
    """The Tikhonov weights of a QPI rule's TIE prior channels, in channel order (() without a
    prior): the residual base's ``alpha``, then ``extra_alphas``."""
    prior = rule.get("prior")
    if not prior:
        return ()
    return (float(prior["alpha"]), *(float(a) for a in prior.get("extra_alphas", ())))


# --- model units ------------------------------------------------------------------------------


def condition(contrast: np.ndarray, defocus_D: float, rule: dict[str, Any]) -> np.ndarray:
    """The model condition of one QPI frame: (P + 2, Y, X) ``[TIE prior(s), c−, c+]`` with the
    P priors of :func:`prior_alphas` (the first is the residual base), or the contrast pair
    (2, Y, X) itself when ``rule`` has no ``prior``. float32."""
    contrast = np.asarray(contrast, dtype=np.float32)
    alphas = prior_alphas(rule)
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


def model_defocus_number(metadata: dict[str, Any]) -> float:
    """D = λ·dz/Δx² of a QPI model's TIE prior in training: the rule's ``prior.defocus_D``, else
    from its physics (what stacks of unknown optics are reconstructed with)."""
    physics = metadata["physics"]
    trained = ((metadata.get("normalization") or {}).get("prior") or {}).get("defocus_D")
    if trained:
        return float(trained)
    return defocus_number(physics["wavelength_um"], physics["dz_um"], physics["pixel_size_um"])


class QPIAdapter:
    """Through-focus stack (..., Z, Y, X) → QPI frames; see the module docstring.

    ``focus_axis``: the Z axis (default the axis before Y); ``planes``: indices (i_minus, i_plus)
    of the −dz and +dz planes (default first and last); ``background``: flat-field intensity
    (default: median of the two planes). ``wavelength_um``, ``dz_um``, ``pixel_size_um`` are
    recorded, and compared with the model's dimensionless defocus D = λ·dz/Δx².
    """

    task = "qpi"

    def __init__(
        self,
        image: Any,
        metadata: dict[str, Any],
        *,
        focus_axis: int | None = None,
        planes: Sequence[int] | None = None,
        background: float | None = None,
        wavelength_um: float | None = None,
        dz_um: float | None = None,
        pixel_size_um: float | None = None,
    ) -> None:
        arr = np.asarray(image)
        if arr.ndim < 3:
            raise InputError(
                f"QPI needs a through-focus stack (Z, Y, X) with planes at −dz and +dz, got a "
                f"{arr.ndim}-D image of shape {arr.shape}; choose a stack or switch to SR mode"
            )
        axis = arr.ndim - 3 if focus_axis is None else int(focus_axis)
        if not -arr.ndim <= axis < arr.ndim or axis % arr.ndim >= arr.ndim - 2:
            raise InputError(
                f"focus axis {focus_axis} is not a valid axis before Y, X of shape {arr.shape}"
            )
        arr = np.moveaxis(arr, axis, -3)
        self.image = check_image(arr, 3, "through-focus stack")
        self.focus_axis = axis % arr.ndim
        nz = self.image.shape[-3]
        planes = (0, nz - 1) if planes is None else tuple(int(p) for p in planes)
        if (
            nz < 2
            or len(planes) != 2
            or planes[0] == planes[1]
            or not all(-nz <= p < nz for p in planes)
        ):
            raise InputError(
                f"QPI needs two distinct planes (−dz, +dz) of the {nz}-plane focus axis, got "
                f"planes={planes}; give planes=(i, j) with 0 <= i, j < {nz}"
            )
        self.planes = tuple(p % nz for p in planes)
        self.background = background
        self.rule = metadata["normalization"]
        self.phi_norm = float(self.rule["target"].get("phi_norm", DEFAULT_PHI_NORM))
        self.residual = bool(metadata["architecture"].get("residual", False))
        # the D of the prior in training: used when the stack's optics are not given
        self.model_defocus_D = model_defocus_number(metadata)
        self.lead = self.image.shape[:-3]
        self.output_shape = (*self.lead, *self.image.shape[-2:])
        self.optics = {
            "wavelength_um": wavelength_um,
            "dz_um": dz_um,
            "pixel_size_um": pixel_size_um,
        }
        self.defocus_D = self._check_defocus()
        for index in range(self.frames):  # validate every frame before any work
            self._contrast(index)

    def _check_defocus(self) -> float | None:
        lam, dz, dx = (self.optics[k] for k in ("wavelength_um", "dz_um", "pixel_size_um"))
        if None in (lam, dz, dx):
            return None
        d_user = defocus_number(lam, dz, dx)
        d_train = self.model_defocus_D
        if not 0.5 <= d_user / d_train <= 2.0:
            warnings.warn(
                f"the defocus number D = λ·dz/Δx² = {d_user:.1f} of this stack is far from the "
                f"model's {d_train:.1f}; pick planes with a closer dz or resample the stack",
                UserWarning,
                stacklevel=3,
            )
        return d_user

    @property
    def frames(self) -> int:
        return math.prod(self.lead)

    def _contrast(self, index: int) -> np.ndarray:
        idx = tuple(int(i) for i in np.unravel_index(index, self.lead)) if self.lead else ()
        two = np.asarray(self.image[idx][list(self.planes)], dtype=np.float64)
        if float(two.max()) == float(two.min()):
            raise InputError(
                f"the planes {self.planes} of frame {idx} are constant; there is no phase "
                "contrast to reconstruct — check the focus axis and planes"
            )
        contrast = qpi_contrast(two, self.background)
        if not np.isfinite(contrast).all():  # float32 overflow of I/I_bg − 1
            raise InputError(
                f"the contrast I/I_bg − 1 of the planes {self.planes} of frame {idx} is not "
                "finite (intensities too large for float32 against the background); rescale "
                "the stack"
            )
        return contrast

    def prepare(self, index: int) -> PreparedFrame:
        """Frame ``index`` as a model condition: (3, Y, X) ``[TIE prior, c−, c+]`` (or the
        contrast pair (2, Y, X) for models without a prior). The prior uses the stack's
        defocus number D when its optics are known, else the model's."""
        phi_norm = self.phi_norm
        defocus_D = self.defocus_D or self.model_defocus_D
        cond = condition(self._contrast(index), defocus_D, self.rule)
        prior = cond[0] if self.residual else 0.0

        def to_physical(samples: np.ndarray) -> np.ndarray:
            return model_to_phase(np.asarray(samples, np.float64) + prior, phi_norm)

        info = {
            "contrast": "I/I_bg-1",
            "background": self.background or "median",
            "phi_norm": phi_norm,
        }
        if self.rule.get("prior"):
            info["tie_prior"] = {**self.rule["prior"], "defocus_D": defocus_D}
        return PreparedFrame(cond, to_physical, info)

    def output_pixel_size(self, pixel_size_um: float | None) -> float | None:
        return pixel_size_um

    def provenance(self) -> dict[str, Any]:
        return {
            "planes": list(self.planes),
            "focus_axis": self.focus_axis,
            "defocus_D": self.defocus_D,
            "optics": {k: v for k, v in self.optics.items() if v is not None},
        }


# --- training pairs ---------------------------------------------------------------------------


def select_planes(stack: np.ndarray, planes: Sequence[int] | None = None) -> np.ndarray:
    """The two planes [I(−dz), I(+dz)] of a (Z, Y, X) stack: ``planes``, or the first and last
    (the inference default)."""
    stack = np.asarray(stack)
    if stack.ndim != 3 or stack.shape[0] < 2:
        raise InputError(
            f"a QPI input must be a (Z, Y, X) through-focus stack with at least 2 planes, got "
            f"shape {stack.shape}"
        )
    nz = stack.shape[0]
    lo, hi = (0, nz - 1) if planes is None else (int(p) for p in planes)
    if not (-nz <= lo < nz and -nz <= hi < nz) or lo % nz == hi % nz:
        raise InputError(
            f"planes {tuple(planes or ())} are not two distinct indices of a {nz}-plane stack; "
            f"give planes=(i, j) with 0 <= i, j < {nz}"
        )
    return stack[[lo % nz, hi % nz]]


def defocus_of_planes(dz_um: float, nz: int, planes: tuple[int, int]) -> float:
    """The defocus (µm) of ``planes`` from focus in an ``nz``-plane stack whose planes sit at
    the CLI's ``--dz`` convention (as in simulate and baseline): 2 planes at ±dz, an odd number
    at k·dz (k = −n … n), an even number evenly spaced by dz around focus."""
    from ..physics.qpi import plane_offsets

    if nz == 2 or nz % 2 == 1:
        offsets = plane_offsets(nz, dz_um)
    else:
        offsets = [(i - (nz - 1) / 2) * dz_um for i in range(nz)]
    lower, upper = (p % nz for p in planes)
    return abs(offsets[upper] - offsets[lower]) / 2


def default_defocus_number(physics: dict[str, float] | None = None) -> float:
    """D = λ·dz/Δx² from ``physics`` (µm), each missing value taken from the QPI recipe's."""
    merged = {**DEFAULT_PHYSICS, **(physics or {})}
    return defocus_number(merged["wavelength_um"], merged["dz_um"], merged["pixel_size_um"])


def prepare_pair(
    stack: np.ndarray,
    phase: np.ndarray,
    name: str = "",
    planes: Sequence[int] | None = None,
    defocus_D: float | None = None,
    extra_alphas: Sequence[float] = (),
) -> PreparedPair:
    """Through-focus stack (Z, Y, X) + phase (Y, X) rad → a :class:`PreparedPair`.

    The condition is ``[TIE prior, c−, c+]`` (3, Y, X) (:func:`condition`), the prior computed
    on the whole frame with the defocus number ``defocus_D`` = λ·dz/Δx² of the data (default:
    the QPI recipe's); ``extra_alphas`` adds one TIE prior channel per Tikhonov weight after the
    first (a multi-α model's condition). The target is ``2 φ / 3.5 − 1`` (1, Y, X).
    """
    two = select_planes(stack, planes)
    phase = np.asarray(phase)
    if phase.ndim != 2 or phase.shape != two.shape[1:]:
        raise InputError(
            f"QPI pair {name!r}: the phase target must be 2-D with the stack's Y, X size "
            f"{two.shape[1:]}, got {phase.shape}"
        )
    if defocus_D is None:
        defocus_D = default_defocus_number()
    qpi_rule = rule(extra_alphas=tuple(float(a) for a in extra_alphas))
    cond = condition(qpi_contrast(two), defocus_D, qpi_rule)
    return PreparedPair(condition=cond, target=phase_to_model(phase)[None], name=name)


def outer_dz(metadata: dict[str, Any]) -> float:
    """±dz of the planes a QPI condition uses (the outermost: ±max|z|, = dz for 2 planes), µm."""
    return max(abs(float(z)) for z in metadata.get("z_offsets_um", [metadata["dz_um"]]))


def simulated_physics(metadata: dict[str, Any]) -> dict[str, float]:
    """Nominal physical parameters of the QPI recipe for the model file: pixel size,
    wavelength, NA and the defocus of the two planes the model uses, from the simulator's
    ``metadata`` (µm, dimensionless)."""
    out = dict(DEFAULT_PHYSICS)
    for key in ("pixel_size_um", "wavelength_um", "dz_um", "na"):
        value = metadata.get(key)
        if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
            out[key] = float(value)
    out["dz_um"] = outer_dz(metadata)  # the defocus of the two planes the model uses
    return out


def _qpi_readme(meta: dict[str, Any]) -> tuple[str, str]:
    """The README's input/normalisation/output lines of a QPI package, and when ``predict``
    gives the same result."""
    rule_ = meta["normalization"]
    physics = meta["physics"]
    prior = rule_.get("prior") or {}
    same = "a stack of these two planes, without --dz/--wavelength/--pixel-size"
    phi_norm = float(rule_["target"]["phi_norm"])
    d = prior.get("defocus_D") or defocus_number(
        physics["wavelength_um"], physics["dz_um"], physics["pixel_size_um"]
    )
    pre = f"""\
* **input** `raw`: (batch, 2, Y, X) float32, the two brightfield planes [I(−dz), I(+dz)]
  symmetric about focus, any intensity scale with a positive background; trained at λ
  {physics["wavelength_um"]} µm, dz {physics["dz_um"]} µm, pixel {physics["pixel_size_um"]} µm,
  i.e. the defocus number D = λ·dz/Δx² = {d:.4g}, which the network assumes.
* **normalisation** (inside the network, per image): contrast c = I / median(I) − 1 of both
  planes; a TIE prior channel: FFT-Tikhonov TIE of the two planes on their mirror extension
  (α = {prior.get("alpha", 0):g} in pixel units, D = {d:.4g}), shifted so its
  percentile {prior.get("floor_percentile", 0):g} is 0 rad and mapped to
  2φ/{phi_norm:g} − 1; the condition is [φ_TIE, c₋, c₊].
* **outputs** `mean` and `std`: (batch, 1, Y, X) float32, phase in rad
  (φ = (ŷ₀ + φ_TIE + 1) · {phi_norm:g} / 2), up to a constant."""
    return same, pre


class QPITask(Task):
    """Through-focus brightfield → quantitative phase (see the module docstring)."""

    name = "qpi"
    label = "QPI"
    reconstructs = True
    trainable = True
    default_model = "qpi-2plane"
    fixed_channels = (None, 1)
    physics_keys = ("pixel_size_um", "wavelength_um", "dz_um")
    default_physics = DEFAULT_PHYSICS
    adapter = QPIAdapter

    # ------------------------------------------------------------------ input
    mode_label = "QPI: through-focus → phase"
    min_input_ndim = 3
    focus_stack = True
    optics_fields = ("wavelength_um", "dz_um")
    no_input_hint = (
        "No through-focus stack: QPI needs an image layer with at least 3 axes "
        "(Z, Y, X). Open one (e.g. File → Open Sample → napari CVDM) or switch to SR."
    )
    camera_input = False
    raw_sim_input = False
    resamples_to_model = False
    upscale = 1.0
    assumption_optics = (("λ", "wavelength_um", " µm"), ("dz", "dz_um", " µm"))
    #: a simulated stack states λ and its defocus step: used when no option gives them, as
    #: ``baseline`` does
    optics_from_file = ("wavelength_um", "dz_um")

    def validate_rule(self, rule: dict[str, Any]) -> dict[str, Any]:
        return validate_rule(rule)

    def output_plan(
        self, shape: tuple[int, ...], metadata: dict[str, Any], options: dict[str, Any], name: str
    ) -> tuple[float, tuple[int, ...]]:
        """No resampling; the output is the input without its focus axis (the one before Y)."""
        lead = [int(s) for s in shape[:-2]]
        return 1.0, (*(lead[:-1] if lead else []), int(shape[-2]), int(shape[-1]))

    def implied_by(self, name: str, why: str, shape: tuple[int, ...]) -> str:
        """Why a layer that calls for this task (``why``) cannot go to another mode."""
        return (
            f"{name} is a through-focus stack ({why}): an SR model would treat its "
            f"{shape[-3]} planes as separate widefield images. Switch the mode "
            "to QPI to reconstruct its phase."
        )

    def form_options(self, values: dict[str, Any], focus_axis: int | None) -> dict[str, Any]:
        """The adapter options of the Reconstruct form's ``values`` (focus axis, planes, λ, dz)."""
        return {
            "focus_axis": focus_axis,
            "planes": values["planes"],
            "wavelength_um": values["wavelength_um"],
            "dz_um": values["dz_um"],
        }

    def adapter_options(
        self, given: Any, pixel_size_um: float | None, shape: Any = None, file_meta: Any = None
    ) -> dict[str, Any]:
        """The adapter options of one input from the options ``given`` (``predict``'s parsed
        flags: ``wavelength``, ``dz``, ``focus_axis``, ``planes``), else what the file states
        (``file_meta``, an ``ImageMetadata``: λ and dz of a simulated stack, as ``baseline``
        reads them), and its pixel size; ``shape`` (the array's) turns ``dz`` (the stack's
        defocus step) into the defocus of the chosen planes. None values left out."""
        from ..imagemeta import file_optics

        stated = file_optics(getattr(file_meta, "extra", None))
        dz = given.dz if given.dz is not None else stated.get("dz_um")
        wavelength = given.wavelength
        if wavelength is None:
            wavelength = stated.get("wavelength_um")
        if dz is not None and shape is not None and len(shape) >= 3:
            axis = len(shape) - 3 if given.focus_axis is None else given.focus_axis % len(shape)
            nz = int(shape[axis])
            planes = (0, nz - 1) if given.planes is None else tuple(given.planes)
            if nz >= 2 and all(-nz <= p < nz for p in planes):  # else the adapter says why
                dz = defocus_of_planes(dz, nz, planes)
        opts = {
            "pixel_size_um": pixel_size_um,
            "wavelength_um": wavelength,
            "dz_um": dz,
            "focus_axis": given.focus_axis,
            "planes": given.planes,
        }
        return {k: v for k, v in opts.items() if v is not None}

    def output_pixel_size(self, pixel_size_um: float | None, factor: float = 1.0) -> float | None:
        """The output pixel is the input's."""
        return pixel_size_um

    def dropped_axis(self, ndim: int, focus_axis: int | None) -> int | None:
        """The focus axis (default the one before Y), which the output does not have."""
        return ndim - 3 if focus_axis is None else focus_axis

    def condition_channels_needed(self, rule: dict[str, Any]) -> tuple[int, str]:
        priors = len(prior_alphas(rule))
        kind = "a TIE" if priors <= 1 else f"{priors} TIE"
        return 2 + priors, f"{'with' if rule.get('prior') else 'without'} {kind} prior"

    def rule(self, **options: Any) -> dict[str, Any]:
        """:func:`rule` (``phi_norm``, ``defocus_D``, ``extra_alphas``)."""
        return rule(**options)

    # ------------------------------------------------------------------ outputs
    text = OutputText(
        value_unit="phase (rad)",
        input_label="I(+dz) − I(−dz)",
        input_unit="intensity",
        simulated_input_unit="intensity (background 1)",
        truth_label="true phase",
        truth_unit="phase (rad)",
    )
    #: `demo`: the simulated stack's size per requested widefield size
    example_size_factor = 2

    def show_input(self, planes: np.ndarray) -> np.ndarray:
        """The input shown beside a result: the last plane minus the first of ``planes``
        (Z, Y, X), I(+dz) − I(−dz)."""
        return planes[-1] - planes[0]

    def example(self, rng: Any, physics: dict[str, Any], size: int) -> Example:
        """A simulated through-focus stack of a cell phase scene (``size``² pixels) at the
        model's wavelength, dz and pixel size, and its phase."""
        from ..physics.qpi import simulate_qpi_stack

        sample = simulate_qpi_stack(
            rng,
            size=int(size),
            wavelength_um=physics["wavelength_um"],
            pixel_size_um=physics["pixel_size_um"],
            dz_um=physics["dz_um"],
            source="cells",  # a cell-like phase scene (nucleus, organelles), not a texture
        )
        px = float(sample.metadata["pixel_size_um"])
        return Example(
            image=sample.stack,
            truth=sample.phase,
            input_pixel_um=px,
            output_pixel_um=px,
            options={
                "pixel_size_um": px,
                "wavelength_um": sample.metadata["wavelength_um"],
                "dz_um": sample.metadata["dz_um"],
            },
            metadata=sample.metadata,
            what="simulated through-focus planes of a cell phase scene (seed 0)",
        )

    #: `demo`: with no bundled model, run an untrained one (with a banner) instead of skipping
    demo_untrained_fallback = False

    # ------------------------------------------------------------------ bioimage.io export
    bioimageio = BioimageioText(
        input_channels=("minus_dz", "plus_dz"),
        output_channel="phase",
        input_description="the two through-focus planes [I(-dz), I(+dz)]",
        output_value="phase in rad",
        tags=("quantitative-phase-imaging", "brightfield", "phase-retrieval"),
    )
    script_code = 1

    def export_input(self, image: np.ndarray) -> np.ndarray:
        """The network input (1, 2, Y, X): the outer planes of an example's stack (Z, Y, X)."""
        return image[[0, -1]][None]

    def export_frame(self, image: np.ndarray) -> np.ndarray:
        """What ``reconstruct`` takes for a network input (1, 2, Y, X): the planes (2, Y, X)."""
        return image[0]

    def export_refusal(self, meta: dict[str, Any]) -> str | None:
        return None

    def script_defocus(self, metadata: dict[str, Any]) -> float:
        """The TIE prior's defocus number D in the TorchScript export: the model's."""
        return model_defocus_number(metadata)

    def readme(self, meta: dict[str, Any]) -> tuple[str, str]:
        return _qpi_readme(meta)

    # ------------------------------------------------------------------ metrics
    metric_border = True

    def evaluate(
        self, pred: np.ndarray, truth: np.ndarray, border: int
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Piston-removed phase MAE/RMSE (rad) without a ``border``, SSIM/PSNR with data_range
        3.5 rad, and the conventions."""
        from ..metrics import qpi_metrics

        conventions = {"phase": "rad, piston removed", "data_range_rad": 3.5}
        return qpi_metrics(pred, truth, border=border), conventions

    def calibration_inputs(
        self, pred: np.ndarray, spread: np.ndarray, truth: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
        """Mean (piston removed against the truth), std and truth in rad, and those units."""
        return pred - float(np.mean(pred - truth)), spread, truth, "rad, piston removed"

    # ------------------------------------------------------------------ training
    #: the option of training configs and data sources that shapes this task's condition
    condition_option = "qpi_extra_alphas"
    validation_keys = ("loss", "phase_mae")
    recipe = "QPI-B"
    target_pixel_ratio = 1.0
    target_pixel_relation = "the input's"
    denoised_bound = None

    def train_rule(self, config: Any, physics: dict[str, Any] | None = None, source: Any = None):
        """The rule a training run writes: the TIE prior's D as used in training (for stacks of
        unknown optics; None without a data source) and the run's extra TIE priors."""
        return rule(
            defocus_D=getattr(source, "defocus_D", None),
            extra_alphas=tuple(getattr(config, "qpi_extra_alphas", None) or ()),
        )

    def check_train_options(self, config: Any) -> None:
        if config.sr_prior:
            raise InputError("the RL prior channel is for SR models; drop --sr-prior for qpi")

    def settle_train_options(self, config: Any, resume: Any, base_rule: Any) -> None:
        """``config.qpi_extra_alphas`` when not given: as the checkpoint or the base model's
        rule has them, else :data:`DEFAULT_QPI_EXTRA_ALPHAS`; no RL prior."""
        if config.sr_prior is None:
            config.sr_prior = False
        if config.qpi_extra_alphas is None:
            if resume is not None:
                alphas = tuple(resume.info.get("config", {}).get("qpi_extra_alphas") or ())
            elif config.base_model:
                alphas = prior_alphas(base_rule())[1:]
            else:
                alphas = DEFAULT_QPI_EXTRA_ALPHAS
            config.qpi_extra_alphas = alphas
        config.qpi_extra_alphas = tuple(float(a) for a in config.qpi_extra_alphas)

    def widen_positions(self, config: Any, missing: int) -> list[int]:
        """A base model with fewer TIE priors gains the extra ones after channel 0:
        ``[TIE(α), extra TIE priors…, c−, c+]``."""
        extra = len(config.qpi_extra_alphas or ())
        return [1] * extra if extra and missing == extra else []

    def adopt_data(self, source: Any, config: Any) -> None:
        """The data follow the model: with the extra TIE prior channels it takes."""
        if not config.qpi_extra_alphas:
            return
        adopt = getattr(source, "adopt_qpi_priors", None)
        if adopt is None:
            raise InputError(
                "this training data source cannot add the extra TIE prior channels the model "
                "needs; give images or a folder, or train with --qpi-priors single"
            )
        adopt(config.qpi_extra_alphas)

    #: `simulate`: default stack size (px), and the simulator's grid per pixel (complex fields
    #: propagated between planes)
    simulation_size = 256
    simulation_grid_factor = 4

    def simulated_planes(self, planes: int | None) -> int:
        """Image planes one simulated pair writes: the stack's planes (2 by default) and the
        phase."""
        return int(planes or 2) + 1

    def simulator_overrides(self, args: Any) -> dict[str, Any]:
        """``simulate``'s flags as QPI simulator options (None: not given)."""
        common = {"size": args.size, "photons": args.photons, "na": args.na}
        common.update(
            source=args.structure,
            planes=args.planes,
            dz_um=args.dz,
            wavelength_um=args.wavelength,
            pixel_size_um=args.pixel_size,
            noise=args.noise,
        )
        return common

    def simulated_files(self, rng: Any, overrides: dict[str, Any]) -> tuple[Any, ...]:
        """One simulated pair as ``simulate`` writes it: stack (Z, Y, X), phase (Y, X) rad, the
        metadata and the geometry ((dz, dy, dx) of the stack, the phase's pixel, "ZYX")."""
        from ..physics.qpi import simulate_qpi_stack

        s = simulate_qpi_stack(rng, **overrides)
        meta = s.metadata
        z = meta["z_offsets_um"]
        spacing = float(z[1] - z[0])
        dx = float(meta["pixel_size_um"])
        return s.stack, s.phase, meta, ((spacing, dx, dx), dx, "ZYX")

    def simulator_defaults(self) -> dict[str, Any]:
        from ..physics.qpi import QPI_DEFAULTS

        return QPI_DEFAULTS

    def simulate_pair(self, rng: Any, overrides: dict[str, Any], source: Any) -> tuple[Any, Any]:
        """One simulated pair normalised like inference inputs (the TIE prior(s) with the
        sample's D and ``source.qpi_extra_alphas``), and the simulator's metadata."""
        from ..physics.qpi import simulate_qpi_stack

        sample = simulate_qpi_stack(rng, **overrides)
        md = sample.metadata
        D = defocus_number(md["wavelength_um"], outer_dz(md), md["pixel_size_um"])
        pair = prepare_pair(
            sample.stack,
            sample.phase,
            "synthetic",
            defocus_D=D,
            extra_alphas=source.qpi_extra_alphas,
        )
        return pair, md

    def simulated_physics(self, metadata: dict[str, Any]) -> dict[str, float]:
        return simulated_physics(metadata)

    def prepare_pairs(
        self, x: np.ndarray, y: np.ndarray, name: str, input_px: float | None, source: Any
    ) -> list[PreparedPair]:
        """The pair of one stack (Z, Y, X) and its phase (Y, X) rad: the source's planes, its
        defocus number and extra TIE priors."""
        return [
            prepare_pair(x, y, name, source.qpi_planes, source.defocus_D, source.qpi_extra_alphas)
        ]

    def validation_metrics(self, pred: np.ndarray, target: np.ndarray) -> dict[str, float]:
        """Mean phase MAE (rad) of validation patches (N, 1, P, P) in model units, without a
        border of min(16, P/8) px."""
        from ..metrics import qpi_metrics

        border = min(16, target.shape[-1] // 8)
        per = []
        for p, t in zip(pred, target):
            try:
                per.append(qpi_metrics(model_to_phase(p[0]), model_to_phase(t[0]), border=border))
            except InputError:
                per.append({})
        return {"phase_mae": float(np.nanmean([m.get("mae_rad", np.nan) for m in per]))}


TASK = QPITask()
