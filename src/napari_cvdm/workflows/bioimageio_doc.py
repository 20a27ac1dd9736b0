"""The human-readable parts of an exported bioimage.io package: the cover image and README.md.

The README says exactly what the exported network computes (sampler, steps, samples, seed,
normalisation, units) and how it was checked against napari-cvdm's ``reconstruct``; the cover is
the test input, mean and std with scale and colour bars (``figures.figure_of``, matplotlib Agg).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .bioimageio_package import (
    CHECK_TOLERANCE,
    COVER_FILE,
    CVDM_CITATION,
    TEST_INPUT_FILE,
    TEST_OUTPUT_FILES,
    WEIGHTS_FILE,
    torch_version,
)

__all__ = ["documentation", "write_cover"]


def write_cover(
    path: Path, image: np.ndarray, outputs: dict[str, np.ndarray], task: str, info: dict[str, Any]
) -> None:
    """Input | mean | std of the test input as a PNG at ``path`` (10 × 3.6 in at 80 dpi).

    ``image`` (1, C_in, Y, X); ``outputs`` ``mean``/``std`` (1, 1, Y', X'); ``info``: the test
    input's ``pixel_size_um`` (µm), which sets the scale bars.
    """
    from ..figures import Panel, figure_of

    px = info["pixel_size_um"]
    field_um = px * image.shape[-1]
    shown = image[0, 0] if task == "sr" else image[0, 1] - image[0, 0]
    unit = "relative intensity (ADU − offset)" if task == "sr" else "phase (rad)"
    panels = [
        Panel(
            "widefield input" if task == "sr" else "I(+dz) − I(−dz)",
            shown,
            "gray",
            "ADU" if task == "sr" else "intensity",
            field_um,
        ),
        Panel("mean", outputs["mean"][0, 0], "gray", unit, field_um),
        Panel("std (uncertainty)", outputs["std"][0, 0], "magma", unit, field_um),
    ]
    fig = figure_of(panels, f"napari-cvdm {task.upper()} on its test input")
    fig.set_size_inches(10.0, 3.6)
    fig.savefig(path, dpi=80)


def documentation(
    meta: dict[str, Any],
    settings: Any,
    std_factor: float,
    diffs: dict[str, float],
    output_range: float,
    info: dict[str, Any],
    model_file: str,
    model_sha256: str,
) -> str:
    """The package's README.md: what the network computes, the files, how it was checked."""
    from .. import __version__
    from ..normalization import defocus_number

    task = meta["task"]
    rule = meta["normalization"]
    physics = meta["physics"]
    sampler = (
        f"{settings.sampler}" if settings.sampler == "ancestral" else f"DDIM (η = {settings.eta})"
    )
    if settings.raw_std:
        calib = "the raw sample std (exported with --raw-std)"
    elif std_factor == 1.0:
        calib = "not rescaled (the model carries no std calibration)"
    else:
        calib = f"multiplied by the model's calibration scale {std_factor:.4g}"

    if task == "sr":
        same = "a 2-D image without a pixel size, or with the model's, and no --offset"
        inp = rule["input"]
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
    else:
        prior = rule.get("prior") or {}
        same = "a stack of these two planes, without --dz/--wavelength/--pixel-size"
        phi_norm = float(rule["target"]["phi_norm"])
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
    return f"""\
# napari-cvdm {task.upper()}: {meta["name"]}

{meta["description"]}

Exported by napari-cvdm {__version__} (`napari-cvdm export-bioimageio`) from the model file
`{model_file}` (sha256 `{model_sha256}`), which this package carries as an attachment
(`napari-cvdm models --import THIS.zip` installs it back).

## What the network computes

A Conditional Variational Diffusion Model (CVDM, della Maggiora et al., ICLR 2024) is a
stochastic, iterative sampler. This package fixes every choice, so the TorchScript network
`{WEIGHTS_FILE}` is deterministic: for each image it returns the **pixelwise mean and standard
deviation of {settings.samples} samples**, each drawn with the **{sampler} sampler in
{settings.steps} reverse steps** on a uniform time grid from t = 1 to 0, with noise from
per-sample CPU generators seeded from **seed {settings.seed}** (the seeds napari-cvdm uses for a
single image with that seed). The std is unbiased (ddof = 1) and {calib}. Each image of a batch is
reconstructed on its own with the same seeds; no tiling (the normalisation is per whole image,
so give the network whole images, not tiles).

{pre}
* **sampling**: the learned schedule γ(t, x) = exp(−λ(x)·ρ(t)) (λ network once per image, ρ on
  the time grid), the UNet denoiser, the denoised estimate clamped to the model's bound around
  the residual base; the sample is the residual added to that base.

This equals `napari-cvdm predict --model {meta["name"]} --samples {settings.samples} --steps
{settings.steps} --sampler {settings.sampler} --seed {settings.seed}` on the same image
({same}), up to floating-point rounding.

## Validation

* At export the network was run on `{TEST_INPUT_FILE}` ({info["what"]}) and compared with
  napari-cvdm's own `reconstruct`: largest |difference| {diffs["mean"]:.3g} for the mean and
  {diffs["std"]:.3g} for the std, for a mean spanning {output_range:.4g}
  (accepted: {CHECK_TOLERANCE:g} of that range). `{TEST_OUTPUT_FILES["mean"]}` and
  `{TEST_OUTPUT_FILES["std"]}` are the network's outputs.
* The model's own quality numbers (against ground truth and classical baselines) are in the
  napari-cvdm model card (docs/models.md); its training record is in the attached model file's
  header (`training`). A model trained only on simulations must be checked on your own data with
  ground truth before its results are trusted.

## Files

| file | what |
|---|---|
| `{WEIGHTS_FILE}` | the TorchScript network (torch {torch_version()}) |
| `{TEST_INPUT_FILE}`, `{TEST_OUTPUT_FILES["mean"]}`, `{TEST_OUTPUT_FILES["std"]}` | test \
input and outputs (the `.tif` files hold the same arrays) |
| `{COVER_FILE}` | input, mean and std of the test input |
| `{model_file}` | the original napari-cvdm model (safetensors, no pickle) |

Licence BSD-3-Clause (napari-cvdm). Cite the CVDM paper: {CVDM_CITATION}
"""
