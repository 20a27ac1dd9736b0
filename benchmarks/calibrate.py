"""Fit a model's std calibration on a seeded simulated *validation* set and write it into a copy
of the model file (workflows/calibration.py; the test sets of quality.py are never used).

SR: validation cells ``300 + level`` of recipe SR-B, structures in turn over the photon levels of
``_testsets.SR_PHOTONS``. Prints the fitted scale and the ±1σ/±2σ coverage and Spearman ρ before
and after, on the validation pixels themselves (the benchmark reports them on the test set).

Usage::

    .venv/bin/python benchmarks/calibrate.py --model sr-fluorescence-2x --n 8 \\
        --output runs/sr-fluorescence-2x.calibrated.safetensors
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from _testsets import SR_PHOTONS, STRUCTURE_NAMES, VAL_SEED, sr_sample

from napari_cvdm import metrics
from napari_cvdm.engine import registry
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.workflows.calibration import calibration_record, fit_model_calibration


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="sr-fluorescence-2x")
    parser.add_argument("--n", type=int, default=8, help="validation images (8)")
    parser.add_argument("--size", type=int, default=64, help="widefield side, px (64)")
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)
    loaded = registry.load(args.model)
    if loaded.task != "sr":
        print("only SR models are calibrated by this script so far", file=sys.stderr)
        return 2
    pairs = []
    for i in range(args.n):
        level = i % len(SR_PHOTONS)
        structure = STRUCTURE_NAMES[i % len(STRUCTURE_NAMES)]
        s = sr_sample(VAL_SEED, 300 + level, i, structure, SR_PHOTONS[level], args.size)
        pairs.append((s.widefield, s.target))
    scale, pooled = fit_model_calibration(loaded, pairs, args.samples, args.steps)
    e, s = pooled["errors"], pooled["stds"]
    report = {"scale": scale}
    for label, factor in (("raw", 1.0), ("calibrated", scale)):
        cal = metrics.calibration_metrics(e, factor * s, np.zeros_like(e), args.samples)
        report[label] = {k: v for k, v in cal.items() if np.isscalar(v)}
    meta = {k: v for k, v in loaded.metadata.items() if k != "weights"}
    meta["calibration"] = calibration_record(
        scale, args.samples, args.steps, f"SR-B validation (seed {VAL_SEED}, cells 300+)", args.n
    )
    dtype = loaded.metadata.get("weights", {}).get("dtype", "float16")
    save_model(args.output, loaded.model, meta, dtype=dtype)
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
