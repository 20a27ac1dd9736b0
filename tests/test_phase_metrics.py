"""Phase error metrics and physical QPI outputs (physics.md (e))."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics.phase_metrics import (
    align_piston,
    dry_mass_density,
    opd_nm,
    opd_um,
    phase_errors,
    phase_mae,
    phase_rmse,
    region_dry_mass,
)


def test_phase_errors_ignore_constant_offsets():
    rng = np.random.default_rng(0)
    target = rng.uniform(0, 3, (64, 64))
    noise = rng.normal(0, 0.1, (64, 64))
    for offset in (0.0, 1.7, -40.0):
        errs = phase_errors(target + noise + offset, target)
        assert errs["rmse"] == pytest.approx(phase_errors(target + noise, target)["rmse"], rel=1e-9)
    assert phase_mae(target + 2.0, target) == pytest.approx(0.0, abs=1e-12)


def test_phase_errors_known_values_and_border():
    target = np.zeros((40, 40))
    pred = np.zeros((40, 40))
    inner = pred[16:24, 16:24]
    inner[:, :4] = 1.0  # half of the 8x8 interior is +1, half 0 -> e = ±0.5
    pred[0, :] = 100.0  # inside the excluded border: ignored
    errs = phase_errors(pred, target, border=16)
    assert errs["mae"] == pytest.approx(0.5)
    assert errs["rmse"] == pytest.approx(0.5)
    assert errs["mae_norm"] == pytest.approx(2 * 0.5 / 3.5)
    assert phase_rmse(pred, target, border=16) == pytest.approx(0.5)
    aligned = align_piston(pred, target, border=16)
    assert np.mean(aligned[16:24, 16:24]) == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(InputError, match="border"):
        phase_errors(np.zeros((20, 20)), np.zeros((20, 20)), border=10)
    with pytest.raises(InputError, match="shape"):
        phase_errors(np.zeros((40, 40)), np.zeros((40, 41)))


def test_opd():
    phase = np.array([[2 * np.pi, np.pi]])
    assert np.allclose(opd_um(phase, 0.521), [[0.521, 0.2605]])
    assert np.allclose(opd_nm(phase, 0.521), [[521.0, 260.5]], rtol=1e-6)


def test_dry_mass_of_a_known_disk():
    """A disk of phase φ₀ and area A has dry mass A·φ₀λ/(2πα) (α = 0.19 µm³/pg)."""
    n, dx, lam, phi0, radius_px = 128, 0.2, 0.5, 1.5, 30
    yy, xx = np.mgrid[:n, :n] - n / 2
    disk = yy**2 + xx**2 <= radius_px**2
    phase = 0.3 + phi0 * disk  # 0.3-rad background offset removed via the background median
    background = yy**2 + xx**2 > (radius_px + 10) ** 2
    mass = region_dry_mass(phase, disk, background, lam, dx)
    expected = disk.sum() * dx**2 * phi0 * lam / (2 * np.pi * 0.19)
    assert mass == pytest.approx(expected, rel=1e-9)
    sigma = dry_mass_density(phase - 0.3, lam)
    assert sigma.dtype == np.float32
    assert sigma[64, 64] == pytest.approx(phi0 * lam / (2 * np.pi * 0.19), rel=1e-6)
    with pytest.raises(InputError, match="background"):
        region_dry_mass(phase, disk, np.zeros_like(disk), lam, dx)
