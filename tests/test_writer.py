"""The napari writer: float32 TIFF with pixel size and CVDM provenance, readable with tifffile."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from numpy.testing import assert_allclose

from napari_cvdm._writer import layer_axes, layer_pixel_size_um, write_tiff
from napari_cvdm.io import read_image


def _meta(**overrides):
    meta = {
        "name": "cells_cvdm",
        "scale": (0.05, 0.05),
        "translate": (-0.025, -0.025),
        "units": ("micrometer", "micrometer"),
        "axis_labels": ("y", "x"),
        "metadata": {
            "cvdm": {"mode": "sr", "steps": 2, "samples_done": 2, "seed": 7, "sr_factor": 2},
            "source_metadata": {"na": np.float64(1.49), "big": np.zeros((100, 100))},
        },
    }
    meta.update(overrides)
    return meta


def test_round_trip_keeps_float32_values_pixel_size_and_provenance(tmp_path):
    data = np.random.default_rng(0).normal(size=(12, 16)).astype(np.float64) * 1e3
    path = tmp_path / "out.tif"
    written = write_tiff(str(path), data, _meta())
    assert written == [str(path)]

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.dtype == np.float32
        assert_allclose(tif.asarray(), data.astype(np.float32))  # never rescaled or clipped
        x_res = page.tags["XResolution"].value
        assert x_res[1] / x_res[0] == pytest.approx(0.05, rel=1e-6)  # µm per pixel
        info = json.loads(tif.imagej_metadata["Info"])
    provenance = next(iter(info.values()))
    assert provenance["cvdm"]["steps"] == 2 and provenance["cvdm"]["sr_factor"] == 2
    assert provenance["source_metadata"]["na"] == 1.49
    assert provenance["source_metadata"]["big"] == "<array (100, 100)>"
    assert provenance["layer"]["translate"] == [-0.025, -0.025]

    array, meta = read_image(path)
    assert meta.pixel_size_um == pytest.approx((0.05, 0.05), rel=1e-6)
    assert meta.extra["provenance"]["cvdm"]["seed"] == 7


def test_nanometre_units_are_converted(tmp_path):
    path = tmp_path / "nm.tif"
    write_tiff(str(path), np.ones((4, 4)), _meta(scale=(62.6, 62.6), units=("nm", "nm")))
    _, meta = read_image(path)
    assert meta.pixel_size_um == pytest.approx((0.0626, 0.0626), rel=1e-6)


def test_pixel_units_write_no_pixel_size(tmp_path):
    path = tmp_path / "px.tif"
    write_tiff(str(path), np.ones((4, 4), np.uint16), _meta(scale=(1, 1), units=("pixel", "pixel")))
    array, meta = read_image(path)
    assert array.dtype == np.float32
    assert meta.pixel_size_um is None


def test_time_stack_axes_and_gamma_stack(tmp_path):
    meta = _meta(
        scale=(2.0, 0.05, 0.05),
        translate=(0, 0, 0),
        units=("second", "micrometer", "micrometer"),
        axis_labels=("t", "y", "x"),
    )
    assert layer_axes(meta, 3) == "TYX"
    assert layer_pixel_size_um(meta, "TYX") == pytest.approx((0.05, 0.05))
    path = tmp_path / "t.tif"
    write_tiff(str(path), np.zeros((3, 4, 5)), meta)
    with tifffile.TiffFile(path) as tif:
        assert tif.series[0].shape == (3, 4, 5)
        assert tif.series[0].axes == "TYX"
    # a gamma stack's t* axis has no ImageJ letter: it is stored as Z
    assert layer_axes({"axis_labels": ("t*", "y", "x")}, 3) == "ZYX"
    # an order ImageJ cannot store falls back to the default
    assert layer_axes({"axis_labels": ("z", "t", "y", "x")}, 4) == "TZYX"


def test_multiscale_writes_full_resolution(tmp_path):
    path = tmp_path / "ms.tif"
    levels = [np.arange(64, dtype=np.float32).reshape(8, 8), np.zeros((4, 4), np.float32)]
    write_tiff(str(path), levels, _meta())
    assert tifffile.imread(path).shape == (8, 8)
