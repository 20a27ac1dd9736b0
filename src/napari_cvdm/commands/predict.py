"""`napari-cvdm predict`: reconstruct image files with a CVDM model, headless.

For each INPUT (TIFF, MRC or an OME-Zarr folder) writes ``DIR/<stem>_mean.tif``,
``<stem>_std.tif`` and ``<stem>_schedule.tif`` (λ map), float32 with the output pixel size and the
provenance dict in the TIFF metadata; with ``--output-format zarr`` the same three as OME-Zarr
folders ``<stem>_mean.ome.zarr``, ... (pixel size in the multiscales metadata, provenance in the
group attributes). Every input, the model and the output folder are checked before anything is
written; a failure leaves no partial file behind. torch is imported only inside :func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..defaults import ETA, SAMPLER, SAMPLERS, SAMPLES, SAMPLING_STEPS
from ..errors import InputError, UserError
from ..predict_io import (  # re-exported: the CLI's names for the shared file steps
    OUTPUT_FORMATS,
    OUTPUTS,
    check_output_dir,
    output_axes,
    output_name,
    print_warnings,
    read_input,
    write_outputs,
)

__all__ = [
    "OUTPUTS",
    "print_warnings",
    "add_parser",
    "check_output_dir",
    "output_name",
    "reconstruct_file",
    "run",
    "write_outputs",
]


def add_output_format(parser: argparse.ArgumentParser) -> None:
    """The ``--output-format tif|zarr`` option (predict, baseline, restore)."""
    parser.add_argument(
        "--output-format",
        choices=OUTPUT_FORMATS,
        default="tif",
        help="tif (default): float32 TIFF files; zarr: OME-Zarr folders (<name>.ome.zarr, NGFF "
        "0.4, pixel size in µm in the multiscales metadata, provenance in the attributes; "
        "needs `pip install 'napari-cvdm[zarr]'`)",
    )


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Register the ``predict`` subcommand (its options in groups)."""
    parser = subparsers.add_parser(
        "predict",
        help="reconstruct images with a CVDM model",
        description=(
            "Reconstruct each INPUT (TIFF/OME-TIFF/MRC, or an OME-Zarr folder) with a CVDM "
            "model and write <stem>_mean.tif, <stem>_std.tif and <stem>_schedule.tif (float32, "
            "pixel size and provenance in the metadata; OME-Zarr folders with --output-format "
            "zarr). SR: 2-D images or stacks, frame by frame. QPI: through-focus stacks (Z, Y, X)."
        ),
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files or OME-Zarr folders"
    )
    parser.add_argument(
        "--model", required=True, help="model name (see `napari-cvdm models`) or .safetensors path"
    )
    parser.add_argument(
        "--output-dir", required=True, type=Path, metavar="DIR", help="folder for the results"
    )
    _add_sampling_options(parser)
    _add_compute_options(parser)
    _add_optics_options(parser)
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing outputs (outputs that are inputs are always refused)",
    )
    parser.add_argument(
        "--raw-sim",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="SR: average 9- or 15-frame inputs as raw SIM (default: only BioSR/rDL-SIM .mrc "
        "files, with a note); --no-raw-sim reconstructs their frames one by one",
    )
    add_output_format(parser)
    return parser


def _add_sampling_options(parser: argparse.ArgumentParser) -> None:
    """Samples, steps, sampler, the std, η and the seed (defaults from ``napari_cvdm.defaults``)."""
    parser.add_argument(
        "--samples",
        type=int,
        default=SAMPLES,
        help=f"samples per frame for mean/std (default {SAMPLES})",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=SAMPLING_STEPS,
        help=f"reverse diffusion steps (default {SAMPLING_STEPS})",
    )
    parser.add_argument("--sampler", choices=SAMPLERS, default=SAMPLER)
    parser.add_argument(
        "--raw-std",
        action="store_true",
        help="write the raw multi-sample std instead of the model's calibrated std",
    )
    parser.add_argument("--eta", type=float, default=ETA, help="DDIM eta (0 = deterministic)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (same seed, same result)")


def _add_compute_options(parser: argparse.ArgumentParser) -> None:
    """Device, tiles, threads, memory and the Dask cluster."""
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--tile", type=int, default=None, help="tile size in output pixels (large images)"
    )
    parser.add_argument(
        "--threads",
        default="auto",
        metavar="N",
        help="CPU threads for torch, or auto (default: the cores minus the other load)",
    )
    parser.add_argument(
        "--memory-gb",
        type=float,
        default=None,
        metavar="GB",
        help="memory for one network pass, which sizes the tiles (default: from the machine)",
    )
    parser.add_argument(
        "--dask-scheduler",
        default=None,
        metavar="ADDRESS",
        help="run one task per input on a Dask cluster (tcp://host:8786), or 'local' for a "
        "LocalCluster on this machine (needs `pip install 'napari-cvdm[dask]'`)",
    )
    parser.add_argument(
        "--dask-workers",
        type=int,
        default=None,
        metavar="N",
        help="worker processes of --dask-scheduler local (default: the cores)",
    )


def _add_optics_options(parser: argparse.ArgumentParser) -> None:
    """What the file does not say: pixel size, optics, camera offset, QPI planes."""
    parser.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        metavar="UM",
        help="input pixel size in µm (overrides the file's)",
    )
    parser.add_argument(
        "--na", type=float, default=None, help="SR: objective NA (default: the model's)"
    )
    parser.add_argument(
        "--wavelength",
        type=float,
        default=None,
        metavar="UM",
        help="emission (SR) or illumination (QPI) wavelength in µm",
    )
    parser.add_argument(
        "--offset",
        type=float,
        default=None,
        metavar="ADU",
        help="SR: camera offset in ADU (default: the model's)",
    )
    parser.add_argument(
        "--focus-axis", type=int, default=None, help="QPI: focus axis (default: before Y)"
    )
    parser.add_argument(
        "--planes",
        type=int,
        nargs=2,
        default=None,
        metavar=("MINUS", "PLUS"),
        help="QPI: indices of the -dz and +dz planes (default: first and last)",
    )
    parser.add_argument(
        "--dz",
        type=float,
        default=None,
        metavar="UM",
        help="QPI: the stack's defocus step in µm, as in simulate and baseline: 2 planes at ±dz, "
        "3 or 5 planes at k·dz (the chosen planes' defocus follows from it)",
    )


#: parsed option -> napari_cvdm.limits name (checked before anything is read or written)
OPTION_LIMITS = {
    "samples": "samples",
    "steps": "steps",
    "seed": "seed",
    "eta": "eta",
    "tile": "tile",
    "pixel_size": "pixel_size_um",
    "na": "na",
    "wavelength": "wavelength_um",
    "offset": "offset_adu",
    "dz": "dz_um",
}


def _memory_budget_mb(memory_gb: float | None) -> float | None:
    """``--memory-gb`` as the sampler's budget in MiB (None: the machine's default)."""
    if memory_gb is None:
        return None
    if not 0.05 <= memory_gb <= 4096:
        raise InputError(f"--memory-gb must be between 0.05 and 4096 GB, got {memory_gb:g}")
    return float(memory_gb) * 1024.0


def _assumptions(
    args: argparse.Namespace,
    task: str,
    model_metadata: Any,
    path: str,
    meta: Any,
    raw_sim: bool | None,
    adapter: Any,
) -> str:
    """The one ``note`` line of an input: pixel size, optics, offset, raw SIM, resampling."""
    from ..assumptions import for_file

    return for_file(
        task,
        model_metadata,
        meta,
        pixel_size_um=args.pixel_size,
        na=getattr(args, "na", None),
        wavelength_um=args.wavelength,
        offset_adu=getattr(args, "offset", None),
        dz_um=getattr(args, "dz", None),
        raw_sim=raw_sim,
        applied_factor=getattr(adapter, "factor", None),
        raw_frames=(getattr(meta, "extra", None) or {}).get("frames_read"),
    ).line(os.path.basename(path), cli=True)


def reconstruct_file(events: Iterator[Any], label: str, stream: Any = None) -> Any:
    """Drain a ``reconstruct`` generator with a progress bar; returns the ``Reconstruction``."""
    from ..events import Finished, PartialResult, Progress
    from ._progress import ProgressBar

    bar = ProgressBar(label, stream)
    result = None
    count = ""  # the running sample count, shown once the first mean/std exist
    try:
        for event in events:
            if isinstance(event, PartialResult):
                count = f"  {event.samples_done}/{event.samples_total} samples"
            elif isinstance(event, Progress):
                bar.update(event.step, event.total, event.stage + count)
            elif isinstance(event, Finished):
                result = event.result
    finally:
        bar.close()
        close = getattr(events, "close", None)
        if close is not None:
            close()
    if result is None:  # pragma: no cover - the workflow always finishes with a result
        raise RuntimeError("the reconstruction ended without a result")
    return result


def _settings(args: argparse.Namespace) -> tuple[Any, str, int]:
    """Check every option before anything is read: the sampling parameters, threads, the Dask
    options, the pixel size and the output format. Returns (params, format, threads)."""
    from ..engine.threads import resolve_threads
    from ..limits import check_args
    from ..workflows.predict import ReconstructionParams

    check_args(args, OPTION_LIMITS)
    params = ReconstructionParams(
        n_samples=args.samples,
        steps=args.steps,
        sampler=args.sampler,
        eta=args.eta,
        seed=args.seed,
        device=args.device,
        tile=args.tile,
        raw_std=bool(getattr(args, "raw_std", False)),
        partial_copies=False,  # the progress line reads the sample count only
        memory_budget_mb=_memory_budget_mb(getattr(args, "memory_gb", None)),
    ).validate()
    threads = resolve_threads(getattr(args, "threads", "auto"))
    dask_workers = getattr(args, "dask_workers", None)
    if dask_workers is not None and not getattr(args, "dask_scheduler", None):
        raise InputError("--dask-workers needs --dask-scheduler local")
    if args.pixel_size is not None and not args.pixel_size > 0:
        raise InputError(f"--pixel-size must be a positive number of µm, got {args.pixel_size}")
    fmt = getattr(args, "output_format", "tif")
    if fmt == "zarr":
        if getattr(args, "dask_scheduler", None):
            raise InputError(
                "--output-format zarr is not supported with --dask-scheduler yet; write TIFFs "
                "on the cluster, or run without --dask-scheduler"
            )
        from ..zarr_io import require_zarr

        require_zarr()
    return params, fmt, threads


def _check_input(args: argparse.Namespace, loaded: Any, task: Any, path: str, prefix: str) -> str:
    """Read one input (lazily where it can be), check it fits in memory, its offset and its
    adapter, before anything is written; returns its ``note`` line."""
    from ..imagekind import warn_if_negative
    from ..tasks import make_adapter
    from ..workflows.preflight import check_job, check_sr_offset

    raw_sim = getattr(args, "raw_sim", None)  # None: automatic
    with print_warnings(sys.stderr, prefix):
        array, pixel_size, file_meta = read_input(
            path, args.pixel_size, task.name, raw_sim, lazy=True
        )
    options = task.adapter_options(args, pixel_size, array.shape, file_meta)
    # on the shape: a lazy (OME-Zarr) input is not read before it fits in memory
    check_job(task.name, array.shape, loaded.metadata, options, args.samples, name=path)
    if hasattr(array, "dask"):  # it fits: read it now
        from ..zarr_io import to_numpy

        array = to_numpy(array)
        if task.camera_input:
            with print_warnings(sys.stderr, prefix):
                warn_if_negative(array, path)
    offset_note = check_sr_offset(task.name, array, loaded.metadata, args.offset, path)
    if offset_note:
        print(f"{prefix}: warning: {offset_note}", file=sys.stderr)
    with print_warnings(sys.stderr, prefix):
        adapter = make_adapter(task.name, array, loaded.metadata, **options)
    return _assumptions(args, task.name, loaded.metadata, path, file_meta, raw_sim, adapter)


def _check_inputs(
    args: argparse.Namespace, loaded: Any, task: Any, fmt: str, prefix: str
) -> tuple[dict[str, str], list[str]]:
    """Every input checked (:func:`_check_input`) and its output stem, distinct; returns the
    stems (stem → path) and the note lines."""
    from ..io import image_stem

    stems: dict[str, str] = {}
    notes: list[str] = []
    for path in args.inputs:
        stem = image_stem(path) or Path(path).stem
        if stem in stems:
            raise InputError(
                f"{path} and {stems[stem]} would both write {output_name(stem, '*', fmt)}; "
                "rename one"
            )
        stems[stem] = path
        notes.append(_check_input(args, loaded, task, path, prefix))
    return stems, notes


def _predict_one(
    args: argparse.Namespace, loaded: Any, task: Any, params: Any, out: tuple[Path, str],
    stem: str, path: str, prefix: str,
) -> list[Path]:  # fmt: skip
    """Reconstruct one input with a progress bar and write its output set into ``out``
    (folder, format); returns the written paths."""
    from ..workflows.predict import reconstruct

    folder, fmt = out
    with warnings.catch_warnings():  # already printed while validating
        warnings.simplefilter("ignore", UserWarning)
        raw_sim = getattr(args, "raw_sim", None)
        array, pixel_size, meta = read_input(path, args.pixel_size, task.name, raw_sim)
    options = task.adapter_options(args, pixel_size, array.shape, meta)
    with print_warnings(sys.stderr, prefix):
        events = reconstruct(array, loaded, params, input_name=os.path.basename(path), **options)
        result = reconstruct_file(events, f"{stem}")
    factor = result.metadata.get("resample_factor", 1.0)
    extra = {"source_metadata": {"pixel_size_um": meta.pixel_size_um, "axes": meta.axes}}
    return write_outputs(
        folder,
        stem,
        result,
        task.output_pixel_size(pixel_size, factor),
        extra,
        overwrite=getattr(args, "overwrite", False),
        inputs=tuple(args.inputs),
        fmt=fmt,
        axes=output_axes(
            meta.axes, result.mean.ndim, task.dropped_axis(array.ndim, args.focus_axis)
        ),
    )


def run(args: argparse.Namespace) -> int:
    """Check every option, the model, every input and the output folder, then reconstruct and
    write one input at a time (or one task per input on a Dask cluster)."""
    from .. import tasks
    from ..engine import registry
    from ..fsutil import refuse_existing
    from ..outputset import sweep

    prefix = "napari-cvdm predict"
    params, fmt, threads = _settings(args)
    import torch

    torch.set_num_threads(threads)
    loaded = registry.load(args.model)
    task = tasks.get(loaded.task)
    if not task.reconstructs:
        raise UserError(
            f"model {loaded.name!r} is a {loaded.task!r} model; predict needs an SR or QPI model"
        )
    # 1. validate every input (and the output names) before writing anything
    stems, notes = _check_inputs(args, loaded, task, fmt, prefix)
    folder = Path(args.output_dir)
    outputs = [folder / output_name(stem, suffix, fmt) for stem in stems for suffix in OUTPUTS]
    refuse_existing(outputs, args.inputs, getattr(args, "overwrite", False))
    folder = check_output_dir(folder)
    sweep(folder)  # what killed runs left here
    for note in notes:  # once every input and the folder passed: one line per input
        print(f"{prefix}: note: {note}", file=sys.stderr)
    if getattr(args, "dask_scheduler", None):  # 2. one task per input on a Dask cluster
        from ..batch import run_cli

        return run_cli(args, stems, loaded, params, folder)
    for stem, path in stems.items():  # 2. reconstruct and write, one input at a time
        written = _predict_one(args, loaded, task, params, (folder, fmt), stem, path, prefix)
        print("\n".join(str(p) for p in written))
    return 0
