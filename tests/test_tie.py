"""TIE, US-TIE and CTF baselines (physics.md (d), property tests (g) 11)."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics.propagation import propagate_planes
from napari_cvdm.physics.qpi import simulate_qpi_stack
from napari_cvdm.physics.tie import (
    TIE_METHODS,
    axial_derivative,
    ctf_inversion,
    inverse_laplacian,
    reconstruct_phase,
    tie_dct,
    tie_fft,
    tune_tie,
    us_tie,
    us_tie_solve,
)

LAM, DX = 0.5, 0.2  # µm


def bump(n, sigma_px, peak):
    yy, xx = np.mgrid[:n, :n] - n / 2
    return peak * np.exp(-(yy**2 + xx**2) / (2 * sigma_px**2))


def stack_of(phase, d, amplitude=1.0, planes=(-1, 1)):
    """Noise-free Fresnel stack at z = planes·dz for a defocus number D = d."""
    dz = d * DX**2 / LAM
    z = [p * dz for p in planes]
    field = amplitude * np.exp(1j * phase)
    return np.abs(propagate_planes(field, LAM, z, DX)) ** 2, dz, z


def rmse_no_piston(est, ref):
    e = est - ref
    return float(np.sqrt(np.mean((e - e.mean()) ** 2)))


@pytest.mark.parametrize("solver", (tie_fft, tie_dct))
@pytest.mark.parametrize("sigma", (8, 16))
def test_tie_recovers_smooth_bump(solver, sigma):
    phi = bump(128, sigma, 1.0)
    stack, dz, _ = stack_of(phi, d=1.0)
    est = solver(stack, LAM, dz, DX, alpha=1e-9)
    assert est.dtype == np.float32 and est.shape == (128, 128)
    assert est[64, 64] - est.mean() > 0.8  # right sign
    assert rmse_no_piston(est, phi) < 0.02


def test_dct_solver_equals_mirror_fft_solver():
    f = np.random.default_rng(0).standard_normal((40, 56))
    a = inverse_laplacian(f, 1e-3, "mirror")
    b = inverse_laplacian(f, 1e-3, "dct")
    assert np.max(np.abs(a - b)) < 1e-10 * np.max(np.abs(a))


def test_inverse_laplacian_inverts_the_periodic_laplacian():
    n = 32
    x = np.arange(n)
    phi = np.cos(2 * np.pi * 3 * x / n)[None, :] * np.sin(2 * np.pi * 2 * x / n)[:, None]
    lap = -(4 * np.pi**2) * ((3 / n) ** 2 + (2 / n) ** 2) * phi
    assert np.max(np.abs(inverse_laplacian(lap, 0.0, "periodic") - phi)) < 1e-12


def test_axial_derivative_polynomial_fit():
    z = np.array([-2.0, -1.0, 0.0, 1.0, 2.0])
    a0, a1, a2, a3 = 1.0, 0.3, -0.2, 0.05
    stack = (a0 + a1 * z + a2 * z**2 + a3 * z**3)[:, None, None] * np.ones((5, 3, 4))
    i0, didz = axial_derivative(stack, z)  # cubic fit on 5 planes is exact here
    assert np.allclose(i0, a0) and np.allclose(didz, a1)
    i0, didz = axial_derivative(stack[[1, 3]], z[[1, 3]])  # two planes: central difference
    assert np.allclose(didz, (stack[3] - stack[1]) / 2) and np.allclose(
        i0, (stack[3] + stack[1]) / 2
    )


def test_five_planes_beat_the_central_difference_at_large_defocus():
    phi = bump(96, 8, 1.0)
    s5, dz, z5 = stack_of(phi, d=3.0, planes=(-2, -1, 0, 1, 2))
    e5 = rmse_no_piston(tie_fft(s5, LAM, z5, DX, alpha=1e-9), phi)
    e2 = rmse_no_piston(tie_fft(s5[[0, 4]], LAM, [z5[0], z5[4]], DX, alpha=1e-9), phi)
    assert e5 < 0.5 * e2


def test_us_tie_residual_falls_monotonically_for_nonuniform_amplitude():
    n = 96
    phi = bump(n, 10, 1.0) - 0.6 * bump(n, 5, 1.0)
    yy, xx = np.mgrid[:n, :n] / n
    amplitude = np.sqrt(0.4 + 0.6 * np.exp(-((yy - 0.3) ** 2 + (xx - 0.6) ** 2) / 0.05))
    stack, dz, _ = stack_of(phi, d=1.0, amplitude=amplitude)
    result = us_tie_solve(stack, LAM, dz, DX, alpha=1e-8, max_iter=15, tol=0.0)
    r = np.array(result.residuals)
    assert len(r) == 16 and np.all(np.diff(r) < 0)
    assert r[-1] < 0.2 * r[0]
    # and it beats the uniform-intensity TIE on this object
    assert rmse_no_piston(result.phase, phi) < 0.5 * rmse_no_piston(
        tie_fft(stack, LAM, dz, DX, alpha=1e-8), phi
    )


def test_us_tie_equals_fft_tie_for_uniform_intensity():
    n, dz = 64, 0.1
    didz = bump(n, 6, 1.0) - bump(n, 12, 0.25)  # any smooth ∂I/∂z with I(0) ≡ 1
    stack = np.stack([1 - dz * didz, 1 + dz * didz])
    a = tie_fft(stack, LAM, dz, DX, alpha=1e-9)
    b = us_tie(stack, LAM, dz, DX, alpha=1e-9)
    assert np.max(np.abs(a - b)) < 1e-3 * np.max(np.abs(a))
    # stopping rule: ‖r_0‖/‖k·∂_zI‖ is already below 1e-3, so no update is made
    assert len(us_tie_solve(stack, LAM, dz, DX, alpha=1e-9, tol=1e-3).residuals) == 1
    slow = us_tie_solve(stack, LAM, dz, DX, alpha=1e-3, max_iter=7, tol=1e-3)
    assert len(slow.residuals) == 8 and slow.residuals[-1] > 1e-3  # capped by max_iter
    # φ₀ of US-TIE is the FFT solution for any α (I_max = I₀ when I is uniform)
    a = tie_fft(stack, LAM, dz, DX, alpha=1e-3)
    b = us_tie(stack, LAM, dz, DX, alpha=1e-3, max_iter=0)
    assert np.max(np.abs(a - b)) < 1e-5 * np.max(np.abs(a))


def test_ctf_recovers_weak_object_and_cancels_absorption():
    phi = bump(96, 3, 0.1)
    amplitude = np.exp(-0.02 * bump(96, 6, 1.0))  # weak absorber
    stack, dz, _ = stack_of(phi, d=2.0, amplitude=amplitude)
    est = ctf_inversion(stack, LAM, dz, DX, alpha=1e-8)
    assert rmse_no_piston(est, phi) < 0.05 * 0.1
    assert est[48, 48] - est.mean() == pytest.approx(0.1 - phi.mean(), rel=0.05)


def test_ctf_uses_all_symmetric_pairs():
    phi = bump(64, 3, 0.1)
    stack, dz, z = stack_of(phi, d=1.5, planes=(-2, -1, 0, 1, 2))
    est = ctf_inversion(stack, LAM, z, DX, alpha=1e-8)
    assert rmse_no_piston(est, phi) < 0.05 * 0.1
    with pytest.raises(InputError, match="symmetric"):
        ctf_inversion(stack[[2, 3]], LAM, [0.0, dz], DX)


def test_reconstruct_phase_dispatch_and_errors():
    stack, dz, _ = stack_of(bump(32, 4, 0.5), d=1.0)
    for name in TIE_METHODS:
        out = reconstruct_phase(name, stack, LAM, dz, DX)
        assert out.shape == (32, 32) and out.dtype == np.float32 and np.isfinite(out).all()
    with pytest.raises(InputError, match="Unknown phase baseline"):
        reconstruct_phase("gs", stack, LAM, dz, DX)
    with pytest.raises(InputError, match="planes"):
        tie_fft(stack, LAM, [0.0, 1.0, 2.0], DX)
    with pytest.raises(InputError, match="NaN"):
        tie_fft(np.full((2, 8, 8), np.nan), LAM, dz, DX)


def test_tune_tie_picks_the_grid_minimum():
    samples = [
        simulate_qpi_stack(np.random.default_rng(i), size=64, source="fractal", photons=300.0)
        for i in range(2)
    ]
    grid = [1e-8, 1e-4, 1e2]
    result = tune_tie("tie", samples, grid=grid, border=8)
    assert set(result.rmse_by_alpha) == set(grid)
    assert result.rmse_by_alpha[result.alpha] == min(result.rmse_by_alpha.values())
    assert result.alpha == 1e-4  # noisy data: tiny α amplifies noise, huge α flattens the phase
    with pytest.raises(InputError, match="at least one"):
        tune_tie("tie", [], grid=grid)
