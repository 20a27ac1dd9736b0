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
