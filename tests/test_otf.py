"""Property tests of the instrument transfer functions (physics.md (g) 2–3, recipe SR-B)."""

import numpy as np
import pytest
import scipy.fft as sfft

from napari_cvdm.physics.fluorescence import simulate_sr_pair
from napari_cvdm.physics.otf import (
    Optics,
    SIMParameters,
    measured_cutoff,
    measured_otf_profile,
    pupil_otf,
    sim_otf,
)
from napari_cvdm.physics.psf import airy_cutoff, airy_otf
from napari_cvdm.physics.sr_baselines import physics_from_metadata, richardson_lucy_sr

N, DX = 256, 0.0313
NA, WL = 1.49, 0.525
RHO_C = airy_cutoff(NA, WL)


def test_unaberrated_pupil_gives_the_airy_otf_and_aberrations_lower_it():
    ideal = pupil_otf((N, N), DX, NA, WL)
    assert ideal[0, 0] == pytest.approx(1.0)
    assert np.abs(ideal - airy_otf((N, N), DX, NA, WL)).max() < 5e-3
    aberrated = pupil_otf((N, N), DX, NA, WL, {"defocus": 0.15, "spherical": 0.1})
    assert aberrated[0, 0] == pytest.approx(1.0)
    mid = int(round(0.4 * RHO_C * N * DX))  # 0.4 ρc along x
    assert abs(aberrated[0, mid]) < 0.9 * abs(ideal[0, mid])


def test_measured_biosr_otf_is_normalised_and_ends_near_the_airy_cutoff():
    profile = measured_otf_profile()
    assert profile.shape == (257,) and profile[0] == pytest.approx(1.0)
    assert measured_cutoff() == pytest.approx(RHO_C, rel=0.05)


@pytest.mark.parametrize("kind", ["airy", "aberrated", "measured"])
def test_sim_otf_support_is_widefield_plus_k0_along_the_illumination(kind):
    optics = Optics(kind, NA, WL, aberrations={"defocus": 0.05} if kind == "aberrated" else {})
    sim = SIMParameters(k0_fraction=0.9, angle0_rad=0.0, wiener_w=0.1, apodization_gamma=1.0)
    h = sim_otf((N, N), DX, optics, sim)
    assert h[0, 0] == pytest.approx(1.0)
    kx = sfft.fftfreq(N, d=DX)
    edge = optics.cutoff * (1 + sim.k0_fraction)
    along = h[0, : N // 2]  # the first orientation points along +x
    inside = (kx[: N // 2] > 1.05 * optics.cutoff) & (kx[: N // 2] < 0.95 * edge)
    assert inside.any() and (along[inside] > 1e-4).all()  # super-resolved beyond ρc
    rho = np.hypot(*np.meshgrid(kx, kx, indexing="ij"))
    assert np.abs(h[rho > edge]).max() < 1e-12  # nothing beyond ρc + k0
    # between two illumination directions (30°) the support is smaller than along one
    k = 0.9 * edge
    iy, ix = (
        int(round(k * np.sin(np.pi / 6) * N * DX)),
        int(round(k * np.cos(np.pi / 6) * N * DX)),
    )
    assert h[iy, ix] < h[0, int(round(k * N * DX))]


def test_sr_target_carries_frequencies_beyond_the_widefield_cutoff_and_none_beyond_the_sim_edge():
    s = simulate_sr_pair(
        np.random.default_rng(4),
        size=64,
        structure="microtubules",
        photons=5000,
        optics_odds={"airy": 1.0},
        target_photons_ratio=1e6,
        pattern_probability=0.0,
    )
    md = s.metadata
    cutoff = airy_cutoff(md["true_optics"]["na"], md["true_optics"]["wavelength_um"])
    edge = cutoff * (1 + md["sim"]["k0_fraction"])
    spec = np.abs(sfft.fft2(s.target - s.target.mean())) ** 2
    k = sfft.fftfreq(s.target.shape[0], d=md["target_pixel_size_um"])
    rho = np.hypot(*np.meshgrid(k, k, indexing="ij"))
    beyond_wf = spec[(rho > 1.1 * cutoff) & (rho < 0.9 * edge)].sum() / spec.sum()
    beyond_sim = spec[rho > 1.1 * edge].sum() / spec.sum()
    assert beyond_wf > 1e-3
    # beyond ρc + k0 only what clipping the ringing at 0 creates (SIM data are stored ≥ 0)
    assert beyond_sim < 0.1 * beyond_wf


def test_richardson_lucy_with_the_nominal_psf_does_not_reproduce_the_target():
    """The benchmark's point: a SIM-like target is not the object under a narrower PSF."""
    from napari_cvdm.metrics import minmax01, psnr

    s = simulate_sr_pair(np.random.default_rng(3), size=64, photons=5000, structure="microtubules")
    rl = richardson_lucy_sr(s.widefield, iterations=100, **physics_from_metadata(s.metadata))
    assert psnr(minmax01(rl), minmax01(s.target), 1.0) < 34.0  # 38 dB on the old Gaussian target
