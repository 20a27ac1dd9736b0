"""`napari-cvdm evaluate`: JSON metrics, and one-line errors (exit 2) for bad inputs."""

import json

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from napari_cvdm import metrics
from napari_cvdm.cli import main
from napari_cvdm.io import write_tiff


@pytest.fixture
def sr_files(tmp_path):
    rng = np.random.default_rng(0)
    target = gaussian_filter(rng.random((64, 64)), 2.0).astype(np.float32)  # band-limited
    noise = (0.002 * rng.standard_normal(target.shape)).astype(np.float32)
    pred = target + noise
    std = np.full(target.shape, 0.05, np.float32)
    paths = {
        "pred": write_tiff(tmp_path / "pred.tif", pred, 0.0313),
        "target": write_tiff(tmp_path / "target.tif", target, 0.0313),
        "std": write_tiff(tmp_path / "std.tif", std, 0.0313),
    }
    return paths, pred, target


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_evaluate_sr_prints_metrics_json(capsys, sr_files):
    paths, pred, target = sr_files
    code, out, _ = _run(capsys, ["evaluate", str(paths["pred"]), str(paths["target"])])
    assert code == 0
    report = json.loads(out)
    expected = metrics.sr_metrics(pred, target)
    assert report["task"] == "sr" and report["pixel_size_um"] == pytest.approx(0.0313)
    for key, value in expected.items():
        assert report["metrics"][key] == pytest.approx(value, rel=1e-9)
    assert report["resolution"]["unit"] == "um"
    assert report["resolution"]["decorrelation_target"] > 0
    assert "calibration" not in report


def test_evaluate_with_std_reports_calibration(capsys, sr_files):
    paths, _, _ = sr_files
    argv = ["evaluate", str(paths["pred"]), str(paths["target"]), "--std", str(paths["std"])]
    code, out, _ = _run(capsys, [*argv, "--samples", "16", "--pixel-size", "0.05"])
    assert code == 0
    report = json.loads(out)
    assert report["pixel_size_um"] == 0.05
    calibration = report["calibration"]
    assert calibration["n_samples"] == 16 and calibration["n_pixels"] == 64 * 64
    assert 0 <= calibration["coverage_1sigma"] <= calibration["coverage_2sigma"] <= 1
    assert calibration["spearman_rho"] is None  # constant std: undefined, JSON null


def test_evaluate_qpi(capsys, tmp_path):
    rng = np.random.default_rng(1)
    phase = (rng.random((64, 64)) * 3).astype(np.float32)
    pred = phase + 0.5 + (0.02 * rng.standard_normal(phase.shape)).astype(np.float32)
    write_tiff(tmp_path / "p.tif", pred, 0.21)
    write_tiff(tmp_path / "t.tif", phase, 0.21)
    code, out, _ = _run(
        capsys, ["evaluate", str(tmp_path / "p.tif"), str(tmp_path / "t.tif"), "--task", "qpi"]
    )
    assert code == 0
    report = json.loads(out)["metrics"]
    assert report["rmse_rad"] == pytest.approx(0.02, rel=0.1)  # the 0.5 rad piston is removed
    assert report["data_range_rad"] == 3.5 and report["border_px"] == 16


def test_identical_images_give_null_psnr(capsys, sr_files):
    paths, _, _ = sr_files
    code, out, _ = _run(capsys, ["evaluate", str(paths["target"]), str(paths["target"])])
    assert code == 0
    assert json.loads(out)["metrics"]["psnr"] is None  # infinite PSNR is not valid JSON


@pytest.mark.parametrize(
    "case, message",
    [("missing", "does not exist"), ("shape", "different grids"), ("stack", "2-D image")],
)
def test_bad_inputs_exit_2_with_one_line(capsys, tmp_path, sr_files, case, message):
    paths, _, _ = sr_files
    other = str(paths["target"])
    if case == "missing":
        pred = str(tmp_path / "missing.tif")
    elif case == "shape":
        pred = str(write_tiff(tmp_path / "small.tif", np.zeros((32, 32), np.float32), 0.1))
    else:
        pred = str(write_tiff(tmp_path / "stack.tif", np.zeros((3, 64, 64), np.float32), 0.1))
    code, out, err = _run(capsys, ["evaluate", pred, other])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert err.startswith("napari-cvdm evaluate: error:")
