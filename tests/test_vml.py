"""VML-MAP, DPS and RL (engine/vml.py): exact-MAP tests on a Gaussian prior (spec §4), the
surrogate gradient against the full Jacobian, smoke tests with a tiny untrained prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_cvdm.engine.operators import BlurOperator
from napari_cvdm.engine.prior import EDMPrior, PriorConfig
from napari_cvdm.engine.vml import (
    SolverResult,
    SolverStep,
    dps,
    karras_sigmas,
    richardson_lucy,
    surrogate_gradient,
    vml_map,
)
from napari_cvdm.physics.forward_ops import canvas_geometry, gaussian_psf_image, psf_otf

torch.set_num_threads(1)
DT = torch.float64


class GaussianProblem:
    """Prior N(m, C), H 25×40 with N(0, 1/n) entries, noise σ_y (or a diagonal weight)."""

    def __init__(self, seed: int, heteroscedastic: bool = False, sigma_y: float = 0.05):
        g = torch.Generator().manual_seed(seed)
        n, k = 40, 25
        u, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=DT))
        self.C = u @ torch.diag(torch.logspace(-2, 0, n, dtype=DT)) @ u.T / 4
        self.m = 0.1 * torch.randn(n, generator=g, dtype=DT)
        self.H = torch.randn(k, n, generator=g, dtype=DT) / np.sqrt(n)
        w = torch.full((k,), 1.0 / sigma_y**2, dtype=DT)
        if heteroscedastic:
            w = w * (0.5 + 1.5 * torch.rand(k, generator=g, dtype=DT))
        self.w = w
        x0 = self.m + torch.linalg.cholesky(self.C) @ torch.randn(n, generator=g, dtype=DT)
        self.y = self.H @ x0 + torch.randn(k, generator=g, dtype=DT) / w.sqrt()
        ci = torch.linalg.inv(self.C)
        hw = self.H.T * w
        self.map = torch.linalg.solve(ci + hw @ self.H, ci @ self.m + hw @ self.y)
        self.n = n

    def M(self, sigma: float) -> torch.Tensor:
        return self.C @ torch.linalg.inv(self.C + sigma**2 * torch.eye(self.n, dtype=DT))

    def denoiser(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        return self.m + (x - self.m) @ self.M(sigma).T

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.H.T

    def vml_s(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        eye = torch.eye(self.n, dtype=DT)
        z = x - self.m
        neg_log_p = 0.5 * z @ torch.linalg.solve(self.C + sigma**2 * eye, z)
        d = self.denoiser(x, sigma)
        r = self.y - self.H @ d
        return neg_log_p - (d - x).square().sum() / (2 * sigma**2) + 0.5 * (self.w * r * r).sum()

    def stationary_point(self, sigma: float) -> torch.Tensor:
        eye = torch.eye(self.n, dtype=DT)
        mm = self.M(sigma)
        a = (mm - eye) / sigma**2 - (self.H.T * self.w) @ self.H @ mm
        b = -(self.H.T * self.w) @ (self.y - self.H @ self.m)
        return self.m + torch.linalg.solve(a, b)

    def grad(self, x: torch.Tensor, sigma: float) -> torch.Tensor:
        g, _ = surrogate_gradient(self.denoiser, x[None], sigma, self.y, self.forward, self.w)
        return g[0]


@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_stationary_point_is_the_map_at_every_sigma(heteroscedastic):
    p = GaussianProblem(0, heteroscedastic)
    random_point = torch.randn(p.n, dtype=DT, generator=torch.Generator().manual_seed(5))
    for sigma in (20.0, 5.0, 1.0, 0.1, 0.01):
        x_star = p.stationary_point(sigma)
        d = p.denoiser(x_star[None], sigma)[0]
        assert torch.linalg.norm(d - p.map) <= 1e-8 * torch.linalg.norm(p.map)
        g_star, g_rand = p.grad(x_star, sigma), p.grad(random_point, sigma)
        assert torch.linalg.norm(g_star) <= 1e-8 * torch.linalg.norm(g_rand)


@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_surrogate_gradient_matches_finite_differences_of_vml_s(heteroscedastic):
    p = GaussianProblem(1, heteroscedastic)
    x = p.m + 0.3 * torch.randn(p.n, dtype=DT, generator=torch.Generator().manual_seed(2))
    for sigma in (5.0, 0.5, 0.05):
        h = 1e-5 * max(sigma, 0.1)
        fd = torch.stack(
            [
                (p.vml_s(x + h * e, sigma) - p.vml_s(x - h * e, sigma)) / (2 * h)
                for e in torch.eye(p.n, dtype=DT)
            ]
        )
        g = p.grad(x, sigma)
        assert torch.linalg.norm(g - fd) <= 1e-6 * torch.linalg.norm(fd)


def _solve(p: GaussianProblem, seed: int, **kw) -> SolverResult:
    sigmas = karras_sigmas(
        kw.pop("levels", 100), kw.pop("sigma_min", 0.002), kw.pop("sigma_max", 80.0)
    )
    events = vml_map(
        p.denoiser,
        p.y,
        p.forward,
        p.w,
        sigmas,
        x_init=torch.zeros(1, p.n, dtype=DT),
        generator=torch.Generator().manual_seed(seed),
        **kw,
    )
    *steps, result = list(events)
    assert all(isinstance(s, SolverStep) for s in steps)
    return result


def test_default_solver_reaches_the_map_on_ten_problems():
    errors = []
    for seed in range(10):
        p = GaussianProblem(100 + seed)
        result = _solve(p, seed, inner_steps=5, lr_scale=0.1)
        assert result.forward == 100 * 6 and result.vjp == 100 * 5
        errors.append(float(torch.linalg.norm(result.x[0] - p.map) / torch.linalg.norm(p.map)))
    assert max(errors) < 1e-2, errors


def test_karras_levels():
    s = karras_sigmas(5, 0.01, 80.0)
    assert s[0] == pytest.approx(80.0) and s[-1] == pytest.approx(0.01)
    assert all(a > b for a, b in zip(s, s[1:]))
    assert karras_sigmas(1, 0.01, 80.0) == [0.01]


class TinyConvDenoiser(torch.nn.Module):
    """A small nonlinear convolutional denoiser (float64) for the Jacobian test."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.w1 = torch.nn.Parameter(0.3 * torch.randn(4, 1, 3, 3, generator=g, dtype=DT))
        self.w2 = torch.nn.Parameter(0.3 * torch.randn(1, 4, 3, 3, generator=g, dtype=DT))

    def forward(self, x, sigma):
        h = torch.tanh(torch.nn.functional.conv2d(x, self.w1, padding=1) * (1 + sigma))
        return x / (1 + sigma**2) + torch.nn.functional.conv2d(h, self.w2, padding=1)


def _blur(field, binning=1, dtype=DT):
    psf = gaussian_psf_image(0.12, 0.0313)
    canvas = canvas_geometry(field, psf, binning, circular=True)
    return BlurOperator(psf_otf(psf, canvas.shape), canvas.shape, field, 0, binning, dtype)


def test_surrogate_gradient_equals_minus_jacobian_transpose_g_d():
    den = TinyConvDenoiser().requires_grad_(False)
    op = _blur((6, 6))
    g = torch.Generator().manual_seed(3)
    x = torch.randn(1, 1, 6, 6, generator=g, dtype=DT)
    y = torch.randn(1, 1, 6, 6, generator=g, dtype=DT)
    w = 1.0 + torch.rand(1, 1, 6, 6, generator=g, dtype=DT)
    sigma = 0.7
    grad, d = surrogate_gradient(den, x, sigma, y, op.A, w)
    jac = torch.autograd.functional.jacobian(lambda z: den(z, sigma), x).reshape(36, 36)
    g_d = (d - x) / sigma**2 + op.A_adjoint(w * (y - op.A(d)))
    want = -(jac.T @ g_d.reshape(36)).reshape(1, 1, 6, 6)
    assert torch.linalg.norm(grad - want) <= 1e-10 * torch.linalg.norm(want)


def _gaussian_image_denoiser(c2: float = 0.25):
    def denoiser(x, sigma):
        return c2 / (c2 + sigma**2) * x

    return denoiser


def test_data_residual_decreases_on_an_image_problem():
    op = _blur((24, 24))
    g = torch.Generator().manual_seed(4)
    x0 = 0.5 * torch.randn(1, 1, 24, 24, generator=g, dtype=DT)
    y = op.A(x0) + 0.05 * torch.randn(1, 1, 24, 24, generator=g, dtype=DT)
    w = 1 / 0.05**2
    power = op.otf.real.square() + op.otf.imag.square()  # exact MAP (Wiener), prior var 0.25
    x_map = torch.fft.irfft2(
        torch.fft.rfft2(w * op.A_adjoint(y)) / (1 / 0.25 + w * power), s=(24, 24)
    )
    events = vml_map(
        _gaussian_image_denoiser(),
        y,
        op.A,
        w,
        karras_sigmas(40, 0.01, 10.0),
        x_init=torch.zeros(2, 1, 24, 24, dtype=DT),
        inner_steps=3,
        generator=torch.Generator().manual_seed(0),
    )
    result = list(events)[-1]
    assert result.x.shape == (2, 1, 24, 24) and result.x.dtype == DT
    residuals = [h["residual"] for h in result.history]
    assert residuals[-1] < 0.5 * residuals[0]
    for x in result.x:  # both seeds near the MAP
        assert torch.linalg.norm(x - x_map[0]) < 0.1 * torch.linalg.norm(x_map)
    dps_result = list(
        dps(
            _gaussian_image_denoiser(),
            y,
            op.A,
            1 / 0.05**2,
            karras_sigmas(100, 0.01, 10.0),
            x_init=torch.zeros(1, 1, 24, 24, dtype=DT),
            zeta=0.1,
            generator=torch.Generator().manual_seed(0),
        )
    )[-1]
    assert torch.isfinite(dps_result.x).all()
    assert dps_result.history[-1]["residual"] < 0.5 * dps_result.history[0]["residual"]


def test_tiny_untrained_prior_smoke_and_determinism():
    torch.manual_seed(0)
    prior = EDMPrior(PriorConfig(preset="tiny")).eval().requires_grad_(False)
    op = _blur((16, 16), binning=2, dtype=torch.float32)
    y = torch.rand(1, 1, 16, 16)

    def run(seed):
        events = vml_map(
            prior,
            y,
            op.A,
            100.0,
            karras_sigmas(3, 0.01, 2.0),
            x_init=torch.zeros(1, 1, 32, 32),
            inner_steps=1,
            generator=torch.Generator().manual_seed(seed),
        )
        return list(events)[-1].x

    a, b, c = run(1), run(1), run(2)
    assert a.shape == (1, 1, 32, 32) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert torch.isfinite(a).all() and torch.equal(a, b) and not torch.equal(a, c)


def test_closing_the_solver_stops_within_one_inner_step():
    calls = []

    def denoiser(x, sigma):
        calls.append(sigma)
        return 0.5 * x

    events = vml_map(
        denoiser,
        torch.zeros(1, 4),
        lambda x: x,
        1.0,
        karras_sigmas(10, 0.01, 1.0),
        x_init=torch.zeros(1, 4),
        inner_steps=5,
    )
    first = next(events)
    assert isinstance(first, SolverStep) and (first.level, first.step) == (1, 1)
    events.close()
    assert len(calls) == 1


def test_richardson_lucy_is_non_negative_and_fits_the_data():
    op = _blur((20, 20), dtype=DT)
    g = torch.Generator().manual_seed(6)
    x0 = torch.rand(1, 1, 20, 20, generator=g, dtype=DT) ** 4 * 100
    y = op.A(x0)
    x5, x50 = richardson_lucy(y, op, 5), richardson_lucy(y, op, 50)
    assert x50.min() >= 0
    err = [float((op.A(x) - y).square().mean()) for x in (x5, x50)]
    assert err[1] < err[0]
