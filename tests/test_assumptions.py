"""Every default a reconstruction assumes is said in one line per input (CLI `predict`).

The BioSR raw-SIM file is averaged and its pixel size is the BioSR camera's; a TIFF without a
pixel size gets the model's; `--pixel-size` resamples by a factor that is printed and is the
factor the output grid shows.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from conftest import REAL_MT_MRC
from napari_cvdm.assumptions import Assumptions, for_file, sr_resample_factor
from napari_cvdm.cli import main
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.io import read_image

FAST = ["--samples", "1", "--steps", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    loaded = make_untrained_model("sr", "tiny")
    path = tmp_path_factory.mktemp("models") / "tiny.safetensors"
    return save_model(path, loaded.model, loaded.metadata), loaded.metadata


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


def _notes(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("napari-cvdm predict: note: ")]


def test_resample_factor_is_the_adapters():
    from napari_cvdm.tasks.sr import SRAdapter

    meta = make_untrained_model("sr", "tiny").metadata
    image = np.full((40, 40), 300.0, np.float32)
    image[10:12] += 500
    for px, na in ((0.1, None), (0.08, 1.3), (0.0630, None)):
        adapter = SRAdapter(image, meta, pixel_size_um=px, na=na)
        factor = sr_resample_factor(meta["physics"], px, na)
        assert adapter.frame_shape[-1] == max(1, round(40 * factor))
    assert sr_resample_factor(meta["physics"], 0.0630) == 1.0  # within 2 %: not resampled
    assert sr_resample_factor(meta["physics"], None) == 1.0  # unknown: the model's assumed


@pytest.mark.skipif(not REAL_MT_MRC.exists(), reason="tests/data/rdlsim-mt/MT.mrc missing")
def test_biosr_raw_sim_file_note(model):
    _path, meta = model
    _array, file_meta = read_image(REAL_MT_MRC)
    line = for_file("sr", meta, file_meta).line("MT.mrc", cli=True)
    assert line.startswith(
        "MT.mrc: 9 raw SIM frames averaged to one widefield image (BioSR convention); "
        "pixel 0.0626 µm (the BioSR camera's default); NA 1.49 (model's), λ 0.525 µm (model's); "
        "camera offset 100 ADU (the model's training value; --offset if your camera differs); "
        "not resampled"
    )


def test_predict_prints_one_note_per_input(tmp_path, model, capsys):
    path, _meta = model
    rng = np.random.default_rng(0)
    data = (100 + rng.poisson(80, size=(24, 24))).astype(np.uint16)
    tifffile.imwrite(tmp_path / "nopixel.tif", data)  # no resolution tags
    out = tmp_path / "out"
    args = ["predict", str(tmp_path / "nopixel.tif"), "--model", str(path), *FAST]
    assert main([*args, "--output-dir", str(out)]) == 0
    (note,) = _notes(capsys.readouterr().err)
    assert note == (
        "napari-cvdm predict: note: nopixel.tif: no pixel size in the input: assuming the "
        "model's 0.0626 µm (give --pixel-size); NA 1.49 (model's), λ 0.525 µm (model's); "
        "camera offset 100 ADU (the model's training value; --offset if your camera differs); "
        "not resampled"
    )
    mean, _ = read_image(out / "nopixel_mean.tif")
    assert mean.shape == (48, 48)

    args += ["--pixel-size", "0.1", "--offset", "90", "--overwrite"]
    assert main([*args, "--output-dir", str(out)]) == 0
    (note,) = _notes(capsys.readouterr().err)
    # same optics as the model: the pixel ratio, realised on whole pixels (24 → 38)
    assert round(24 * 0.1 / 0.0626) == 38
    assert "pixel 0.1 µm (as given)" in note and "camera offset 90 ADU;" in note
    assert f"resampled ×{38 / 24:.3f} to the model's PSF width in pixels" in note
    mean, meta = read_image(out / "nopixel_mean.tif")
    assert mean.shape[-1] == 2 * 38
    # the output pixel said in the note is the one written
    said = float(note.split("output pixel ")[1].split(" µm")[0])
    assert meta.pixel_size_um[-1] == pytest.approx(said, rel=2e-3)


def test_qpi_note_names_the_models_wavelength():
    meta = make_untrained_model("qpi", "tiny").metadata
    a = Assumptions(task="qpi", model_physics=meta["physics"], pixel_size_um=0.21,
                    pixel_source="layer", dz_um=1.0, dz_source="layer")  # fmt: skip
    lam = meta["physics"]["wavelength_um"]
    assert a.parts() == ["pixel 0.21 µm (from the layer)", f"λ {lam:.4g} µm (model's), dz 1 µm"]
