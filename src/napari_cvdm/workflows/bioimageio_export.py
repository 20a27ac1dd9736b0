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


def _open_model(model: Any, output: Path, overwrite: bool) -> tuple[Path, Any]:
    """Check the output and load the model, before any work: its file and ``LoadedModel``."""
    from ..engine import registry
    from ..fsutil import refuse_existing

    if output.suffix.lower() != ".zip":
        raise InputError(f"the output {output} must be a .zip file (a bioimage.io package)")
    refuse_existing([output], overwrite=overwrite)
    if output.is_dir():
        raise InputError(f"the output {output} is a folder; give a .zip file path")
    _require_bioimageio()
    source = registry.resolve_model(model)
    loaded = registry.load(source)
    _check_exportable(loaded)
    return source, loaded


def _scripted_outputs(
    loaded: Any, staging: Path, settings: ExportSettings, say: Any, seconds: dict[str, float]
) -> tuple[np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    """Script the network into ``staging`` and run it on the simulated test input; returns the
    input (1, C_in, Y, X), its description and the outputs ``mean``/``std`` (1, 1, Y', X')."""
    import torch

    from ..engine.scripted import quiet_jit, script_reconstruction

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
    return image, info, outputs


def _checked(
    loaded: Any, image: np.ndarray, outputs: dict[str, np.ndarray], settings: ExportSettings,
    seconds: dict[str, float],
) -> tuple[dict[str, float], float]:  # fmt: skip
    """The largest differences from ``reconstruct`` and the mean's range; raises
    ``RuntimeError`` (nothing written) beyond :data:`CHECK_TOLERANCE` of that range."""
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
    return diffs, output_range


def _stage_files(
    staging: Path, source: Path, loaded: Any, image: np.ndarray, info: dict[str, Any],
    outputs: dict[str, np.ndarray], readme: Any,
) -> str:  # fmt: skip
    """Write the test input and outputs (npy and TIFF), the cover, the attached model file and
    the README (``readme(model_sha256)``) into ``staging``; returns the model's sha256."""
    import tifffile

    from ..engine.modelfile import file_sha256

    np.save(staging / TEST_INPUT_FILE, image)
    tifffile.imwrite(staging / SAMPLE_FILES["raw"], image[0])
    for kind, name in TEST_OUTPUT_FILES.items():
        np.save(staging / name, outputs[kind])
        tifffile.imwrite(staging / SAMPLE_FILES[kind], outputs[kind][0])
    write_cover(staging / COVER_FILE, image, outputs, loaded.task, info)
    model_sha256 = file_sha256(source)
    (staging / f"{source.stem}.safetensors").write_bytes(source.read_bytes())
    (staging / DOC_FILE).write_text(readme(model_sha256), encoding="utf-8")
    return model_sha256


def _record(
    meta: dict[str, Any], settings: ExportSettings, model_file: str, model_sha256: str,
    std_factor: float, diffs: dict[str, float], output_range: float,
) -> dict[str, Any]:  # fmt: skip
    """The napari-cvdm record of the package (``config.napari_cvdm``)."""
    from .. import __version__

    return {
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


def _save_package(descr: Any, output: Path) -> Any:
    """Save the package to a temp file next to ``output``, validate it, then rename it into
    place; returns the validation status (nothing is left behind on failure)."""
    from bioimageio.spec import save_bioimageio_package

    from ..fsutil import atomic_write

    status: list[Any] = []

    def write(tmp: Path) -> None:
        save_bioimageio_package(descr, output_path=tmp)
        status.append(validate_zip(tmp))

    atomic_write(output, write, ".zip")
    return status[0]


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
    ``log(message)`` receives progress lines. The steps: :func:`_open_model`,
    :func:`_scripted_outputs`, :func:`_checked`, :func:`_stage_files`, :func:`_record`,
    ``describe`` and :func:`_save_package`.
    """
    from ..fsutil import check_writable_folder, sweep_stale

    settings = (settings or ExportSettings()).validate()
    say = log or (lambda _message: None)
    output = Path(output).expanduser()
    source, loaded = _open_model(model, output, overwrite)
    folder = check_writable_folder(output.parent, "the output folder")
    sweep_stale(folder)
    seconds: dict[str, float] = {}
    meta = loaded.metadata
    std_factor = loaded.header.std_scale(raw=settings.raw_std)
    model_file = f"{source.stem}.safetensors"
    with tempfile.TemporaryDirectory(prefix="napari-cvdm-bioimageio-") as staging_name:
        staging = Path(staging_name)
        image, info, outputs = _scripted_outputs(loaded, staging, settings, say, seconds)
        say("checking it against napari-cvdm's own reconstruct")
        diffs, output_range = _checked(loaded, image, outputs, settings, seconds)

        def readme(model_sha256: str) -> str:
            return documentation(
                meta, settings, std_factor, diffs, output_range, info, model_file, model_sha256
            )

        model_sha256 = _stage_files(staging, source, loaded, image, info, outputs, readme)
        config = _record(meta, settings, model_file, model_sha256, std_factor, diffs, output_range)
        say("writing and validating the package (bioimageio.spec)")
        clock = time.perf_counter()
        pixel = float(meta["physics"]["pixel_size_um"])
        descr = describe(meta, staging, model_file, config, pixel, outputs)
        status = _save_package(descr, output)
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
