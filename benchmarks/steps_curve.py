"""Quality against sampling steps: PSNR/SSIM of the CVDM mean for 2…32 steps, both samplers.

The images are the seeded SR test set of ``benchmarks/_testsets.py`` (recipe SR-B, every
structure at ``--photons``, ``--n`` images each, ``--size``-px widefield → 2× output), scored
with ``metrics.sr_metrics`` (DL-SR convention: each image min–max to [0, 1]) as in
``benchmarks/quality.py``. Every (sampler, steps) cell reconstructs the same images with the same
seed and ``--samples`` samples; the table gives the mean over images and, because the images are
shared, the paired difference to the most steps of the same sampler with its standard error
(a step count "saturates" when that difference is within noise).

    nice -n 10 .venv/bin/python benchmarks/steps_curve.py --threads 1 \\
        --json benchmarks/results/steps_curve.json

Measurements only; tests never assert on them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _testsets import SR_MIDDLE, TEST_SEED, sr_test_cases

from napari_cvdm import metrics
from napari_cvdm.physics.sr_baselines import physics_from_metadata


def reconstruct_mean(image: np.ndarray, loaded: Any, params: Any, **options: Any) -> np.ndarray:
    from napari_cvdm.events import Finished
    from napari_cvdm.workflows.predict import reconstruct

    for event in reconstruct(image, loaded, params, **options):
        if isinstance(event, Finished):
            return event.result.mean
    raise RuntimeError("no result")


def table(rows: list[dict[str, Any]], samplers: list[str], steps: list[int]) -> str:
    """Markdown: per sampler and step count, mean PSNR/SSIM and the paired Δ to the most steps
    of that sampler (± standard error over the images)."""
    lines = [
        "| sampler | steps | PSNR (dB) | SSIM | ΔPSNR vs most steps | ΔSSIM vs most steps "
        "| s / image |",
        "|---|---|---|---|---|---|---|",
    ]
    for sampler in samplers:
        most = max(r["steps"] for r in rows if r["sampler"] == sampler)
        ref = {r["image"]: r for r in rows if r["sampler"] == sampler and r["steps"] == most}
        for n in steps:
            cell = [r for r in rows if r["sampler"] == sampler and r["steps"] == n]
            if not cell:
                continue
            d_psnr = np.array([r["psnr"] - ref[r["image"]]["psnr"] for r in cell])
            d_ssim = np.array([r["ssim"] - ref[r["image"]]["ssim"] for r in cell])
            se = 1.0 / np.sqrt(max(1, len(cell) - 1))
            lines.append(
                f"| {sampler} | {n} | {np.mean([r['psnr'] for r in cell]):.2f} "
                f"| {np.mean([r['ssim'] for r in cell]):.4f} "
                f"| {d_psnr.mean():+.2f} ± {d_psnr.std() * se:.2f} "
                f"| {d_ssim.mean():+.4f} ± {d_ssim.std() * se:.4f} "
                f"| {np.mean([r['seconds'] for r in cell]):.1f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sr-fluorescence-2x")
    parser.add_argument("--steps", type=int, nargs="+", default=[2, 4, 8, 16, 32])
    parser.add_argument("--samplers", nargs="+", default=["ancestral", "ddim"])
    parser.add_argument("--samples", type=int, default=4, help="samples per image (their mean)")
    parser.add_argument("--n", type=int, default=2, help="images per structure")
    parser.add_argument("--photons", type=float, default=SR_MIDDLE, help="test photon level")
    parser.add_argument("--size", type=int, default=64, help="widefield edge (output 2×)")
    parser.add_argument("--seed", type=int, default=TEST_SEED, help="test-set seed")
    parser.add_argument("--sample-seed", type=int, default=0, help="sampler seed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument(
        "--add-to",
        type=Path,
        default=None,
        metavar="JSON",
        help="rows of an earlier run (same images and settings) to table together with these",
    )
    args = parser.parse_args(argv)

    import torch

    from napari_cvdm.engine import registry
    from napari_cvdm.workflows.predict import ReconstructionParams

    torch.set_num_threads(args.threads)
    loaded = registry.load(args.model)
    cases = list(sr_test_cases(args.n, args.seed, (args.photons,), args.size))
    rows: list[dict[str, Any]] = []
    commands = []
    if args.add_to is not None:
        earlier = json.loads(args.add_to.read_text())
        for key in ("model_sha256", "samples", "photons", "size", "images"):
            mine = {
                "model_sha256": loaded.sha256,
                "samples": args.samples,
                "photons": args.photons,
                "size": args.size,
                "images": len(cases),
            }[key]
            if earlier.get(key) != mine:
                parser.error(f"--add-to: {key} differs ({earlier.get(key)} vs {mine})")
        rows = list(earlier["rows"])
        commands = list(earlier.get("commands", [earlier.get("command")]))
    started = time.perf_counter()
    for sampler in args.samplers:
        for steps in args.steps:
            params = ReconstructionParams(
                n_samples=args.samples,
                steps=steps,
                sampler=sampler,
                seed=args.sample_seed,
                device="cpu",
                partial_copies=False,
            )
            for structure, _photons, i, sample in cases:
                physics = physics_from_metadata(sample.metadata)
                clock = time.perf_counter()
                mean = reconstruct_mean(
                    sample.widefield, loaded, params, offset_adu=physics["offset_adu"]
                )
                seconds = time.perf_counter() - clock
                scores = metrics.sr_metrics(mean, sample.target)
                rows.append(
                    {
                        "sampler": sampler,
                        "steps": steps,
                        "image": f"{structure}#{i}",
                        "psnr": scores["psnr"],
                        "ssim": scores["ssim"],
                        "seconds": seconds,
                    }
                )
            cell = [r for r in rows if r["sampler"] == sampler and r["steps"] == steps]
            print(
                f"{sampler:>9} {steps:>3} steps: PSNR {np.mean([r['psnr'] for r in cell]):.2f} "
                f"SSIM {np.mean([r['ssim'] for r in cell]):.4f} ({len(cell)} images)",
                file=sys.stderr,
                flush=True,
            )
    samplers = list(dict.fromkeys([r["sampler"] for r in rows]))
    text = table(rows, samplers, sorted({r["steps"] for r in rows}))
    print(text)
    if args.json:
        record = {
            "commands": [
                *commands,
                shlex.join(["benchmarks/steps_curve.py", *(argv or sys.argv[1:])]),
            ],
            "model": args.model,
            "model_sha256": loaded.sha256,
            "samples": args.samples,
            "photons": args.photons,
            "size": args.size,
            "images": len(cases),
            "threads": args.threads,
            "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
            "load_avg_after": os.getloadavg(),
            "total_s": round(time.perf_counter() - started, 1),
            "table": text,
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(record, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
