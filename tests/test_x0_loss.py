"""The optional x0-space loss term (``CVDMConfig.weight_x0``): its formula, that it is off by
default, and that its weight does not feed gradients into the learned schedule."""

import pytest
import torch

from napari_cvdm.engine.cvdm import CVDM, CVDMConfig


def _model(**overrides) -> CVDM:
    torch.manual_seed(4)
    return CVDM(CVDMConfig(preset="tiny", **overrides))


def _batch():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 1, 8, 8, generator=generator)
    y0 = torch.randn(3, 1, 8, 8, generator=generator)
    noise = torch.randn(3, 1, 8, 8, generator=generator)
    return x, y0, torch.tensor([0.1, 0.5, 0.95]), noise


def test_x0_term_is_the_capped_inverse_snr_weighted_eps_error():
    model = _model(weight_x0=3.0, x0_weight_cap=4.0)
    x, y0, t, noise = _batch()
    losses = model.loss(x, y0, t, noise=noise)
    with torch.no_grad():
        lam = model.lambda_map(x)
        rho = model.rho(t).reshape(-1, 1, 1, 1)
        g = torch.exp(-lam * rho)
        y_t = g.sqrt() * y0 + (1 - g).sqrt() * noise
        eps_hat = model.denoise(y_t, x, torch.log(g / (1 - g)))
        x0_error = (y_t - (1 - g).sqrt() * eps_hat) / g.sqrt() - y0  # the implied ŷ0's error
        weight = ((1 - g) / g).clamp_max(4.0)
        want = (weight * (noise - eps_hat) ** 2).mean()
        uncapped = ((1 - g) / g <= 4.0).float()
    torch.testing.assert_close(losses["x0"], want, rtol=1e-4, atol=1e-7)
    # where the weight is not capped the term is exactly the squared error of ŷ0
    torch.testing.assert_close(
        (uncapped * weight * (noise - eps_hat) ** 2).sum(),
        (uncapped * x0_error**2).sum(),
        rtol=1e-3,
        atol=1e-5,
    )
    others = losses["diff"] + 2 * losses["boundary"] + 2 * losses["prior"]
    torch.testing.assert_close(
        losses["total"], others + 2 * losses["gamma_curvature"] + 3.0 * want, rtol=1e-4, atol=1e-6
    )


def test_the_term_is_off_by_default_and_stored_with_the_architecture():
    config = CVDMConfig(preset="tiny")
    assert config.weight_x0 == 0.0
    x, y0, t, noise = _batch()
    off = _model().loss(x, y0, t, noise=noise)
    on = _model(weight_x0=1.0).loss(x, y0, t, noise=noise)
    torch.testing.assert_close(on["total"] - on["x0"], off["total"], rtol=1e-5, atol=1e-6)
    again = CVDMConfig.from_dict(CVDMConfig(preset="tiny", weight_x0=2.5).to_dict())
    assert again.weight_x0 == 2.5 and again.x0_weight_cap == 25.0
    with pytest.raises(ValueError, match="x0_weight_cap"):
        CVDMConfig(preset="tiny", x0_weight_cap=0.0)
    with pytest.raises(ValueError, match="loss weights"):
        CVDMConfig(preset="tiny", weight_x0=-1.0)


def test_the_weight_is_detached_so_the_schedule_is_not_pushed_by_it():
    """With only the x0 term, λ still gets gradient (through ŷ0 and y_t), but the same gradient
    as when the weight is a constant: the 1/SNR weight itself is not differentiated."""
    x, y0, t, noise = _batch()
    model = _model(weight_x0=1.0, weight_diff=0.0, weight_boundary=0.0, weight_prior=0.0,
                   weight_gamma=0.0)  # fmt: skip
    model.loss(x, y0, t, noise=noise)["total"].backward()
    grads = [p.grad.clone() for p in model.lambda_net.parameters()]
    assert any(float(g.abs().max()) > 0 for g in grads)
    # the reference: the same weight computed outside autograd, multiplied in by hand
    reference = _model(weight_x0=0.0)
    with torch.no_grad():
        lam = reference.lambda_map(x)
        g = torch.exp(-lam * reference.rho(t).reshape(-1, 1, 1, 1))
        weight = ((1 - g) / g).clamp_max(reference.config.x0_weight_cap)
    lam = reference.lambda_map(x)
    rho = reference.rho(t).reshape(-1, 1, 1, 1)
    g = torch.exp(-lam * rho)
    y_t = torch.exp(-0.5 * lam * rho) * y0 + (-torch.expm1(-lam * rho)).sqrt() * noise
    eps_hat = reference.denoise(y_t, x, torch.log(g / (1 - g)))
    (weight * (noise - eps_hat) ** 2).mean().backward()
    for got, want in zip(grads, (p.grad for p in reference.lambda_net.parameters())):
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-6)
