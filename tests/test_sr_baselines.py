"""Property test 12 of physics.md (g) and the SR baselines' conventions."""

import numpy as np
import pytest
import scipy.fft as sfft

from napari_cvdm.errors import InputError
from napari_cvdm.metrics import minmax01, psnr
from napari_cvdm.physics.fluorescence import simulate_sr_pair
from napari_cvdm.physics.psf import (
    airy_cutoff,
    airy_otf,
    bin_sum,
    cubic_matrix,
    radial_frequency,
)
from napari_cvdm.physics.sr_baselines import (
    baseline_scores,
    bicubic_sr,
    nominal_sim_otf,
    physics_from_metadata,
    richardson_lucy_iterates,
    run_sr_baseline,
    tune_baseline,
    wiener_filter,
    wiener_sr,
)


@pytest.fixture(scope="module")
def bright_pairs():
    """Four SR-A validation-style pairs at N_fg = 2000 (one per structure), 64 px widefield."""
    rng = np.random.default_rng(2024)
    return [
        simulate_sr_pair(rng, size=64, photons=2000, structure=s)
        for s in ("microtubules", "f-actin", "ccps", "er")
    ]


def _psnr(pred, target):
    return psnr(minmax01(pred), minmax01(target), data_range=1.0)


def test_bicubic_matches_torch_interpolate_align_corners_false():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    img = rng.random((13, 10))
    ours = cubic_matrix(13, 26) @ img @ cubic_matrix(10, 20).T
    ref = torch.nn.functional.interpolate(
        torch.from_numpy(img)[None, None], scale_factor=2, mode="bicubic", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(ours, ref, atol=1e-10)
    odd = torch.nn.functional.interpolate(
        torch.from_numpy(img)[None, None], size=(21, 7), mode="bicubic", align_corners=False
    )[0, 0].numpy()
    np.testing.assert_allclose(cubic_matrix(13, 21) @ img @ cubic_matrix(10, 7).T, odd, atol=1e-10)


def test_bicubic_baseline_removes_offset_and_conserves_flux():
    adu = np.full((16, 16), 140.0)  # 20 e⁻ above a 100 ADU offset at 2 ADU/e⁻
    out = bicubic_sr(adu, offset_adu=100.0, gain_adu_per_e=2.0)
    assert out.shape == (32, 32) and out.dtype == np.float32
    np.testing.assert_allclose(out, 5.0, atol=1e-5)  # 20 e⁻ spread over 2×2 GT pixels


def test_wiener_reproduces_sim_filtered_object_inside_the_passband():
    """Noise-free input and K → 0: Ô = H_SIM·Ô_object inside the widefield pass-band."""
    n, px, na, wl = 128, 0.0313, 1.49, 0.525
    rng = np.random.default_rng(1)
    obj = rng.random((n, n)) ** 8
    h_wf = airy_otf((n, n), px, na, wl)
    h_sim = nominal_sim_otf((n, n), px, na, wl)
    image = sfft.ifft2(sfft.fft2(obj) * h_wf).real
    out = sfft.fft2(wiener_filter(image, h_wf, h_sim, 1e-12))
    expected = h_sim * sfft.fft2(obj)
    band = radial_frequency((n, n), px) < 0.95 * airy_cutoff(na, wl)
    err = np.abs(out - expected)[band].max() / np.abs(expected).max()
    assert err < 1e-6
    assert np.abs(out[~band & (radial_frequency((n, n), px) > airy_cutoff(na, wl))]).max() < 1e-9


def test_richardson_lucy_fits_the_binned_forward_model():
    """On noise-free data the RL estimate re-imaged through D(h ⊛ ·) + b approaches the data."""
    n, px, na, wl, b = 32, 0.0626, 1.49, 0.525, 10.0
    rng = np.random.default_rng(2)
    obj = np.zeros((2 * n, 2 * n))
    obj[rng.integers(8, 2 * n - 8, 30), rng.integers(8, 2 * n - 8, 30)] = 400.0
    h = airy_otf(obj.shape, px / 2, na, wl)
    clean = bin_sum(sfft.ifft2(sfft.fft2(obj) * h).real, 2) + b
    adu = 100.0 + 2.0 * clean
    # no padding, no SIM blur: read out the raw RL object through the forward model
    outs = richardson_lucy_iterates(
        adu,
        pixel_size_um=px,
        na=na,
        wavelength_um=wl,
        checkpoints=[2, 10, 50, 200],
        background_e=b,
        pad_px=0,
        sim_filter=False,
    )
    errors = []
    for it in (2, 10, 50, 200):
        o = outs[it].astype(np.float64)
        assert o.shape == (2 * n, 2 * n) and o.min() >= 0
        model = bin_sum(sfft.ifft2(sfft.fft2(o) * h).real, 2) + b
        errors.append(np.abs(model - clean).mean())
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[3] < 0.1 * errors[0]


def test_rl_and_wiener_beat_bicubic_at_high_photon_counts(bright_pairs):
    """Spec (g) 12: at N_fg ≥ 1500, RL and Wiener each beat bicubic in mean PSNR."""
    scores = {"bicubic": [], "wiener": [], "rl": []}
    for s in bright_pairs:
        physics = physics_from_metadata(s.metadata)
        for name in scores:
            out = run_sr_baseline(name, s.widefield, **physics)
            assert out.shape == s.target.shape and out.dtype == np.float32
            scores[name].append(_psnr(out, s.target))
    mean = {k: float(np.mean(v)) for k, v in scores.items()}
    assert mean["wiener"] > mean["bicubic"] + 1.0
    assert mean["rl"] > mean["bicubic"] + 1.0


def test_tuning_picks_the_best_validation_value(bright_pairs):
    val = bright_pairs[:2]
    grid = [1e-4, 1e-2, 1.0]
    scores = baseline_scores("wiener", val, grid)
    chosen = tune_baseline("wiener", val, grid)
    assert chosen in grid and scores[chosen] == max(scores.values())
    by_hand = np.mean(
        [
            _psnr(wiener_sr(s.widefield, k=1e-2, **physics_from_metadata(s.metadata)), s.target)
            for s in val
        ]
    )
    assert scores[1e-2] == pytest.approx(by_hand)
    iters = tune_baseline("rl", [(s.widefield, s.target, s.metadata) for s in val], [2, 20])
    assert iters == 20
    assert tune_baseline("bicubic", val) is None
    with pytest.raises(InputError):
        tune_baseline("wiener", [], grid)


def test_baselines_reject_unusable_input():
    with pytest.raises(InputError):
        bicubic_sr(np.ones((4, 4, 4)))
    with pytest.raises(InputError, match="na"):
        wiener_sr(np.ones((16, 16)), pixel_size_um=0.0626, na=None, wavelength_um=0.525)
    with pytest.raises(InputError, match="Unknown SR baseline"):
        run_sr_baseline("cnn", np.ones((16, 16)))
    with pytest.raises(InputError):
        richardson_lucy_iterates(
            np.ones((16, 16)), pixel_size_um=0.0626, na=1.4, wavelength_um=0.5, checkpoints=[0]
        )
