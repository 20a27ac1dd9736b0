"""The residual UNet: any input size, presets, global embedding, locality."""

import pytest
import torch

from napari_cvdm.engine.unet import UNET_PRESETS, UNet, count_parameters, pad_to_multiple


@pytest.mark.parametrize("shape", [(1, 1), (5, 7), (37, 53), (32, 32), (16, 40)])
def test_any_input_size_round_trips_shape(shape):
    torch.manual_seed(0)
    net = UNet(3, 2, base_width=8, channel_mults=(1, 2, 4), blocks_per_level=1)
    out = net(torch.randn(2, 3, *shape))
    assert out.shape == (2, 2, *shape)
    assert torch.isfinite(out).all()


def test_pad_to_multiple_reflects_and_keeps_content():
    x = torch.arange(2 * 5 * 7, dtype=torch.float32).reshape(1, 2, 5, 7)
    padded = pad_to_multiple(x, 4)
    assert padded.shape == (1, 2, 8, 8)
    assert torch.equal(padded[..., :5, :7], x)
    assert torch.equal(padded[..., 5, :7], x[..., 3, :])  # reflect: row 5 mirrors row 3
    tiny = pad_to_multiple(torch.full((1, 1, 1, 2), 3.0), 4)  # too small to reflect: replicate
    assert tiny.shape == (1, 1, 4, 4) and torch.all(tiny == 3.0)
    assert pad_to_multiple(torch.ones(1, 1, 8, 8), 4).shape == (1, 1, 8, 8)


def test_preset_sizes():
    sizes = {name: count_parameters(UNet(3, 1, **arch)) for name, arch in UNET_PRESETS.items()}
    assert sizes["tiny"] < 500_000
    assert 1_000_000 < sizes["small"] < 10_000_000
    assert 10_000_000 < sizes["base"] < 100_000_000


def test_global_embedding_modulates_output():
    torch.manual_seed(0)
    net = UNet(2, 1, base_width=8, channel_mults=(1, 2), embed_dim=16)
    with torch.no_grad():
        for block in net.modules():
            if getattr(block, "film", None) is not None:
                block.film.weight.normal_(0, 0.5)
    x = torch.randn(2, 2, 12, 12)
    a = net(x, torch.tensor([-1.0, -1.0]))
    b = net(x, torch.tensor([0.8, 0.8]))
    assert (a - b).abs().max() > 1e-4
    assert torch.allclose(net(x, torch.tensor([0.8, 0.8])), b)


def test_group_norm_option_builds_and_runs():
    net = UNet(1, 1, base_width=8, channel_mults=(1, 2), norm_groups=4)
    assert any(isinstance(m, torch.nn.GroupNorm) for m in net.modules())
    assert net(torch.randn(1, 1, 9, 10)).shape == (1, 1, 9, 10)


def test_without_norm_output_is_local_and_translation_consistent():
    """No normalisation: changing a far-away pixel leaves a pixel's output untouched."""
    torch.manual_seed(0)
    net = UNet(1, 1, base_width=8, channel_mults=(1, 2))
    x = torch.randn(1, 1, 64, 64)
    y = x.clone()
    y[..., 60:, 60:] += 5.0
    with torch.no_grad():
        a, b = net(x), net(y)
    assert torch.equal(a[..., :20, :20], b[..., :20, :20])
    assert (a[..., 60:, 60:] - b[..., 60:, 60:]).abs().max() > 1e-3


def test_invalid_architecture_raises():
    with pytest.raises(ValueError, match="blocks_per_level"):
        UNet(1, 1, channel_mults=(1, 2), blocks_per_level=(1, 1, 1))
    with pytest.raises(ValueError, match="widths"):
        UNet(1, 1, base_width=0)


def test_activation_estimate_scales_with_width():
    narrow = UNet(1, 1, base_width=8, channel_mults=(1, 2)).activation_bytes_per_pixel()
    wide = UNet(1, 1, base_width=32, channel_mults=(1, 2)).activation_bytes_per_pixel()
    assert wide == pytest.approx(4 * narrow)
    assert narrow > 4 * 8  # at least one float32 feature map of the base width
