"""`napari-cvdm simulate sr|qpi`: seeded simulated training/test pairs as TIFF files.

Writes ``<i>_input.tif`` and ``<i>_target.tif`` per sample into ``--output-dir``, with pixel sizes
and every simulation parameter (the simulator's metadata, the options, seed and index) stored as
provenance (see :func:`napari_cvdm.io.write_tiff`). Sample i uses
``numpy.random.default_rng([seed, i])``, so it is the same whatever ``--n`` is.

* sr: input = widefield float32 (Y, X) in ADU (offset included), target = noise-free SIM-like GT
  float32 (2Y, 2X) (:func:`napari_cvdm.physics.fluorescence.simulate_sr_pair`).
* qpi: input = through-focus stack float32 (Z, Y, X) normalised to a background of 1, Z from −dz
  to +dz; target = phase float32 (Y, X) in rad (:func:`napari_cvdm.physics.qpi.simulate_qpi_stack`).

No torch, Qt or napari here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ..errors import InputError

__all__ = ["add_parser", "overrides_from_args", "run", "simulate_to_folder"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "simulate",
        help="write simulated input/target pairs (sr or qpi) as TIFF",
        description=(
            "Simulate seeded pairs and write <i>_input.tif and <i>_target.tif with pixel sizes "
            "and all parameters in the metadata. sr: widefield (ADU, 0.0626 µm) -> SIM-like "
            "ground truth (0.0313 µm). qpi: through-focus stack (background 1) -> phase (rad). "
            "Unset options keep the recipe defaults (SR-A / QPI-A, docs/physics.md)."
        ),
    )
    parser.add_argument("task", choices=("sr", "qpi"), help="what to simulate")
    parser.add_argument("--n", type=int, default=10, help="number of pairs (10)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (0)")
    parser.add_argument("--output-dir", type=Path, required=True, metavar="DIR")
    parser.add_argument(
        "--structure",
        help="sr: microtubules, f-actin, ccps, er (or two joined by '+'); "
        "qpi: cells, fluorescence, natural, fractal (default: random per sample)",
    )
    parser.add_argument(
        "--size", type=int, help="image size in px (sr: widefield, GT is 2x; qpi: 256)"
    )
    parser.add_argument(
        "--photons", type=float, help="sr: foreground e-/px (N_fg); qpi: background N0 e-/px"
    )
    parser.add_argument(
        "--n-planes",
        dest="planes",
        type=int,
        metavar="N",
        help="qpi: the number of planes: 2 (at ±dz), 3 or 5 (at k·dz)",
    )
    # --planes means the two plane indices everywhere (predict); here it only says so
    parser.add_argument("--planes", dest="legacy_planes", help=argparse.SUPPRESS)
    parser.add_argument(
        "--dz",
        type=float,
        metavar="UM",
        help="qpi: the defocus step in µm: planes at ±dz (2 planes) or k·dz (3, 5) (default 1)",
    )
    parser.add_argument(
        "--wavelength", type=float, metavar="UM", help="sr: emission, qpi: illumination (µm)"
    )
    parser.add_argument("--na", type=float, help="sr: objective NA; qpi: detection pupil NA")
    parser.add_argument(
        "--pixel-size",
        type=float,
        metavar="UM",
        help="sr: widefield pixel (0.0626 µm; GT is half); qpi: pixel size (0.21 µm)",
    )
    parser.add_argument("--noise", choices=("poisson", "none"), help="qpi: noise model")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any other simulator option, VALUE in JSON (e.g. --set background_e=20, "
        "--set 'na=[1.3, 1.49]'); repeatable",
    )
    parser.add_argument("--ome", action="store_true", help="write OME-TIFF (.ome.tif)")
    parser.add_argument("--overwrite", action="store_true", help="replace existing pairs")
    return parser


def _parse_set(items: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set expects KEY=VALUE, got {item!r}.")
        try:
            out[key.strip()] = json.loads(text)
        except ValueError:
            out[key.strip()] = text  # a bare word such as er or angular_spectrum
    return out


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """Simulator keyword overrides from the parsed options (only the options that were set):
    the task's mapping of the flags (:meth:`simulator_overrides`), then ``--set``."""
    from .. import tasks

    overrides: dict[str, Any] = {}
    common = tasks.get(args.task).simulator_overrides(args)
    overrides.update({k: v for k, v in common.items() if v is not None})
    overrides.update(_parse_set(args.set))
    return overrides


def _simulate(task: str, index: int, seed: int, overrides: dict[str, Any]):
    """Pair ``index`` of the run: (input, target, simulator metadata, geometry), the task's
    :meth:`simulated_files` with the pair's own generator."""
    import numpy as np

    from .. import tasks

    return tasks.get(task).simulated_files(np.random.default_rng([seed, index]), overrides)


def simulate_to_folder(
    task: str,
    n: int,
    seed: int,
    output_dir: Path,
    overrides: dict[str, Any],
    ome: bool = False,
    overwrite: bool = False,
) -> list[tuple[Path, Path]]:
    """Simulate ``n`` pairs and write them to ``output_dir``; returns the (input, target) paths.

    Options are checked (and sample 0 simulated) before anything is written; the pairs are
    written as one set (:class:`~napari_cvdm.outputset.OutputSet`): a run stopped or killed
    before the end leaves none of them.
    """
    from .. import __version__
    from ..fsutil import check_writable_folder
    from ..io import write_tiff
    from ..outputset import OutputSet

    if n < 1:
        raise InputError(f"--n must be at least 1; got {n}.")
    if seed < 0:
        raise InputError(f"--seed must be >= 0; got {seed}.")
    width = max(4, len(str(n - 1)))
    suffix = ".ome.tif" if ome else ".tif"
    names = [
        (output_dir / f"{i:0{width}d}_input{suffix}", output_dir / f"{i:0{width}d}_target{suffix}")
        for i in range(n)
    ]
    if output_dir.exists() and not output_dir.is_dir():
        raise InputError(f"{output_dir} exists and is not a folder; choose another --output-dir.")
    existing = [p for pair in names for p in pair if p.exists()]
    if existing and not overwrite:
        raise InputError(
            f"{output_dir} already holds {existing[0].name} (and {len(existing) - 1} more of the "
            "files to write); pass --overwrite or choose another --output-dir."
        )
    try:  # fails on bad options before any write
        first = _simulate(task, 0, seed, overrides)
    except (ValueError, TypeError) as exc:
        if not overrides or isinstance(exc, InputError):
            raise
        raise InputError(f"the simulator cannot use the options {overrides} ({exc})") from None
    check_writable_folder(output_dir, "the output folder")
    files = [p.name for pair in names for p in pair]
    # all pairs appear together when the last one is written: a killed run leaves none
    with OutputSet(output_dir, files, overwrite=overwrite, label="simulate") as out:
        for i, (input_path, target_path) in enumerate(names):
            x, y, meta, geometry = first if i == 0 else _simulate(task, i, seed, overrides)
            x_px, y_px, x_axes = geometry
            provenance = {
                "napari_cvdm_version": __version__,
                "command": "simulate",
                "task": task,
                "seed": seed,
                "index": i,
                "overrides": overrides,
                "simulation": meta,
            }
            x_meta, y_meta = {**provenance, "role": "input"}, {**provenance, "role": "target"}
            write_tiff(out.path(input_path.name), x, x_px, x_meta, ome=ome, axes=x_axes)
            write_tiff(out.path(target_path.name), y, y_px, y_meta, ome=ome)
        out.commit()
    return names


def run(args: argparse.Namespace) -> int:
    from ..limits import check_args

    if getattr(args, "legacy_planes", None) is not None:
        raise InputError(
            "--planes names the two plane indices at -dz and +dz (as in predict); give the "
            "number of planes to simulate with --n-planes"
        )
    from ..outputset import sweep
    from ..workflows.preflight import check_simulation, check_simulator_options

    check_args(
        args,
        {
            "n": "n",
            "seed": "seed",
            "size": "size",
            "photons": "photons",
            "planes": "planes",
            "dz": "dz_um",
            "wavelength": "wavelength_um",
            "na": "na",
            "pixel_size": "pixel_size_um",
        },
    )
    overrides = overrides_from_args(args)
    check_simulator_options(args.task, overrides, "--set")
    size = overrides.get("size", args.size)
    check_simulation(args.task, args.n, size, overrides.get("planes"), args.output_dir)
    sweep(args.output_dir)
    written = simulate_to_folder(
        args.task,
        args.n,
        args.seed,
        args.output_dir,
        overrides,
        ome=args.ome,
        overwrite=args.overwrite,
    )
    print(f"wrote {len(written)} {args.task} pairs to {args.output_dir}")
    sys.stdout.flush()
    return 0
