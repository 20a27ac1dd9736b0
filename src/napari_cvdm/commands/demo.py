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
    """The bundled default model of ``task``; an untrained one (with a banner) if none is
    bundled and the task has that fallback (SR)."""
    from .. import tasks
    from ..engine import registry

    info = registry.default_model(task)
    if info is not None:
        return registry.load(info.path)
    if not tasks.get(task).demo_untrained_fallback:
        return None
    print(UNTRAINED_BANNER.format(task=task.upper()), file=stream)
    return registry.make_untrained_model(task, "tiny")


def save_figure(path: Path, panels: list[Any], title: str) -> Path:
    """A row of image panels as a PNG: :class:`napari_cvdm.figures.Panel` (colour bar labelled
    with the unit, scale bar in µm), or ``(label, array (Y, X), colormap)`` tuples."""
    from ..figures import Panel, save_panels

    panels = [p if isinstance(p, Panel) else Panel(*p) for p in panels]
    return save_panels(path, panels, title)


def _panels(task: Any, example: Any, result: Any) -> list[Any]:
    """The figure's panels: input, mean, std, schedule and ground truth, each with its unit and
    the same field of view (µm)."""
    import numpy as np

    from ..figures import Panel

    text = task.text
    image = np.asarray(example.image)
    field = example.input_pixel_um * image.shape[-1]  # µm: every panel shows the same field
    shown = task.show_input(image.reshape(-1, *image.shape[-2:]))
    value, cmap = text.value_unit, text.mean_colormap
    return [
        Panel(text.input_label, shown, "gray", text.simulated_input_unit, field),
        Panel("CVDM mean", result.mean, cmap, value, field),
        Panel("std (uncertainty)", result.std, "magma", value, field),
        Panel("schedule λ(x)", result.schedule, "viridis", "λ (dimensionless)", field),
        Panel(text.truth_label, example.truth, cmap, text.truth_unit, field),
    ]


def _write_task(
    name: str, folder: Path, example: Any, result: Any, extra: dict[str, Any], figure: Any,
    overwrite: bool,
) -> list[Path]:  # fmt: skip
    """One task's files as one set (they appear together when all are written, or not at all):
    input, ground truth, mean/std/schedule and the figure ``(panels, title)``."""
    from ..io import write_tiff
    from ..outputset import OutputSet
    from .predict import write_outputs

    names = [f"{name}_{kind}.tif" for kind in ("input", "ground_truth", "mean", "std", "schedule")]
    names.append(f"{name}_figure.png")
    with OutputSet(folder, names, overwrite=overwrite, label=f"{name}-demo") as out:
        staging = out.path(names[0]).parent
        write_tiff(
            out.path(names[0]),
            example.image,
            example.input_pixel_um,
            {"demo": name, **example.metadata},
        )
        write_tiff(out.path(names[1]), example.truth, example.output_pixel_um, {"demo": name})
        write_outputs(staging, name, result, example.output_pixel_um, extra, overwrite=True)
        save_figure(out.path(names[-1]), *figure)  # NaN/Inf refused above
        return out.commit()


def _run_task(
    name: str, args: argparse.Namespace, folder: Path, params: Any, stream: Any
) -> tuple[list[Path], bool]:
    """Simulate, reconstruct and write one task's files; returns them and whether the model
    was untrained ([] when no model of the task is available)."""
    import numpy as np

    from .. import tasks
    from ..workflows.predict import reconstruct
    from .predict import reconstruct_file

    loaded = _model_for(name, stream)
    if loaded is None:
        print(
            f"napari-cvdm demo: no trained {name.upper()} model available; skipping {name.upper()}",
            file=stream,
        )
        return [], False
    task = tasks.get(name)
    rng = np.random.default_rng(args.seed)
    size = task.example_size_factor * args.size
    example = task.example(rng, loaded.metadata["physics"], size)
    events = reconstruct(
        example.image,
        loaded,
        params,
        input_name=f"simulated {name.upper()} sample",
        **example.options,
    )
    result = reconstruct_file(events, f"{name.upper()} demo", stream)
    extra = {"demo": True, "model_untrained": loaded.header.untrained}
    title = (
        f"{name.upper()} demo, model {loaded.name}: "
        f"{params.n_samples} samples × {params.steps} steps"
    )
    if extra["model_untrained"]:
        title += " (UNTRAINED model: output is meaningless)"
    figure = (_panels(task, example, result), title)
    overwrite = getattr(args, "overwrite", False)
    written = _write_task(name, folder, example, result, extra, figure, overwrite)
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
    from .. import tasks

    names = [
        f"{task}_{kind}.{'png' if kind == 'figure' else 'tif'}"
        for task in tasks.names(reconstructs=True)
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
    from .. import tasks

    for task in tasks.names(reconstructs=True):
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
