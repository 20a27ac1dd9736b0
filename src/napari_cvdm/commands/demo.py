"""`napari-cvdm demo`: the main job end to end on simulated data, headless.

Makes a widefield sample with the SR simulator (and a through-focus stack when a QPI model is
available), reconstructs it with the bundled default model(s), writes TIFFs and a PNG figure
(input | mean | std | schedule | ground truth) and prints where they are. Until trained models
are bundled it uses an untrained ``tiny`` model and says so loudly on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path
from typing import Any

from ..defaults import SAMPLES, SAMPLING_STEPS

__all__ = ["UNTRAINED_BANNER", "add_parser", "run", "save_figure"]

UNTRAINED_BANNER = """\
##########################################################################
#  WARNING: no trained {task} model is bundled with this napari-cvdm.
#  The demo runs an UNTRAINED tiny model with RANDOM weights: the pipeline
#  works end to end, but the reconstruction is MEANINGLESS. Train a model
#  (`napari-cvdm train`) or install trained weights to get real results.
##########################################################################"""


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "demo",
        help="reconstruct a simulated sample with the default model(s) and write a figure",
        description=(
            "Simulate a widefield sample (and a through-focus stack when a QPI model exists), "
            "reconstruct it with the bundled default model(s), and write TIFFs and a PNG figure."
        ),
    )
    parser.add_argument(
        "--output-dir",
        type=Path,
        default=Path("napari-cvdm-demo"),
        metavar="DIR",
        help="folder for the results (default ./napari-cvdm-demo)",
    )
    parser.add_argument(
        "--samples", type=int, default=SAMPLES, help=f"samples for mean/std (default {SAMPLES})"
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=SAMPLING_STEPS,
        help=f"reverse diffusion steps (default {SAMPLING_STEPS})",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the simulated sample and sampler"
    )
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    parser.add_argument(
        "--size", type=int, default=128, help="widefield size in pixels (default 128)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier demo's files")
    return parser


def _model_for(task: str, stream: Any) -> Any:
    """The bundled default model of ``task``; for SR an untrained one (with a banner) if none."""
    from ..engine.modelfile import load_model
    from ..engine.registry import default_model, make_untrained_model

    info = default_model(task)
    if info is not None:
        return load_model(info.path, "cpu")
    if task != "sr":
        return None
    print(UNTRAINED_BANNER.format(task=task.upper()), file=stream)
    return make_untrained_model(task, "tiny")


def save_figure(path: Path, panels: list[Any], title: str) -> Path:
    """A row of image panels as a PNG: :class:`napari_cvdm.figures.Panel` (colour bar labelled
    with the unit, scale bar in µm), or ``(label, array (Y, X), colormap)`` tuples."""
    from ..figures import Panel, save_panels

    panels = [p if isinstance(p, Panel) else Panel(*p) for p in panels]
    return save_panels(path, panels, title)


def _run_task(
    task: str, args: argparse.Namespace, folder: Path, params: Any, stream: Any
) -> tuple[list[Path], bool]:
    """Simulate, reconstruct and write one task's files; returns them and whether the model
    was untrained ([] when no model of the task is available)."""
    import numpy as np

    from ..io import write_tiff
    from ..outputset import OutputSet
    from ..workflows.predict import reconstruct
    from .predict import reconstruct_file, write_outputs

    loaded = _model_for(task, stream)
    if loaded is None:
        print(
            f"napari-cvdm demo: no trained {task.upper()} model available; skipping {task.upper()}",
            file=stream,
        )
        return [], False
    rng = np.random.default_rng(args.seed)
    physics = loaded.metadata["physics"]
    if task == "sr":
        from ..physics.fluorescence import simulate_sr_pair

        sample = simulate_sr_pair(
            rng,
            size=args.size,
            structure="microtubules",
            photons=1000.0,
            na=physics["na"],
            wavelength_um=physics["wavelength_um"],
        )
        image, truth = sample.widefield, sample.target
        in_px = float(sample.metadata["widefield_pixel_size_um"])
        out_px = float(sample.metadata["target_pixel_size_um"])
        options = {
            "pixel_size_um": in_px,
            "offset_adu": float(sample.metadata["camera"]["offset_adu"]),
        }
        shown_input, truth_label, cmap = image, "ground truth", "gray"
    else:
        from ..physics.qpi import simulate_qpi_stack

        sample = simulate_qpi_stack(
            rng,
            size=2 * args.size,
            wavelength_um=physics["wavelength_um"],
            pixel_size_um=physics["pixel_size_um"],
            dz_um=physics["dz_um"],
            source="cells",  # a cell-like phase scene (nucleus, organelles), not a texture
        )
        image, truth = sample.stack, sample.phase
        in_px = out_px = float(sample.metadata["pixel_size_um"])
        options = {
            "pixel_size_um": in_px,
            "wavelength_um": sample.metadata["wavelength_um"],
            "dz_um": sample.metadata["dz_um"],
        }
        shown_input, truth_label, cmap = image[-1] - image[0], "true phase", "gray"
    events = reconstruct(
        image, loaded, params, input_name=f"simulated {task.upper()} sample", **options
    )
    result = reconstruct_file(events, f"{task.upper()} demo", stream)
    extra = {
        "demo": True,
        "model_untrained": bool(loaded.metadata["training"].get("untrained", False)),
    }
    title = (
        f"{task.upper()} demo, model {loaded.name}: "
        f"{params.n_samples} samples × {params.steps} steps"
    )
    if extra["model_untrained"]:
        title += " (UNTRAINED model: output is meaningless)"
    from ..figures import Panel

    field = in_px * image.shape[-1]  # µm: every panel shows the same field of view
    value = "relative intensity (ADU − offset)" if task == "sr" else "phase (rad)"
    panels = [
        Panel(
            "widefield input" if task == "sr" else "I(+dz) − I(−dz)",
            shown_input,
            "gray",
            "ADU" if task == "sr" else "intensity (background 1)",
            field,
        ),
        Panel("CVDM mean", result.mean, cmap, value, field),
        Panel("std (uncertainty)", result.std, "magma", value, field),
        Panel("schedule λ(x)", result.schedule, "viridis", "λ (dimensionless)", field),
        Panel(truth_label, truth, cmap, "relative intensity" if task == "sr" else value, field),
    ]
    overwrite = getattr(args, "overwrite", False)
    names = [f"{task}_{kind}.tif" for kind in ("input", "ground_truth", "mean", "std", "schedule")]
    names.append(f"{task}_figure.png")
    # one set per task: the files appear together when all are written, or not at all
    with OutputSet(folder, names, overwrite=overwrite, label=f"{task}-demo") as out:
        staging = out.path(names[0]).parent
        write_tiff(out.path(names[0]), image, in_px, {"demo": task, **sample.metadata})
        write_tiff(out.path(names[1]), truth, out_px, {"demo": task})
        write_outputs(staging, task, result, out_px, extra, overwrite=True)  # NaN/Inf refused
        save_figure(out.path(names[-1]), panels, title)
        written = out.commit()
    return written, extra["model_untrained"]


def run(args: argparse.Namespace) -> int:
    from ..fsutil import refuse_existing
    from ..limits import check_args
    from ..workflows.predict import ReconstructionParams
    from ..workflows.preflight import check_demo

    check_args(args, {"samples": "samples", "steps": "steps", "seed": "seed", "size": "size"})
    params = ReconstructionParams(
        n_samples=args.samples, steps=args.steps, seed=args.seed, device=args.device
    ).validate()
    check_demo(args.size, args.samples)  # simulation and reconstruction fit in memory
    names = [
        f"{task}_{kind}.{'png' if kind == 'figure' else 'tif'}"
        for task in ("sr", "qpi")
        for kind in ("input", "ground_truth", "mean", "std", "schedule", "figure")
    ]
    refuse_existing([args.output_dir / n for n in names], (), getattr(args, "overwrite", False))
    created = not args.output_dir.exists()
    try:
        return _run_all(args, params, created)
    except BaseException:
        if created:  # leave no empty folder behind
            with contextlib.suppress(OSError):
                args.output_dir.rmdir()
        raise


def _run_all(args: argparse.Namespace, params: Any, created: bool) -> int:
    from ..outputset import sweep
    from .predict import check_output_dir

    folder = check_output_dir(args.output_dir)
    sweep(folder)  # what killed demos left here
    written: list[Path] = []
    untrained = False
    for task in ("sr", "qpi"):
        files, task_untrained = _run_task(task, args, folder, params, sys.stderr)
        written += files
        untrained = untrained or task_untrained
    print(f"napari-cvdm demo: wrote {len(written)} files to {folder.resolve()}:")
    for path in written:
        print(f"  {path}")
    if untrained:
        print(
            "napari-cvdm demo: NOTE: these results come from an UNTRAINED model (see the warning "
            "above); they show that the pipeline runs, not what CVDM can do",
            file=sys.stderr,
        )
    return 0
