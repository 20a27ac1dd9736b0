"""The Restore (zero-shot) widget in a real napari viewer (Xvfb via pytest-xvfb), CPU, tiny prior.

The prior is a tiny random-weight EDM denoiser saved into a temporary user-models folder; the
tests check the form, the layers (names, grids, metadata), progress, cancel and errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm import datasets
from napari_cvdm._widgets import common
from napari_cvdm._widgets.restore import LOAD_FROM_FILE, NO_PSF, RestoreWidget

pytestmark = pytest.mark.gui
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def prior_file(tmp_path_factory):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_prior

    folder = tmp_path_factory.mktemp("priors")
    loaded = make_untrained_prior("tiny", seed=0)
    meta = {k: v for k, v in loaded.metadata.items() if k != "architecture"}
    return save_model(folder / "tiny-prior.safetensors", loaded.model, meta)


@pytest.fixture
def viewer_widget(make_napari_viewer, tmp_path, monkeypatch, prior_file):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path))
    viewer = make_napari_viewer()
    _dock, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Restore (zero-shot)")
    assert isinstance(widget, RestoreWidget)
    widget.prior.reset_choices()
    widget.prior.value = LOAD_FROM_FILE
    widget.prior_file.value = prior_file
    return viewer, widget


def _add_image(viewer, name="cell", shape=(32, 32), scale=0.0626):
    rng = np.random.default_rng(0)
    yy, xx = np.indices(shape)
    signal = 20 + 300 * np.exp(-((yy - 12) ** 2 + (xx - 20) ** 2) / 15.0)
    data = (rng.poisson(signal) * 2.0 + 100).astype(np.float32)
    return viewer.add_image(data, name=name, scale=(scale, scale), units=("µm", "µm"))


def _wait(qtbot, widget):
    qtbot.waitUntil(lambda: widget.status.idle, timeout=TIMEOUT_MS)


def test_form_fills_from_the_layer_and_shows_the_noise_estimate(viewer_widget):
    viewer, widget = viewer_widget
    assert widget.run_button.widget.enabled is False  # no image yet
    _add_image(viewer)
    widget.image.reset_choices()
    widget.image.value = viewer.layers["cell"]
    assert widget.pixel_size_um.value == pytest.approx(0.0626)
    assert "σ ≈" in widget.noise_info.value
    assert widget.psf.value is None and widget.na.enabled
    assert widget.problem() is None and widget.run_button.widget.enabled


def test_end_to_end_layers_grids_and_metadata(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    layer = _add_image(viewer)
    widget.image.value = layer
    widget.offset_adu.value = 100.0
    widget.seeds.value = 2
    with common.recording_notifications() as seen:
        widget.run()
        _wait(qtbot, widget)
    assert widget.last_error is None, widget.last_error
    restored = viewer.layers["cell_restored"]
    residual = viewer.layers["cell_residual"]
    variability = viewer.layers["cell_variability"]
    assert restored.data.shape == (64, 64) and residual.data.shape == (32, 32)
    assert np.allclose(restored.scale, (0.0313, 0.0313))
    assert np.allclose(restored.translate, (-0.01565, -0.01565))  # same field of view
    assert np.allclose(residual.scale, (0.0626, 0.0626))
    assert variability.data.max() > 0
    meta = restored.metadata["cvdm_restore"]
    assert meta["method"] == "vml" and meta["binning"] == 2 and meta["output"] == "restored"
    assert [s for s, _ in seen] == ["info"]
    # a rerun replaces the layers in place
    widget.run()
    _wait(qtbot, widget)
    assert [n for n in (x.name for x in viewer.layers) if n.startswith("cell_")] == [
        "cell_restored",
        "cell_residual",
        "cell_variability",
    ]


def test_progress_per_level_and_cancel_adds_no_layers(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.image.value = _add_image(viewer)
    widget.budget.value = "quality"
    before = [x.name for x in viewer.layers]
    widget.run()
    qtbot.waitUntil(lambda: widget.status.step >= 1, timeout=TIMEOUT_MS)
    assert widget.status.message.startswith("level 1/")
    widget.cancel()
    assert widget.run_button.widget.text == "Cancelling…"
    _wait(qtbot, widget)
    assert widget.aborted and widget.worker is None
    assert [x.name for x in viewer.layers] == before
    assert widget.run_button.widget.text == "Run"


def test_a_bad_psf_layer_gives_one_error_and_no_layers(viewer_widget, qtbot):
    viewer, widget = viewer_widget
    widget.image.value = _add_image(viewer)
    viewer.add_image(np.zeros((9, 9), np.float32), name="psf")
    widget.psf.reset_choices()
    widget.psf.value = viewer.layers["psf"]
    assert not widget.na.enabled and widget.psf_pixel_um.enabled
    before = [x.name for x in viewer.layers]
    with common.recording_notifications() as seen:
        widget.run()
        _wait(qtbot, widget)
    assert len(seen) == 1 and seen[0][0] == "error" and "zero" in seen[0][1]
    assert [x.name for x in viewer.layers] == before


def test_psf_layer_choice_lists_images_and_none(viewer_widget):
    viewer, widget = viewer_widget
    _add_image(viewer)
    widget.psf.reset_choices()
    assert widget.psf.choices[0] is None and viewer.layers["cell"] in widget.psf.choices
    assert widget.psf.native.itemText(0) == NO_PSF
