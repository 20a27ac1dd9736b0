"""`napari-cvdm export-bioimageio MODEL --output FILE.zip`: a bioimage.io package (format 0.5).

The package holds the whole reconstruction (normalisation, a fixed sampler with fixed seeds,
the mean and calibrated std of a fixed number of samples) as one deterministic TorchScript
network, checked against ``reconstruct`` and validated with bioimageio.spec before it is moved
into place (``workflows/bioimageio_export.py``; docs/bioimageio.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..defaults import SAMPLER, SAMPLERS, SAMPLES, SAMPLING_STEPS

__all__ = ["add_parser", "run"]


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export-bioimageio",
        help="write a model as a bioimage.io (BioImage Model Zoo) package",
        description=(
            "Write an SR or QPI model as a bioimage.io model package (format 0.5): a TorchScript "
            "network computing the mean and std of a fixed number of samples with a fixed "
            "sampler, steps and seed (preprocessing included), test input and outputs, cover, "
            "documentation, citation and licence, and the original model file (which "
            "`napari-cvdm models --import` installs back). Needs the bioimageio extra."
        ),
    )
    parser.add_argument("model", help="model name (see `napari-cvdm models`) or .safetensors path")
    parser.add_argument(
        "--output", type=Path, required=True, metavar="FILE.zip", help="the package to write"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=SAMPLES,
        help=f"samples behind the mean/std (default {SAMPLES})",
    )
    parser.add_argument(
        "--steps",
        type=int,
        default=SAMPLING_STEPS,
        help=f"reverse diffusion steps per sample (default {SAMPLING_STEPS})",
    )
    parser.add_argument(
        "--sampler",
        choices=SAMPLERS,
        default=SAMPLER,
        help=f"reverse sampler (default {SAMPLER})",
    )
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM η (default 0)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampler's noise (0)")
    parser.add_argument(
        "--raw-std", action="store_true", help="the raw sample std, without the model's calibration"
    )
    parser.add_argument(
        "--test-size",
        type=int,
        default=64,
        metavar="PX",
        help="edge of the simulated test input in input pixels (default 64)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing FILE.zip")
    return parser


def _size(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


def run(args: argparse.Namespace) -> int:
    from ..workflows.bioimageio_export import ExportSettings, export_package
    from .predict import print_warnings

    settings = ExportSettings(
        samples=args.samples,
        steps=args.steps,
        sampler=args.sampler,
        seed=args.seed,
        eta=args.eta,
        raw_std=args.raw_std,
        test_size=args.test_size,
    )
    prefix = "napari-cvdm export-bioimageio"
    with print_warnings(sys.stderr, prefix):
        report = export_package(
            args.model,
            args.output,
            settings,
            overwrite=args.overwrite,
            log=lambda message: print(f"{prefix}: {message}", file=sys.stderr, flush=True),
        )
    diff = report.max_abs_difference
    total = sum(report.seconds.values())
    print(
        f"wrote {report.path} ({_size(report.size_bytes)}, {total:.1f} s): bioimage.io format "
        f"0.5 package, bioimageio.spec says {report.status}; {settings.samples} samples x "
        f"{settings.steps} {settings.sampler} steps, seed {settings.seed}; the network matches "
        f"reconstruct on the test input within {diff['mean']:.3g} (mean) and {diff['std']:.3g} "
        f"(std) for a mean range of {report.output_range:.4g}"
    )
    sys.stdout.flush()
    return 0
