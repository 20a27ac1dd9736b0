"""`napari-cvdm restore`: zero-shot restoration of image files with a known PSF (VML-MAP).

For each INPUT (one 2-D image in ADU; a TIFF, MRC or OME-Zarr folder) writes
``DIR/<stem>_restored.tif`` (on the prior's grid) and ``<stem>_residual.tif`` (whitened data
residual on the measurement grid), plus ``<stem>_variability.tif`` with ``--seeds`` > 1, float32
with pixel size and provenance, as one output set (``.ome.zarr`` folders with
``--output-format zarr``). Every input, the PSF, the prior and the output folder are checked
before anything is written; a bad PSF, a pixel size the prior cannot serve or existing outputs
(without ``--overwrite``) stop the command with one line (exit 2). torch is imported inside
:func:`run`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError, UserError

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "restore",
        help="zero-shot restoration with a known PSF (VML-MAP with a diffusion prior)",
        description=(
            "Deconvolve (and, for coarse pixels, super-resolve ×2) each INPUT with a known PSF "
            "and an unconditional diffusion prior, without paired training data. Give the PSF "
            "as an image (--psf, a bead) or by the optics (--na, --wavelength). Writes "
            "<stem>_restored.tif, <stem>_residual.tif (and <stem>_variability.tif with --seeds "
            "> 1: spread over seeds, not calibrated uncertainty)."
        ),
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="2-D image files (ADU)")
    parser.add_argument("--output-dir", required=True, type=Path, metavar="DIR")
    parser.add_argument("--psf", type=Path, default=None, metavar="PSF.tif", help="PSF image")
    parser.add_argument("--psf-pixel-size", type=float, default=None, metavar="UM")
    parser.add_argument("--psf-plane", type=int, default=None, help="plane of a 3-D PSF")
    parser.add_argument("--na", type=float, default=None, help="objective NA (Airy PSF)")
    parser.add_argument("--wavelength", type=float, default=None, metavar="UM", help="emission")
    parser.add_argument(
        "--pixel-size", type=float, default=None, metavar="UM", help="input pixel size (µm)"
    )
    parser.add_argument("--prior", default="prior-fluorescence", help="prior model name or path")
    parser.add_argument("--binning", type=int, choices=(1, 2), default=None)
    parser.add_argument("--noise-sigma", type=float, default=None, metavar="ADU")
    parser.add_argument("--gain", type=float, default=None, metavar="ADU/E")
    parser.add_argument("--read-noise", type=float, default=0.0, metavar="E")
    parser.add_argument("--offset", type=float, default=None, metavar="ADU")
    parser.add_argument("--budget", choices=("fast", "quality"), default="fast")
    parser.add_argument("--method", choices=("vml", "dps", "rl"), default="vml")
    parser.add_argument("--seeds", type=int, default=1, help="seeds (variability map if > 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--no-target-correction",
        action="store_true",
        help="apply the PSF to the prior's images as they are (default: divide by the prior's "
        "own resolution inside the PSF's pass band)",
    )
    parser.add_argument("--threads", default="auto", metavar="N")
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    from .predict import add_output_format

    add_output_format(parser)
    return parser


def _positive(args: argparse.Namespace) -> None:
    for flag in ("pixel_size", "psf_pixel_size", "na", "wavelength", "noise_sigma", "gain"):
        value = getattr(args, flag)
        if value is not None and not (value > 0 and value < float("inf")):
            raise InputError(f"--{flag.replace('_', '-')} must be a positive number, got {value}")
    if args.read_noise < 0:
        raise InputError(f"--read-noise must be >= 0, got {args.read_noise}")
    if args.psf is None and (args.na is None or args.wavelength is None):
        raise InputError(
            "the PSF is unknown: give --psf PSF.tif, or --na and --wavelength for an Airy PSF"
        )
    if args.psf is not None and (args.na is not None or args.wavelength is not None):
        raise InputError("give either --psf or --na/--wavelength, not both")


def _read(path: str | Path, what: str) -> tuple[Any, Any]:
    from ..io import read_image

    try:
        return read_image(path)
    except UserError:
        raise
    except Exception as exc:  # a damaged file is the user's file problem
        raise InputError(f"cannot read {what} {path} ({type(exc).__name__}: {exc})") from None


def _jobs(args: argparse.Namespace) -> dict[str, tuple[str, float | None]]:
    from ..io import image_stem
    from .predict import output_name

    stems: dict[str, tuple[str, float | None]] = {}
    for path in args.inputs:
        stem = image_stem(path) or Path(path).stem
        if stem in stems:
            raise InputError(
                f"{path} and {stems[stem][0]} would both write "
                f"{output_name(stem, '*', getattr(args, 'output_format', 'tif'))}; rename one"
            )
        stems[stem] = (path, None)
    return stems


def _start(args, path, loaded, params, optics, noise):
    from ..workflows.restore import restore

    array, meta = _read(path, "input")
    pixel = args.pixel_size
    if pixel is None and meta.pixel_size_um:
        pixel = float(meta.pixel_size_um[-1])
    try:
        events = restore(
            array,
            loaded,
            params,
            pixel_size_um=pixel,
            optics=optics,
            noise=noise,
            input_name=os.path.basename(path),
        )
    except InputError as exc:
        raise InputError(f"{path}: {exc}") from None
    return events, meta


def _settings(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    """The checked options: the restore parameters, the optics (the PSF image read and checked,
    or NA/λ) and the noise model; torch gets the thread count."""
    from ..engine.threads import resolve_threads
    from ..workflows.restore import Noise, Optics, RestoreParams

    _positive(args)
    if getattr(args, "output_format", "tif") == "zarr":
        from ..zarr_io import require_zarr

        require_zarr()
    params = RestoreParams(
        budget=args.budget,
        method=args.method,
        seeds=args.seeds,
        seed=args.seed,
        binning=args.binning,
        target_correction=not args.no_target_correction,
    ).validate()
    threads = resolve_threads(args.threads)
    import torch

    torch.set_num_threads(threads)
    psf, psf_pixel = None, args.psf_pixel_size
    if args.psf is not None:
        psf, psf_meta = _read(args.psf, "PSF")
        if psf_pixel is None and psf_meta.pixel_size_um:
            psf_pixel = float(psf_meta.pixel_size_um[-1])
        from ..physics.forward_ops import prepare_psf

        prepare_psf(psf, plane=args.psf_plane, name=f"the PSF {args.psf}")  # its own checks first
    optics = Optics(
        psf=psf,
        psf_pixel_um=psf_pixel,
        psf_plane=args.psf_plane,
        na=args.na,
        wavelength_um=args.wavelength,
    )
    noise = Noise(args.noise_sigma, args.gain, args.read_noise, args.offset)
    return params, optics, noise


def _restore_one(stem: str, events: Any, prefix: str, path: str) -> Any:
    """Drain one input's restore events with a progress bar; print its notes; the result."""
    from ..events import Finished, Progress
    from ._progress import ProgressBar

    bar = ProgressBar(stem)
    result = None
    try:
        for event in events:
            if isinstance(event, Progress):
                bar.update(event.step, event.total, event.stage)
            elif isinstance(event, Finished):
                result = event.result
    finally:
        bar.close()
        events.close()
    for note in result.metadata.get("notes", []):
        print(f"{prefix}: note: {path}: {note}", file=sys.stderr)
    return result


def _write_one(
    args: argparse.Namespace, folder: Path, stem: str, result: Any, meta: Any,
    suffixes: list[str],
) -> list[Path]:  # fmt: skip
    """One input's ``<stem>_restored``/``_residual`` (and ``_variability``) as one output set,
    finite values only; returns the written paths."""
    import numpy as np

    from .. import __version__
    from ..io import write_tiff
    from ..outputset import OutputSet
    from ..zarr_io import write_ome_zarr
    from .predict import output_name

    fmt = getattr(args, "output_format", "tif")
    extra = {
        "command": "restore",
        "napari_cvdm_version": __version__,
        "argv": getattr(args, "_argv", None),
        "source_metadata": {"pixel_size_um": meta.pixel_size_um, "axes": meta.axes},
    }
    arrays = {
        "restored": (result.restored, result.pixel_size_um),
        "residual": (result.residual, result.residual_pixel_size_um),
        "variability": (result.variability, result.pixel_size_um),
    }
    for suffix in suffixes:
        if not np.isfinite(arrays[suffix][0]).all():
            raise UserError(
                f"the {suffix} image of {stem} contains NaN or Inf values; nothing was written"
            )
    names = [output_name(stem, s, fmt) for s in suffixes]
    with OutputSet(folder, names, overwrite=args.overwrite, inputs=args.inputs, label=stem) as out:
        for name, suffix in zip(names, suffixes):
            array, pixel = arrays[suffix]
            write = write_ome_zarr if fmt == "zarr" else write_tiff
            write(out.path(name), array, pixel, {**result.metadata, **extra, "output": suffix})
        return out.commit()


def run(args: argparse.Namespace) -> int:
    """Check the options, the prior, every input and the output folder, then restore and write
    one input at a time."""
    from .. import tasks
    from ..engine import registry
    from ..fsutil import refuse_existing
    from ..outputset import sweep
    from .predict import check_output_dir, output_name

    prefix = "napari-cvdm restore"
    params, optics, noise = _settings(args)
    loaded = registry.load(args.prior)
    if not tasks.get(loaded.task).restores:
        raise UserError(
            f"model {loaded.name!r} is a {loaded.metadata['task']!r} model; restore needs an "
            "unconditional prior (e.g. prior-fluorescence, see `napari-cvdm models`)"
        )
    # 1. check every input (and the output names) before writing anything
    stems = _jobs(args)
    suffixes = ["restored", "residual"] + (["variability"] if params.seeds > 1 else [])
    for path, _ in stems.values():
        events, _meta = _start(args, path, loaded, params, optics, noise)
        events.close()
    folder = Path(args.output_dir)
    fmt = getattr(args, "output_format", "tif")
    outputs = [folder / output_name(stem, s, fmt) for stem in stems for s in suffixes]
    refuse_existing(outputs, args.inputs, args.overwrite)
    folder = check_output_dir(folder)
    sweep(folder)
    # 2. restore and write, one input at a time
    for stem, (path, _) in stems.items():
        events, meta = _start(args, path, loaded, params, optics, noise)
        result = _restore_one(stem, events, prefix, path)
        written = _write_one(args, folder, stem, result, meta, suffixes)
        print("\n".join(str(p) for p in written))
    return 0
