"""Export a napari-cvdm model as a BioImage Model Zoo (bioimage.io) model package, format 0.5.

:func:`export_package` writes one zip holding

* ``weights_torchscript.pt``: :class:`~napari_cvdm.engine.scripted.ScriptedReconstruction`, the
  whole reconstruction (preprocessing, a fixed sampler with fixed seeds, postprocessing) as one
  deterministic TorchScript module with two outputs, the mean and the calibrated std;
* ``test_input.npy``, ``test_output_mean.npy``, ``test_output_std.npy``: a simulated input at the
  model's optics (seed 0) and the module's outputs for it;
* ``cover.png`` (input | mean | std), ``README.md`` (what the network computes, how it was
  checked), the CVDM citation and the project's licence (BSD-3-Clause);
* the original ``<name>.safetensors`` model file as an attachment, with its sha256 and the export
  settings under ``config.napari_cvdm`` (``napari-cvdm models --import`` installs it back).

Before anything is written the module is checked against the project's own
:func:`~napari_cvdm.workflows.predict.reconstruct` on the test input (same sampler, steps,
samples, seed): the largest difference must stay below :data:`CHECK_TOLERANCE` × the range of
the mean. The package is validated with ``bioimageio.spec`` (format and files) and only then
moved into place (temporary file + rename), so a failed export leaves nothing.

What the package holds is defined in :mod:`.bioimageio_package` (file names, the bioimage.io
description) and :mod:`.bioimageio_doc` (README, cover). ``bioimageio.spec`` (the ``bioimageio``
extra) and torch are imported only inside functions.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..defaults import SAMPLER, SAMPLERS, SAMPLES, SAMPLING_STEPS
from ..errors import InputError, UserError
from .bioimageio_doc import documentation, write_cover
from .bioimageio_package import (
    CHECK_TOLERANCE,
    COVER_FILE,
    DOC_FILE,
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    EXTRA_HINT,
    SAMPLE_FILES,
    TEST_INPUT_FILE,
    TEST_OUTPUT_FILES,
    WEIGHTS_FILE,
    describe,
    validate_zip,
)

__all__ = [
    "ExportReport",
    "ExportSettings",
    "export_package",
    "simulated_input",
]


@dataclass(frozen=True)
class ExportSettings:
    """What the exported network computes: ``samples`` samples of ``steps`` reverse steps with
    ``sampler`` (``eta`` for DDIM), noise from ``seed``; ``raw_std`` skips the model's std
    calibration; ``test_size``: edge (input pixels) of the simulated test input."""

    samples: int = SAMPLES
    steps: int = SAMPLING_STEPS
    sampler: str = SAMPLER
    seed: int = 0
    eta: float = 0.0
    raw_std: bool = False
    test_size: int = 64

    def validate(self) -> ExportSettings:
        """Check ranges (``InputError`` naming the option)."""
        from ..limits import check_value

        check_value("samples", self.samples)
        if self.samples < 2:  # one sample has a zero std, an output bioimage.io refuses
            raise InputError(
                f"--samples must be at least 2 for a bioimage.io package (the network outputs "
                f"the std over the samples), got {self.samples}"
            )
        check_value("steps", self.steps)
        check_value("seed", self.seed)
        check_value("eta", self.eta)
        check_value("size", self.test_size, "--test-size")
        if self.sampler not in SAMPLERS:
            raise InputError(
                f"--sampler must be {' or '.join(map(repr, SAMPLERS))}, got {self.sampler!r}"
            )
        return self


@dataclass
class ExportReport:
    """What :func:`export_package` did: the package ``path`` and its ``size_bytes``, the
    validation ``status`` of bioimage.io.spec, the check against ``reconstruct``
    (``max_abs_difference`` per output, ``output_range`` of the mean, the ``tolerance`` as a
    fraction of that range) and ``seconds`` per stage."""

    path: Path
    size_bytes: int
    status: str
    max_abs_difference: dict[str, float]
    output_range: float
    tolerance: float
    seconds: dict[str, float] = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs


def simulated_input(loaded: Any, size: int, seed: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """A simulated input at the model's optics, (1, C_in, Y, X) float32, and its description:
    the task's :meth:`example` (SR: a widefield microtubule image of ``size``² pixels in ADU,
    camera offset included; QPI: the two planes [I(−dz), I(+dz)] of a cell phase scene of
    ``size``² pixels) as the network's input."""
    from ..tasks import get

    task = get(loaded.task)
    example = task.example(np.random.default_rng(seed), loaded.metadata["physics"], size)
    image = task.export_input(example.image)
    info = {"pixel_size_um": example.input_pixel_um, "what": example.what}
    return np.ascontiguousarray(image, np.float32), info


# ----------------------------------------------------------------------------- checks


def _check_exportable(loaded: Any) -> None:
    from ..tasks import get

    meta = loaded.metadata
    task = get(meta["task"])
    if not task.reconstructs:
        raise InputError(
            f"model {meta['name']!r} is a {meta['task']!r} model; only SR and QPI models can be "
            "exported to bioimage.io (a restore prior is not an image-to-image network)"
        )
    refusal = task.export_refusal(meta)
    if refusal:
        raise InputError(refusal)
    from ..engine.scripted import condition_channels

    want = condition_channels(meta["task"], meta["normalization"])
    have = int(meta["architecture"]["condition_channels"])
    if have != want:
        raise InputError(
            f"model {meta['name']!r} takes {have} condition channels, but the exported "
            f"preprocessing makes {want} from its normalisation rule; it cannot be exported"
        )


def _reference(loaded: Any, image: np.ndarray, settings: ExportSettings) -> Any:
    """``reconstruct`` of the test input with the export's sampler (the project's own result)."""
    from ..events import Finished
    from .predict import ReconstructionParams, reconstruct

    params = ReconstructionParams(
        n_samples=settings.samples,
        steps=settings.steps,
        sampler=settings.sampler,
        eta=settings.eta,
        seed=settings.seed,
        device="cpu",
        raw_std=settings.raw_std,
        partial_copies=False,
    )
    from ..tasks import get

    frame = get(loaded.task).export_frame(image)
    for event in reconstruct(frame, loaded, params):
        if isinstance(event, Finished):
            return event.result
    raise RuntimeError("reconstruct ended without a result")  # pragma: no cover


def _compare(outputs: dict[str, np.ndarray], reference: Any) -> tuple[dict[str, float], float]:
    """Largest |scripted − reconstruct| per output and the range of the reference mean."""
    diffs = {
        "mean": float(np.max(np.abs(outputs["mean"][0, 0] - reference.mean))),
        "std": float(np.max(np.abs(outputs["std"][0, 0] - reference.std))),
    }
    return diffs, float(np.ptp(reference.mean))


# ----------------------------------------------------------------------------- the package


def _require_bioimageio() -> None:
    try:
        import bioimageio.spec  # noqa: F401
    except ImportError:
        raise UserError(f"export-bioimageio needs bioimageio.spec; {EXTRA_HINT}") from None


def export_package(
    model: Any,
    output: str | os.PathLike,
    settings: ExportSettings | None = None,
    *,
    overwrite: bool = False,
    log: Any = None,
) -> ExportReport:
    """Write the bioimage.io package of ``model`` (name or path) to ``output`` (``.zip``).

    Raises ``UserError`` (one line for the CLI) for an unknown model, a model that cannot be
    exported, an existing output without ``overwrite`` or an output folder that cannot be written,
    all before any work; ``RuntimeError`` when the scripted network disagrees with
    ``reconstruct`` or the package does not validate (a bug; nothing is written then).
    ``log(message)`` receives progress lines.
    """
    from ..engine.modelfile import file_sha256, load_model
    from ..engine.registry import resolve_model
    from ..fsutil import check_writable_folder, refuse_existing, sweep_stale, temp_path

    settings = (settings or ExportSettings()).validate()
    say = log or (lambda _message: None)
    output = Path(output).expanduser()
    if output.suffix.lower() != ".zip":
        raise InputError(f"the output {output} must be a .zip file (a bioimage.io package)")
    refuse_existing([output], overwrite=overwrite)
    if output.is_dir():
        raise InputError(f"the output {output} is a folder; give a .zip file path")
    _require_bioimageio()
    source = resolve_model(model)
    loaded = load_model(source, "cpu")
    _check_exportable(loaded)
    folder = check_writable_folder(output.parent, "the output folder")
    sweep_stale(folder)
    seconds: dict[str, float] = {}

    import torch

    from ..engine.scripted import quiet_jit, script_reconstruction
    from .calibration import std_scale

    meta = loaded.metadata
    std_factor = std_scale(meta, raw=settings.raw_std)
    model_file = f"{source.stem}.safetensors"
    with tempfile.TemporaryDirectory(prefix="napari-cvdm-bioimageio-") as staging_name:
        staging = Path(staging_name)
        clock = time.perf_counter()
        module = script_reconstruction(
            loaded,
            n_samples=settings.samples,
            steps=settings.steps,
            sampler=settings.sampler,
            eta=settings.eta,
            seed=settings.seed,
            raw_std=settings.raw_std,
        )
        module.save(str(staging / WEIGHTS_FILE))
        del module
        seconds["script"] = time.perf_counter() - clock
        image, info = simulated_input(loaded, settings.test_size)
        say(
            f"running the scripted network on the {image.shape[-1]}x{image.shape[-2]} test input "
            f"({settings.samples} samples x {settings.steps} steps)"
        )
        clock = time.perf_counter()
        with quiet_jit():
            scripted = torch.jit.load(str(staging / WEIGHTS_FILE), map_location="cpu")
        mean, std = scripted(torch.from_numpy(image))
        outputs = {"mean": mean.numpy(), "std": std.numpy()}
        del scripted
        seconds["test_outputs"] = time.perf_counter() - clock
        say("checking it against napari-cvdm's own reconstruct")
        clock = time.perf_counter()
        reference = _reference(loaded, image, settings)
        diffs, output_range = _compare(outputs, reference)
        seconds["check"] = time.perf_counter() - clock
        limit = CHECK_TOLERANCE * max(output_range, 1e-12)
        if not all(np.isfinite(v) and v <= limit for v in diffs.values()):
            raise RuntimeError(
                f"the scripted network differs from reconstruct by {diffs} (range "
                f"{output_range:.4g}, accepted {limit:.3g}); nothing was written"
            )
        import tifffile

        np.save(staging / TEST_INPUT_FILE, image)
        tifffile.imwrite(staging / SAMPLE_FILES["raw"], image[0])
        for kind, name in TEST_OUTPUT_FILES.items():
            np.save(staging / name, outputs[kind])
            tifffile.imwrite(staging / SAMPLE_FILES[kind], outputs[kind][0])
        write_cover(staging / COVER_FILE, image, outputs, loaded.task, info)
        model_sha256 = file_sha256(source)
        (staging / model_file).write_bytes(source.read_bytes())
        (staging / DOC_FILE).write_text(
            documentation(
                meta,
                settings,
                std_factor,
                diffs,
                output_range,
                info,
                model_file,
                model_sha256,
            ),
            encoding="utf-8",
        )
        from .. import __version__

        config = {
            "format": EXPORT_FORMAT,
            "format_version": EXPORT_FORMAT_VERSION,
            "plugin_version": __version__,
            "model_name": meta["name"],
            "task": meta["task"],
            "model_file": model_file,
            "model_sha256": model_sha256,
            "weights_sha256": (meta.get("weights") or {}).get("sha256"),
            "sampler": settings.sampler,
            "eta": settings.eta,
            "steps": settings.steps,
            "samples": settings.samples,
            "seed": settings.seed,
            "std_scale": std_factor,
            "check": {
                "max_abs_difference": diffs,
                "mean_range": output_range,
                "tolerance_fraction_of_range": CHECK_TOLERANCE,
            },
        }
        say("writing and validating the package (bioimageio.spec)")
        clock = time.perf_counter()
        pixel = float(meta["physics"]["pixel_size_um"])
        descr = describe(meta, staging, model_file, config, pixel, outputs)
        from bioimageio.spec import save_bioimageio_package

        tmp = temp_path(output, ".zip")
        try:
            save_bioimageio_package(descr, output_path=tmp)
            status = validate_zip(tmp)
            os.replace(tmp, output)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        seconds["package"] = time.perf_counter() - clock
    return ExportReport(
        path=output,
        size_bytes=output.stat().st_size,
        status=status,
        max_abs_difference=diffs,
        output_range=output_range,
        tolerance=CHECK_TOLERANCE,
        seconds=seconds,
    )
