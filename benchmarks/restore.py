"""Zero-shot restoration benchmark: VML-MAP vs Richardson–Lucy vs DPS with a known PSF.

Test images: clean SIM-like fluorescence images of the SR simulator (recipe SR-B structures,
0.0313 µm pixels, seeds disjoint from the prior's training pool), scaled to photo-electrons,
plus a constant background of 5 % of the peak. Measurement: the restore workflow's own forward
operator (PSF → effective OTF on the prior's grid, crop, 2×2 binning to 0.0626 µm pixels), so the
PSF is known exactly; Poisson noise, Gaussian read noise 1.5 e⁻, gain 1 ADU/e⁻, offset 100 ADU
(given to the solvers as the camera). The ground truth is the image on the prior's grid, cropped
to the field of view. PSFs: ``airy`` (NA 1.49, λ 0.525 µm) and ``measured`` (the bundled BioSR
OTF as a PSF image). Photon levels: the peak of the noise-free measurement (e.g. 30, 200, 2000).

RL iterations and the DPS step ζ are tuned on validation images (other seeds) per PSF and
photon level; VML-MAP uses its budgets as they are. Metrics: PSNR and SSIM against the truth in
its own units (data range = truth max − min, no rescaling), seconds per image on this machine.

    nice -n 10 .venv/bin/python benchmarks/restore.py --prior PATH --size 128 --n-test 2 \
        --photons 30 200 2000 --psf airy measured --out benchmarks/results/restore.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

VALIDATION_SEED, TEST_SEED = 20_000, 30_000
CAMERA = {"gain_adu_per_e": 1.0, "offset_adu": 100.0, "read_noise_e": 1.5}
RL_GRID = (5, 10, 20, 30, 50, 100, 200)
ZETA_GRID = (0.02, 0.05, 0.1, 0.2, 0.5)


def psf_image(kind: str, pixel_um: float = 0.0313) -> np.ndarray:
    """The known PSF on the prior's grid: Airy (NA 1.49, 0.525 µm) or the measured BioSR OTF."""
    from napari_cvdm.physics.forward_ops import airy_psf_image

    if kind == "airy":
        return airy_psf_image(1.49, 0.525, pixel_um)
    import scipy.fft as sfft

    from napari_cvdm.physics.otf import Optics, otf_function

    n = 129
    optics = Optics("measured", 1.49, 0.525)
    ky, kx = np.meshgrid(sfft.fftfreq(n, pixel_um), sfft.fftfreq(n, pixel_um), indexing="ij")
    otf = np.real(otf_function(optics, (n, n), pixel_um)(ky, kx))
    psf = np.clip(sfft.fftshift(sfft.ifft2(otf).real), 0.0, None)
    return psf / psf.sum()


def optics_for(kind: str) -> Any:
    from napari_cvdm.workflows.restore import Optics

    if kind == "airy":
        return Optics(na=1.49, wavelength_um=0.525)
    return Optics(psf=psf_image(kind), psf_pixel_um=0.0313)


def make_case(seed: int, peak: float, kind: str, size: int, prior: Any) -> dict[str, Any]:
    """One test case: measurement (ADU, 0.0626 µm) and truth (e⁻ per 0.0313 µm pixel)."""
    import torch

    from napari_cvdm.workflows.prior_train import clean_fluorescence_image
    from napari_cvdm.workflows.restore_problem import Noise, build_problem

    rng = np.random.default_rng(seed)
    field = (size // 2, size // 2)
    # the operator depends only on the geometry and PSF: build it from a placeholder image
    placeholder = rng.random(field) + 1.0
    prob = build_problem(
        placeholder, 0.0626, optics_for(kind), Noise(sigma_adu=1.0), prior_pixel_um=0.0313,
        rl_iterations=1,
    )  # fmt: skip
    op = prob.op
    canvas = op.canvas_shape
    sim = -(-max(canvas) // 2)
    image = clean_fluorescence_image(rng, sim)[: canvas[0], : canvas[1]].astype(np.float64)
    x = (image + 1.0) / 2.0
    with torch.no_grad():
        clean = op.A(torch.as_tensor(x, dtype=torch.float32)[None, None])[0, 0].numpy()
    scale = peak / float(clean.max())
    background = 0.05 * peak / 4.0  # per prior pixel: 5 % of the peak in the measurement
    truth = scale * x + background
    mean_e = scale * clean + 4.0 * background
    e = rng.poisson(np.clip(mean_e, 0, None)) + rng.normal(0.0, CAMERA["read_noise_e"], field)
    adu = CAMERA["gain_adu_per_e"] * e + CAMERA["offset_adu"]
    return {"y": adu.astype(np.float32), "truth": truth[op.crop].astype(np.float32), "seed": seed}


def metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    from napari_cvdm.metrics import psnr, ssim

    rng_ = float(truth.max() - truth.min())
    return {"psnr": psnr(pred, truth, rng_), "ssim": ssim(pred, truth, rng_)}


def run(case: dict, kind: str, prior: Any, method: str, **params: Any) -> dict[str, Any]:
    from napari_cvdm.events import Finished
    from napari_cvdm.workflows.restore import Noise, RestoreParams, restore

    p = RestoreParams(method=method, **params)
    t0 = time.perf_counter()
    result = None
    for event in restore(
        case["y"], prior, p, pixel_size_um=0.0626, optics=optics_for(kind), noise=Noise(**CAMERA)
    ):
        if isinstance(event, Finished):
            result = event.result
    seconds = time.perf_counter() - t0
    out = metrics(result.restored, case["truth"])
    out.update(
        seconds=seconds,
        nfe=result.metadata["network_evaluations"],
        residual_rms=result.metadata["residual_rms"],
    )
    if "history" in result.metadata:
        out["history"] = result.metadata["history"]
    return out


def tune(cases: list[dict], kind: str, prior: Any, method: str, key: str, grid, **fixed):
    scores = {}
    for value in grid:
        runs = [run(c, kind, prior, method, **{key: value}, **fixed) for c in cases]
        scores[value] = float(np.mean([r["psnr"] for r in runs]))
    best = max(scores, key=scores.get)
    return best, scores


def table(record: dict[str, Any]) -> str:
    """Markdown table of a results file: mean PSNR / SSIM / seconds per method and cell."""
    methods = ["rl", "vml_fast", "dps_fast", "vml_quality", "dps_quality"]
    head = "| PSF | peak photons | " + " | ".join(methods) + " |"
    lines = [head, "|" + "---|" * (len(methods) + 2)]
    for row in record["rows"]:
        cells = []
        for m in methods:
            runs = row.get(m)
            if not runs:
                cells.append("-")
                continue
            p = np.mean([r["psnr"] for r in runs])
            q = np.mean([r["ssim"] for r in runs])
            t = np.mean([r["seconds"] for r in runs])
            cells.append(f"{p:.2f} / {q:.3f} / {t:.1f} s")
        lines.append(f"| {row['psf']} | {row['photons']:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prior", default="prior-fluorescence", help="prior model name or path")
    parser.add_argument(
        "--table", type=Path, default=None, help="print the table of a results file"
    )
    parser.add_argument("--size", type=int, default=128, help="output size (px, prior grid)")
    parser.add_argument("--n-test", type=int, default=2)
    parser.add_argument("--n-val", type=int, default=1)
    parser.add_argument("--photons", type=float, nargs="+", default=[30.0, 200.0, 2000.0])
    parser.add_argument("--psf", nargs="+", default=["airy", "measured"])
    parser.add_argument("--budgets", nargs="+", default=["fast", "quality"])
    parser.add_argument("--no-dps", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--timing",
        action="store_true",
        help="only time one --size image per budget and method (Airy, peak 200) and print it",
    )
    args = parser.parse_args(argv)

    if args.table:
        print(table(json.loads(args.table.read_text())))
        return 0
    import torch

    torch.set_num_threads(args.threads)
    from napari_cvdm.engine import registry

    prior = registry.load(args.prior)
    if args.timing:
        case = make_case(TEST_SEED, 200.0, "airy", args.size, prior)
        for method, budget in (
            ("rl", "fast"),
            ("vml", "fast"),
            ("vml", "quality"),
            ("dps", "fast"),
        ):
            r = run(case, "airy", prior, method, budget=budget)
            print(
                f"{args.size}² {method} {budget}: {r['seconds']:.1f} s, {r['nfe']}, "
                f"threads {args.threads}",
                flush=True,
            )
        return 0
    rows = []
    for kind in args.psf:
        for peak in args.photons:
            val = [
                make_case(VALIDATION_SEED + i, peak, kind, args.size, prior)
                for i in range(args.n_val)
            ]
            test = [
                make_case(TEST_SEED + i, peak, kind, args.size, prior) for i in range(args.n_test)
            ]
            rl_iters, rl_scores = tune(val, kind, prior, "rl", "rl_baseline_iterations", RL_GRID)
            entry: dict[str, Any] = {"psf": kind, "photons": peak, "rl_iterations": rl_iters}
            entry["rl_validation"] = rl_scores
            entry["rl"] = [run(c, kind, prior, "rl", rl_baseline_iterations=rl_iters) for c in test]
            for budget in args.budgets:
                entry[f"vml_{budget}"] = [run(c, kind, prior, "vml", budget=budget) for c in test]
                if not args.no_dps:
                    zeta, zscores = tune(
                        val, kind, prior, "dps", "dps_zeta", ZETA_GRID, budget=budget
                    )
                    entry[f"dps_{budget}_zeta"] = zeta
                    entry[f"dps_{budget}"] = [
                        run(c, kind, prior, "dps", budget=budget, dps_zeta=zeta) for c in test
                    ]
            rows.append(entry)
            summary = {
                k: (
                    round(float(np.mean([r["psnr"] for r in v])), 2),
                    round(float(np.mean([r["ssim"] for r in v])), 3),
                    round(float(np.mean([r["seconds"] for r in v])), 1),
                )
                for k, v in entry.items()
                if isinstance(v, list)
            }
            print(
                f"{kind} peak {peak:g}: RL iters {rl_iters}; (PSNR, SSIM, s) {summary}", flush=True
            )
            if args.out:
                args.out.parent.mkdir(parents=True, exist_ok=True)
                record = {"args": vars(args) | {"out": str(args.out)}, "rows": rows}
                args.out.write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
