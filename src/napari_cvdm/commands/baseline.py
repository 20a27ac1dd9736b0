"""`napari-cvdm baseline METHOD INPUT...`: classical SR and phase-retrieval baselines on files.

SR (input: a widefield frame (Y, X) in ADU, or 9 or 15 raw SIM frames whose mean is the
widefield):
``bicubic``, ``wiener`` (K), ``rl`` (iterations) → float32 (2Y, 2X) on the 2× grid in e⁻ per
pixel (:mod:`napari_cvdm.physics.sr_baselines`). QPI (input: a through-focus stack (Z, Y, X)
normalised to a background of 1, Z from −dz to +dz): ``tie``, ``tie-dct``, ``us-tie``, ``ctf``
(α) → phase float32 (Y, X) in rad (:mod:`napari_cvdm.physics.tie`).

Physics comes from the options, else from the provenance of files written by
``napari-cvdm simulate``, else from the file's pixel size, else from ``--model``; what is still
missing is an error. Like ``predict``, one ``note`` line per input says what was assumed (raw
SIM frames averaged, values from the model or a default) and where each value came from.
Every input is read and checked before any output is written. No torch, Qt or napari here.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # numpy is imported where it is used, so `--help` stays light
    import numpy as np

from ..errors import InputError

__all__ = ["QPI_METHODS", "SR_METHODS", "add_parser", "prepare_job", "run"]

SR_METHODS = ("bicubic", "wiener", "rl")
QPI_METHODS = ("tie", "tie-dct", "us-tie", "ctf")


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "baseline",
        help="run a classical SR or phase-retrieval baseline on image files",
        description=(
            "SR: bicubic, wiener, rl on widefield frames (ADU; raw SIM files of 9 or 15 frames "
            "are averaged). QPI: tie, tie-dct, us-tie, ctf on through-focus stacks normalised to a "
            "background of 1. Writes <name>_<method>.tif into --output-dir (an OME-Zarr "
            "folder <name>_<method>.ome.zarr with --output-format zarr; inputs may be OME-Zarr "
            "folders too). Optics default to the provenance of `napari-cvdm simulate` files and "
            "the file's pixel size."
        ),
    )
    parser.add_argument("method", choices=SR_METHODS + QPI_METHODS)
    parser.add_argument("inputs", nargs="+", type=Path, metavar="INPUT")
    parser.add_argument("--output-dir", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--pixel-size", type=float, metavar="UM", help="input pixel size in µm (sr: widefield)"
    )
    parser.add_argument("--na", type=float, help="sr: objective NA")
    parser.add_argument(
        "--wavelength", type=float, metavar="UM", help="sr: emission; qpi: illumination (µm)"
    )
    parser.add_argument("--offset", type=float, metavar="ADU", help="sr: camera offset (100)")
    parser.add_argument("--gain", type=float, metavar="ADU/E", help="sr: camera gain (2)")
    parser.add_argument("--k", type=float, help="wiener: regularisation constant K")
    parser.add_argument("--iterations", type=int, help="rl: iterations; us-tie: max iterations")
    parser.add_argument(
        "--dz",
        type=float,
        metavar="UM",
        help="qpi: the stack's defocus step in µm, as in simulate and predict: 2 planes at ±dz, "
        "3 or 5 planes at k·dz",
    )
    parser.add_argument("--alpha", type=float, help="qpi: Tikhonov weight α (pixel units)")
    parser.add_argument(
        "--model",
        metavar="NAME_OR_PATH",
        help="take the optics the file does not give from this model, as predict does (sr: NA, "
        "λ, camera offset, and its pixel size when the file has none; qpi: λ, dz)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    parser.add_argument(
        "--raw-sim",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="sr: the 9- or 15-plane input is raw SIM, average it (default: only BioSR/rDL-SIM "
        ".mrc files); --no-raw-sim refuses to average them",
    )
    from .predict import add_output_format

    add_output_format(parser)
    return parser


#: parsed option -> napari_cvdm.limits name
OPTION_LIMITS = {
    "pixel_size": "pixel_size_um",
    "na": "na",
    "wavelength": "wavelength_um",
    "offset": "offset_adu",
    "gain": "gain_adu_per_e",
    "k": "wiener_k",
    "iterations": "iterations",
    "dz": "dz_um",
    "alpha": "alpha",
}


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _model_values(args: argparse.Namespace) -> dict[str, Any]:
    """``--model``'s physics and camera offset (read from the header, no weights), or {}."""
    if not getattr(args, "model", None):
        return {}
    cached = getattr(args, "_model_values", None)
    if cached is None:
        from ..engine.modelfile import read_metadata
        from ..engine.registry import resolve_model

        meta = read_metadata(resolve_model(args.model))
        rule = (meta.get("normalization") or {}).get("input") or {}
        cached = {**meta["physics"], "offset_adu": rule.get("offset_adu"), "task": meta["task"]}
        cached["name"] = meta.get("name", str(args.model))
        want = "sr" if args.method in SR_METHODS else "qpi"
        if cached["task"] != want:
            raise InputError(
                f"--model {args.model} is a {cached['task']} model; {args.method} needs the optics "
                f"of a {want} model"
            )
        args._model_values = cached
    return cached


#: how the note names a value and its unit
_NOTE_LABELS = {
    "pixel_size_um": ("pixel", " µm"),
    "na": ("NA", ""),
    "wavelength_um": ("λ", " µm"),
    "dz_um": ("dz", " µm"),
    "offset_adu": ("camera offset", " ADU"),
}


def _note(path: Path, physics: dict[str, Any], sources: dict[str, str], args: Any,
          frames: int = 0) -> str | None:  # fmt: skip
    """The one ``note`` line of an input (as ``predict`` prints): raw SIM frames averaged and
    each value with where it came from; None when everything was given or read from the file.
    ``sources``: key -> "option", "file", "default" (a convention) or "model"."""
    if not frames and not any(s in ("model", "default") for s in sources.values()):
        return None
    model = _model_values(args).get("name") if getattr(args, "model", None) else None
    averaged = f"{frames} raw SIM frames averaged to one widefield image (BioSR convention)"
    parts = [averaged] if frames else []
    values = []
    for key in _NOTE_LABELS:  # pixel first, then the optics, as predict says them
        source, value = sources.get(key), physics.get(key)
        if source is None or value is None:
            continue
        label, unit = _NOTE_LABELS[key]
        if source == "model":
            tag = (
                f" (the training value of the model {model}; --offset if your camera differs)"
                if key == "offset_adu"
                else f" (from the model {model})"
            )
        elif source == "default":
            tag = {
                "pixel_size_um": " (the BioSR camera's default)",
                "offset_adu": " (the default; --offset if your camera differs)",
            }.get(key, " (the default)")
        elif source == "file":
            tag = " (from the file)"
        else:
            tag = ""
        values.append(f"{label} {float(value):.4g}{unit}{tag}")
    return f"{path.name}: " + "; ".join(parts + values)


def _sources(physics: dict[str, Any], given: dict[str, Any], taken: list[str]) -> dict[str, str]:
    """Where each value of ``physics`` came from: an option (``given``), the model
    (``taken``) or the file."""
    out = {}
    for key in physics:
        if key in _NOTE_LABELS and physics[key] is not None:
            out[key] = "model" if key in taken else "option" if given.get(key) else "file"
    return out


def _sr_job(
    path: Path, array: np.ndarray, meta: Any, args: argparse.Namespace, frames: int = 0
) -> dict[str, Any]:
    # raw SIM frames were averaged (or refused) by imagekind.prepare_input, as in predict
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        frames = array.shape[-3] if array.ndim >= 3 else 0
        raise InputError(
            f"{path}: SR baselines need one widefield frame (Y, X) or 9 or 15 raw SIM frames; "
            f"got shape {array.shape}"
            + (
                f" ({frames} planes are averaged as raw SIM only with --raw-sim)."
                if frames in (9, 15) and args.raw_sim is not False
                else "."
            )
        )
    from ..imagemeta import file_optics

    sim = file_optics(meta.extra)
    camera = sim.get("camera") or {}
    file_px = meta.pixel_size_um[-1] if meta.pixel_size_um else None
    physics = {
        "pixel_size_um": _first(args.pixel_size, sim.get("widefield_pixel_size_um"), file_px),
        "na": _first(args.na, sim.get("na")),
        "wavelength_um": _first(args.wavelength, sim.get("wavelength_um")),
        "offset_adu": _first(args.offset, camera.get("offset_adu")),
        "gain_adu_per_e": _first(args.gain, camera.get("gain_adu_per_e"), 2.0),
    }
    given = {"pixel_size_um": args.pixel_size, "na": args.na, "wavelength_um": args.wavelength,
             "offset_adu": args.offset}  # fmt: skip
    model = _model_values(args)  # like predict: what the file does not say, the model does
    taken = [k for k in ("pixel_size_um", "na", "wavelength_um", "offset_adu")
             if physics[k] is None and model.get(k) is not None]  # fmt: skip
    physics.update({k: model[k] for k in taken})
    sources = _sources(physics, given, taken)
    if physics["offset_adu"] is None:
        physics["offset_adu"] = 100.0
        sources["offset_adu"] = "default"
    if (
        sources.get("pixel_size_um") == "file"
        and sim.get("widefield_pixel_size_um") is None
        and meta.extra.get("pixel_size_source") == "biosr-default"
    ):
        sources["pixel_size_um"] = "default"
    missing = [k for k in ("pixel_size_um", "na", "wavelength_um") if physics[k] is None]
    if missing and args.method != "bicubic":
        flags = {"pixel_size_um": "--pixel-size", "na": "--na", "wavelength_um": "--wavelength"}
        raise InputError(
            f"{path}: unknown {', '.join(missing)}; give {' '.join(flags[m] for m in missing)}, "
            "or --model NAME to use a model's optics (e.g. --model sr-fluorescence-2x)."
        )
    value = {"wiener": args.k, "rl": args.iterations}.get(args.method)
    if value is not None and not value > 0:
        raise InputError(f"The {args.method} parameter must be > 0; got {value}.")
    out_px = physics["pixel_size_um"] / 2.0 if physics["pixel_size_um"] else None
    return {"array": array, "physics": physics, "value": value, "output_pixel_size_um": out_px,
            "note": _note(path, physics, sources, args, frames)}  # fmt: skip


def _qpi_job(path: Path, array: np.ndarray, meta: Any, args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np

    if array.ndim != 3 or array.shape[0] < 2 or np.iscomplexobj(array):
        raise InputError(
            f"{path}: phase baselines need a through-focus stack (Z >= 2, Y, X) normalised to a "
            f"background of 1; got shape {array.shape}."
        )
    from ..imagemeta import file_optics

    sim = file_optics(meta.extra)
    file_px = meta.pixel_size_um[-1] if meta.pixel_size_um else None
    offsets = None if args.dz is not None else sim.get("z_offsets_um")
    dz = _first(args.dz, offsets, sim.get("dz_um"))
    physics = {
        "wavelength_um": _first(args.wavelength, sim.get("wavelength_um")),
        "dz_um": dz,
        "pixel_size_um": _first(args.pixel_size, file_px, sim.get("pixel_size_um")),
    }
    given = {"wavelength_um": args.wavelength, "dz_um": args.dz, "pixel_size_um": args.pixel_size}
    model = _model_values(args)  # like predict: what the file does not say, the model does
    taken = [k for k, v in physics.items() if v is None and model.get(k) is not None]
    physics.update({k: model[k] for k in taken})
    sources = _sources(physics, given, taken)
    flags = {"wavelength_um": "--wavelength", "dz_um": "--dz", "pixel_size_um": "--pixel-size"}
    missing = [k for k, v in physics.items() if v is None]
    if missing:
        raise InputError(
            f"{path}: unknown {', '.join(missing)}; give {' '.join(flags[m] for m in missing)}, "
            "or --model NAME to use a model's optics (e.g. --model qpi-2plane)."
        )
    if args.alpha is not None and not args.alpha >= 0:
        raise InputError(f"--alpha must be >= 0; got {args.alpha}.")
    if args.method == "us-tie" and args.iterations is not None and args.iterations < 1:
        raise InputError(f"--iterations must be >= 1; got {args.iterations}.")
    return {
        "array": array.astype(np.float64),
        "physics": physics,
        "value": args.alpha,
        "output_pixel_size_um": float(physics["pixel_size_um"]),
        "note": _note(path, physics, sources, args),
    }


def prepare_job(path: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Read one input and resolve its physics; raises :class:`InputError` for anything missing."""
    import numpy as np

    from ..imagekind import is_raw_sim, prepare_input
    from ..io import read_image
    from .predict import print_warnings

    array, meta = read_image(path)
    sr = args.method in SR_METHODS
    with print_warnings(sys.stderr, "napari-cvdm baseline"):  # one line per note
        # the same rules as predict: RGB refused, raw SIM averaged only when recognised or asked
        raw_sim = args.raw_sim if sr else None  # None: automatic, False: --no-raw-sim
        frames = int(array.shape[-3]) if sr and is_raw_sim(array, meta, raw_sim) else 0
        array = prepare_input(array, meta, "sr" if sr else "qpi", str(path), raw_sim)
    if sr:
        job = _sr_job(path, np.asarray(array), meta, args, frames)
    else:
        job = _qpi_job(path, np.asarray(array), meta, args)
    job["input"] = path
    return job


def _compute(job: dict[str, Any], args: argparse.Namespace) -> np.ndarray:
    physics = job["physics"]
    if args.method in SR_METHODS:
        from ..physics.sr_baselines import run_sr_baseline

        return run_sr_baseline(args.method, job["array"], job["value"], **physics)
    from ..physics.tie import TIE_METHODS

    kwargs: dict[str, Any] = {} if job["value"] is None else {"alpha": float(job["value"])}
    if args.method == "us-tie" and args.iterations is not None:
        kwargs["max_iter"] = int(args.iterations)
    return TIE_METHODS[args.method](
        job["array"], physics["wavelength_um"], physics["dz_um"], physics["pixel_size_um"], **kwargs
    )


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from .. import __version__
    from ..errors import UserError
    from ..fsutil import check_writable_folder, refuse_existing
    from ..imagekind import check_offset
    from ..io import image_stem, write_tiff
    from ..limits import check_args
    from ..outputset import sweep
    from ..workflows.preflight import check_baseline_job
    from .predict import output_name

    check_args(args, OPTION_LIMITS, {"k": "--k"})
    fmt = getattr(args, "output_format", "tif")
    if fmt == "zarr":
        from ..zarr_io import require_zarr

        require_zarr()
    jobs = [prepare_job(path, args) for path in args.inputs]  # check everything first
    for job in jobs:
        check_baseline_job(args.method, job["array"].shape, str(job["input"]))
        if args.method in SR_METHODS:
            offset, name = job["physics"]["offset_adu"], str(job["input"])
            note = check_offset(job["array"], offset, name, args.offset is not None)
            if note:
                print(f"napari-cvdm baseline: warning: {note}", file=sys.stderr)
    outputs: dict[Path, Path] = {}
    for job in jobs:
        stem = image_stem(job["input"]) or job["input"].stem
        out = args.output_dir / output_name(stem, args.method, fmt)
        if out in outputs:
            raise InputError(f"{job['input']} and {outputs[out]} would both be written to {out}.")
        outputs[out] = job["input"]
    refuse_existing(list(outputs), args.inputs, args.overwrite)
    if args.output_dir.exists() and not args.output_dir.is_dir():
        raise InputError(f"{args.output_dir} is not a folder; choose another --output-dir.")
    check_writable_folder(args.output_dir, "the output folder")  # before any compute
    for job in jobs:  # what each input assumed, once everything was checked (as predict does)
        if job.get("note"):
            print(f"napari-cvdm baseline: note: {job['note']}", file=sys.stderr)
    sweep(args.output_dir)
    for job, out in zip(jobs, outputs):
        result = _compute(job, args)
        if not np.isfinite(result).all():
            raise UserError(
                f"the {args.method} baseline of {job['input']} contains NaN or Inf values; "
                f"{out} was not written — check the input for extreme values and the method's "
                "parameters (--k, --alpha, --dz)"
            )
        provenance = {
            "napari_cvdm_version": __version__,
            "command": "baseline",
            "method": args.method,
            "parameter": job["value"],
            "physics": job["physics"],
            "input": str(job["input"]),
            "units": "e- per output pixel" if args.method in SR_METHODS else "rad",
        }
        if fmt == "zarr":
            from ..zarr_io import write_ome_zarr

            write_ome_zarr(out, result, job["output_pixel_size_um"], provenance)
        else:
            write_tiff(out, result, job["output_pixel_size_um"], provenance)
        print(f"wrote {out}")
    sys.stdout.flush()
    return 0
