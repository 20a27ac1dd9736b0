"""Sample data: synthetic SR pair, synthetic through-focus stack, the real BioSR sample."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

from napari_cvdm import _sample_data, datasets

MT_SOURCE = Path(__file__).parent / "data" / "rdlsim-mt" / "MT.mrc"


def _by_name(layers):
    return {kwargs["name"]: (array, kwargs) for array, kwargs in layers}


def test_synthetic_sr_widefield_and_ground_truth_geometry():
    layers = _by_name(_sample_data.synthetic_sr())
    wf, wf_kw = layers["sr_widefield"]
    gt, gt_kw = layers["sr_ground_truth"]
    assert wf.shape == (128, 128) and gt.shape == (256, 256)
    assert wf.dtype == np.float32 and gt.dtype == np.float32
    assert np.isfinite(wf).all() and np.isfinite(gt).all()
    assert_allclose(wf_kw["scale"], (0.0626, 0.0626))
    assert wf_kw["units"] == ("µm", "µm")
    # the GT sits on the 2x grid: scale s/2, translate -s/4
    assert_allclose(gt_kw["scale"], (0.0313, 0.0313))
    assert_allclose(gt_kw["translate"], (-0.01565, -0.01565))
    assert gt_kw["visible"] is False
    meta = wf_kw["metadata"]
    assert meta["pixel_size_um"] == pytest.approx(0.0626)
    assert meta["na"] == pytest.approx(1.49) and meta["wavelength_um"] == pytest.approx(0.525)
    assert meta["offset_adu"] == pytest.approx(100.0)
    # camera ADU with offset: above the offset, with real structure
    assert wf.min() >= 0 and wf.max() > meta["offset_adu"] + 100
    assert gt.std() > 0


def test_synthetic_sr_is_seeded():
    a = _by_name(_sample_data.synthetic_sr())["sr_widefield"][0]
    b = _by_name(_sample_data.synthetic_sr())["sr_widefield"][0]
    c = _by_name(_sample_data.synthetic_sr(seed=1))["sr_widefield"][0]
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_synthetic_qpi_stack_and_phase():
    layers = _by_name(_sample_data.synthetic_qpi())
    stack, kw = layers["qpi_through_focus"]
    phase, phase_kw = layers["qpi_phase_ground_truth"]
    assert stack.shape == (3, 128, 128) and phase.shape == (128, 128)
    assert stack.dtype == np.float32 and phase.dtype == np.float32
    meta = kw["metadata"]
    assert meta["dz_um"] == pytest.approx(1.0)
    assert meta["wavelength_um"] == pytest.approx(0.521)
    assert "na" in meta
    assert meta["z_offsets_um"] == [-1.0, 0.0, 1.0]
    assert_allclose(kw["scale"], (1.0, 0.21, 0.21))
    assert_allclose(kw["translate"], (-1.0, 0.0, 0.0))  # planes sit at z = -dz, 0, +dz
    assert kw["units"] == ("µm", "µm", "µm") and kw["axis_labels"] == ("z", "y", "x")
    assert_allclose(phase_kw["scale"], (0.21, 0.21))
    # intensities normalised to a background of 1; the defocused planes show phase contrast
    assert np.median(stack) == pytest.approx(1.0, abs=0.1)
    assert not np.allclose(stack[0], stack[2])
    assert 0.5 < float(np.ptp(phase)) < 4.0  # rad
    again = _by_name(_sample_data.synthetic_qpi())["qpi_through_focus"][0]
    assert np.array_equal(stack, again)


@pytest.mark.skipif(not MT_SOURCE.exists(), reason="local copy of MT.mrc not present")
def test_biosr_sample_from_prefilled_cache_needs_no_network(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path))
    # a closed loopback port: any download attempt would fail
    monkeypatch.setenv(datasets.DATA_URL_ENV, "http://127.0.0.1:9/")
    shutil.copy(MT_SOURCE, tmp_path / "MT.mrc")
    ((array, kwargs),) = _sample_data.biosr_microtubules()
    assert array.shape == (256, 256) and array.dtype == np.float32
    assert_allclose(kwargs["scale"], (0.0626, 0.0626))
    assert kwargs["units"] == ("µm", "µm")
    assert kwargs["metadata"]["frames"] == 9
    assert kwargs["metadata"]["sha256"].startswith("sha256:8436eb44")


def test_biosr_sample_offline_gives_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets, "bundled_copy", lambda name: None)  # no bundled copy either
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path))
    monkeypatch.setenv(datasets.DATA_URL_ENV, "http://127.0.0.1:9/")
    monkeypatch.setattr("pooch.core.time", type("T", (), {"sleep": staticmethod(lambda s: None)}))
    with pytest.raises(datasets.DownloadError, match="place the file there by hand") as info:
        _sample_data.biosr_microtubules()
    assert str(tmp_path) in str(info.value)
