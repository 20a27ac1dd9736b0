"""Property tests 5 (alignment) and 8 (SR-A end to end) of physics.md (g)."""

import numpy as np
import pytest

from napari_cvdm.errors import InputError
from napari_cvdm.physics.fluorescence import SR_DEFAULTS, SRSample, form_images, simulate_sr_pair
from napari_cvdm.physics.otf import NOMINAL_SIM, Optics
from napari_cvdm.physics.psf import cubic_resize
from napari_cvdm.physics.structures import STRUCTURE_NAMES

DX = 0.01565
AIRY = Optics("airy", 1.49, 0.525)


def _centroid(img):
    y, x = np.indices(img.shape)
    return np.array([(img * y).sum(), (img * x).sum()]) / img.sum()


def test_sr_pair_has_the_documented_shapes_units_and_metadata():
    sample = simulate_sr_pair(np.random.default_rng(0))
    assert isinstance(sample, SRSample)
    wf, gt, meta = sample.widefield, sample.target, sample.metadata
    assert wf.shape == (128, 128) and gt.shape == (256, 256)
    assert wf.dtype == np.float32 and gt.dtype == np.float32
    np.testing.assert_array_equal(wf, np.rint(wf))  # camera ADU are integers
    assert wf.min() >= 0 and wf.max() <= 65535 and np.isfinite(gt).all()
    assert meta["pixel_size_um"] == {
        "widefield": pytest.approx(0.0626),
        "target": pytest.approx(0.0313),
    }
    assert meta["widefield_pixel_size_um"] == pytest.approx(0.0626)
    assert meta["target_pixel_size_um"] == pytest.approx(0.0313)
    assert 1.30 <= meta["na"] <= 1.49 and 0.500 <= meta["wavelength_um"] <= 0.560
    assert 20 <= meta["photons"] <= 5000
    assert meta["camera"] == {"offset_adu": 100.0, "gain_adu_per_e": 2.0, "read_noise_e": 1.5}
    assert meta["recipe"] == "SR-B" == SR_DEFAULTS["recipe"]
    assert all(s in STRUCTURE_NAMES for s in meta["structure"].split("+"))
    assert meta["true_optics"]["kind"] in ("airy", "aberrated", "measured")
    assert 0.80 <= meta["sim"]["k0_fraction"] <= 0.95
    # the widefield sits on the camera offset plus background
    assert np.median(wf) > meta["camera"]["offset_adu"]


def test_same_seed_same_pair_and_overrides_apply():
    a = simulate_sr_pair(np.random.default_rng(5), size=32, structure="ccps", photons=800)
    b = simulate_sr_pair(np.random.default_rng(5), size=32, structure="ccps", photons=800)
    np.testing.assert_array_equal(a.widefield, b.widefield)
    np.testing.assert_array_equal(a.target, b.target)
    assert a.widefield.shape == (32, 32) and a.target.shape == (64, 64)
    assert a.metadata["structure"] == "ccps" and a.metadata["photons"] == 800
    c = simulate_sr_pair(np.random.default_rng(6), size=32, structure="er+microtubules", na=1.4)
    assert c.metadata["structure"] == "er+microtubules" and c.metadata["na"] == 1.4
    with pytest.raises(InputError, match="Unknown SR simulator option"):
        simulate_sr_pair(np.random.default_rng(0), photon=10)
    with pytest.raises(InputError, match="Unknown structure"):
        simulate_sr_pair(np.random.default_rng(0), structure="nuclei")


def test_photon_level_sets_the_foreground_mean():
    """The expected signal above background has a foreground mean of N_fg electrons."""
    rng = np.random.default_rng(2)
    s = simulate_sr_pair(
        rng,
        size=64,
        photons=2000,
        background_e=5.0,
        read_noise_e=0.0,
        haze_fraction=0.0,
        background_variation=0.0,
    )
    e = (s.widefield.astype(np.float64) - 100.0) / 2.0 - 5.0
    ref = e > 0.2 * np.percentile(e, 99)
    assert e[ref].mean() == pytest.approx(2000, rel=0.05)
    # the target carries the same total flux as the widefield signal (crop edges aside)
    assert s.target.sum() == pytest.approx(e.sum(), rel=0.1)


def test_point_source_alignment_of_gt_wf_and_bicubic_grids():
    """A point at object pixel c has GT centroid (c − 0.5)/2, WF centroid (c − 1.5)/4 and the
    bicubic up-sampled WF lands on the GT centroid (box-aligned grids)."""
    size, margin = 32, 32
    n = 4 * size + 2 * margin
    c = np.array([63, 64])  # near the patch centre, so the Airy tails are cropped symmetrically
    obj = np.zeros((n, n))
    obj[c[0] + margin, c[1] + margin] = 1.0
    wf, gt, _ = form_images([(obj, 0.0)], DX, AIRY, NOMINAL_SIM, margin)
    assert np.abs(_centroid(gt) - (c - 0.5) / 2).max() < 0.01
    assert np.abs(_centroid(wf) - (c - 1.5) / 4).max() < 0.01
    up = cubic_resize(wf, (2 * size, 2 * size))
    assert np.abs(_centroid(up) - _centroid(gt)).max() < 0.05
    assert gt.sum() == pytest.approx(1.0, abs=0.02)  # the SIM PSF rings: tails leave the crop


def test_spectral_binning_equals_direct_convolution_and_binning():
    """The exact Fourier-domain B₄ matches spatial convolution with the Airy PSF + binning."""
    from napari_cvdm.physics.psf import airy_psf, bin_sum

    size, margin = 16, 32
    n = 4 * size + 2 * margin
    rng = np.random.default_rng(3)
    obj = rng.random((n, n))
    wf, _, _ = form_images([(obj, 0.0)], DX, Optics("airy", 1.4, 0.52), NOMINAL_SIM, margin)
    psf = airy_psf((n, n), DX, 1.4, 0.52)
    conv = np.fft.ifft2(np.fft.fft2(obj) * np.fft.fft2(np.fft.ifftshift(psf))).real
    ref = bin_sum(conv, 4)[margin // 4 : margin // 4 + size, margin // 4 : margin // 4 + size]
    np.testing.assert_allclose(wf, ref, rtol=1e-4, atol=1e-4 * ref.max())


def test_noise_free_gt_resolves_better_than_widefield():
    """Spec (g) 8: decorrelation resolution of the noise-free GT < 0.7 × the widefield's."""
    from napari_cvdm.metrics import decorrelation_resolution
    from napari_cvdm.physics.points import points_to_px, splat_bilinear
    from napari_cvdm.physics.structures import generate_structure

    rng = np.random.default_rng(11)
    size, margin = 96, 32
    n = 4 * size + 2 * margin
    st = generate_structure(rng, "microtubules", (n * DX, n * DX))
    obj = splat_bilinear(points_to_px(st.points_um, DX), st.weights, (n, n))
    wf, gt, _ = form_images([(obj, st.label_sigma_um)], DX, AIRY, NOMINAL_SIM, margin)
    res_wf = decorrelation_resolution(wf, 0.0626).resolution_um
    res_gt = decorrelation_resolution(gt, 0.0313).resolution_um
    assert 0.15 < res_wf < 0.3
    assert res_gt < 0.7 * res_wf
