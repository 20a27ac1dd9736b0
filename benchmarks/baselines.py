"""Classical baselines on seeded simulated test sets: metrics table and time per image.

SR (recipe SR-B): 4 structures × 4 photon levels (N_fg e⁻/px) × ``--n`` images; baselines
bicubic, Wiener (K) and Richardson–Lucy with binning (iterations). QPI (recipe QPI-B, 256² px,
nominal λ 0.521 µm, Δx 0.21 µm, dz ±1 µm, which every baseline uses; each stack's true optics
differ by a few %): 2 phase families (cell scenes, fractal textures) × 3 noise levels (Gaussian
read noise σ 0.01 / 0.03 / 0.1 of I₀ plus shot noise at N₀ = 10⁴ e⁻/px) × ``--n`` images;
baselines FFT-Tikhonov TIE, US-TIE and weak-object CTF inversion (α), and as a reference the flat
estimate φ̂ = 0 (what a method that recovers nothing scores after piston removal).

Tuning rule (docs/physics.md (d)): every regularisation parameter is grid-searched on a separate
seeded *validation* set (``--n-val`` images per noise level, structures/families at equal odds,
seed ``--val-seed``), one value per noise level, by mean PSNR for SR (both images min–max
normalised) and mean piston-removed phase RMSE for QPI; the test set (seed ``--seed``) is never
used for tuning.

Usage::

    .venv/bin/python benchmarks/baselines.py --task qpi --n 4 --n-val 4 \
        --json benchmarks/results/baselines_qpi.json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from _testsets import (  # benchmarks/_testsets.py: the seeded sets shared with quality.py
    QPI_FAMILIES,
    QPI_METHODS,
    QPI_NOISE,
    QPI_PHOTONS,
    QPI_RECIPE,
    SR_METHODS,
    SR_PHOTONS,
    STRUCTURE_NAMES,
    qpi_test_cases,
    sr_test_cases,
    tune_qpi,
    tune_sr,
)
from _testsets import mean_of as _mean

from napari_cvdm import metrics
from napari_cvdm.physics.sr_baselines import physics_from_metadata, run_sr_baseline
from napari_cvdm.physics.tie import reconstruct_phase

FLAT = "flat"  # the QPI reference row: φ̂ = 0, no reconstruction


def _log(message: str) -> None:
    print(message, file=sys.stderr)


def run_sr(n: int, n_val: int, seed: int, val_seed: int) -> dict[str, Any]:
    tuned = tune_sr(n_val, val_seed, log=_log)
    rows = []
    for structure, photons, i, sample in sr_test_cases(n, seed):
        physics = physics_from_metadata(sample.metadata)
        for method in SR_METHODS:
            value = tuned[str(photons)].get(method)
            start = time.perf_counter()
            out = run_sr_baseline(method, sample.widefield, value, **physics)
            seconds = time.perf_counter() - start
            row = {"structure": structure, "photons": photons, "index": i}
            row.update(method=method, parameter=value, seconds=seconds)
            row.update(metrics.sr_metrics(out, sample.target))
            row["resolution_nm"] = _decorr_nm(out, physics["pixel_size_um"] / 2)
            rows.append(row)
        rows.append(
            {"structure": structure, "photons": photons, "index": i, "method": "GT",
             "resolution_nm": _decorr_nm(sample.target, physics["pixel_size_um"] / 2)}
        )  # fmt: skip
    return {"tuned": tuned, "rows": rows}


def _decorr_nm(image: np.ndarray, pixel_um: float) -> float | None:
    res = metrics.decorrelation_resolution(image, pixel_um).resolution_um
    return None if res is None else 1e3 * res


def run_qpi(n: int, n_val: int, seed: int, val_seed: int) -> dict[str, Any]:
    curves: dict[str, Any] = {}
    tuned = tune_qpi(n_val, val_seed, log=_log, curves=curves)
    rows = []
    for family, label, i, sample in qpi_test_cases(n, seed):
        md = sample.metadata
        for method in QPI_METHODS:
            alpha = tuned[label][method]
            start = time.perf_counter()
            phase = reconstruct_phase(
                method, sample.stack, md["wavelength_um"], md["z_offsets_um"],
                md["pixel_size_um"], alpha,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            row = {"family": family, "noise": label, "index": i, "method": method}
            row.update(alpha=alpha, seconds=seconds, phi_max=md["phi_max"])
            row.update(metrics.qpi_metrics(phase, sample.phase))
            rows.append(row)
        # reference: a flat estimate φ̂ = 0 (scores the piston-removed spread of the truth)
        row = {"family": family, "noise": label, "index": i, "method": FLAT}
        row.update(alpha=None, seconds=0.0, phi_max=md["phi_max"])
        row.update(metrics.qpi_metrics(np.zeros_like(sample.phase), sample.phase))
        rows.append(row)
    return {"tuned": tuned, "validation_rmse_by_alpha": curves, "rows": rows}


def sr_tables(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        "| N_fg (e⁻/px) | method | parameter | PSNR (dB) | SSIM | NRMSE | decorr. res. (nm) "
        "| ms / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for photons in SR_PHOTONS:
        for method in (*SR_METHODS, "GT"):
            sel = [r for r in rows if r["photons"] == photons and r["method"] == method]
            if method == "GT":
                lines.append(
                    f"| {photons:g} | ground truth | – | – | – | – | "
                    f"{_mean(sel, 'resolution_nm'):.0f} | – |"
                )
                continue
            param = result["tuned"][str(photons)].get(method)
            param = "–" if param is None else (f"K={param:.2g}" if method == "wiener" else
                                               f"{param} it.")  # fmt: skip
            lines.append(
                f"| {photons:g} | {method} | {param} | {_mean(sel, 'psnr'):.2f} | "
                f"{_mean(sel, 'ssim'):.3f} | {_mean(sel, 'nrmse'):.3f} | "
                f"{_mean(sel, 'resolution_nm'):.0f} | {1e3 * _mean(sel, 'seconds'):.0f} |"
            )
    lines += ["", "| structure | " + " | ".join(f"{m} PSNR" for m in SR_METHODS) + " |"]
    lines.append("|---|" + "---|" * len(SR_METHODS))
    for structure in STRUCTURE_NAMES:
        cells = [
            _mean([r for r in rows if r["structure"] == structure and r["method"] == m], "psnr")
            for m in SR_METHODS
        ]
        lines.append(f"| {structure} | " + " | ".join(f"{c:.2f}" for c in cells) + " |")
    return "\n".join(lines)


def _sd(rows: list[dict[str, Any]], key: str) -> float:
    """Sample standard deviation (ddof 1) of the finite values of ``key`` (NaN below two)."""
    values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def qpi_tables(result: dict[str, Any]) -> str:
    rows = result["rows"]
    lines = [
        "| noise | method | α | MAE (rad), mean ± sd | RMSE (rad) | SSIM (range 3.5 rad) "
        "| PSNR (dB) | ms / image |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, _ in QPI_NOISE:
        for method in (*QPI_METHODS, FLAT):
            sel = [r for r in rows if r["noise"] == label and r["method"] == method]
            alpha = result["tuned"][label].get(method)
            lines.append(
                f"| {label} | {method} | {'–' if alpha is None else f'{alpha:.0e}'} | "
                f"{_mean(sel, 'mae_rad'):.3f} ± {_sd(sel, 'mae_rad'):.3f} | "
                f"{_mean(sel, 'rmse_rad'):.3f} | "
                f"{_mean(sel, 'ssim'):.3f} | {_mean(sel, 'psnr'):.2f} | "
                f"{1e3 * _mean(sel, 'seconds'):.0f} |"
            )
    methods = (*QPI_METHODS, FLAT)
    lines += ["", "| family | noise | " + " | ".join(f"{m} MAE (rad)" for m in methods) + " |"]
    lines.append("|---|---|" + "---|" * len(methods))
    for family in QPI_FAMILIES:
        for label, _ in QPI_NOISE:
            sel = [r for r in rows if r["family"] == family and r["noise"] == label]
            cells = [_mean([r for r in sel if r["method"] == m], "mae_rad") for m in methods]
            lines.append(f"| {family} | {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4, help="test images per cell (4)")
    parser.add_argument("--n-val", type=int, default=3, help="validation images per level (3)")
    parser.add_argument("--seed", type=int, default=2024, help="test-set seed (2024)")
    parser.add_argument("--val-seed", type=int, default=1, help="validation seed (1)")
    parser.add_argument("--task", choices=("sr", "qpi", "both"), default="both")
    parser.add_argument("--json", type=Path, help="write all per-image rows and settings here")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "command": " ".join(["benchmarks/baselines.py", *(argv or sys.argv[1:])]),
        "settings": vars(args)
        | {"json": str(args.json) if args.json else None}
        | {"qpi_recipe": QPI_RECIPE, "qpi_photons": QPI_PHOTONS},
        "machine": {"python": platform.python_version(), "cpu": platform.processor()},
    }
    start = time.perf_counter()
    if args.task in ("sr", "both"):
        report["sr"] = run_sr(args.n, args.n_val, args.seed, args.val_seed)
        print("### SR baselines (recipe SR-B, nominal NA 1.49, λ 0.525 µm, 128² → 256²)\n")
        print(sr_tables(report["sr"]) + "\n")
    if args.task in ("qpi", "both"):
        report["qpi"] = run_qpi(args.n, args.n_val, args.seed, args.val_seed)
        print(
            f"### QPI baselines (recipe {QPI_RECIPE}, 256², nominal λ 0.521 µm, Δx 0.21 µm, "
            f"dz ±1 µm; shot noise at N0 = {QPI_PHOTONS:g} e-/px plus read noise σ)\n"
        )
        print(qpi_tables(report["qpi"]) + "\n")
    report["total_seconds"] = time.perf_counter() - start
    print(f"total {report['total_seconds']:.0f} s", file=sys.stderr)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1, default=float), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
