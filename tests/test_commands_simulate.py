"""`napari-cvdm simulate`: seeded pairs with pixel sizes and parameters, one-line errors."""

import numpy as np
import pytest

from napari_cvdm.cli import main
from napari_cvdm.io import find_image_pairs, read_image


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_sr_writes_pairs_with_pixel_sizes_and_parameters(capsys, tmp_path):
    argv = ["simulate", "sr", "--n", "2", "--seed", "3", "--output-dir", str(tmp_path / "sr")]
    argv += ["--structure", "ccps", "--size", "32", "--photons", "500", "--na", "1.4"]
    code, out, _ = _run(capsys, argv)
    assert code == 0 and "wrote 2 sr pairs" in out
    pairs = find_image_pairs(tmp_path / "sr")
    assert [p.name for p in pairs] == ["0000", "0001"]
    x, x_meta = read_image(pairs[1].input_path)
    y, y_meta = read_image(pairs[1].target_path)
    assert x.shape == (32, 32) and y.shape == (64, 64) and x.dtype == y.dtype == np.float32
    assert x_meta.pixel_size_um == pytest.approx((0.0626, 0.0626))
    assert y_meta.pixel_size_um == pytest.approx((0.0313, 0.0313))
    prov = x_meta.extra["provenance"]
    assert prov["role"] == "input" and prov["seed"] == 3 and prov["index"] == 1
    assert prov["simulation"]["structure"] == "ccps" and prov["simulation"]["photons"] == 500
    assert prov["simulation"]["na"] == 1.4 and prov["overrides"]["size"] == 32
    assert y_meta.extra["provenance"]["role"] == "target"
    assert x.min() >= 0 and np.all(np.isfinite(y))


def test_simulate_is_seeded_per_index(capsys, tmp_path):
    common = ["--size", "32", "--structure", "er", "--photons", "200"]
    _run(capsys, ["simulate", "sr", "--n", "2", "--output-dir", str(tmp_path / "a"), *common])
    _run(capsys, ["simulate", "sr", "--n", "1", "--output-dir", str(tmp_path / "b"), *common])
    _run(capsys, ["simulate", "sr", "--n", "1", "--seed", "1", "--output-dir",
                  str(tmp_path / "c"), *common])  # fmt: skip
    a, _ = read_image(tmp_path / "a" / "0000_input.tif")
    b, _ = read_image(tmp_path / "b" / "0000_input.tif")
    c, _ = read_image(tmp_path / "c" / "0000_input.tif")
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_simulate_qpi_stack_and_phase(capsys, tmp_path):
    argv = ["simulate", "qpi", "--n", "1", "--output-dir", str(tmp_path), "--size", "48"]
    argv += ["--n-planes", "3", "--dz", "0.5", "--wavelength", "0.6", "--structure", "fractal"]
    argv += ["--set", "phi_max=2.0", "--ome"]
    code, _, _ = _run(capsys, argv)
    assert code == 0
    stack, meta = read_image(tmp_path / "0000_input.ome.tif")
    phase, phase_meta = read_image(tmp_path / "0000_target.ome.tif")
    assert stack.shape == (3, 48, 48) and phase.shape == (48, 48)
    assert meta.axes == "ZYX" and meta.pixel_size_um == pytest.approx((0.5, 0.21, 0.21))
    assert phase_meta.pixel_size_um == pytest.approx((0.21, 0.21))
    sim = meta.extra["provenance"]["simulation"]
    assert sim["z_offsets_um"] == [-0.5, 0.0, 0.5] and sim["wavelength_um"] == 0.6
    assert sim["D"] == pytest.approx(0.6 * 0.5 / 0.21**2)
    assert float(phase.max() - phase.min()) == pytest.approx(2.0, rel=1e-5)
    assert abs(float(np.median(stack)) - 1.0) < 0.2  # background-normalised intensities


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "bogus=1"], "Unknown SR simulator option"),
        (["--structure", "mitochondria"], "Unknown structure"),
        (["--n-planes", "3"], "qpi only"),
        (["--n", "0"], "--n must be"),
        (["--set", "novalue"], "KEY=VALUE"),
    ],
)
def test_bad_options_exit_2_with_one_line_and_no_output(capsys, tmp_path, extra, message):
    out_dir = tmp_path / "out"
    code, out, err = _run(capsys, ["simulate", "sr", "--output-dir", str(out_dir), *extra])
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and message in err
    assert not out_dir.exists()


def test_existing_files_are_not_overwritten_without_flag(capsys, tmp_path):
    argv = ["simulate", "qpi", "--n", "1", "--output-dir", str(tmp_path), "--size", "32"]
    assert _run(capsys, argv)[0] == 0
    before = (tmp_path / "0000_input.tif").read_bytes()
    code, _, err = _run(capsys, [*argv, "--seed", "5"])
    assert code == 2 and "--overwrite" in err
    assert (tmp_path / "0000_input.tif").read_bytes() == before
    assert _run(capsys, [*argv, "--seed", "5", "--overwrite"])[0] == 0
    assert (tmp_path / "0000_input.tif").read_bytes() != before
