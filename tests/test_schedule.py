"""The learned schedule: γ(0)=1 exactly, monotone for any parameters, exact β and ∂²γ."""

import pytest
import torch

from napari_cvdm.engine import schedule as sch
from napari_cvdm.engine.schedule import LambdaNet, MonotoneRho, inverse_softplus

torch.set_default_dtype(torch.float32)


def randomised_rho(seed: int, scale: float = 2.0) -> MonotoneRho:
    """A MonotoneRho whose every raw parameter is replaced by random values (any sign)."""
    rho = MonotoneRho(hidden=8)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in rho.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * scale)
    return rho


def random_lambda(seed: int, shape=(2, 1, 6, 5)) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.05 + torch.rand(shape, generator=gen) * 10.0


@pytest.mark.parametrize("seed", range(6))
def test_gamma_is_one_at_t0_and_decreasing_for_random_parameters(seed):
    rho = randomised_rho(seed)
    lam = random_lambda(seed)
    t = torch.linspace(0.0, 1.0, 201)
    with torch.no_grad():
        values = rho(t)
    assert values[0].item() == 0.0
    assert torch.all(values[1:] > 0)
    assert torch.all(values[1:] > values[:-1])  # strictly increasing
    g = sch.gamma(lam[:, None], values.reshape(1, -1, 1, 1, 1))  # (B, K, C, H, W)
    assert torch.equal(g[:, 0], torch.ones_like(g[:, 0]))  # exactly 1
    assert torch.all(g[:, 1:] <= g[:, :-1])
    assert torch.all(g[:, -1] < 1.0)


@pytest.mark.parametrize("seed", range(4))
def test_derivatives_closed_form_match_autograd(seed):
    rho = randomised_rho(seed, scale=1.0).double()
    t = torch.linspace(0.0, 1.0, 17, dtype=torch.float64).requires_grad_(True)
    value, first, second = rho.derivatives(t)
    auto_value = rho(t)
    (auto_first,) = torch.autograd.grad(auto_value.sum(), t, create_graph=True)
    (auto_second,) = torch.autograd.grad(auto_first.sum(), t)
    torch.testing.assert_close(value, auto_value, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(first, auto_first, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(second, auto_second, rtol=1e-9, atol=1e-10)


@pytest.mark.parametrize("seed", range(3))
def test_beta_is_finite_difference_of_minus_log_gamma(seed):
    rho = randomised_rho(seed, scale=1.0).double()
    lam = random_lambda(seed).double()
    t = torch.tensor([0.05, 0.3, 0.5, 0.77, 0.95], dtype=torch.float64)
    h = 1e-6
    with torch.no_grad():
        _, drho, _ = rho.derivatives(t)
        beta = sch.beta(lam[:, None], drho.reshape(1, -1, 1, 1, 1))
        log_g_plus = sch.log_gamma(lam[:, None], rho(t + h).reshape(1, -1, 1, 1, 1))
        log_g_minus = sch.log_gamma(lam[:, None], rho(t - h).reshape(1, -1, 1, 1, 1))
    fd = -(log_g_plus - log_g_minus) / (2 * h)
    torch.testing.assert_close(beta, fd, rtol=1e-6, atol=1e-8)
    assert torch.all(beta > 0)


@pytest.mark.parametrize("seed", range(3))
def test_analytic_second_derivative_of_gamma_matches_finite_differences(seed):
    rho = randomised_rho(seed, scale=1.0).double()
    lam = random_lambda(seed).double() * 0.3
    t = torch.tensor([0.1, 0.4, 0.6, 0.9], dtype=torch.float64)
    h = 1e-4
    view = (1, -1, 1, 1, 1)
    with torch.no_grad():
        r, dr, d2r = (v.reshape(view) for v in rho.derivatives(t))
        analytic = sch.d2_gamma(lam[:, None], r, dr, d2r)
        first = sch.d_gamma(lam[:, None], r, dr)
        g = [sch.gamma(lam[:, None], rho(t + k * h).reshape(view)) for k in (-1, 0, 1)]
    fd_second = (g[2] - 2 * g[1] + g[0]) / h**2
    fd_first = (g[2] - g[0]) / (2 * h)
    torch.testing.assert_close(analytic, fd_second, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(first, fd_first, rtol=1e-6, atol=1e-8)


def test_log_space_helpers_are_accurate_and_consistent():
    lam = torch.tensor([1e-3, 0.5, 3.0, 40.0], dtype=torch.float64)
    # in float32, 1 - γ for tiny λρ keeps full relative precision (naive 1 - exp loses all digits)
    small = torch.tensor(1e-6, dtype=torch.float64)
    reference = -torch.expm1(-lam * small)
    result32 = sch.one_minus_gamma(lam.float(), small.float()).double()
    torch.testing.assert_close(result32, reference, rtol=1e-6, atol=0)
    naive32 = (1 - torch.exp(-lam.float() * small.float())).double()
    assert ((naive32 - reference).abs() / reference).max() > 0.5
    rho = torch.tensor(0.7, dtype=torch.float64)
    g = sch.gamma(lam, rho)
    torch.testing.assert_close(torch.log(g), sch.log_gamma(lam, rho))
    torch.testing.assert_close(sch.log_snr(lam, rho), torch.log(g / (1 - g)))
    # log-SNR stays finite at t = 0 (guarded only inside the log)
    assert torch.isfinite(sch.log_snr(lam, torch.tensor(0.0, dtype=torch.float64))).all()


def test_default_init_gives_a_usable_log_snr_range():
    rho = MonotoneRho()
    with torch.no_grad():
        values = rho(torch.tensor([1 / 200, 0.5, 1.0]))
    snr = sch.log_snr(torch.tensor(3.0), values)
    assert 8.0 < snr[0] < 14.0
    assert -3.0 < snr[1] < 3.0
    assert -13.0 < snr[2] < -8.0


def test_lambda_net_positive_and_starts_near_init():
    net = LambdaNet(2, 3, lambda_min=0.1, lambda_init=3.0, base_width=8, channel_mults=(1, 2))
    x = torch.randn(2, 2, 13, 11)
    lam = net(x)
    assert lam.shape == (2, 3, 13, 11)
    assert torch.all(lam >= 0.1)
    assert abs(lam.mean().item() - 3.0) < 0.5
    # positive even when the UNet output is hugely negative
    with torch.no_grad():
        net.unet.out_conv.bias.fill_(-100.0)
    assert torch.all(net(x) >= 0.1)


def test_inverse_softplus_roundtrip():
    for v in (1e-3, 0.05, 1.0, 9.0, 30.0):
        p = inverse_softplus(v)
        back = torch.nn.functional.softplus(torch.tensor(p, dtype=torch.float64)).item()
        assert abs(back - v) < 1e-9 * max(1, v)


def test_invalid_lambda_bounds_raise():
    with pytest.raises(ValueError, match="lambda_init > lambda_min > 0"):
        LambdaNet(1, 1, lambda_min=0.0, lambda_init=1.0)
