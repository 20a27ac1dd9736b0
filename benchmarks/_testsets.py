"""Seeded SR and QPI test/validation sets and the baseline tuning, shared by the benchmarks.

Used by ``benchmarks/baselines.py`` (classical baselines) and ``benchmarks/quality.py`` (CVDM
against the baselines), so both score exactly the same images with the same tuned parameters.

* SR (recipe SR-B, nominal NA 1.49, λ_em 0.525 µm; the true optics of each image differ:
  jittered, aberrated or the measured BioSR OTF, so no method knows the exact PSF): test cell
  ``10·structure_index + level`` of :data:`STRUCTURE_NAMES` × :data:`SR_PHOTONS`; image ``i`` of
  a cell is drawn with ``default_rng([seed, cell, i])``. Validation: cell ``100 + level``,
  structures at equal odds.
* QPI (recipe QPI-B, nominal λ 0.521 µm, Δx 0.21 µm, dz ±1 µm; the true λ, dz and focus of each
  stack differ by a few %): test cell ``10·family_index + level`` of :data:`QPI_FAMILIES` ×
  :data:`QPI_NOISE` (Gaussian read noise σ of I₀, plus shot noise at N₀ = :data:`QPI_PHOTONS`
  e⁻/px); validation cell ``200 + level``, families in turn.

Tuning rule (docs/physics.md (d)): Wiener K and RL iterations by mean validation PSNR, TIE α by
mean validation phase RMSE, one value per noise level, never on test data.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from napari_cvdm.physics.fluorescence import SRSample, simulate_sr_pair
from napari_cvdm.physics.qpi import QPISample, simulate_qpi_stack
from napari_cvdm.physics.sr_baselines import tune_baseline
from napari_cvdm.physics.structures import STRUCTURE_NAMES
from napari_cvdm.physics.tie import tune_tie

__all__ = [
    "QPI_FAMILIES",
    "QPI_METHODS",
    "QPI_MIDDLE",
    "QPI_NOISE",
    "QPI_PHOTONS",
    "QPI_RECIPE",
    "SR_METHODS",
    "SR_MIDDLE",
    "SR_NA",
    "SR_PHOTONS",
    "SR_WAVELENGTH_UM",
    "STRUCTURE_NAMES",
    "TEST_SEED",
    "VAL_SEED",
    "mean_of",
    "qpi_sample",
    "qpi_test_cases",
    "sr_sample",
    "sr_test_cases",
    "tune_qpi",
    "tune_sr",
]

TEST_SEED = 2024
VAL_SEED = 1
SR_PHOTONS = (100.0, 500.0, 1500.0, 5000.0)  # foreground mean N_fg, e⁻/px
SR_MIDDLE = 500.0
SR_NA = 1.49
SR_WAVELENGTH_UM = 0.525
SR_METHODS = ("bicubic", "wiener", "rl")
QPI_RECIPE = "QPI-B"
QPI_FAMILIES = ("cells", "fractal")
#: (label, Gaussian read-noise σ as a fraction of I₀); every level adds shot noise at QPI_PHOTONS
QPI_NOISE: tuple[tuple[str, float | None], ...] = (
    ("sigma=0.01", 0.01),
    ("sigma=0.03", 0.03),
    ("sigma=0.1", 0.1),
)
QPI_PHOTONS = 1.0e4  # background N₀ (e⁻/px): shot-noise σ 0.01 of I₀
QPI_MIDDLE = "sigma=0.03"
QPI_METHODS = ("tie", "us-tie", "ctf")

Log = Callable[[str], None]


def sr_sample(
    seed: int, cell: int, i: int, structure: str | None, photons: float, size: int | None = None
) -> SRSample:
    """Image ``i`` of SR cell ``cell``: widefield (size²) ADU, target (2·size)² (default 128)."""
    rng = np.random.default_rng([seed, cell, i])
    extra = {} if size is None else {"size": int(size)}
    return simulate_sr_pair(
        rng, structure=structure, photons=photons, na=SR_NA, wavelength_um=SR_WAVELENGTH_UM, **extra
    )


def qpi_sample(
    seed: int,
    cell: int,
    i: int,
    family: str | None,
    read_noise: float | None,
    size: int | None = None,
) -> QPISample:
    """Image ``i`` of QPI cell ``cell`` (recipe :data:`QPI_RECIPE`); size² (default 256).

    ``read_noise``: Gaussian σ as a fraction of I₀, with shot noise at :data:`QPI_PHOTONS`;
    None = noise-free.
    """
    rng = np.random.default_rng([seed, cell, i])
    noise = (
        {"noise": "none"}
        if read_noise is None
        else {"photons": QPI_PHOTONS, "read_noise": float(read_noise)}
    )
    extra = {} if size is None else {"size": int(size)}
    return simulate_qpi_stack(rng, recipe=QPI_RECIPE, source=family, **noise, **extra)


def _levels(all_levels: tuple, keep: tuple | None) -> list[tuple[int, Any]]:
    """(level index, level) pairs of ``all_levels`` that are in ``keep`` (all when None)."""
    return [(k, v) for k, v in enumerate(all_levels) if keep is None or v in keep]


def tune_sr(
    n_val: int,
    val_seed: int = VAL_SEED,
    photons_levels: tuple[float, ...] | None = None,
    size: int | None = None,
    log: Log | None = None,
) -> dict[str, dict[str, Any]]:
    """Wiener K and RL iterations per photon level, keyed by ``str(photons)``."""
    tuned: dict[str, dict[str, Any]] = {}
    for level, photons in _levels(SR_PHOTONS, photons_levels):
        val = [sr_sample(val_seed, 100 + level, i, None, photons, size) for i in range(n_val)]
        tuned[str(photons)] = {m: tune_baseline(m, val) for m in ("wiener", "rl")}
        if log:
            log(f"  SR N_fg={photons:g}: tuned {tuned[str(photons)]}")
    return tuned


def tune_qpi(
    n_val: int,
    val_seed: int = VAL_SEED,
    labels: tuple[str, ...] | None = None,
    size: int | None = None,
    log: Log | None = None,
    curves: dict[str, dict[str, dict[str, float]]] | None = None,
) -> dict[str, dict[str, float]]:
    """α of every TIE-family method per noise level, keyed by the level's label.

    ``curves``, when given, receives the mean validation RMSE (rad) of every grid α:
    ``curves[label][method][str(alpha)]``.
    """
    tuned: dict[str, dict[str, float]] = {}
    keep = None if labels is None else tuple(lv for lv in QPI_NOISE if lv[0] in labels)
    for level, (label, sigma) in _levels(QPI_NOISE, keep):
        val = [
            qpi_sample(val_seed, 200 + level, i, QPI_FAMILIES[i % len(QPI_FAMILIES)], sigma, size)
            for i in range(n_val)
        ]
        border = 16 if size is None else max(0, min(16, (int(size) - 11) // 2))  # as metrics
        results = {m: tune_tie(m, val, border=border) for m in QPI_METHODS}
        tuned[label] = {m: r.alpha for m, r in results.items()}
        if curves is not None:
            curves[label] = {
                m: {str(a): v for a, v in r.rmse_by_alpha.items()} for m, r in results.items()
            }
        if log:
            log(f"  QPI {label}: tuned alpha {tuned[label]}")
    return tuned


def sr_test_cases(
    n: int,
    seed: int = TEST_SEED,
    photons_levels: tuple[float, ...] | None = None,
    size: int | None = None,
) -> Iterator[tuple[str, float, int, SRSample]]:
    """(structure, photons, index, sample) over structures × photon levels × ``n`` images."""
    for s_index, structure in enumerate(STRUCTURE_NAMES):
        for level, photons in _levels(SR_PHOTONS, photons_levels):
            for i in range(n):
                sample = sr_sample(seed, 10 * s_index + level, i, structure, photons, size)
                yield structure, photons, i, sample


def qpi_test_cases(
    n: int,
    seed: int = TEST_SEED,
    labels: tuple[str, ...] | None = None,
    size: int | None = None,
) -> Iterator[tuple[str, str, int, QPISample]]:
    """(family, noise label, index, sample) over families × noise levels × ``n`` images."""
    keep = None if labels is None else tuple(lv for lv in QPI_NOISE if lv[0] in labels)
    for f_index, family in enumerate(QPI_FAMILIES):
        for level, (label, sigma) in _levels(QPI_NOISE, keep):
            for i in range(n):
                sample = qpi_sample(seed, 10 * f_index + level, i, family, sigma, size)
                yield family, label, i, sample


def mean_of(rows: list[dict[str, Any]], key: str) -> float:
    """Mean of the finite values of ``key`` over ``rows`` (NaN when there is none)."""
    values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
    return float(np.mean(values)) if values else float("nan")
