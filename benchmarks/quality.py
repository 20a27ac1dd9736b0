"""Measured quality of trained CVDM models against the classical baselines (issue 5).

The images are the seeded test sets of ``benchmarks/baselines.py`` (shared through
``benchmarks/_testsets.py``). The baseline parameters are tuned on the validation sets in the
same way, or taken from a baselines JSON with ``--baseline-params``.

* **SR** (recipe SR-B, nominal NA 1.49, λ 0.525 µm, 128² widefield → 256²): PSNR/SSIM in the DL-SR
  convention (``metrics.sr_metrics``: each image min–max to [0, 1]) of the mean of ``--samples``
  CVDM samples, next to bicubic, Wiener and Richardson–Lucy, per structure and photon level.
  Headline: at every photon level, the mean over structures of CVDM − the best classical method
  (target ≥ +2 dB PSNR and ≥ +0.05 SSIM).
* **QPI** (recipe QPI-B, 256², nominal dz ±1 µm; read noise σ 0.01/0.03/0.1 of I₀ plus shot
  noise at N₀ = 10⁴): piston-removed phase MAE (``metrics.qpi_metrics``, 16-px border excluded)
  of the CVDM mean next to TIE, US-TIE and CTF, per family (cells, fractal) and noise level.
  Headline: at every noise level, CVDM MAE / MAE of the best baseline (lowest mean MAE at that
  level) (target ≤ 0.5).
* **Uncertainty**: per image, Spearman ρ of the std map with |mean − truth| and the coverage of
  ±1σ/±2σ (``metrics.calibration_metrics``). SR errors and std are in the min–max frame of the
  PSNR (mean and std divided by the mean's range, truth min–max); QPI in rad after piston
  alignment, border excluded. Headline: ρ and ±2σ coverage averaged over all images (targets
  ρ ≥ 0.5, coverage 0.90–0.98).

Times are wall-clock seconds per image (CVDM: the whole ``workflows.predict.reconstruct`` call).

    .venv/bin/python benchmarks/quality.py --sr-model sr-fluorescence-2x --qpi-model qpi-2plane \\
        --n 2 --samples 8 --steps 20 --markdown benchmarks/results/quality.md
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
from _quality_tables import markdown, summarise
from _report_io import json_ready, write_atomic
from _testsets import (
    QPI_METHODS,
    QPI_MIDDLE,
    QPI_RECIPE,
    SR_METHODS,
    SR_MIDDLE,
    TEST_SEED,
    VAL_SEED,
    qpi_test_cases,
    sr_test_cases,
    tune_qpi,
    tune_sr,
)

from napari_cvdm import metrics
from napari_cvdm.physics.phase_metrics import align_piston
from napari_cvdm.physics.sr_baselines import physics_from_metadata, run_sr_baseline
from napari_cvdm.physics.tie import reconstruct_phase

DEFAULT_JSON = Path(__file__).resolve().parent / "results" / "quality.json"
BASELINE_SIZES = {"sr": 128, "qpi": 256}  # the sizes benchmarks/baselines.py tunes at
_CAL_KEYS = ("spearman_rho", "coverage_1sigma", "coverage_2sigma", "calibration_error")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- the CVDM side ----------------------------------------------------------------------------


def load(name_or_path: str, task: str) -> Any:
    """A ``LoadedModel`` of ``task`` on the CPU (the workflow moves it to the device)."""
    from napari_cvdm.engine import registry
    from napari_cvdm.errors import InputError

    loaded = registry.load(name_or_path)
    if loaded.task != task:
        raise InputError(f"{name_or_path} is a {loaded.task!r} model; give a {task!r} model")
    return loaded


def model_summary(loaded: Any) -> dict[str, Any]:
    meta, training = loaded.metadata, loaded.metadata["training"]
    return {
        "name": meta["name"],
        "path": str(loaded.path) if loaded.path else None,
        "sha256": loaded.sha256,
        "preset": meta["architecture"].get("preset"),
        "untrained": bool(training.get("untrained", False)),
        "training_steps": training.get("steps"),
        "physics": meta["physics"],
    }


def cvdm_predict(
    image: np.ndarray, loaded: Any, params: Any, warm_up: bool = False, **options: Any
) -> tuple:
    """(mean, std, seconds) of one image through ``workflows.predict.reconstruct``.

    ``warm_up``: first run one untimed reverse step of the same shape (the first call of a
    process pays for torch's one-off set-up, which is no part of the time per image).
    """
    from dataclasses import replace

    from napari_cvdm.events import Finished
    from napari_cvdm.workflows.predict import reconstruct

    if warm_up:
        for _ in reconstruct(image, loaded, replace(params, steps=1), **options):
            pass
    start = time.perf_counter()
    result = None
    for event in reconstruct(image, loaded, params, **options):
        if isinstance(event, Finished):
            result = event.result
    return result.mean, result.std, time.perf_counter() - start


def sr_calibration(mean: np.ndarray, std: np.ndarray, target: np.ndarray, n: int) -> dict:
    """Calibration in the PSNR's frame: mean and std over the mean's range, truth min–max."""
    span = max(float(np.ptp(mean)), 1e-12)
    m01 = (mean - float(mean.min())) / span
    cal = metrics.calibration_metrics(m01, std / span, metrics.minmax01(target), n_samples=n)
    return {k: cal[k] for k in _CAL_KEYS}


def qpi_calibration(mean: np.ndarray, std: np.ndarray, phase: np.ndarray, n: int, border: int):
    """Calibration in rad after piston alignment, ``border`` px excluded."""
    aligned = align_piston(mean, phase, border)
    mask = np.zeros(phase.shape, bool)
    mask[border : phase.shape[0] - border, border : phase.shape[1] - border] = True
    cal = metrics.calibration_metrics(aligned, std, phase, n_samples=n, mask=mask)
    return {k: cal[k] for k in _CAL_KEYS}


# --- the two tasks ------------------------------------------------------------------------


def run_sr(args: argparse.Namespace, loaded: Any, params: Any, tuned: dict | None) -> dict:
    levels = (SR_MIDDLE,) if args.levels == "middle" else None
    size = None if args.sr_size == BASELINE_SIZES["sr"] else args.sr_size
    source = "validation set" if tuned is None else "--baseline-params"
    if tuned is None:
        tuned = tune_sr(args.n_val, args.val_seed, levels, size, log=_log)
    rows: list[dict[str, Any]] = []
    cases = sr_test_cases(args.n, args.seed, levels, size)
    for count, (structure, photons, i, sample) in enumerate(cases):
        physics = physics_from_metadata(sample.metadata)
        key = {"structure": structure, "photons": photons, "index": i}
        for method in SR_METHODS:
            value = tuned[str(photons)].get(method)
            start = time.perf_counter()
            out = run_sr_baseline(method, sample.widefield, value, **physics)
            row = {**key, "method": method, "parameter": value}
            row["seconds"] = time.perf_counter() - start
            rows.append(row | metrics.sr_metrics(out, sample.target))
        mean, std, seconds = cvdm_predict(
            sample.widefield, loaded, params, count == 0, offset_adu=physics["offset_adu"]
        )
        row = {**key, "method": "cvdm", "seconds": seconds}
        row |= metrics.sr_metrics(mean, sample.target)
        row |= sr_calibration(mean, std, sample.target, params.n_samples)
        rows.append(row)
        _log(f"  SR {structure} N_fg={photons:g} #{i}: CVDM {row['psnr']:.2f} dB, {seconds:.1f} s")
    return {"tuned": tuned, "tuned_from": source, "rows": rows, "model": model_summary(loaded)}


def run_qpi(args: argparse.Namespace, loaded: Any, params: Any, tuned: dict | None) -> dict:
    labels = (QPI_MIDDLE,) if args.levels == "middle" else None
    size = None if args.qpi_size == BASELINE_SIZES["qpi"] else args.qpi_size
    source = "validation set" if tuned is None else "--baseline-params"
    if tuned is None:
        tuned = tune_qpi(args.n_val, args.val_seed, labels, size, log=_log)
    rows: list[dict[str, Any]] = []
    cases = qpi_test_cases(args.n, args.seed, labels, size)
    for count, (family, label, i, sample) in enumerate(cases):
        md = sample.metadata
        optics = (md["wavelength_um"], md["z_offsets_um"], md["pixel_size_um"])
        key = {"family": family, "noise": label, "index": i, "phi_max": md["phi_max"]}
        for method in QPI_METHODS:
            start = time.perf_counter()
            phase = reconstruct_phase(method, sample.stack, *optics, tuned[label][method])
            row = {**key, "method": method, "alpha": tuned[label][method]}
            row["seconds"] = time.perf_counter() - start
            rows.append(row | metrics.qpi_metrics(phase, sample.phase))
        mean, std, seconds = cvdm_predict(
            sample.stack, loaded, params, count == 0, wavelength_um=md["wavelength_um"],
            dz_um=md["dz_um"], pixel_size_um=md["pixel_size_um"],
        )  # fmt: skip
        row = {**key, "method": "cvdm", "seconds": seconds}
        row |= metrics.qpi_metrics(mean, sample.phase)
        row |= qpi_calibration(mean, std, sample.phase, params.n_samples, int(row["border_px"]))
        rows.append(row)
        _log(f"  QPI {family} {label} #{i}: CVDM MAE {row['mae_rad']:.3f} rad, {seconds:.1f} s")
    return {"tuned": tuned, "tuned_from": source, "rows": rows, "model": model_summary(loaded)}


# --- command line ---------------------------------------------------------------------------


def load_tuned(path: Path, args: argparse.Namespace) -> dict[str, dict | None]:
    """Tuned baseline parameters from a ``baselines.py`` JSON made with the same validation set."""
    data = json.loads(path.read_text(encoding="utf-8"))
    settings = data.get("settings", {})
    if (settings.get("n_val"), settings.get("val_seed")) != (args.n_val, args.val_seed):
        raise SystemExit(
            f"{path} was tuned with --n-val {settings.get('n_val')} --val-seed "
            f"{settings.get('val_seed')}; pass the same values or leave out --baseline-params"
        )
    same = {"sr": args.sr_size, "qpi": args.qpi_size}
    # QPI parameters tuned on another recipe (files without one: QPI-A) are tuned again
    recipe = {"sr": True, "qpi": settings.get("qpi_recipe", "QPI-A") == QPI_RECIPE}
    return {
        t: data[t]["tuned"] if t in data and same[t] == BASELINE_SIZES[t] and recipe[t] else None
        for t in ("sr", "qpi")
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sr-model", help="SR model name or .safetensors path")
    parser.add_argument("--qpi-model", help="QPI model name or .safetensors path")
    parser.add_argument("--n", type=int, default=2, help="test images per cell (2)")
    parser.add_argument("--samples", type=int, default=8, help="CVDM samples per image (8)")
    parser.add_argument("--steps", type=int, default=20, help="reverse steps (20)")
    parser.add_argument("--sampler", choices=("ancestral", "ddim"), default="ancestral")
    parser.add_argument("--sampler-seed", type=int, default=0, help="CVDM sampler seed (0)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda[:i], mps (auto)")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    parser.add_argument("--levels", choices=("all", "middle"), default="all",
                        help="photon/noise levels: all three, or only the middle one")  # fmt: skip
    parser.add_argument("--n-val", type=int, default=3, help="validation images per level (3)")
    parser.add_argument("--seed", type=int, default=TEST_SEED, help=f"test seed ({TEST_SEED})")
    parser.add_argument("--val-seed", type=int, default=VAL_SEED, help=f"({VAL_SEED})")
    parser.add_argument("--sr-size", type=int, default=128, help="widefield px (128; GT 2×)")
    parser.add_argument("--qpi-size", type=int, default=256, help="QPI px (256)")
    parser.add_argument("--baseline-params", type=Path,
                        help="reuse the tuned parameters of a baselines.py JSON")  # fmt: skip
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON, help="results JSON")
    parser.add_argument("--markdown", type=Path, help="also write the tables here")
    args = parser.parse_args(argv)
    if not (args.sr_model or args.qpi_model):
        parser.error("give --sr-model and/or --qpi-model")
    if args.samples < 2:
        parser.error("--samples must be >= 2 (the std map needs two samples)")
    return args


def main(argv: list[str] | None = None) -> int:
    import torch

    from napari_cvdm.workflows.predict import ReconstructionParams

    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    params = ReconstructionParams(
        n_samples=args.samples, steps=args.steps, sampler=args.sampler, seed=args.sampler_seed,
        device=args.device, t_star=(0.5,),
    )  # fmt: skip
    words = sys.argv[1:] if argv is None else argv
    report: dict[str, Any] = {
        "command": shlex.join([".venv/bin/python", "benchmarks/quality.py", *words]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "machine": {
            "python": platform.python_version(),
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        },
    }
    tuned = load_tuned(args.baseline_params, args) if args.baseline_params else {}
    start = time.perf_counter()
    if args.sr_model:
        report["sr"] = run_sr(args, load(args.sr_model, "sr"), params, tuned.get("sr"))
    if args.qpi_model:
        report["qpi"] = run_qpi(args, load(args.qpi_model, "qpi"), params, tuned.get("qpi"))
    report["summary"] = summarise(report)
    report["total_seconds"] = time.perf_counter() - start
    text = markdown(report)
    print(text)
    _log(f"total {report['total_seconds']:.0f} s")
    write_atomic(args.json, json.dumps(json_ready(report), indent=1, allow_nan=False) + "\n")
    if args.markdown:
        write_atomic(args.markdown, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
