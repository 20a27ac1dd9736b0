"""Tests for `napari-cvdm predict` (CLI, tiny untrained model, small TIFFs)."""

import numpy as np
import pytest
import tifffile

from napari_cvdm.cli import main
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.io import read_image, write_tiff

FAST = ["--samples", "2", "--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    loaded = make_untrained_model("sr", "tiny")
    meta = {
        k: loaded.metadata[k]
        for k in ("task", "normalization", "physics", "training", "description")
    }
    meta["name"] = "tiny-sr-test"
    return save_model(tmp_path_factory.mktemp("models") / "tiny.safetensors", loaded.model, meta)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


def _tif(path, shape=(16, 16), seed=0, pixel=0.0626):
    rng = np.random.default_rng(seed)
    data = (100 + rng.poisson(50, size=shape)).astype(np.uint16)
    return write_tiff(path, data, pixel, {})


def _outputs(folder):
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_predict_writes_mean_std_schedule_with_pixel_size(tmp_path, model_path, capsys):
    src = _tif(tmp_path / "cells.tif")
    out = tmp_path / "out"
    code = main(["predict", str(src), "--model", str(model_path), "--output-dir", str(out), *FAST])
    assert code == 0
    assert _outputs(out) == ["cells_mean.tif", "cells_schedule.tif", "cells_std.tif"]
    for name in ("mean", "std", "schedule"):
        array, meta = read_image(out / f"cells_{name}.tif")
        assert array.shape == (32, 32) and array.dtype == np.float32
        assert np.isfinite(array).all()
        assert meta.pixel_size_um == pytest.approx((0.0313, 0.0313), rel=1e-5)
        prov = meta.extra["provenance"]
        assert prov["model"] == "tiny-sr-test" and prov["output"] == name
        assert prov["samples_done"] == 2 and prov["status"] == "complete"
        assert prov["input_name"] == "cells.tif" and len(prov["weights_sha256"]) == 64
    captured = capsys.readouterr()
    assert "cells [" in captured.err and "100%" in captured.err  # progress bar on stderr
    assert str(out / "cells_mean.tif") in captured.out


def test_predict_stack_frame_by_frame_and_pixel_size_option(tmp_path, model_path):
    src = tmp_path / "stack.tif"
    tifffile.imwrite(
        src, (100 + np.random.default_rng(1).poisson(30, (3, 16, 16))).astype(np.uint16)
    )
    out = tmp_path / "out"
    args = [
        "predict",
        str(src),
        "--model",
        str(model_path),
        "--output-dir",
        str(out),
        "--pixel-size",
        "0.0626",
        *FAST,
    ]
    assert main(args) == 0
    mean, meta = read_image(out / "stack_mean.tif")
    assert mean.shape == (3, 32, 32)
    assert meta.pixel_size_um[-1] == pytest.approx(0.0313, rel=1e-5)


def _write_float(path, data):
    tifffile.imwrite(path, np.asarray(data, np.float32))
    return path


def _nan_image(tmp_path):
    data = np.ones((16, 16), np.float32)
    data[2, 2] = np.nan
    return _write_float(tmp_path / "nan.tif", data)


def _inf_image(tmp_path):
    data = np.ones((16, 16), np.float32)
    data[2, 2] = np.inf
    return _write_float(tmp_path / "inf.tif", data)


def _empty_image(tmp_path):
    with pytest.warns(UserWarning):
        return _write_float(tmp_path / "empty.tif", np.zeros((0, 16)))


def _one_d(tmp_path):
    return _write_float(tmp_path / "line.tif", np.arange(32.0))


def _garbage(tmp_path):
    path = tmp_path / "broken.tif"
    path.write_bytes(b"this is not a tiff" * 10)
    return path


@pytest.mark.parametrize(
    "make_bad, match",
    [
        (_one_d, "at least 2 dimensions"),
        (_nan_image, "NaN or Inf"),
        (_inf_image, "NaN or Inf"),
        (_empty_image, "empty"),
        (_garbage, "broken.tif"),
        (lambda tmp_path: tmp_path / "missing.tif", "does not exist"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_no_output(
    tmp_path, model_path, capsys, make_bad, match
):
    good = _tif(tmp_path / "good.tif")
    bad = make_bad(tmp_path)
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(good),
            str(bad),
            "--model",
            str(model_path),
            "--output-dir",
            str(out),
            *FAST,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-cvdm predict: error:")
    assert __import__("re").search(match, err[0])
    assert _outputs(out) == []  # nothing written, not even for the good input


def test_unknown_model_exits_2(tmp_path, capsys):
    good = _tif(tmp_path / "good.tif")
    out = tmp_path / "out"
    code = main(["predict", str(good), "--model", "no-such-model", "--output-dir", str(out), *FAST])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown model 'no-such-model'" in err[0]
    assert _outputs(out) == []


def test_corrupt_model_file_exits_2(tmp_path, capsys):
    good = _tif(tmp_path / "good.tif")
    fake = tmp_path / "fake.safetensors"
    fake.write_bytes(b"\x00" * 64)
    code = main(
        ["predict", str(good), "--model", str(fake), "--output-dir", str(tmp_path / "o"), *FAST]
    )
    assert code == 2
    assert "not a readable safetensors file" in capsys.readouterr().err


def test_unwritable_output_dir_exits_2(tmp_path, model_path, capsys):
    good = _tif(tmp_path / "good.tif")
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code = main(
        [
            "predict",
            str(good),
            "--model",
            str(model_path),
            "--output-dir",
            str(blocker / "sub"),
            *FAST,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot write to the output folder" in err[0]
    assert blocker.read_text() == "x"


def test_duplicate_stems_are_refused(tmp_path, model_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one, two = _tif(tmp_path / "a" / "x.tif"), _tif(tmp_path / "b" / "x.tif")
    out = tmp_path / "out"
    assert (
        main(
            [
                "predict",
                str(one),
                str(two),
                "--model",
                str(model_path),
                "--output-dir",
                str(out),
                *FAST,
            ]
        )
        == 2
    )
    assert "rename one" in capsys.readouterr().err
    assert _outputs(out) == []


def test_threads_option_and_running_sample_count(tmp_path, model_path, capsys):
    import torch

    before = torch.get_num_threads()
    src = _tif(tmp_path / "cells.tif")
    args = ["predict", str(src), "--model", str(model_path), "--output-dir", str(tmp_path / "o")]
    try:
        assert main([*args, *FAST, "--threads", "1"]) == 0
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)
    assert "1/2 samples" in capsys.readouterr().err  # the first mean/std exist mid-run


@pytest.mark.parametrize("value", ["0", "two"])
def test_bad_threads_exit_2_with_one_line(tmp_path, model_path, capsys, value):
    src = _tif(tmp_path / "cells.tif")
    out = tmp_path / "out"
    args = ["predict", str(src), "--model", str(model_path), "--output-dir", str(out)]
    assert main([*args, *FAST, "--threads", value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--threads" in err[0]
    assert _outputs(out) == []
