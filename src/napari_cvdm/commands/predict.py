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
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..defaults import ETA, SAMPLER, SAMPLERS, SAMPLES, SAMPLING_STEPS
from ..errors import InputError, UserError

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

#: output kinds, in the order they are written: suffix -> Reconstruction attribute
OUTPUTS = {"mean": "mean", "std": "std", "schedule": "schedule"}
#: --output-format choices: TIFF files or OME-Zarr folders
OUTPUT_FORMATS = ("tif", "zarr")


def output_name(stem: str, suffix: str, fmt: str = "tif") -> str:
    """``<stem>_<suffix>.tif``, or ``<stem>_<suffix>.ome.zarr`` for ``fmt == "zarr"``."""
    return f"{stem}_{suffix}" + (".ome.zarr" if fmt == "zarr" else ".tif")


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


def check_output_dir(folder: Path) -> Path:
    """Create ``folder`` if needed and prove it is writable; raises ``UserError`` otherwise."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise UserError(
            f"cannot write to the output folder {folder} ({exc.strerror or exc}); "
            "choose a folder you can write to with --output-dir"
        ) from None
    return folder


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


def _task_options(
    args: argparse.Namespace, task: str, pixel_size: float | None, shape: Any = None
) -> dict[str, Any]:
    """The adapter options of one input; ``shape`` (the array's) turns a QPI ``--dz`` (the
    stack's defocus step) into the defocus of the chosen planes."""
    if task == "sr":
        opts = {
            "pixel_size_um": pixel_size,
            "na": args.na,
            "wavelength_um": args.wavelength,
            "offset_adu": args.offset,
        }
    else:
        dz = args.dz
        if dz is not None and shape is not None and len(shape) >= 3:
            axis = len(shape) - 3 if args.focus_axis is None else args.focus_axis % len(shape)
            nz = int(shape[axis])
            planes = (0, nz - 1) if args.planes is None else tuple(args.planes)
            if nz >= 2 and all(-nz <= p < nz for p in planes):  # else the adapter says why
                dz = defocus_of_planes(dz, nz, planes)
        opts = {
            "pixel_size_um": pixel_size,
            "wavelength_um": args.wavelength,
            "dz_um": dz,
            "focus_axis": args.focus_axis,
            "planes": args.planes,
        }
    return {k: v for k, v in opts.items() if v is not None}


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


def _read(
    path: str,
    pixel_size: float | None,
    task: str | None = None,
    raw_sim: bool | None = None,
    lazy: bool = False,
) -> tuple[Any, float | None, Any]:
    """Read and prepare one input: ``(array, pixel size in µm or None, ImageMetadata)``.
    ``lazy``: an OME-Zarr input stays a dask array (its shape is known, nothing read)."""
    from ..imagekind import prepare_input
    from ..io import read_image

    try:
        array, meta = read_image(path, lazy=lazy)
    except UserError:
        raise
    except Exception as exc:  # any parser failure on a damaged file is the user's file problem
        raise InputError(
            f"cannot read {path} ({type(exc).__name__}: {exc}); is it a valid image?"
        ) from None
    if pixel_size is None and meta.pixel_size_um:
        pixel_size = float(meta.pixel_size_um[-1])
    if task is not None:
        if array.ndim >= 3:  # for the note: how many raw SIM frames were averaged
            meta.extra["frames_read"] = int(array.shape[-3])
        array = prepare_input(array, meta, task, path, raw_sim)
    return array, pixel_size, meta


@contextmanager
def print_warnings(stream: Any, prefix: str) -> Iterator[None]:
    """Print warnings raised inside the block as ``prefix: warning: ...`` lines."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for w in caught:
                if issubclass(w.category, UserWarning):
                    print(f"{prefix}: warning: {w.message}", file=stream)


def output_axes(axes: str | None, ndim: int, drop: int | None = None) -> str | None:
    """The axis letters of an output with ``ndim`` dimensions made from an input with ``axes``:
    the input's, without axis ``drop`` (the QPI focus axis); None when they do not fit."""
    letters = str(axes or "")
    if drop is not None and len(letters) == ndim + 1:
        letters = letters[: drop % len(letters)] + letters[drop % len(letters) + 1 :]
    return letters if len(letters) == ndim else None


def write_outputs(
    folder: Path,
    stem: str,
    result: Any,
    pixel_size: float | None,
    extra: dict[str, Any] | None = None,
    overwrite: bool = False,
    inputs: tuple[str, ...] = (),
    fmt: str = "tif",
    axes: str | None = None,
) -> list[Path]:
    """Write ``<stem>_{mean,std,schedule}.tif`` (``fmt="zarr"``: ``.ome.zarr`` folders, with
    ``axes`` the output's axis letters) as one set (:class:`~napari_cvdm.outputset.OutputSet`):
    all three appear together or none. Existing outputs are refused unless ``overwrite``;
    outputs that are ``inputs`` always; non-finite results are refused."""
    import numpy as np

    from ..io import write_tiff
    from ..outputset import OutputSet
    from ..zarr_io import write_ome_zarr

    for attr in OUTPUTS.values():
        if not np.isfinite(getattr(result, attr)).all():
            raise UserError(
                f"the reconstruction of {stem} contains NaN or Inf values ({attr}); nothing was "
                "written — the model file may be damaged (try another model) or the input "
                "holds extreme values"
            )
    names = [output_name(stem, suffix, fmt) for suffix in OUTPUTS]
    with OutputSet(folder, names, overwrite=overwrite, inputs=inputs, label=stem) as out:
        for name, (suffix, attr) in zip(names, OUTPUTS.items()):
            meta = {**result.metadata, **(extra or {}), "output": suffix}
            if fmt == "zarr":
                write_ome_zarr(out.path(name), getattr(result, attr), pixel_size, meta, axes)
            else:
                write_tiff(out.path(name), getattr(result, attr), pixel_size, meta)
        return out.commit()


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


def run(args: argparse.Namespace) -> int:
    from ..engine.modelfile import load_model
    from ..engine.registry import resolve_model
    from ..engine.threads import resolve_threads
    from ..fsutil import refuse_existing
    from ..io import image_stem
    from ..limits import check_args
    from ..outputset import sweep
    from ..workflows.predict import ReconstructionParams, reconstruct
    from ..workflows.preflight import check_job, check_sr_offset
    from ..workflows.task_adapters import make_adapter

    prefix = "napari-cvdm predict"
    raw_sim = getattr(args, "raw_sim", None)  # None: automatic
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
    import torch

    torch.set_num_threads(threads)
    loaded = load_model(resolve_model(args.model), "cpu")
    task = loaded.metadata["task"]
    if task not in ("sr", "qpi"):
        raise UserError(
            f"model {loaded.name!r} is a {task!r} model; predict needs an SR or QPI model"
        )

    # 1. validate every input (and the output names) before writing anything
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
        with print_warnings(sys.stderr, prefix):
            array, pixel_size, file_meta = _read(path, args.pixel_size, task, raw_sim, lazy=True)
        check_job(  # on the shape: a lazy (OME-Zarr) input is not read before it fits in memory
            task,
            array.shape,
            loaded.metadata,
            _task_options(args, task, pixel_size, array.shape),
            args.samples,
            name=path,
        )
        if hasattr(array, "dask"):  # it fits: read it now
            from ..imagekind import warn_if_negative
            from ..zarr_io import to_numpy

            array = to_numpy(array)
            if task == "sr":
                with print_warnings(sys.stderr, prefix):
                    warn_if_negative(array, path)
        offset_note = check_sr_offset(task, array, loaded.metadata, args.offset, path)
        if offset_note:
            print(f"{prefix}: warning: {offset_note}", file=sys.stderr)
        with print_warnings(sys.stderr, prefix):
            adapter = make_adapter(
                task, array, loaded.metadata, **_task_options(args, task, pixel_size, array.shape)
            )
        notes.append(_assumptions(args, task, loaded.metadata, path, file_meta, raw_sim, adapter))
        del array, adapter
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

    # 2. reconstruct and write, one input at a time
    for stem, path in stems.items():
        with warnings.catch_warnings():  # already printed while validating
            warnings.simplefilter("ignore", UserWarning)
            array, pixel_size, meta = _read(path, args.pixel_size, task, raw_sim)
        options = _task_options(args, task, pixel_size, array.shape)
        with print_warnings(sys.stderr, prefix):
            events = reconstruct(
                array, loaded, params, input_name=os.path.basename(path), **options
            )
            result = reconstruct_file(events, f"{stem}")
        factor = result.metadata.get("resample_factor", 1.0) if task == "sr" else 1.0
        out_pixel = (
            None
            if pixel_size is None
            else (pixel_size / (2.0 * factor) if task == "sr" else pixel_size)
        )
        extra = {"source_metadata": {"pixel_size_um": meta.pixel_size_um, "axes": meta.axes}}
        drop = None
        if task == "qpi":
            drop = array.ndim - 3 if args.focus_axis is None else args.focus_axis
        written = write_outputs(
            folder,
            stem,
            result,
            out_pixel,
            extra,
            overwrite=getattr(args, "overwrite", False),
            inputs=tuple(args.inputs),
            fmt=fmt,
            axes=output_axes(meta.axes, result.mean.ndim, drop),
        )
        print("\n".join(str(p) for p in written))
    return 0
