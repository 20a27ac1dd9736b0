"""What a bioimage.io package exported by napari-cvdm holds: file names, the napari-cvdm record
under ``config``, and the bioimage.io (format 0.5) description of the staged files.

Shared by :mod:`.bioimageio_export` (writes packages) and :mod:`.bioimageio_import` (reads the
record back). ``bioimageio.spec`` is imported only inside :func:`describe` and
:func:`validate_zip`; numpy and torch only where used.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "CHECK_TOLERANCE",
    "CONFIG_KEY",
    "CVDM_CITATION",
    "CVDM_DOI",
    "EXPORT_FORMAT",
    "EXPORT_FORMAT_VERSION",
    "bioimageio_name",
    "describe",
    "torch_version",
    "validate_zip",
]

#: the key under ``config`` holding napari-cvdm's own record in an exported package
CONFIG_KEY = "napari_cvdm"
#: ``config.napari_cvdm.format`` of packages written here
EXPORT_FORMAT = "napari-cvdm-bioimageio"
EXPORT_FORMAT_VERSION = 1
#: largest accepted |scripted − reconstruct| as a fraction of the range (max − min) of the mean
CHECK_TOLERANCE = 1e-4
#: file names inside the package
WEIGHTS_FILE = "weights_torchscript.pt"
TEST_INPUT_FILE = "test_input.npy"
TEST_OUTPUT_FILES = {"mean": "test_output_mean.npy", "std": "test_output_std.npy"}
#: the same arrays as TIFF (bioimage.io's human-readable "sample tensors")
SAMPLE_FILES = {
    "raw": "sample_input.tif",
    "mean": "sample_output_mean.tif",
    "std": "sample_output_std.tif",
}
COVER_FILE = "cover.png"
DOC_FILE = "README.md"
#: smallest input edge of the package's axes (pixels) and the step of larger sizes
MIN_EDGE, EDGE_STEP = 16, 8
EXTRA_HINT = "install it with: pip install 'napari-cvdm[bioimageio]'"

CVDM_CITATION = (
    "della Maggiora, G. et al. Conditional Variational Diffusion Models. ICLR 2024 "
    "(arXiv:2312.02246)."
)
CVDM_DOI = "10.48550/arXiv.2312.02246"


def bioimageio_name(model_name: str, task: str) -> str:
    """A bioimage.io ``name`` (5–64 of letters, digits, ``_+- ()``) for a model."""
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+- ()")
    clean = "".join(c if c in allowed else "-" for c in model_name)
    return f"napari-cvdm {task.upper()} {clean}"[:64].rstrip()


def torch_version() -> str:
    import torch

    return torch.__version__.split("+")[0]


def _tensors(
    meta: dict[str, Any], folder: Path, pixel_size_um: float, outputs: dict[str, Any]
) -> tuple[Any, list[Any], list[Any]]:
    """The input tensor ``raw`` (batch, C_in, y, x; µm scale), the outputs ``mean``/``std``
    (the task's grid factor finer) and their reproducibility tolerances, as bioimage.io
    descriptions; channel names and texts are the task's."""
    from bioimageio.spec.model.v0_5 import (
        AxisId,
        BatchAxis,
        ChannelAxis,
        FileDescr,
        Identifier,
        InputTensorDescr,
        IntervalOrRatioDataDescr,
        OutputTensorDescr,
        ParameterizedSize,
        SizeReference,
        SpaceInputAxis,
        SpaceOutputAxis,
        TensorId,
    )

    from ..tasks import get

    spec = get(meta["task"])
    factor = spec.upscale
    text = spec.bioimageio
    raw = TensorId("raw")

    def space_in(name: str) -> Any:
        return SpaceInputAxis(
            id=AxisId(name),
            size=ParameterizedSize(min=MIN_EDGE, step=EDGE_STEP),
            scale=pixel_size_um,
            unit="micrometer",
        )

    def space_out(name: str) -> Any:
        return SpaceOutputAxis(
            id=AxisId(name),
            size=SizeReference(tensor_id=raw, axis_id=AxisId(name)),
            scale=pixel_size_um / factor,
            unit="micrometer",
        )

    input_descr = InputTensorDescr(
        id=raw,
        description=text.input_description,
        axes=[
            BatchAxis(),
            ChannelAxis(channel_names=[Identifier(c) for c in text.input_channels]),
            space_in("y"),
            space_in("x"),
        ],
        test_tensor=FileDescr(source=folder / TEST_INPUT_FILE),
        sample_tensor=FileDescr(source=folder / SAMPLE_FILES["raw"]),
        data=IntervalOrRatioDataDescr(type="float32"),
    )
    output_descrs = [
        OutputTensorDescr(
            id=TensorId(kind),
            description=f"pixelwise {kind} over the samples; " + text.output_value,
            axes=[
                BatchAxis(),
                ChannelAxis(channel_names=[Identifier(text.output_channel)]),
                space_out("y"),
                space_out("x"),
            ],
            test_tensor=FileDescr(source=folder / TEST_OUTPUT_FILES[kind]),
            sample_tensor=FileDescr(source=folder / SAMPLE_FILES[kind]),
            data=IntervalOrRatioDataDescr(type="float32"),
        )
        for kind in ("mean", "std")
    ]
    return input_descr, output_descrs, _tolerances(outputs)


def _tolerances(outputs: dict[str, Any]) -> list[Any]:
    """bioimage.io reproducibility tolerances of ``mean`` and ``std``: 1e-3 relative, 1e-3 of
    the output's maximum absolute, 100 mismatched elements per million."""
    import numpy as np
    from bioimageio.spec.model.v0_5 import ReproducibilityTolerance, TensorId

    return [
        ReproducibilityTolerance(
            relative_tolerance=1e-3,
            absolute_tolerance=1e-3 * max(float(np.max(outputs[kind])), 1e-12),
            mismatched_elements_per_million=100,
            output_ids=[TensorId(kind)],
        )
        for kind in ("mean", "std")
    ]


def describe(
    meta: dict[str, Any],
    folder: Path,
    model_file: str,
    config: dict[str, Any],
    pixel_size_um: float,
    outputs: dict[str, Any],
) -> Any:
    """The bioimage.io ``ModelDescr`` (format 0.5) of the files staged in ``folder``.

    ``meta``: the model file's header; ``model_file``: the attached model's file name;
    ``config``: the napari-cvdm record (``config.napari_cvdm``); ``pixel_size_um``: the input
    pixel the model expects (µm); ``outputs``: the test outputs ``mean``/``std``
    (1, C_y, Y', X'), which set the reproducibility tolerances (:func:`_tensors`).
    """
    from bioimageio.spec.model.v0_5 import (
        Author,
        CiteEntry,
        Doi,
        FileDescr,
        LicenseId,
        ModelDescr,
        TorchscriptWeightsDescr,
        Version,
        WeightsDescr,
    )

    from ..tasks import get

    task = meta["task"]
    input_descr, output_descrs, tolerances = _tensors(meta, folder, pixel_size_um, outputs)
    tags = ["napari-cvdm", "cvdm", "diffusion-model", "uncertainty", "2d", "torchscript"]
    tags += list(get(task).bioimageio.tags)
    return ModelDescr(
        name=bioimageio_name(meta["name"], task),
        description=(meta["description"] or f"napari-cvdm {task} model")[:1024],
        authors=[Author(name="napari-cvdm developers")],
        cite=[CiteEntry(text=CVDM_CITATION, doi=Doi(CVDM_DOI))],
        license=LicenseId("BSD-3-Clause"),
        documentation=FileDescr(source=folder / DOC_FILE),
        covers=[FileDescr(source=folder / COVER_FILE)],
        tags=tags,
        inputs=[input_descr],
        outputs=output_descrs,
        weights=WeightsDescr(
            torchscript=TorchscriptWeightsDescr(
                source=folder / WEIGHTS_FILE, pytorch_version=Version(torch_version())
            )
        ),
        attachments=[FileDescr(source=folder / model_file)],
        config={"bioimageio": {"reproducibility_tolerance": tolerances}, CONFIG_KEY: config},
    )


def validate_zip(path: Path) -> str:
    """bioimage.io.spec's validation of a written package; returns its status."""
    from bioimageio.spec import InvalidDescr, load_description

    descr = load_description(path, perform_io_checks=True)
    if isinstance(descr, InvalidDescr):
        raise RuntimeError(f"the exported package is not valid bioimage.io: {descr.get_reason()}")
    return str(descr.validation_summary.status)
