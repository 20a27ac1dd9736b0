"""Raw SIM files: 9 (3 × 3) or 15 (3 × 5) frames in the BioSR / rDL-SIM .mrc convention are
averaged to widefield with a printed note; --no-raw-sim reconstructs the frames one by one."""

from __future__ import annotations

import mrcfile
import numpy as np
import pytest

from napari_cvdm.cli import main
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.imagekind import prepare_input
from napari_cvdm.io import read_image

FAST = ["--samples", "1", "--steps", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    loaded = make_untrained_model("sr", "tiny")
    path = tmp_path_factory.mktemp("m") / "tiny.safetensors"
    return save_model(path, loaded.model, loaded.metadata)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


def _mrc(path, frames, size=24):
    rng = np.random.default_rng(frames)
    data = (100 + rng.poisson(80, size=(frames, size, size))).astype(np.uint16)
    data[:, 8:10] += 500
    with mrcfile.new(path, overwrite=True) as handle:
        handle.set_data(data)
    return path, data


@pytest.mark.parametrize("frames", [9, 15])
def test_raw_sim_mrc_is_averaged_with_a_note(tmp_path, model, capsys, frames):
    path, data = _mrc(tmp_path / f"cell{frames}.mrc", frames)
    out = tmp_path / "out"
    assert main(["predict", str(path), "--model", str(model), "--output-dir", str(out), *FAST]) == 0
    note = [ln for ln in capsys.readouterr().err.splitlines() if ": note: " in ln]
    assert len(note) == 1
    assert f"{frames} raw SIM frames averaged to one widefield image (BioSR convention)" in note[0]
    mean, _ = read_image(out / f"cell{frames}_mean.tif")
    assert mean.shape == (48, 48)  # one widefield image on the 2x grid


def test_no_raw_sim_reconstructs_every_frame(tmp_path, model, capsys):
    path, data = _mrc(tmp_path / "cell.mrc", 9)
    out = tmp_path / "out"
    argv = ["predict", str(path), "--model", str(model), "--output-dir", str(out), "--no-raw-sim"]
    assert main([*argv, *FAST]) == 0
    note = [ln for ln in capsys.readouterr().err.splitlines() if ": note: " in ln][0]
    assert "averaged" not in note
    mean, _ = read_image(out / "cell_mean.tif")
    assert mean.shape == (9, 48, 48)


@pytest.mark.parametrize("frames", [9, 15])
def test_baseline_averages_raw_sim_with_the_same_one_line_note(tmp_path, model, capsys, frames):
    path, _ = _mrc(tmp_path / f"cell{frames}.mrc", frames)
    argv = ["baseline", "wiener", str(path), "--output-dir", str(tmp_path / "out"),
            "--model", str(model)]  # fmt: skip
    assert main(argv) == 0
    (note,) = [ln for ln in capsys.readouterr().err.splitlines() if ": note: " in ln]
    assert note.startswith(f"napari-cvdm baseline: note: cell{frames}.mrc: ")
    assert f"{frames} raw SIM frames averaged to one widefield image (BioSR convention)" in note
    assert "pixel 0.0626 µm (the BioSR camera's default)" in note
    assert "camera offset 100 ADU (the training value of the model" in note
    # --no-raw-sim: baselines take one frame, and the message counts 15 frames too
    assert main([*argv, "--no-raw-sim", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "one widefield frame (Y, X) or 9 or 15 raw SIM frames" in err
    assert err.count("\n") == 1 and "--raw-sim." not in err


def test_prepare_input_tri_state():
    stack = np.ones((15, 8, 8), np.float32)
    mrc = type("M", (), {"axes": "IYX", "extra": {"raw_sim_frames": True}})()
    tiff = type("M", (), {"axes": "ZYX", "extra": {}})()
    assert prepare_input(stack, mrc, "sr", "a.mrc").shape == (8, 8)  # automatic
    assert prepare_input(stack, mrc, "sr", "a.mrc", raw_sim=False).shape == (15, 8, 8)
    assert prepare_input(stack, tiff, "sr", "z.tif").shape == (15, 8, 8)  # a z-stack stays
    assert prepare_input(stack, tiff, "sr", "z.tif", raw_sim=True).shape == (8, 8)
    with pytest.raises(Exception, match="9 or 15 frames"):
        prepare_input(np.ones((4, 8, 8)), tiff, "sr", "z.tif", raw_sim=True)
