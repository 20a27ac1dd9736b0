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
    from ..tasks import get

    text = get(task).text
    px = info["pixel_size_um"]
    field_um = px * image.shape[-1]
    shown = get(task).show_input(image[0])
    unit = text.value_unit
    panels = [
        Panel(text.input_label, shown, "gray", text.input_unit, field_um),
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
    """The package's README.md: what the network computes, the files, how it was checked
    (the input, normalisation and output lines are the task's :meth:`readme`)."""
    from .. import __version__
    from ..tasks import get

    task = meta["task"]
    sampler = (
        f"{settings.sampler}" if settings.sampler == "ancestral" else f"DDIM (η = {settings.eta})"
    )
    if settings.raw_std:
        calib = "the raw sample std (exported with --raw-std)"
    elif std_factor == 1.0:
        calib = "not rescaled (the model carries no std calibration)"
    else:
        calib = f"multiplied by the model's calibration scale {std_factor:.4g}"
    same, pre = get(task).readme(meta)
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
