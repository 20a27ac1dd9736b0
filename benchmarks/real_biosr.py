"""Real BioSR microtubules: every SR method on the widefield of real raw SIM frames (issue 10).

Data: ``tests/data/rdlsim-mt/MT.mrc`` — 9 raw TIRF-SIM frames (3 orientations × 3 phases, 256²,
0.0626 µm, 1.49 NA, ~525 nm emission) of microtubules from the BioSR microscope. There is no SIM
ground truth in the file.

* **Reference**: *our SIM reconstruction of the raw frames*
  (``napari_cvdm.physics.sim_reconstruction.reconstruct_sim``: parameters estimated from these
  frames, generalised Wiener with the measured TIRF488 OTF, apodised), 512² at 0.0313 µm. It is
  not a ground truth: it carries the noise of 9 low-SNR frames, the Wiener/apodisation choices
  (w tuned on simulated frames at the SNR of MT.mrc, ``--tune-reference``) and any parameter
  error; scores measure agreement with a linear SIM reconstruction, not with the object.
* **Inputs**: ``high`` = the widefield (mean of the 9 frames, as BioSR defines it; offset 0 and
  gain 1 given to every method: the file's camera offset is unknown); ``low`` = the same image
  scaled to a mean of ``--low-photons`` e⁻/px over the field (background included), Poisson
  noise (seed ``--noise-seed``), plus an offset of 100 ADU (gain 1 ADU/e⁻).
* **Methods**: bicubic, Wiener (K) and Richardson–Lucy (iterations) of ``physics/sr_baselines``
  with the SR-B parameters tuned on *simulated validation* data (``--baseline-params``, the
  ``baselines.py`` JSON) at the photon level nearest the input's equivalent N_fg =
  (median foreground / noise σ)²; never tuned on this image. CVDM models from ``--model`` (name
  or ``.safetensors`` path, repeatable) through ``workflows.predict.reconstruct`` with the
  image's optics (0.0626 µm, NA 1.49, λ 0.525 µm).
* **Scores** on the reference's interior (the outer ``--border`` GT pixels — the reconstruction's
  edge taper — left out): PSNR/SSIM in the project's SR convention (``metrics.sr_metrics``: both
  images min–max to [0, 1]) and after a least-squares affine fit of each output to the reference
  (data range = the reference's range; outputs are relative intensities).

    .venv/bin/python benchmarks/real_biosr.py --model sr-fluorescence-2x --samples 4 --steps 16 \\
        --threads 1
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
from _report_io import json_ready, write_atomic

from napari_cvdm import metrics
from napari_cvdm.io import read_image, widefield_from_raw_sim
from napari_cvdm.physics import sim_reconstruction as simrec
from napari_cvdm.physics.psf import cubic_resize
from napari_cvdm.physics.sr_baselines import run_sr_baseline

ROOT = Path(__file__).resolve().parents[1]
MT = ROOT / "tests" / "data" / "rdlsim-mt" / "MT.mrc"
DEFAULT_JSON = ROOT / "benchmarks" / "results" / "real_biosr.json"
DEFAULT_FIGURE = ROOT / "docs" / "images" / "real_biosr_methods.png"
DEFAULT_BASELINES = ROOT / "benchmarks" / "results" / "baselines_sr.json"
PIXEL_UM, NA, WAVELENGTH_UM = 0.0626, 1.49, 0.525
SR_PHOTONS = (100.0, 500.0, 1500.0, 5000.0)  # the SR-B levels of baselines_sr.json
#: Wiener parameter of the reference, chosen by ``--tune-reference`` (simulated frames at the SNR
#: of MT.mrc, best mean PSNR against the ideal SIM image; see docs/benchmarks.md)
REFERENCE_W = 0.2
W_GRID = (0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.6)


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- scoring ----------------------------------------------------------------------------------


def affine_fit(image: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """a·image + b with (a, b) the least-squares fit to ``reference`` (same shape)."""
    x = np.asarray(image, np.float64).ravel()
    design = np.stack([x, np.ones_like(x)], axis=1)
    coef, *_ = np.linalg.lstsq(design, np.asarray(reference, np.float64).ravel(), rcond=None)
    return (design @ coef).reshape(np.shape(image))


def score(output: np.ndarray, reference: np.ndarray, border: int) -> dict[str, float]:
    """Min–max (project convention) and affine-fit PSNR/SSIM on the interior."""
    inner = (slice(border, -border), slice(border, -border)) if border else (slice(None),) * 2
    out, ref = np.asarray(output, np.float64)[inner], np.asarray(reference, np.float64)[inner]
    mm = metrics.sr_metrics(out, ref)
    fitted = affine_fit(out, ref)
    span = float(np.ptp(ref))
    return {
        "psnr_minmax": mm["psnr"],
        "ssim_minmax": mm["ssim"],
        "psnr_affine": metrics.psnr(fitted, ref, span),
        "ssim_affine": metrics.ssim(fitted, ref, span),
    }


# --- inputs -----------------------------------------------------------------------------------


def noise_sigma(image: np.ndarray, support: float) -> float:
    """White-noise standard deviation per pixel from the spectrum beyond the OTF ``support``."""
    ky = np.fft.fftfreq(image.shape[0], d=PIXEL_UM)[:, None]
    kx = np.fft.fftfreq(image.shape[1], d=PIXEL_UM)[None, :]
    outside = np.hypot(ky, kx) > 1.05 * support
    power = np.abs(np.fft.fft2(image - image.mean())) ** 2
    return float(np.sqrt(np.mean(power[outside]) / image.size))


def equivalent_photons(image: np.ndarray, offset: float, support: float) -> dict[str, float]:
    """N_fg ≈ (median foreground / σ)², foreground = image − 1st percentile of the σ = 2 px
    smoothed image: the photon count a Poisson image with this contrast-to-noise would have."""
    from scipy import ndimage

    img = np.asarray(image, np.float64) - offset
    background = float(np.percentile(ndimage.gaussian_filter(img, 2.0), 1.0))
    sigma = noise_sigma(img, support)
    foreground = float(np.median(img - background))
    return {
        "background": background,
        "noise_sigma": sigma,
        "median_foreground": foreground,
        "equivalent_n_fg": (foreground / sigma) ** 2 if sigma > 0 else float("inf"),
    }


def low_snr(widefield: np.ndarray, photons: float, seed: int) -> np.ndarray:
    """Widefield scaled to a mean of ``photons`` e⁻/px, Poisson noise, + 100 ADU offset."""
    expected = np.asarray(widefield, np.float64) * (photons / float(np.mean(widefield)))
    counts = np.random.default_rng(seed).poisson(np.clip(expected, 0.0, None))
    return (counts + 100.0).astype(np.float32)


def nearest_level(n_fg: float) -> float:
    return min(SR_PHOTONS, key=lambda level: abs(np.log(level) - np.log(max(n_fg, 1e-6))))


# --- CVDM -------------------------------------------------------------------------------------


def load_model(name_or_path: str) -> Any:
    from napari_cvdm.engine import registry
    from napari_cvdm.errors import InputError

    loaded = registry.load(name_or_path)
    if loaded.task != "sr":
        raise InputError(f"{name_or_path} is a {loaded.task!r} model; give an SR model")
    return loaded


def model_summary(loaded: Any) -> dict[str, Any]:
    meta, training = loaded.metadata, loaded.metadata["training"]
    return {
        "name": meta["name"],
        "path": str(loaded.path) if loaded.path else None,
        "sha256": loaded.sha256,
        "preset": meta["architecture"].get("preset"),
        "condition_channels": meta["architecture"].get("condition_channels"),
        "prior": meta["normalization"].get("prior"),
        "training_steps": training.get("steps"),
        "cumulative_steps": training.get("cumulative_steps"),
        "calibration": meta.get("calibration"),
    }


def cvdm_predict(image: np.ndarray, loaded: Any, params: Any, offset: float) -> tuple:
    """(mean, std, seconds) through ``workflows.predict.reconstruct`` with MT.mrc's optics."""
    from napari_cvdm.events import Finished
    from napari_cvdm.workflows.predict import reconstruct

    start = time.perf_counter()
    result = None
    for event in reconstruct(
        image, loaded, params, pixel_size_um=PIXEL_UM, na=NA, wavelength_um=WAVELENGTH_UM,
        offset_adu=offset, input_name="MT.mrc widefield",
    ):  # fmt: skip
        if isinstance(event, Finished):
            result = event.result
    return np.asarray(result.mean), np.asarray(result.std), time.perf_counter() - start


# --- the reference's Wiener parameter, tuned on simulated frames -------------------------------


def _snr_profile(frames: np.ndarray) -> np.ndarray:
    """log10 of the ring-averaged power of the 3-frame mean over its noise floor (6-px rings)."""
    n = frames.shape[-1]
    k = np.fft.fftfreq(n) * n
    rho = np.hypot(k[:, None], k[None, :])
    power = np.abs(np.fft.fft2(frames[:3].mean(axis=0))) ** 2
    floor = float(np.mean(power[rho > 0.4 * n]))
    return np.array(
        [np.log10(np.mean(power[(rho >= r) & (rho < r + 6)]) / floor) for r in range(6, 66, 6)]
    )


def tune_reference_w(
    frames: np.ndarray, estimate: list, seeds: tuple[int, ...] = (11, 12)
) -> dict[str, Any]:
    """Wiener w of the reference by mean affine PSNR against the ideal SIM image on simulated
    frames like MT.mrc: dense microtubules over the same 16 µm, the SIM parameters estimated
    from MT.mrc (equal phase steps), a background 4× the mean signal (MT.mrc's 1st-percentile
    level is 80 % of its mean) and the photon count whose SNR profile (power over noise floor
    per ring of the 3-frame mean) is closest to MT.mrc's. The simulated frames go through the
    same estimation as the real ones."""
    from napari_cvdm.physics.points import render
    from napari_cvdm.physics.structures import generate_structure

    n = frames.shape[-1]
    target = _snr_profile(frames.astype(np.float64))
    truth = [
        simrec.OrientationParameters(
            p.k0, tuple(p.phases_rad[0] + 2 * np.pi * i / 3 for i in range(3)), p.modulation
        )
        for p in estimate
    ]
    report: dict[str, Any] = {"mt_snr_profile": target.tolist(), "runs": []}
    scores = {w: [] for w in W_GRID}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        structure = generate_structure(
            rng, "microtubules", (n * PIXEL_UM,) * 2, density_per_900um2=150.0
        )
        obj = render(structure, (2 * n, 2 * n), PIXEL_UM / 2)
        obj /= obj.mean()
        clean = simrec.simulate_raw_sim(obj, PIXEL_UM, truth, background=4.0)
        best = None
        for photons in (10.0, 14.0, 20.0, 28.0, 40.0, 56.0, 80.0):
            noisy = rng.poisson(clean * (photons / clean.mean())).astype(np.float64)
            misfit = float(np.mean((_snr_profile(noisy) - target) ** 2))
            if best is None or misfit < best[0]:
                best = (misfit, photons, noisy)
        misfit, photons, noisy = best
        params = simrec.estimate_parameters(noisy, PIXEL_UM)
        ideal_otf = simrec.reconstruction_otf(obj.shape, PIXEL_UM / 2, truth, wiener_w=1e-3)
        ideal = np.fft.ifft2(np.fft.fft2(obj) * ideal_otf).real
        run = {"seed": seed, "photons_per_frame": photons, "snr_profile_misfit": misfit}
        run["k0_error_px"] = [
            float(min(np.hypot(*(np.subtract(e.k0, t.k0))), np.hypot(*(np.add(e.k0, t.k0)))))
            * n * PIXEL_UM
            for e, t in zip(params, truth, strict=True)
        ]  # fmt: skip
        run["psnr_affine"] = {}
        for w in W_GRID:
            image = simrec.reconstruct_sim(noisy, PIXEL_UM, parameters=params, wiener_w=w).image
            value = score(image, ideal, 32)["psnr_affine"]
            run["psnr_affine"][str(w)] = value
            scores[w].append(value)
        widefield = cubic_resize(noisy.mean(axis=0), obj.shape)
        run["psnr_affine"]["widefield_bicubic"] = score(widefield, ideal, 32)["psnr_affine"]
        report["runs"].append(run)
        _log(f"  tune w, seed {seed}: {photons:g} photons/frame, {run['psnr_affine']}")
    report["mean_psnr_affine"] = {str(w): float(np.mean(v)) for w, v in scores.items()}
    report["best_w"] = max(W_GRID, key=lambda w: np.mean(scores[w]))
    return report


# --- figure -----------------------------------------------------------------------------------


def _contrast(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, [0.5, 99.8])
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def make_figure(panels: dict[str, dict[str, np.ndarray]], path: Path, crop: tuple) -> None:
    """Rows: high-SNR input, low-SNR input (crop, each panel 0.5–99.8 percentile → black–white,
    2 µm bar) and log amplitude spectra of the high-SNR outputs (whole image, Hann window,
    5–99.9 percentile colour range per panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(panels["high"])
    fig, axes = plt.subplots(3, len(names), figsize=(2.2 * len(names), 7.0))
    bar_px = 2.0 / (PIXEL_UM / 2)
    for col, name in enumerate(names):
        for row, level in enumerate(("high", "low")):
            ax = axes[row, col]
            ax.imshow(_contrast(panels[level][name][crop]), cmap="gray", interpolation="nearest")
            h = panels[level][name][crop].shape[0]
            ax.plot([6, 6 + bar_px], [h - 8, h - 8], color="white", lw=2.5)
            if col == 0:
                ax.text(6, h - 14, "2 µm", color="white", fontsize=7)
                label = "input: 9-frame mean" if level == "high" else "input: low SNR"
                ax.set_ylabel(label, fontsize=8)
            if row == 0:
                ax.set_title(name, fontsize=8)
        image = panels["high"][name]
        window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
        tapered = (image - image.mean()) * window  # no FFT edge cross
        spectrum = np.log10(np.abs(np.fft.fftshift(np.fft.fft2(tapered))) + 1e-9)
        lo, hi = np.percentile(spectrum, [5, 99.9])
        axes[2, col].imshow(spectrum, cmap="magma", vmin=lo, vmax=hi)
        if col == 0:
            axes[2, col].set_ylabel("log |FFT|, Hann (high)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "BioSR MT.mrc (real raw TIRF-SIM frames): every method on the widefield; right: our SIM "
        "reconstruction of the raw frames (reference, not ground truth)",
        fontsize=8,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# --- main ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", action="append", help="SR model name or .safetensors path "
                        "(repeatable; default sr-fluorescence-2x)")  # fmt: skip
    parser.add_argument("--no-cvdm", action="store_true", help="classical methods only")
    parser.add_argument("--samples", type=int, default=4, help="CVDM samples (4)")
    parser.add_argument("--steps", type=int, default=16, help="reverse steps (16)")
    parser.add_argument("--sampler", choices=("ancestral", "ddim"), default="ancestral")
    parser.add_argument("--sampler-seed", type=int, default=0)
    parser.add_argument("--device", default="cpu", help="cpu, cuda[:i], auto (cpu)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1)")
    parser.add_argument("--low-photons", type=float, default=100.0,
                        help="mean e⁻/px of the low-SNR input (100)")  # fmt: skip
    parser.add_argument("--noise-seed", type=int, default=0, help="low-SNR Poisson seed (0)")
    parser.add_argument("--reference-w", type=float, default=REFERENCE_W,
                        help=f"Wiener w of the SIM reference ({REFERENCE_W})")  # fmt: skip
    parser.add_argument("--tune-reference", action="store_true",
                        help="re-tune the reference's w on simulated frames")  # fmt: skip
    parser.add_argument("--border", type=int, default=32, help="GT px left out of scores (32)")
    parser.add_argument("--baseline-params", type=Path, default=DEFAULT_BASELINES,
                        help="baselines.py JSON with the SR-B tuned parameters")  # fmt: skip
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON)
    parser.add_argument("--figure", type=Path, default=DEFAULT_FIGURE)
    args = parser.parse_args(argv)
    if args.samples < 2:
        parser.error("--samples must be >= 2")
    if args.low_photons <= 0:
        parser.error("--low-photons must be > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    words = sys.argv[1:] if argv is None else argv
    start_all = time.perf_counter()
    frames, _meta = read_image(MT)
    widefield = widefield_from_raw_sim(frames)
    support = float(simrec.DEFAULT_OPTICS.cutoff)

    _log("SIM parameters of MT.mrc ...")
    t0 = time.perf_counter()
    estimate = simrec.estimate_parameters(frames, PIXEL_UM)
    estimate_seconds = time.perf_counter() - t0
    tuning = None
    w = args.reference_w
    if args.tune_reference:
        _log("tuning the reference's Wiener w on simulated frames ...")
        tuning = tune_reference_w(frames, estimate)
        w = float(tuning["best_w"])
    reference = simrec.reconstruct_sim(frames, PIXEL_UM, parameters=estimate, wiener_w=w)
    ref = reference.image.astype(np.float64)

    inputs = {
        "high": (widefield, 0.0),
        "low": (low_snr(widefield, args.low_photons, args.noise_seed), 100.0),
    }
    tuned_all = json.loads(args.baseline_params.read_text(encoding="utf-8"))["sr"]["tuned"]
    report: dict[str, Any] = {
        "command": shlex.join([".venv/bin/python", "benchmarks/real_biosr.py", *words]),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "data": {
            "file": "tests/data/rdlsim-mt/MT.mrc",
            "pixel_size_um": PIXEL_UM,
            "na": NA,
            "wavelength_um": WAVELENGTH_UM,
            "frames": list(frames.shape),
        },  # fmt: skip
        "reference": {
            "what": "our SIM reconstruction of the raw frames (not a ground truth)",
            "wiener_w": w,
            "estimate_seconds": estimate_seconds,
            **reference.to_metadata(),
        },
        "reference_tuning": tuning,
        "reference_parameters": "estimated from MT.mrc by sim_reconstruction.estimate_parameters",
        "inputs": {},
        "results": {},
    }
    outputs: dict[str, dict[str, np.ndarray]] = {}
    params = loaded_models = None
    if not args.no_cvdm:
        import torch

        from napari_cvdm.workflows.predict import ReconstructionParams

        torch.set_num_threads(max(1, args.threads))
        params = ReconstructionParams(
            n_samples=args.samples, steps=args.steps, sampler=args.sampler,
            seed=args.sampler_seed, device=args.device, t_star=(0.5,),
        )  # fmt: skip
        loaded_models = [(m, load_model(m)) for m in (args.model or ["sr-fluorescence-2x"])]
        report["models"] = {m: model_summary(lm) for m, lm in loaded_models}
        report["machine"] = {
            "python": platform.python_version(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "load_average": list(os.getloadavg()),
        }
    for level, (image, offset) in inputs.items():
        stats = equivalent_photons(image, offset, support)
        photons = nearest_level(stats["equivalent_n_fg"])
        tuned = tuned_all[str(photons)]
        report["inputs"][level] = {**stats, "offset_adu": offset, "sr_b_level": photons,
                                   "baseline_parameters": tuned}  # fmt: skip
        physics = {"pixel_size_um": PIXEL_UM, "na": NA, "wavelength_um": WAVELENGTH_UM,
                   "offset_adu": offset, "gain_adu_per_e": 1.0}  # fmt: skip
        rows: dict[str, Any] = {}
        shown = {"widefield": np.kron(np.asarray(image, np.float64) - offset, np.ones((2, 2)))}
        for method in ("bicubic", "wiener", "rl"):
            t0 = time.perf_counter()
            out = run_sr_baseline(method, image, tuned.get(method), **physics)
            seconds = time.perf_counter() - t0
            rows[method] = {"parameter": tuned.get(method), "seconds": seconds} | score(
                out, ref, args.border
            )
            shown[method] = out
            _log(f"  {level} {method}: {rows[method]}")
        for name, loaded in loaded_models or []:
            mean, _std, seconds = cvdm_predict(image, loaded, params, offset)
            label = f"cvdm:{name}"
            rows[label] = {"seconds": seconds, "samples": args.samples, "steps": args.steps}
            rows[label] |= score(mean, ref, args.border)
            shown[Path(name).stem] = mean
            _log(f"  {level} {label}: {rows[label]}")
        shown["SIM reference"] = ref
        report["results"][level] = rows
        outputs[level] = shown
    crop = (slice(128, 384), slice(128, 384))  # the central 8 × 8 µm
    make_figure(outputs, args.figure, crop)
    report["figure"] = {"path": str(args.figure.relative_to(ROOT)) if args.figure.is_relative_to(
        ROOT) else str(args.figure), "crop_gt_px": [128, 384, 128, 384]}  # fmt: skip
    report["total_seconds"] = time.perf_counter() - start_all
    write_atomic(args.json, json.dumps(json_ready(report), indent=1, allow_nan=False) + "\n")
    print(markdown(report))
    return 0


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| input | method | parameter | PSNR affine (dB) | SSIM affine | PSNR min–max (dB) | "
        "SSIM min–max | time (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for level, rows in report["results"].items():
        for method, row in rows.items():
            lines.append(
                f"| {level} | {method} | {row.get('parameter', '–')} | {row['psnr_affine']:.2f} | "
                f"{row['ssim_affine']:.3f} | {row['psnr_minmax']:.2f} | {row['ssim_minmax']:.3f} "
                f"| {row['seconds']:.1f} |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
