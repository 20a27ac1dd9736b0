"""`napari-cvdm baseline`: SR and phase baselines on files, physics from provenance, errors."""

import numpy as np
import pytest

from napari_cvdm import metrics
from napari_cvdm.cli import main
from napari_cvdm.io import read_image, write_tiff


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim")
    assert main(["simulate", "sr", "--n", "1", "--output-dir", str(root / "sr"), "--size", "32",
                 "--structure", "microtubules", "--photons", "2000"]) == 0  # fmt: skip
    assert main(["simulate", "qpi", "--n", "1", "--output-dir", str(root / "qpi"), "--size", "48",
                 "--structure", "cells", "--noise", "none"]) == 0  # fmt: skip
    return root


@pytest.mark.parametrize("method", ["bicubic", "wiener", "rl"])
def test_sr_baselines_use_simulation_physics(capsys, tmp_path, simulated, method):
    source = simulated / "sr" / "0000_input.tif"
    code, out, _ = _run(capsys, ["baseline", method, str(source), "--output-dir", str(tmp_path)])
    assert code == 0 and "0000_input_" + method in out
    result, meta = read_image(tmp_path / f"0000_input_{method}.tif")
    target, _ = read_image(simulated / "sr" / "0000_target.tif")
    assert result.shape == (64, 64) and result.dtype == np.float32
    assert meta.pixel_size_um == pytest.approx((0.0313, 0.0313))
    prov = meta.extra["provenance"]
    assert prov["method"] == method and prov["physics"]["na"] > 1.2
    assert metrics.sr_metrics(result, target)["psnr"] > 15


def test_deconvolution_beats_bicubic_on_simulated_data(capsys, tmp_path, simulated):
    source = str(simulated / "sr" / "0000_input.tif")
    target, _ = read_image(simulated / "sr" / "0000_target.tif")
    scores = {}
    for method in ("bicubic", "rl"):
        assert _run(capsys, ["baseline", method, source, "--output-dir", str(tmp_path),
                             "--iterations", "30"])[0] == 0  # fmt: skip
        result, _ = read_image(tmp_path / f"0000_input_{method}.tif")
        scores[method] = metrics.sr_metrics(result, target)["psnr"]
    assert scores["rl"] > scores["bicubic"]


@pytest.mark.parametrize("method", ["tie", "us-tie", "ctf"])
def test_phase_baselines_recover_the_simulated_phase(capsys, tmp_path, simulated, method):
    source = simulated / "qpi" / "0000_input.tif"
    argv = ["baseline", method, str(source), "--output-dir", str(tmp_path), "--alpha", "1e-3"]
    assert _run(capsys, argv)[0] == 0
    phase, meta = read_image(tmp_path / f"0000_input_{method}.tif")
    truth, _ = read_image(simulated / "qpi" / "0000_target.tif")
    assert phase.shape == truth.shape and meta.pixel_size_um == pytest.approx((0.21, 0.21))
    corr = np.corrcoef(phase.ravel(), truth.ravel())[0, 1]
    assert corr > 0.5  # positive: the sign convention of simulator and solvers agree


def test_raw_sim_mrc_needs_optics(capsys, tmp_path):
    import mrcfile

    with mrcfile.new(tmp_path / "raw.mrc") as mrc:
        mrc.set_data((np.random.default_rng(0).random((9, 24, 24)) * 500 + 100).astype(np.uint16))
    out_dir = tmp_path / "out"
    code, _, err = _run(capsys, ["baseline", "rl", str(tmp_path / "raw.mrc"),
                                 "--output-dir", str(out_dir)])  # fmt: skip
    assert code == 2 and "--na --wavelength" in err and not out_dir.exists()
    argv = ["baseline", "rl", str(tmp_path / "raw.mrc"), "--output-dir", str(out_dir)]
    assert _run(capsys, [*argv, "--na", "1.49", "--wavelength", "0.525"])[0] == 0
    result, meta = read_image(out_dir / "raw_rl.tif")
    assert result.shape == (48, 48) and meta.pixel_size_um == pytest.approx((0.0313, 0.0313))


def test_bad_inputs_exit_2_one_line_no_partial_outputs(capsys, tmp_path, simulated):
    good = str(simulated / "sr" / "0000_input.tif")
    out_dir = tmp_path / "out"
    stack = write_tiff(tmp_path / "stack.tif", np.ones((3, 16, 16), np.float32), 0.1)
    cases = [
        (["rl", good, str(tmp_path / "missing.tif")], "does not exist"),
        (["wiener", good, str(stack)], "one widefield frame"),
        (["tie", good], "through-focus stack"),
        (["tie", str(stack)], "--wavelength --dz"),
        (["wiener", good, "--k", "-1"], "--k must be"),
        (["rl", good, good], "would both be written"),
    ]
    for argv, message in cases:
        code, out, err = _run(capsys, ["baseline", *argv, "--output-dir", str(out_dir)])
        assert code == 2 and out == "", argv
        assert len(err.strip().splitlines()) == 1 and message in err, (argv, err)
        assert err.startswith("napari-cvdm baseline: error:")
        assert not out_dir.exists()
