"""Output-layer geometry: SR grid, QPI focus axis, leading axes, units and labels."""

import numpy as np
import pytest
from numpy.testing import assert_allclose

from napari_cvdm.geometry import LayerGeometry, output_geometry, prepend_axis


def test_sr_2x_halves_scale_and_shifts_by_quarter_pixel():
    g = output_geometry((0.1, 0.1), (0.0, 0.0), sr_factor=2)
    assert_allclose(g.scale, (0.05, 0.05))
    assert_allclose(g.translate, (-0.025, -0.025))


def test_sr_pixel_centres_tile_the_same_field_of_view():
    # input pixel centres at t + s*i; the k output pixels inside input pixel i must be centred on it
    s, t, k = 0.0626, 3.0, 3
    g = output_geometry((s, s), (t, t), sr_factor=k)
    out_centres = g.translate[-1] + g.scale[-1] * np.arange(4 * k)
    in_centres = t + s * np.arange(4)
    assert_allclose(out_centres.reshape(4, k).mean(axis=1), in_centres, atol=1e-12)
    # and the field edges coincide
    assert_allclose(out_centres[0] - g.scale[-1] / 2, t - s / 2)


def test_sr_keeps_leading_axes_and_carries_units_labels():
    g = output_geometry(
        (2.0, 0.2, 0.1),
        (5.0, 1.0, -1.0),
        sr_factor=2,
        units=("s", "µm", "µm"),
        axis_labels=("t", "y", "x"),
    )
    assert_allclose(g.scale, (2.0, 0.1, 0.05))
    assert_allclose(g.translate, (5.0, 1.0 - 0.05, -1.0 - 0.025))
    assert g.units == ("s", "µm", "µm")
    assert g.axis_labels == ("t", "y", "x")


def test_qpi_drops_focus_axis_and_keeps_yx():
    g = output_geometry(
        (1.5, 0.3, 0.25, 0.25),
        (10.0, 2.0, 0.5, 0.75),
        drop_axes=(1,),
        units=("s", "µm", "µm", "µm"),
        axis_labels=("t", "z", "y", "x"),
    )
    assert_allclose(g.scale, (1.5, 0.25, 0.25))
    assert_allclose(g.translate, (10.0, 0.5, 0.75))
    assert g.units == ("s", "µm", "µm")
    assert g.axis_labels == ("t", "y", "x")
    assert g.ndim == 3


def test_non_integer_factor_after_resampling_keeps_field_of_view():
    # 100 input pixels of 0.1 µm resampled to 160 output pixels on Y, 2x on X
    g = output_geometry((0.1, 0.1), (1.0, 2.0), sr_factor=(1.6, 2))
    assert_allclose(g.scale, (0.0625, 0.05))
    for axis, n_in, n_out in ((0, 100, 160), (1, 100, 200)):
        first_edge = g.translate[axis] - g.scale[axis] / 2
        last_edge = g.translate[axis] + g.scale[axis] * (n_out - 0.5)
        t = (1.0, 2.0)[axis]
        assert_allclose((first_edge, last_edge), (t - 0.05, t + 0.1 * (n_in - 0.5)))


def test_negative_drop_axis_and_missing_translate():
    g = output_geometry((0.3, 0.2, 0.2), drop_axes=(-3,))
    assert g.scale == (0.2, 0.2)
    assert g.translate == (0.0, 0.0)
    assert g.units is None and g.axis_labels is None


def test_layer_kwargs_only_has_known_fields():
    kw = output_geometry((0.1, 0.1), sr_factor=2).as_layer_kwargs()
    assert set(kw) == {"scale", "translate"}
    kw = output_geometry((0.1, 0.1), units=("µm", "µm")).as_layer_kwargs()
    assert kw["units"] == ("µm", "µm")


def test_prepend_axis_for_gamma_stack():
    g = output_geometry(
        (0.1, 0.1), (0.0, 0.0), sr_factor=2, units=("µm", "µm"), axis_labels=("y", "x")
    )
    h = prepend_axis(g, scale=0.25, label="t*")
    assert_allclose(h.scale, (0.25, 0.05, 0.05))
    assert_allclose(h.translate, (0.0, -0.025, -0.025))
    assert h.units == ("pixel", "µm", "µm")
    assert h.axis_labels == ("t*", "y", "x")
    assert isinstance(h, LayerGeometry)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"scale": (0.1,)},
        {"scale": (0.1, 0.1), "translate": (0.0,)},
        {"scale": (0.1, 0.1), "sr_factor": 0},
        {"scale": (0.1, 0.1), "sr_factor": -2},
        {"scale": (0.1, 0.1), "sr_factor": (2, 2, 2)},
        {"scale": (1.0, 0.1, 0.1), "drop_axes": (1,)},
        {"scale": (1.0, 0.1, 0.1), "drop_axes": (3,)},
        {"scale": (0.1, 0.1), "units": ("µm",)},
    ],
)
def test_invalid_inputs_raise(kwargs):
    scale = kwargs.pop("scale")
    with pytest.raises(ValueError):
        output_geometry(scale, **kwargs)


def test_one_plane_axes_only_after_a_kept_leading_axis():
    from napari_cvdm.geometry import one_plane_axes

    assert one_plane_axes(3, (0,)) == ()  # (Z, Y, X) → (Y, X): aligns on the last axes anyway
    assert one_plane_axes(4, (0,)) == ()  # (Z, T, Y, X) → (T, Y, X): T stays on world T
    assert one_plane_axes(4, (1,)) == (1,)  # (T, Z, Y, X): T would land on the Z slider
    assert one_plane_axes(4, (-3,)) == (1,)
    assert one_plane_axes(5, (2,)) == (2,)


def test_collapsed_axis_spans_the_whole_input_extent():
    # (T, Z, Y, X) with 3 planes 1 µm apart from z = 2 µm: one plane centred on z = 3 µm, 3 µm thick
    g = output_geometry(
        (5.0, 1.0, 0.21, 0.21),
        (10.0, 2.0, 0.0, 0.0),
        collapse={1: 3},
        units=("s", "µm", "µm", "µm"),
        axis_labels=("t", "z", "y", "x"),
    )
    assert_allclose(g.scale, (5.0, 3.0, 0.21, 0.21))
    assert_allclose(g.translate, (10.0, 3.0, 0.0, 0.0))
    assert g.axis_labels == ("t", "z", "y", "x") and g.units == ("s", "µm", "µm", "µm")
    low, high = g.translate[1] - g.scale[1] / 2, g.translate[1] + g.scale[1] / 2
    assert (low, high) == (1.5, 4.5)  # the planes' centres 2, 3, 4 ± half a plane
    with pytest.raises(ValueError, match="cannot collapse"):
        output_geometry((1.0, 1.0, 1.0), collapse={2: 3})  # Y
    with pytest.raises(ValueError, match="cannot collapse"):
        output_geometry((1.0, 1.0, 1.0, 1.0), drop_axes=(1,), collapse={1: 3})
