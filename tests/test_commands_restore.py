"""`napari-cvdm restore` with a tiny untrained prior: outputs, provenance, refusals in one line."""

from __future__ import annotations

import numpy as np
import pytest

from napari_cvdm.cli import main
from napari_cvdm.io import read_image, write_tiff


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_prior

    root = tmp_path_factory.mktemp("restore")
    loaded = make_untrained_prior("tiny", seed=0)
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("architecture",)}
    prior = save_model(root / "tiny-prior.safetensors", loaded.model, meta)
    rng = np.random.default_rng(0)
    yy, xx = np.indices((32, 32))
    signal = 20 + 300 * np.exp(-((yy - 12) ** 2 + (xx - 20) ** 2) / 15.0)
    image = (rng.poisson(signal) * 2.0 + 100).astype(np.float32)
    write_tiff(root / "cell.tif", image, 0.0626, {"what": "test"})
    write_tiff(root / "nopix.tif", image, None, {})
    write_tiff(root / "stack.tif", np.stack([image, image, image]), 0.0626, {})
    psf = np.zeros((9, 9), np.float32)
    psf[3:6, 3:6] = [[1, 2, 1], [2, 4, 2], [1, 2, 1]]
    write_tiff(root / "psf.tif", psf, 0.0626, {})
    write_tiff(root / "psf_zero.tif", np.zeros((9, 9), np.float32), 0.0626, {})
    write_tiff(root / "psf_nan.tif", np.full((9, 9), np.nan, np.float32), 0.0626, {})
    write_tiff(root / "psf_3d.tif", np.ones((3, 9, 9), np.float32), 0.0626, {})
    big = np.exp(-((np.indices((99, 99)) - 49.0) ** 2).sum(0) / (2 * 20.0**2)).astype(np.float32)
    write_tiff(root / "psf_big.tif", big, 0.0626, {})
    return root, prior


FAST = ["--budget", "fast", "--threads", "1"]


def _run(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_restore_writes_restored_and_residual(capsys, tmp_path, files):
    root, prior = files
    argv = [
        "restore",
        str(root / "cell.tif"),
        "--na",
        "1.49",
        "--wavelength",
        "0.525",
        "--offset",
        "100",
        "--output-dir",
        str(tmp_path),
        "--prior",
        str(prior),
        *FAST,
    ]
    code, out, err = _run(capsys, argv)
    assert code == 0, err
    restored, meta = read_image(tmp_path / "cell_restored.tif")
    residual, rmeta = read_image(tmp_path / "cell_residual.tif")
    assert restored.shape == (64, 64) and restored.dtype == np.float32
    assert residual.shape == (32, 32)
    assert meta.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert rmeta.pixel_size_um == pytest.approx((0.0626, 0.0626))
    prov = meta.extra["provenance"]
    assert prov["command"] == "restore" and prov["method"] == "vml" and prov["binning"] == 2
    assert prov["output"] == "restored" and prov["psf_source"] == "airy"
    assert not (tmp_path / "cell_variability.tif").exists()
    # no overwrite without --overwrite: one line, exit 2
    code, _, err = _run(capsys, argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "exist" in err
    assert _run(capsys, [*argv, "--overwrite"])[0] == 0


def test_psf_image_seeds_and_variability(capsys, tmp_path, files):
    root, prior = files
    argv = [
        "restore",
        str(root / "cell.tif"),
        "--psf",
        str(root / "psf.tif"),
        "--seeds",
        "2",
        "--noise-sigma",
        "5",
        "--output-dir",
        str(tmp_path),
        "--prior",
        str(prior),
        *FAST,
    ]
    code, _, err = _run(capsys, argv)
    assert code == 0, err
    variability, meta = read_image(tmp_path / "cell_variability.tif")
    assert variability.shape == (64, 64) and variability.max() > 0
    assert meta.extra["provenance"]["psf_source"] == "image"


@pytest.mark.parametrize(
    "args, match",
    [
        (["{root}/cell.tif", "--psf", "{root}/psf_zero.tif"], "zero"),
        (["{root}/cell.tif", "--psf", "{root}/psf_nan.tif"], "NaN"),
        (["{root}/cell.tif", "--psf", "{root}/psf_3d.tif"], "3-D"),
        (["{root}/cell.tif", "--psf", "{root}/psf_big.tif"], "larger than the image"),
        (["{root}/cell.tif", "--psf", "{root}/psf.tif", "--psf-pixel-size", "1.0"], "resampled"),
        (["{root}/cell.tif"], "PSF is unknown"),
        (
            ["{root}/cell.tif", "--na", "1.4", "--wavelength", "0.5", "--pixel-size", "0.5"],
            "outside what the prior serves",
        ),
        (["{root}/nopix.tif", "--na", "1.4", "--wavelength", "0.5"], "pixel size is unknown"),
        (["{root}/stack.tif", "--na", "1.4", "--wavelength", "0.5"], "2-D"),
        (["{root}/cell.tif", "--na", "1.4", "--wavelength", "-1"], "positive"),
        (["{root}/cell.tif", "--na", "1.4", "--wavelength", "0.5", "--seeds", "0"], "seeds"),
    ],
)
def test_bad_inputs_one_line_exit_2(capsys, tmp_path, files, args, match):
    root, prior = files
    out_dir = tmp_path / "out"
    argv = [
        "restore",
        *[a.format(root=root) for a in args],
        "--output-dir",
        str(out_dir),
        "--prior",
        str(prior),
        *FAST,
    ]
    code, _, err = _run(capsys, argv)
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1 and match in err and "Traceback" not in err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_a_non_prior_model_is_refused(capsys, tmp_path, files):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_model

    root, _ = files
    sr = make_untrained_model("sr", "tiny")
    meta = {k: v for k, v in sr.metadata.items() if k != "architecture"}
    path = save_model(tmp_path / "sr.safetensors", sr.model, meta)
    code, _, err = _run(
        capsys,
        [
            "restore",
            str(root / "cell.tif"),
            "--na",
            "1.4",
            "--wavelength",
            "0.5",
            "--output-dir",
            str(tmp_path / "o"),
            "--prior",
            str(path),
        ],
    )
    assert code == 2 and "prior" in err
