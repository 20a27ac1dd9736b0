"""One meaning per flag and per source of optics across commands: `baseline` takes the optics
a file lacks from a model like `predict` (--model), and `--planes` / `--dz` mean the same in
simulate, baseline and predict."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_cvdm.cli import main
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.io import read_image


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for task in ("sr", "qpi"):
        loaded = make_untrained_model(task, "tiny")
        out[task] = save_model(folder / f"{task}.safetensors", loaded.model, loaded.metadata)
        out[f"{task}_physics"] = loaded.metadata["physics"]
    return out


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


def _widefield(path, size=32):
    rng = np.random.default_rng(0)
    data = 100 + rng.poisson(50, size=(size, size))
    data[10:12] += 400
    tifffile.imwrite(path, data.astype(np.uint16))  # no pixel size, no optics
    return path


def test_baseline_takes_missing_optics_from_a_model_like_predict(tmp_path, models, capsys):
    src = _widefield(tmp_path / "wf.tif")
    out = tmp_path / "out"
    assert main(["baseline", "wiener", str(src), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--model NAME to use a model's optics" in err

    assert main(["baseline", "wiener", str(src), "--output-dir", str(out),
                 "--model", str(models["sr"]), "--na", "1.4"]) == 0  # fmt: skip
    err = capsys.readouterr().err
    physics = models["sr_physics"]
    (note,) = [ln for ln in err.splitlines() if "note:" in ln]  # one line, as predict prints
    assert note.startswith("napari-cvdm baseline: note: wf.tif: ")
    assert f"pixel {physics['pixel_size_um']:.4g} µm (from the model " in note
    assert f"λ {physics['wavelength_um']:.4g} µm (from the model " in note
    assert "camera offset 100 ADU (the training value of the model " in note
    assert "NA 1.4;" in note and "NA 1.4 (" not in note  # the NA given on the command line wins
    result, meta = read_image(out / "wf_wiener.tif")
    assert result.shape == (64, 64)
    prov = meta.extra["provenance"]["physics"]
    assert prov["na"] == 1.4 and prov["wavelength_um"] == pytest.approx(physics["wavelength_um"])


def test_baseline_refuses_a_model_of_the_other_task(tmp_path, models, capsys):
    src = _widefield(tmp_path / "wf.tif")
    argv = ["baseline", "rl", str(src), "--output-dir", str(tmp_path / "o"), "--model",
            str(models["qpi"])]  # fmt: skip
    assert main(argv) == 2
    assert "is a qpi model; rl needs the optics of a sr model" in capsys.readouterr().err


def test_qpi_baseline_takes_wavelength_and_dz_from_the_model(tmp_path, models, capsys):
    stack = np.ones((2, 32, 32), np.float32)
    stack[0, 10:20, 10:20] = 1.1
    stack[1, 10:20, 10:20] = 0.9
    tifffile.imwrite(tmp_path / "tf.tif", stack)
    argv = ["baseline", "tie", str(tmp_path / "tf.tif"), "--output-dir", str(tmp_path / "o"),
            "--pixel-size", "0.21", "--model", str(models["qpi"])]  # fmt: skip
    assert main(argv) == 0
    physics = models["qpi_physics"]
    err = capsys.readouterr().err
    assert f"λ {physics['wavelength_um']:.4g} µm (from the model " in err
    assert f"dz {physics['dz_um']:.4g} µm (from the model " in err
    assert "pixel 0.21 µm;" in err  # given on the command line


@pytest.mark.parametrize(
    ("nz", "planes", "expected"),
    [(2, (0, 1), 1.0), (3, (0, 2), 1.0), (5, (0, 4), 2.0), (5, (1, 3), 1.0), (4, (0, 3), 1.5)],
)
def test_dz_is_the_stacks_defocus_step_everywhere(nz, planes, expected):
    from napari_cvdm.physics.qpi import plane_offsets
    from napari_cvdm.tasks.qpi import defocus_of_planes

    assert defocus_of_planes(1.0, nz, planes) == pytest.approx(expected)
    if nz != 4:  # the planes simulate writes with --n-planes nz --dz 1
        offsets = plane_offsets(nz, 1.0)
        assert expected == pytest.approx((offsets[planes[1]] - offsets[planes[0]]) / 2)


def test_a_five_plane_simulated_stack_gives_the_same_dz_to_predict_and_baseline(
    tmp_path, models, capsys
):
    sim = tmp_path / "sim"
    assert main(["simulate", "qpi", "--n", "1", "--seed", "1", "--size", "32", "--n-planes", "5",
                 "--dz", "0.5", "--output-dir", str(sim)]) == 0  # fmt: skip
    (stack_path,) = sorted(sim.glob("*input*")) or sorted(sim.glob("*.tif"))[:1]
    stack, meta = read_image(stack_path)
    assert stack.shape[0] == 5
    capsys.readouterr()
    out = tmp_path / "p"
    argv = ["predict", str(stack_path), "--model", str(models["qpi"]), "--output-dir", str(out),
            "--samples", "1", "--steps", "1", "--dz", "0.5", "--device", "cpu"]  # fmt: skip
    assert main(argv) == 0
    (mean,) = out.glob("*_mean.tif")
    _, written = read_image(mean)
    # the outer planes of a 5-plane stack with step 0.5 µm sit at ±1 µm
    assert written.extra["provenance"]["optics"]["dz_um"] == pytest.approx(1.0)
    assert main(["baseline", "tie", str(stack_path), "--output-dir", str(tmp_path / "b"),
                 "--dz", "0.5"]) == 0  # fmt: skip


def test_simulate_planes_flag_says_what_it_means_now(tmp_path, capsys):
    argv = ["simulate", "qpi", "--n", "1", "--planes", "3", "--output-dir", str(tmp_path / "s")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--n-planes" in err and "as in predict" in err
    assert not (tmp_path / "s").exists()


def test_predict_reads_a_simulated_stacks_own_dz_like_baseline(tmp_path, models, capsys):
    """Without --dz, predict takes the defocus step a simulated stack states in its provenance
    (as baseline does), says so in its note, and uses it; --dz still wins."""
    sim = tmp_path / "sim"
    assert main(["simulate", "qpi", "--n", "1", "--seed", "2", "--size", "32", "--dz", "2",
                 "--output-dir", str(sim)]) == 0  # fmt: skip
    (stack_path,) = sorted(sim.glob("*input*")) or sorted(sim.glob("*.tif"))[:1]
    capsys.readouterr()
    common = ["--model", str(models["qpi"]), "--samples", "1", "--steps", "1", "--device", "cpu"]
    assert main(["predict", str(stack_path), "--output-dir", str(tmp_path / "p"), *common]) == 0
    (note,) = [ln for ln in capsys.readouterr().err.splitlines() if "note:" in ln]
    assert "dz 2 µm (from the file)" in note and "model's" not in note.split("dz")[1]
    (mean,) = (tmp_path / "p").glob("*_mean.tif")
    assert read_image(mean)[1].extra["provenance"]["optics"]["dz_um"] == pytest.approx(2.0)
    argv = ["predict", str(stack_path), "--output-dir", str(tmp_path / "q"), "--dz", "1", *common]
    assert main(argv) == 0
    (mean,) = (tmp_path / "q").glob("*_mean.tif")
    assert read_image(mean)[1].extra["provenance"]["optics"]["dz_um"] == pytest.approx(1.0)
