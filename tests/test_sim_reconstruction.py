"""2-D SIM reconstruction (physics/sim_reconstruction.py): simulated frames with known
parameters, and the real BioSR raw frames of tests/data/rdlsim-mt/MT.mrc."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics import sim_reconstruction as sr
from napari_cvdm.physics.points import render
from napari_cvdm.physics.psf import airy_cutoff, cubic_resize
from napari_cvdm.physics.structures import generate_structure

PIXEL = 0.0626
MT = Path(__file__).parent / "data" / "rdlsim-mt" / "MT.mrc"


def _object(n: int, seed: int = 3) -> np.ndarray:
    """Dense microtubules on the 2× grid ((2n)², box convention), mean 1."""
    rng = np.random.default_rng(seed)
    structure = generate_structure(
        rng, "microtubules", (n * PIXEL, n * PIXEL), density_per_900um2=400.0
    )
    obj = render(structure, (2 * n, 2 * n), PIXEL / 2)
    return obj / obj.mean()


def _truth(k0: float, modulation: float, seed: int = 5) -> list[sr.OrientationParameters]:
    """Three orientations 60° apart, random offsets, phase steps 2π/3 + N(0, 0.08 rad)."""
    rng = np.random.default_rng(seed)
    out = []
    for d in range(3):
        theta = np.radians(12.0 + 60.0 * d)
        start = rng.uniform(0.0, 2.0 * np.pi)
        phases = tuple(start + 2.0 * np.pi * i / 3 + rng.normal(0.0, 0.08) for i in range(3))
        k = (k0 * np.sin(theta), k0 * np.cos(theta))
        out.append(sr.OrientationParameters(k, phases, modulation))
    return out


def _matched(estimate: sr.OrientationParameters, truth: sr.OrientationParameters):
    """Estimated k0 with the sign of the truth, and the phases in the truth's convention
    (k0 → −k0 turns φ_n into −φ_n)."""
    k = np.asarray(estimate.k0)
    phases = np.asarray(estimate.phases_rad)
    if np.dot(k, truth.k0) < 0:
        k, phases = -k, -phases
    return k, phases


def _wrap(angle: np.ndarray) -> np.ndarray:
    return np.angle(np.exp(1j * np.asarray(angle)))


def _psnr_affine(image: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of the least-squares affine fit of ``image`` to ``reference``, peak = range."""
    design = np.stack([image.ravel(), np.ones(image.size)], axis=1)
    coef, *_ = np.linalg.lstsq(design, reference.ravel(), rcond=None)
    mse = float(np.mean((design @ coef - reference.ravel()) ** 2))
    return 10.0 * np.log10(float(np.ptp(reference)) ** 2 / mse)


@pytest.fixture(scope="module")
def noisy():
    n, k0 = 128, 4.8
    truth = _truth(k0, 0.8)
    obj = _object(n)
    frames = sr.simulate_raw_sim(
        obj, PIXEL, truth, photons=200.0, background=0.5, rng=np.random.default_rng(7)
    )
    return obj, truth, frames


def test_band_separation_inverts_the_mixing():
    rng = np.random.default_rng(0)
    bands = rng.normal(size=(3, 8, 8)) + 1j * rng.normal(size=(3, 8, 8))
    phases = np.array([0.3, 2.2, 4.5])  # unequal steps
    mixed = np.tensordot(sr._mixing(phases), bands, axes=(1, 0))
    np.testing.assert_allclose(sr.separate_bands(mixed, phases), bands, atol=1e-12)


def test_estimates_k0_phases_and_modulation_of_simulated_frames(noisy):
    _obj, truth, frames = noisy
    estimate = sr.estimate_parameters(frames, PIXEL)
    dk = 1.0 / (128 * PIXEL)  # one frequency pixel
    for est, true in zip(estimate, truth, strict=True):
        k, phases = _matched(est, true)
        assert np.hypot(*(k - np.asarray(true.k0))) < 0.2 * dk  # a fraction of a pixel
        # phase steps (the global offset is absorbed by the band phase)
        steps_est, steps_true = np.diff(phases), np.diff(np.asarray(true.phases_rad))
        assert np.all(np.abs(_wrap(steps_est - steps_true)) < 0.12)
        assert abs(est.band_phase_rad) < 0.15
        assert abs(est.modulation - 0.8) < 0.15
        assert est.correlation > 10.0  # z of the band cross-correlation, far above noise
    angles = sorted(np.degrees([e.angle_rad for e in estimate]))
    np.testing.assert_allclose(np.diff(angles), [60.0, 60.0], atol=0.5)


def test_reconstruction_extends_the_support_by_k0_and_beats_the_widefield(noisy):
    obj, truth, frames = noisy
    result = sr.reconstruct_sim(frames, PIXEL, wiener_w=0.1)
    assert result.image.shape == (256, 256) and result.image.dtype == np.float32
    # transfer of the reconstruction from a noise-free run with the true parameters
    clean = sr.simulate_raw_sim(obj, PIXEL, truth, background=0.5)
    image = sr.reconstruct_sim(clean, PIXEL, parameters=truth, wiener_w=0.05).image
    ky, kx = sr._freqs(obj.shape, PIXEL / 2)
    ratio = np.abs(np.fft.fft2(image)) / np.maximum(np.abs(np.fft.fft2(obj)), 1e-9)
    support = sr.DEFAULT_OPTICS.cutoff
    for p in truth:
        direction = np.asarray(p.k0) / p.magnitude

        def transfer(radius: float, direction: np.ndarray = direction) -> float:
            centre = radius * direction
            near = np.hypot(ky - centre[0], kx - centre[1]) < 0.3
            return float(np.median(ratio[near]))

        assert transfer(support + 0.5 * p.magnitude) > 0.05  # beyond the widefield cut-off
        assert transfer(1.1 * (support + p.magnitude)) < 0.01  # beyond widefield + k0
    # against the ideal SIM image (object through the noise-free transfer function)
    ideal_otf = sr.reconstruction_otf(obj.shape, PIXEL / 2, truth, wiener_w=1e-3)
    ideal = np.fft.ifft2(np.fft.fft2(obj) * ideal_otf).real
    widefield = cubic_resize(frames.mean(axis=0), obj.shape)
    inner = (slice(40, -40), slice(40, -40))  # outside the edge taper
    sim_psnr = _psnr_affine(result.image[inner], ideal[inner])
    wf_psnr = _psnr_affine(widefield[inner], ideal[inner])
    assert sim_psnr > wf_psnr + 3.0


def test_box_grid_matches_the_simulated_object_better_than_nodes(noisy):
    obj, truth, _frames = noisy
    clean = sr.simulate_raw_sim(obj, PIXEL, truth, background=0.5)
    ideal_otf = sr.reconstruction_otf(obj.shape, PIXEL / 2, truth, wiener_w=0.05)
    ideal = np.fft.ifft2(np.fft.fft2(obj) * ideal_otf).real
    inner = (slice(40, -40), slice(40, -40))
    scores = {
        grid: _psnr_affine(
            sr.reconstruct_sim(clean, PIXEL, parameters=truth, wiener_w=0.05, grid=grid).image[
                inner
            ],
            ideal[inner],
        )
        for grid in ("box", "nodes")
    }
    assert scores["box"] > scores["nodes"] + 3.0


def test_bad_input_is_refused():
    with pytest.raises(InputError, match="9, Y, X"):
        sr.reconstruct_sim(np.zeros((8, 64, 64)), PIXEL)
    with pytest.raises(InputError, match="NaN"):
        frames = np.ones((9, 64, 64))
        frames[0, 0, 0] = np.nan
        sr.reconstruct_sim(frames, PIXEL)
    with pytest.raises(InputError, match="Nyquist"):
        sr.reconstruct_sim(np.ones((9, 64, 64)), 0.2)


@pytest.mark.skipif(not MT.is_file(), reason="MT.mrc test data not present")
def test_real_biosr_frames_give_three_orientations_60_degrees_apart():
    from napari_cvdm.io import read_image

    frames, _meta = read_image(MT)
    params = sr.estimate_parameters(frames, PIXEL)
    cutoff = airy_cutoff(1.49, 0.525)
    for p in params:
        # TIRF-SIM: the pattern sits just inside the cut-off (2·NA_exc/λ_exc = 2·1.35/0.488
        # = 5.53 cycles/µm for this microscope, 0.975 of 2NA/λ_em)
        assert 0.95 < p.magnitude / cutoff < 1.0
        assert p.correlation > 6.0  # band cross-correlation well above the noise
        steps = np.degrees(np.diff(p.phases_rad) % (2 * np.pi))
        assert np.all(np.abs(steps - 120.0) < 30.0)
    angles = sorted(np.degrees([p.angle_rad for p in params]))
    np.testing.assert_allclose(np.diff(angles), [60.0, 60.0], atol=1.0)
    magnitudes = [p.magnitude for p in params]
    assert np.ptp(magnitudes) < 0.02 * np.mean(magnitudes)
