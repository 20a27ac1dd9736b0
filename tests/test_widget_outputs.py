"""Output layers of a reconstruction on a napari ViewerModel (no Qt window needed)."""

from __future__ import annotations

import numpy as np
import pytest
from napari.components import ViewerModel
from numpy.testing import assert_allclose

from napari_cvdm._widgets.outputs import InputGeometry, OutputLayers, output_names


@pytest.fixture
def setup():
    viewer = ViewerModel()
    viewer.add_image(np.zeros((2, 16, 16), np.float32), name="img", scale=(3.0, 0.1, 0.1))
    outputs = OutputLayers(
        viewer=viewer,
        names=output_names("img", ["img"], keep_previous=False),
        source=InputGeometry((3.0, 0.1, 0.1), (0.0, 0.0, 0.0), ("s", "µm", "µm"), ("t", "y", "x")),
        drop_axes=(),
        input_yx=(16, 16),
        source_metadata={"note": "input"},
    )
    return viewer, outputs


def _frames(value):
    return np.full((2, 32, 32), value, np.float32)


def test_progressive_refinement_updates_in_place(setup):
    viewer, outputs = setup
    assert not outputs.created
    outputs.show_running(_frames(1.0), _frames(0.5), {"status": "running", "samples_done": 1})
    mean = viewer.layers["img_cvdm"]
    assert outputs.created and len(viewer.layers) == 3
    limits = tuple(mean.contrast_limits)
    outputs.show_running(_frames(2.0), _frames(0.25), {"status": "running", "samples_done": 2})
    assert viewer.layers["img_cvdm"] is mean and len(viewer.layers) == 3
    assert float(mean.data.max()) == 2.0
    assert tuple(mean.contrast_limits) == limits  # contrast set only when created
    assert mean.metadata["cvdm"]["samples_done"] == 2
    assert mean.metadata["source_metadata"] == {"note": "input"}
    assert_allclose(mean.scale, (3.0, 0.05, 0.05))
    assert_allclose(mean.translate, (0.0, -0.025, -0.025))


def test_finish_adds_schedule_and_gamma_and_marks(setup):
    viewer, outputs = setup
    gamma = np.linspace(0, 1, 5 * 2 * 32 * 32, dtype=np.float32).reshape(5, 2, 32, 32)
    outputs.finish(
        _frames(1.0), _frames(0.1), _frames(3.0), gamma, np.array([0.1, 0.3, 0.5, 0.7, 0.9]), {}
    )
    names = [layer.name for layer in viewer.layers]
    assert names == ["img", "img_cvdm", "img_cvdm_std", "img_cvdm_schedule", "img_cvdm_gamma"]
    g = viewer.layers["img_cvdm_gamma"]
    assert g.data.shape == (5, 2, 32, 32) and g.axis_labels[0] == "t*"
    assert_allclose(g.scale, (1.0, 3.0, 0.05, 0.05))
    assert g.metadata["cvdm"]["t_star"] == pytest.approx([0.1, 0.3, 0.5, 0.7, 0.9])
    assert not viewer.layers["img_cvdm_schedule"].visible
    outputs.mark(status="cancelled")
    assert all(viewer.layers[n].metadata["cvdm"]["status"] == "cancelled" for n in names[1:])


def test_a_deleted_layer_is_added_again(setup):
    viewer, outputs = setup
    outputs.show_running(_frames(1.0), _frames(0.5), {})
    viewer.layers.remove("img_cvdm")
    outputs.show_running(_frames(2.0), _frames(0.5), {})
    assert float(viewer.layers["img_cvdm"].data.max()) == 2.0


def test_qpi_time_lapse_keeps_t_on_the_viewers_t_axis():
    """Issue 13: the (T, Y, X) phase of a (T, Z, Y, X) stack put T on napari's Z slider (napari
    aligns layers on their last axes); it keeps a one-plane Z axis spanning the stack instead."""
    from napari_cvdm._widgets.outputs import layer_geometry

    viewer = ViewerModel()
    source = viewer.add_image(
        np.zeros((2, 3, 16, 16), np.float32),
        name="tz",
        scale=(5.0, 1.0, 0.21, 0.21),
        translate=(10.0, 2.0, 0.0, 0.0),
        units=("s", "µm", "µm", "µm"),
        axis_labels=("t", "z", "y", "x"),
    )
    outputs = OutputLayers(
        viewer=viewer,
        names=output_names("tz", ["tz"], keep_previous=False),
        source=layer_geometry(source),
        drop_axes=(1,),
        input_yx=(16, 16),
    )
    phase = np.stack([np.full((16, 16), 1.0), np.full((16, 16), 2.0)]).astype(np.float32)
    outputs.show_running(phase, phase * 0, {"status": "running"})
    outputs.show_running(phase * 3, phase * 0, {"status": "running"})  # refined in place
    gamma = np.zeros((5, 2, 16, 16), np.float32)
    outputs.finish(phase, phase * 0, phase, gamma, np.linspace(0.1, 0.9, 5), {})
    mean = viewer.layers["tz_cvdm"]
    assert mean.data.shape == (2, 1, 16, 16)
    assert mean.axis_labels == ("t", "z", "y", "x")
    assert_allclose(mean.scale, (5.0, 3.0, 0.21, 0.21))
    assert_allclose(mean.translate, (10.0, 3.0, 0.0, 0.0))
    for name in ("tz_cvdm_std", "tz_cvdm_schedule"):
        assert viewer.layers[name].data.shape == (2, 1, 16, 16)
    assert viewer.layers["tz_cvdm_gamma"].data.shape == (5, 2, 1, 16, 16)
    assert viewer.layers["tz_cvdm_gamma"].axis_labels[:3] == ("t*", "t", "z")
    assert viewer.dims.axis_labels[-4:] == ("t", "z", "y", "x")  # no "t" on the z slider
    # every z plane of the input shows the phase of its own time point
    for t in range(2):
        for z in range(3):
            index = mean.world_to_data((10.0 + 5.0 * t, 2.0 + z, 1.0, 1.0))
            assert round(index[0]) == t and round(index[1]) == 0
    assert_allclose(viewer.layers.extent.world[:, -3], (2.0, 4.0))  # z: still the stack's range
