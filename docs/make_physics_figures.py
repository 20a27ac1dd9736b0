"""Figures of docs/physics.md: simulated SR structures, a through-focus stack, baselines.

Writes PNGs into docs/images/ (matplotlib, Agg backend)::

    .venv/bin/python docs/make_physics_figures.py

* ``sr_<structure>.png`` - object (labelled density, 15.65 nm grid), noisy widefield (62.6 nm,
  N_fg = 500 e⁻/px) and noise-free SIM-like ground truth (31.3 nm), full 8 µm patch and a 2 µm zoom.
* ``qpi_cells.png`` - eight QPI-B cell scenes (phase in rad).
* ``qpi_through_focus.png`` - phase and a 5-plane through-focus stack (−2dz … +2dz) for the two
  QPI-B phase sources (cell scene, fractal texture).
* ``sr_baselines.png``, ``qpi_baselines.png`` - the classical baselines on one test image each,
  with the regularisation values tuned by benchmarks/baselines.py when its JSON exists.

``--qpi`` writes only the three QPI figures.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage  # noqa: E402

from napari_cvdm.physics.camera import CameraModel, background_map, expose, photon_scale  # noqa
from napari_cvdm.physics.cell_phase import cell_scene  # noqa: E402
from napari_cvdm.physics.fluorescence import form_images, simulate_sr_pair  # noqa: E402
from napari_cvdm.physics.otf import NOMINAL_SIM, Optics  # noqa: E402
from napari_cvdm.physics.points import cell_envelope, points_to_px, splat_bilinear  # noqa: E402
from napari_cvdm.physics.qpi import simulate_qpi_stack  # noqa: E402
from napari_cvdm.physics.sr_baselines import physics_from_metadata, run_sr_baseline  # noqa
from napari_cvdm.physics.structures import STRUCTURE_NAMES, generate_structure  # noqa: E402
from napari_cvdm.physics.tie import reconstruct_phase  # noqa: E402

ROOT = Path(__file__).resolve().parent
IMAGES = ROOT / "images"
BENCH_JSON = ROOT.parent / "benchmarks" / "results" / "baselines.json"
QPI_JSON = ROOT.parent / "benchmarks" / "results" / "baselines_qpi.json"  # recipe QPI-B
QPI_PHOTONS, QPI_READ = 1.0e4, 0.03  # the middle noise level of the QPI-B test set
NA, WAVELENGTH, PHOTONS = 1.49, 0.525, 500.0
OBJECT_PX, SIZE, MARGIN = 0.01565, 128, 32


def _show(ax, image, pixel_um, title, cmap="gray", bar_um=1.0, robust=True, symmetric=False):
    data = np.asarray(image, dtype=np.float64)
    if symmetric:
        lim = np.percentile(np.abs(data), 99.5)
        lo, hi = -lim, lim
    elif robust:
        lo, hi = np.percentile(data, [0.1, 99.9])
    else:
        lo, hi = data.min(), data.max()
    shown = ax.imshow(data, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1)
    ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    length = bar_um / pixel_um
    ny, nx = data.shape
    y = ny * 0.93
    ax.plot([nx * 0.95 - length, nx * 0.95], [y, y], color="w", lw=3, solid_capstyle="butt")
    ax.text(nx * 0.95 - length / 2, y - ny * 0.03, f"{bar_um:g} µm", color="w", fontsize=7,
            ha="center", va="bottom")  # fmt: skip
    return shown


def sr_example(structure: str, seed: int = 7):
    """Object, noisy widefield (ADU − offset) and GT for one patch, following simulate_sr_pair."""
    rng = np.random.default_rng(seed)
    n = 4 * SIZE + 2 * MARGIN
    extent = (n * OBJECT_PX, n * OBJECT_PX)
    envelope = cell_envelope(rng, extent)
    st = generate_structure(rng, structure, extent, envelope)
    density = splat_bilinear(points_to_px(st.points_um, OBJECT_PX), st.weights, (n, n))
    wf, gt, haze = form_images(
        [(density, st.label_sigma_um)], OBJECT_PX, Optics("airy", NA, WAVELENGTH), NOMINAL_SIM,
        MARGIN, 1.5,
    )  # fmt: skip
    camera = CameraModel()
    scale = photon_scale(wf, PHOTONS)
    background = background_map(rng, wf.shape, 20.0, 0.3, 2.0 / (4 * OBJECT_PX), scale * haze, 0.1)
    raw = expose(rng, scale * np.clip(wf, 0, None) + background, camera)
    labelled = ndimage.gaussian_filter(density, st.label_sigma_um / OBJECT_PX)
    obj = labelled[MARGIN:-MARGIN, MARGIN:-MARGIN]
    return obj, raw - camera.offset_adu, scale * np.clip(gt, 0, None)


def figure_structures() -> list[Path]:
    paths = []
    zoom_um = 2.0
    for structure in STRUCTURE_NAMES:
        obj, wf, gt = sr_example(structure)
        fig, axes = plt.subplots(2, 3, figsize=(9, 6.4))
        panels = [
            (obj, OBJECT_PX, "object (15.65 nm px)"),
            (wf, 4 * OBJECT_PX, f"widefield, N_fg = {PHOTONS:g} e⁻/px (62.6 nm px)"),
            (gt, 2 * OBJECT_PX, "SIM-like ground truth (31.3 nm px)"),
        ]
        for col, (image, px, title) in enumerate(panels):
            _show(axes[0, col], image, px, title, bar_um=2.0)
            z = int(round(zoom_um / px))
            cy, cx = image.shape[0] // 2, image.shape[1] // 2
            crop = image[cy - z // 2 : cy + z // 2, cx - z // 2 : cx + z // 2]
            _show(axes[1, col], crop, px, f"centre {zoom_um:g} µm", bar_um=0.5)
        fig.suptitle(f"SR-A {structure}: NA {NA}, λ_em {WAVELENGTH} µm, 8 µm patch", fontsize=11)
        fig.tight_layout(h_pad=1.5)
        path = IMAGES / f"sr_{structure}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def figure_qpi_cells() -> Path:
    fig, axes = plt.subplots(2, 4, figsize=(15, 7.6))
    for k, ax in enumerate(axes.flat):
        phase, info = cell_scene(np.random.default_rng(k), (256, 256), 0.21)
        shown = _show(ax, phase, 0.21, f"{info['n_cells']} cells, {info['n_debris']} debris, "
                      f"max {info['phi_max']:.2f} rad", cmap="viridis", bar_um=10.0,
                      robust=False)  # fmt: skip
        fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.02)
    fig.suptitle("QPI-B cell scenes (phase in rad, 256² px of 0.21 µm, seeds 0–7)", fontsize=11)
    fig.tight_layout()
    path = IMAGES / "qpi_cells.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def figure_through_focus() -> Path:
    sources = ("cells", "fractal")
    fig, axes = plt.subplots(len(sources), 6, figsize=(15, 5.4))
    for row, source in enumerate(sources):
        s = simulate_qpi_stack(np.random.default_rng(3 + row), source=source, planes=5,
                               photons=QPI_PHOTONS, read_noise=QPI_READ)  # fmt: skip
        md = s.metadata
        shown = _show(axes[row, 0], s.phase, md["pixel_size_um"], f"{source}: phase (rad)",
                      cmap="viridis", bar_um=10.0, robust=False)  # fmt: skip
        fig.colorbar(shown, ax=axes[row, 0], fraction=0.046, pad=0.02)
        for k, z in enumerate(md["z_offsets_um"]):
            _show(axes[row, k + 1], s.stack[k], md["pixel_size_um"], f"I(z = {z:+g} µm)",
                  bar_um=10.0)  # fmt: skip
    fig.suptitle(
        f"QPI-B through focus: nominal λ {md['wavelength_um']} µm, Δx {md['pixel_size_um']} µm, "
        f"dz {md['dz_um']:g} µm (D = {md['D']:.1f}), N₀ = {QPI_PHOTONS:g} e⁻/px + read σ "
        f"{QPI_READ:g}; the 2-plane default uses z = ±1 µm",
        fontsize=11,
    )
    fig.tight_layout()
    path = IMAGES / "qpi_through_focus.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _tuned() -> dict:
    tuned: dict = {"sr": {}, "qpi": {}}
    if BENCH_JSON.exists():
        tuned["sr"] = json.loads(BENCH_JSON.read_text(encoding="utf-8"))["sr"]["tuned"]
    if QPI_JSON.exists():
        tuned["qpi"] = json.loads(QPI_JSON.read_text(encoding="utf-8"))["qpi"]["tuned"]
    return tuned


def figure_baselines(tuned: dict) -> list[Path]:
    sample = simulate_sr_pair(np.random.default_rng([2024, 0, 0]), structure="microtubules",
                              photons=PHOTONS, na=NA, wavelength_um=WAVELENGTH)  # fmt: skip
    physics = physics_from_metadata(sample.metadata)
    values = tuned["sr"].get(str(PHOTONS), {})
    gt_px = physics["pixel_size_um"] / 2
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))
    _show(axes[0], sample.widefield - physics["offset_adu"], 2 * gt_px, "widefield input")
    for ax, method in zip(axes[1:4], ("bicubic", "wiener", "rl")):
        out = run_sr_baseline(method, sample.widefield, values.get(method), **physics)
        label = {"bicubic": "bicubic ×2", "wiener": f"Wiener, K = {values.get('wiener', 0.01):.1e}",
                 "rl": f"Richardson–Lucy, {values.get('rl')} iterations"}[method]  # fmt: skip
        _show(ax, out, gt_px, label)
    _show(axes[4], sample.target, gt_px, "ground truth")
    fig.suptitle(f"SR baselines, microtubules, N_fg = {PHOTONS:g} e⁻/px", fontsize=11)
    fig.tight_layout()
    sr_path = IMAGES / "sr_baselines.png"
    fig.savefig(sr_path, dpi=100)
    plt.close(fig)
    return [sr_path, figure_qpi_baselines(tuned)]


def figure_qpi_baselines(tuned: dict) -> Path:
    s = simulate_qpi_stack(np.random.default_rng([2024, 1, 0]), source="cells",
                           photons=QPI_PHOTONS, read_noise=QPI_READ)  # fmt: skip
    md = s.metadata
    alphas = tuned["qpi"].get(f"sigma={QPI_READ:g}", {})
    fig, axes = plt.subplots(1, 5, figsize=(16, 3.6))
    _show(axes[0], s.stack[1] - s.stack[0], md["pixel_size_um"], "I(+dz) − I(−dz)",
          symmetric=True, cmap="RdBu_r", bar_um=10.0)  # fmt: skip
    lo, hi = float(s.phase.min()), float(s.phase.max())
    for ax, method in zip(axes[1:4], ("tie", "us-tie", "ctf")):
        phase = reconstruct_phase(method, s.stack, md["wavelength_um"], md["z_offsets_um"],
                                  md["pixel_size_um"], alphas.get(method))  # fmt: skip
        phase = phase - phase.mean() + s.phase.mean()  # piston aligned for display
        ax.imshow(phase, cmap="viridis", vmin=lo, vmax=hi)
        alpha = alphas.get(method)
        ax.set_title(f"{method}, α = {'default' if alpha is None else f'{alpha:.0e}'}", fontsize=9)
        ax.set_axis_off()
    shown = axes[4].imshow(s.phase, cmap="viridis", vmin=lo, vmax=hi)
    axes[4].set_title("true phase (rad)", fontsize=9)
    axes[4].set_axis_off()
    fig.colorbar(shown, ax=axes[4], fraction=0.046, pad=0.02)
    fig.suptitle(
        f"Phase baselines (QPI-B), cell scene, read σ {QPI_READ:g} of I₀ + shot noise at "
        f"N₀ = {QPI_PHOTONS:g} e⁻/px, nominal dz = ±1 µm",
        fontsize=11,
    )
    fig.tight_layout()
    qpi_path = IMAGES / "qpi_baselines.png"
    fig.savefig(qpi_path, dpi=100)
    plt.close(fig)
    return qpi_path


def main() -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    if "--qpi" in sys.argv[1:]:
        paths = [figure_qpi_cells(), figure_through_focus(), figure_qpi_baselines(_tuned())]
    else:
        paths = figure_structures() + [figure_qpi_cells(), figure_through_focus()]
        paths += figure_baselines(_tuned())
    for path in paths:
        print(path.relative_to(ROOT.parent))


if __name__ == "__main__":
    main()
