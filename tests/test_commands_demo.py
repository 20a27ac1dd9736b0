"""Tests for `napari-cvdm demo` (tiny settings; untrained model unless one is bundled)."""

import numpy as np

from napari_cvdm.cli import main
from napari_cvdm.engine import registry
from napari_cvdm.io import read_image


def test_demo_writes_tiffs_and_a_figure_and_warns_loudly(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_bundled_files", lambda: [])  # no trained model: untrained path
    out = tmp_path / "demo"
    code = main(
        [
            "demo",
            "--output-dir",
            str(out),
            "--samples",
            "2",
            "--steps",
            "2",
            "--size",
            "32",
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "sr_figure.png",
        "sr_ground_truth.tif",
        "sr_input.tif",
        "sr_mean.tif",
        "sr_schedule.tif",
        "sr_std.tif",
    ]
    assert (out / "sr_figure.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    wf, _ = read_image(out / "sr_input.tif")
    mean, meta = read_image(out / "sr_mean.tif")
    truth, _ = read_image(out / "sr_ground_truth.tif")
    assert wf.shape == (32, 32) and mean.shape == truth.shape == (64, 64)
    assert np.isfinite(mean).all()
    assert (
        meta.pixel_size_um[-1] == np.float32(0.0313) or abs(meta.pixel_size_um[-1] - 0.0313) < 1e-6
    )
    assert meta.extra["provenance"]["model_untrained"] is True
    captured = capsys.readouterr()
    assert "UNTRAINED" in captured.err and "MEANINGLESS" in captured.err
    assert "no trained QPI model available" in captured.err
    assert "NOTE: these results come from an UNTRAINED model" in captured.err
    assert str(out.resolve()) in captured.out and "sr_figure.png" in captured.out


def test_demo_uses_the_bundled_trained_models(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    bundled = {info.name for info in registry.list_models() if info.source == "bundled"}
    assert {"sr-fluorescence-2x", "qpi-2plane"} <= bundled
    out = tmp_path / "demo"
    args = ["demo", "--output-dir", str(out), "--samples", "2", "--steps", "2", "--size", "32"]
    assert main([*args, "--device", "cpu"]) == 0
    names = {p.name for p in out.iterdir()}
    assert {"sr_mean.tif", "sr_std.tif", "sr_schedule.tif", "sr_figure.png"} <= names
    assert any(name.startswith("qpi_") for name in names)
    _, meta = read_image(out / "sr_mean.tif")
    assert meta.extra["provenance"]["model_untrained"] is False
    assert "UNTRAINED" not in capsys.readouterr().err
