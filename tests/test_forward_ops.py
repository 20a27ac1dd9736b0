"""Forward operators of zero-shot restoration: adjoints, norms, PSF preparation, noise models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cvdm.engine.operators import BlurOperator
from napari_cvdm.errors import InputError
from napari_cvdm.physics.forward_ops import (
    NoiseModel,
    airy_psf_image,
    canvas_geometry,
    effective_otf,
    energy_radius_px,
    estimate_noise,
    gaussian_psf_image,
    noise_from_camera,
    noise_from_sigma,
    prepare_psf,
    psf_otf,
)

torch.set_num_threads(1)


def _operator(field, psf, binning, circular, dtype=torch.float64):
    canvas = canvas_geometry(field, psf, binning, circular)
    otf = psf_otf(psf, canvas.shape)
    return BlurOperator(otf, canvas.shape, field, canvas.margin, binning, dtype=dtype)


def _random_psf(rng, n=7):
    psf = rng.random((n, n)) ** 3
    return psf / psf.sum()


@pytest.mark.parametrize("field", [(16, 16), (15, 17), (20, 13)])
@pytest.mark.parametrize("binning", [1, 2])
@pytest.mark.parametrize("circular", [False, True])
def test_adjoint_identity_float64(field, binning, circular):
    rng = np.random.default_rng(sum(field) + binning)
    op = _operator(field, _random_psf(rng), binning, circular)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn((2, 1, *op.canvas_shape), generator=gen, dtype=torch.float64)
    y = torch.randn((2, 1, *field), generator=gen, dtype=torch.float64)
    hx = op.A(x)
    assert hx.shape == y.shape
    lhs, rhs = float((hx * y).sum()), float((x * op.A_adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-10 * float(hx.norm()) * float(y.norm())


def test_adjoint_identity_float32_airy_and_target_correction():
    field, pixel = (24, 23), 0.0313
    psf = airy_psf_image(1.4, 0.52, pixel)
    canvas = canvas_geometry(field, psf, 2)
    otf = effective_otf(psf_otf(psf, canvas.shape), canvas.shape, pixel, 0.095)
    op = BlurOperator(otf, canvas.shape, field, canvas.margin, 2)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn((1, 1, *op.canvas_shape), generator=gen)
    y = torch.randn((1, 1, *field), generator=gen)
    hx = op.A(x)
    lhs, rhs = float((hx * y).sum()), float((x * op.A_adjoint(y)).sum())
    assert abs(lhs - rhs) <= 1e-5 * float(hx.norm()) * float(y.norm())


def test_norms_by_power_iteration():
    psf = gaussian_psf_image(0.1, 0.0313)
    assert _operator((16, 16), psf, 1, True).norm() == pytest.approx(1.0, abs=1e-6)
    delta = np.zeros((3, 3))
    delta[1, 1] = 1.0
    assert _operator((16, 16), delta, 2, True).norm() == pytest.approx(2.0, abs=1e-6)
    # a delta PSF with binning 2 and a margin: ‖B₂ ∘ crop‖ = 2
    assert _operator((10, 12), delta, 2, False).norm() == pytest.approx(2.0, abs=1e-6)


def test_gram_solve_matches_dense_solve():
    rng = np.random.default_rng(3)
    op = _operator((16, 16), _random_psf(rng, 5), 1, True)
    n = 16 * 16
    basis = torch.eye(n, dtype=torch.float64).reshape(n, 1, 16, 16)
    dense = op.A(basis).reshape(n, n).T  # column j = H e_j
    r = torch.randn(1, 1, 16, 16, dtype=torch.float64)
    mu = 0.3
    want = torch.linalg.solve(
        dense.T @ dense + mu * torch.eye(n, dtype=torch.float64), r.reshape(n)
    )
    got = op.gram_solve(r, mu).reshape(n)
    assert torch.allclose(got, want, atol=1e-10)


def test_constant_image_maps_to_f_squared_times_constant():
    psf = airy_psf_image(1.49, 0.525, 0.0313)
    op = _operator((12, 12), psf, 2, False)
    x = torch.full((1, 1, *op.canvas_shape), 3.0, dtype=torch.float64)
    assert torch.allclose(op.A(x), torch.full((1, 1, 12, 12), 12.0, dtype=torch.float64))


def test_airy_and_gaussian_psf_images():
    psf = airy_psf_image(1.49, 0.525, 0.0313)
    assert psf.shape[0] % 2 == 1 and psf.shape[0] == psf.shape[1]
    assert psf.sum() == pytest.approx(1.0) and psf.min() >= 0
    c = psf.shape[0] // 2
    assert psf[c, c] == psf.max()
    g = gaussian_psf_image(0.2, 0.05)
    assert g.shape[0] % 2 == 1 and g.sum() == pytest.approx(1.0)
    assert energy_radius_px(g, 0.5) < energy_radius_px(g, 0.99)
    with pytest.raises(InputError, match="NA"):
        airy_psf_image(2.5, 0.5, 0.03)


def test_prepare_psf_centres_normalises_and_resamples():
    pixel = 0.0313
    truth = gaussian_psf_image(0.25, pixel)
    # an off-centre bead on a background in a larger, even-sized image
    image = np.full((44, 44), 100.0)
    image[3 : 3 + truth.shape[0], 6 : 6 + truth.shape[1]] += 5000.0 * truth
    psf = prepare_psf(image)
    assert psf.shape[0] % 2 == 1 and psf.shape[1] % 2 == 1
    assert psf.sum() == pytest.approx(1.0) and psf.min() >= 0
    yy, xx = np.indices(psf.shape)
    assert (yy * psf).sum() == pytest.approx(psf.shape[0] // 2, abs=0.05)
    assert (xx * psf).sum() == pytest.approx(psf.shape[1] // 2, abs=0.05)
    # the same bead recorded at twice the pixel size, resampled to the grid: same width
    coarse = gaussian_psf_image(0.25, 2 * pixel)
    resampled = prepare_psf(coarse, 2 * pixel, pixel)
    width = np.sqrt((((yy - psf.shape[0] // 2) ** 2) * psf).sum())
    yy2 = np.indices(resampled.shape)[0]
    width2 = np.sqrt((((yy2 - resampled.shape[0] // 2) ** 2) * resampled).sum())
    assert width2 == pytest.approx(width, rel=0.05)


@pytest.mark.parametrize(
    "bad, match",
    [
        (np.zeros((9, 9)), "zero"),
        (np.full((9, 9), np.nan), "NaN"),
        (np.zeros((0, 5)), "empty"),
        (np.ones((4, 9, 9)), "3-D"),
        (np.ones((9, 9), complex), "real"),
    ],
)
def test_prepare_psf_refuses_bad_psfs(bad, match):
    with pytest.raises(InputError, match=match):
        prepare_psf(bad)


def test_prepare_psf_plane_and_pixel_limits():
    stack = np.zeros((3, 9, 9))
    stack[1, 4, 4] = 1.0
    psf = prepare_psf(stack, plane=1)
    assert psf.sum() == pytest.approx(1.0)
    with pytest.raises(InputError, match="cannot be resampled"):
        prepare_psf(stack[1], 1.0, 0.0313)


def test_noise_models():
    cam = noise_from_camera(2.0, 100.0, 1.5)
    # 50 e- above the offset: variance g·(μ − offset) + g²σ_r² = 2·100 + 4·2.25
    assert cam.variance(np.array([200.0]))[0] == pytest.approx(2.0 * 100.0 + 9.0)
    assert cam.variance(np.array([0.0]))[0] == pytest.approx(9.0)  # floored at read noise
    sig = noise_from_sigma(3.0)
    assert sig.variance(np.array([0.0, 1e4])) == pytest.approx([9.0, 9.0])
    with pytest.raises(InputError):
        noise_from_sigma(0.0)
    assert isinstance(NoiseModel(1.0, 0.0).to_dict(), dict)


def test_estimate_noise_recovers_gain_and_read_noise():
    rng = np.random.default_rng(0)
    yy, xx = np.indices((256, 256))
    signal = 20 + 400 * (0.5 + 0.5 * np.sin(xx / 9.0) * np.cos(yy / 13.0))  # smooth, e-
    gain, offset, read = 2.0, 100.0, 3.0
    adu = gain * (rng.poisson(signal) + rng.normal(0, read, signal.shape)) + offset
    est = estimate_noise(adu)
    assert est.slope == pytest.approx(gain, rel=0.15)
    want = noise_from_camera(gain, offset, read)
    for mu in (200.0, 600.0, 900.0):
        assert est.sigma_at(mu) == pytest.approx(want.sigma_at(mu), rel=0.1)
