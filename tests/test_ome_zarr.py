"""OME-Zarr in and out: the reader (axes, pixel sizes, laziness), the writer (NGFF 0.4 metadata,
atomic folders), predict/baseline from and to .zarr, one-line refusals, and the napari reader and
writer with the Reconstruct widget on a dask-backed layer (Xvfb)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from numpy.testing import assert_allclose

pytest.importorskip("ome_zarr")
import dask.array as da  # noqa: E402
import zarr  # noqa: E402
from ome_zarr.format import FormatV04, FormatV05  # noqa: E402
from ome_zarr.writer import write_image  # noqa: E402

from napari_cvdm import zarr_io  # noqa: E402
from napari_cvdm.cli import main  # noqa: E402
from napari_cvdm.errors import UserError  # noqa: E402
from napari_cvdm.io import PROVENANCE_KEY, read_image  # noqa: E402

FAST = ["--samples", "2", "--steps", "2", "--device", "cpu", "--threads", "1"]


@pytest.fixture(scope="module")
def sr_model(tmp_path_factory):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_model

    loaded = make_untrained_model("sr", "tiny", seed=1)
    meta = {
        k: loaded.metadata[k]
        for k in ("task", "normalization", "physics", "training", "description")
    }
    meta["name"] = "tiny-sr-zarr"
    return save_model(tmp_path_factory.mktemp("models") / "sr.safetensors", loaded.model, meta)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


def _widefield(shape=(16, 16), seed=0) -> np.ndarray:
    return (100 + np.random.default_rng(seed).poisson(50, size=shape)).astype(np.uint16)


def ngff(path, data, axes, scale, units=None, version="0.5", levels=1) -> Path:
    """An OME-Zarr image written by the ome-zarr package itself (not by napari-cvdm)."""
    fmt = FormatV05() if version == "0.5" else FormatV04()
    group = zarr.open_group(str(path), mode="w", zarr_format=fmt.zarr_format)
    write_image(
        data,
        group,
        fmt=fmt,
        axes=list(axes),
        scale=dict(zip(axes, scale)),
        axes_units=units,
        scale_factors=[2] * (levels - 1),
    )
    return Path(path)


def _attrs(folder: Path) -> dict:
    return json.loads((folder / ".zattrs").read_text())


def _outputs(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


# ---------------------------------------------------------------- reading


def test_ngff05_tczyx_singletons_dropped_pixel_size_in_um_and_lazy(tmp_path):
    data = _widefield((1, 1, 1, 16, 16))
    path = ngff(
        tmp_path / "cells.ome.zarr",
        data,
        "tczyx",
        (1, 1, 1, 62.6, 62.6),
        {"y": "nanometer", "x": "nanometer"},
        levels=2,
    )
    array, meta = read_image(path, lazy=True)
    assert isinstance(array, da.Array)  # nothing read yet
    assert array.shape == (16, 16) and meta.axes == "YX"
    assert meta.pixel_size_um == pytest.approx((0.0626, 0.0626))
    assert meta.extra["format"] == "ome-zarr" and meta.extra["ngff_version"] == "0.5"
    assert meta.extra["levels"] == 2 and meta.extra["source_axes"] == "TCZYX"
    eager, _ = read_image(path)  # default: in memory, level 0 (not the 2x smaller level)
    assert isinstance(eager, np.ndarray)
    np.testing.assert_array_equal(eager, data[0, 0, 0])


def test_ngff04_channels_z_spacing_and_multiscale_level_scale(tmp_path):
    data = np.random.default_rng(1).random((2, 5, 16, 16)).astype(np.float32)
    path = ngff(
        tmp_path / "stack.zarr",
        data,
        "czyx",
        (1, 0.25, 0.1, 0.1),
        {"z": "micrometer", "y": "micrometer", "x": "micrometer"},
        version="0.4",
    )
    attrs = _attrs(path)  # a multiscale-level scale applies after the dataset's
    attrs["multiscales"][0]["coordinateTransformations"] = [
        {"type": "scale", "scale": [1, 2, 2, 2]}
    ]
    (path / ".zattrs").write_text(json.dumps(attrs))
    image = zarr_io.open_ome_zarr(path)
    assert image.axes == "CZYX" and image.data.shape == (2, 5, 16, 16)
    assert image.pixel_size_um == pytest.approx((0.5, 0.2, 0.2))
    assert image.units == (None, "micrometer", "micrometer", "micrometer")
    np.testing.assert_array_equal(np.asarray(image.data), data)


def test_scale_without_units_is_no_pixel_size(tmp_path):
    path = ngff(tmp_path / "nounit.zarr", _widefield(), "yx", (0.1, 0.1), version="0.4")
    with pytest.warns(UserWarning, match="no length unit"):
        _, meta = read_image(path)
    assert meta.pixel_size_um is None and meta.extra["pixel_size_source"] is None


def test_bioformats2raw_layout_opens_series_0_with_a_note(tmp_path):
    root = zarr.open_group(str(tmp_path / "converted.zarr"), mode="w", zarr_format=2)
    root.attrs["bioformats2raw.layout"] = 3
    um = {"y": "micrometer", "x": "micrometer"}
    for series in ("0", "1"):
        ngff(
            tmp_path / "converted.zarr" / series,
            _widefield(seed=int(series)),
            "yx",
            (0.1, 0.1),
            um,
            version="0.4",
        )
    with pytest.warns(UserWarning, match="series 0 of 2"):
        array, meta = read_image(tmp_path / "converted.zarr")
    np.testing.assert_array_equal(array, _widefield(seed=0))
    assert meta.pixel_size_um == pytest.approx((0.1, 0.1))


def _empty_folder(tmp_path):
    (tmp_path / "empty.zarr").mkdir()
    return tmp_path / "empty.zarr", "not a zarr folder"


def _group_without_multiscales(tmp_path):
    zarr.open_group(str(tmp_path / "group.zarr"), mode="w", zarr_format=2)
    return tmp_path / "group.zarr", "without OME-NGFF 'multiscales'"


def _plain_array(tmp_path):
    zarr.save_array(str(tmp_path / "plain.zarr"), np.ones((16, 16)), zarr_format=2)
    return tmp_path / "plain.zarr", "plain zarr array"


def _unsupported_axes(tmp_path):
    path = ngff(tmp_path / "angles.zarr", np.ones((3, 16, 16)), "zyx", (1, 1, 1), version="0.4")
    attrs = _attrs(path)
    attrs["multiscales"][0]["axes"][0] = {"name": "angle", "type": "space"}
    (path / ".zattrs").write_text(json.dumps(attrs))
    return path, "unsupported axis 'angle'"


def _plate(tmp_path):
    group = zarr.open_group(str(tmp_path / "plate.zarr"), mode="w", zarr_format=2)
    group.attrs["plate"] = {"rows": [{"name": "A"}], "columns": [{"name": "1"}], "wells": []}
    return tmp_path / "plate.zarr", "HCS plate"


def _not_a_folder(tmp_path):
    (tmp_path / "file.zarr").write_text("x")
    return tmp_path / "file.zarr", "unsupported file type"


def _missing_level(tmp_path):
    path = ngff(tmp_path / "nolevel.zarr", np.ones((16, 16)), "yx", (1, 1), version="0.4")
    attrs = _attrs(path)
    attrs["multiscales"][0]["datasets"][0]["path"] = "nope"
    (path / ".zattrs").write_text(json.dumps(attrs))
    return path, "level 0 \\('nope'\\)"


@pytest.mark.parametrize(
    "make_bad",
    [
        _empty_folder,
        _group_without_multiscales,
        _plain_array,
        _unsupported_axes,
        _plate,
        _not_a_folder,
        _missing_level,
    ],
)
def test_bad_folders_are_one_line_exit_2_and_nothing_written(tmp_path, sr_model, capsys, make_bad):
    um = {"y": "micrometer", "x": "micrometer"}
    good = ngff(tmp_path / "good.zarr", _widefield(), "yx", (0.0626, 0.0626), um, version="0.4")
    bad, match = make_bad(tmp_path)
    out = tmp_path / "out"
    argv = ["predict", str(good), str(bad), "--model", str(sr_model), "--output-dir", str(out)]
    code = main([*argv, "--output-format", "zarr", *FAST])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("napari-cvdm predict: error:"), err
    assert __import__("re").search(match, err[0]), err[0]
    assert _outputs(out) == []


def test_missing_package_is_one_line_naming_the_extra(tmp_path, sr_model, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ome_zarr.writer", None)  # import raises ImportError
    with pytest.raises(UserError, match=r"pip install 'napari-cvdm\[zarr\]'"):
        zarr_io.require_zarr()
    src = tmp_path / "in.tif"
    from napari_cvdm.io import write_tiff

    write_tiff(src, _widefield(), 0.0626, {})
    argv = ["predict", str(src), "--model", str(sr_model), "--output-dir", str(tmp_path / "o")]
    assert main([*argv, "--output-format", "zarr", *FAST]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "napari-cvdm[zarr]" in err[0]
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- writing


def test_written_metadata_is_ngff_04_with_micrometre_scale_and_provenance(tmp_path):
    data = np.random.default_rng(2).normal(size=(3, 20, 24))  # float64 in: float32 out
    path = zarr_io.write_ome_zarr(
        tmp_path / "result.ome.zarr",
        data,
        (0.5, 0.0313, 0.0313),
        {"model": "m", "value": np.float32(1.5), "big": np.zeros(2000)},
        axes="ZYX",
        translate=(0.0, -0.01565, -0.01565),
    )
    (multiscale,) = _attrs(path)["multiscales"]
    assert multiscale["version"] == zarr_io.NGFF_VERSION == "0.4"
    assert multiscale["name"] == "result"
    assert [a["name"] for a in multiscale["axes"]] == ["z", "y", "x"]
    assert {a.get("unit") for a in multiscale["axes"]} == {"micrometer"}
    (level,) = multiscale["datasets"]  # one resolution level
    transforms = {t["type"]: t for t in level["coordinateTransformations"]}
    assert_allclose(transforms["scale"]["scale"], [0.5, 0.0313, 0.0313])
    assert_allclose(transforms["translation"]["translation"], [0.0, -0.01565, -0.01565])
    provenance = _attrs(path)[PROVENANCE_KEY]
    assert provenance["model"] == "m" and provenance["value"] == 1.5
    assert provenance["big"].startswith("<array")
    array, meta = read_image(path)
    assert array.dtype == np.float32 and array.shape == (3, 20, 24)
    assert_allclose(array, data.astype(np.float32))
    assert meta.axes == "ZYX" and meta.pixel_size_um == pytest.approx((0.5, 0.0313, 0.0313))
    assert meta.extra["provenance"]["model"] == "m"
    assert [p.name for p in tmp_path.iterdir()] == ["result.ome.zarr"]  # no temp folder left


def test_imagej_axis_order_is_transposed_to_ngff_order(tmp_path):
    data = np.arange(2 * 3 * 4 * 8 * 8, dtype=np.float32).reshape(2, 3, 4, 8, 8)  # T Z C Y X
    path = zarr_io.write_ome_zarr(tmp_path / "h.zarr", data, 0.1, {}, axes="TZCYX")
    image = zarr_io.open_ome_zarr(path)
    assert image.axes == "TCZYX" and image.data.shape == (2, 4, 3, 8, 8)
    np.testing.assert_array_equal(np.asarray(image.data), data.transpose(0, 2, 1, 3, 4))


def test_rewrite_replaces_the_folder_and_a_failed_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "x.ome.zarr"
    zarr_io.write_ome_zarr(target, np.zeros((8, 8)), 0.1, {"run": 1})
    zarr_io.write_ome_zarr(target, np.ones((8, 12)), 0.2, {"run": 2})
    array, meta = read_image(target)
    assert array.shape == (8, 12) and meta.extra["provenance"] == {"run": 2}
    assert _outputs(tmp_path) == ["x.ome.zarr"]

    import ome_zarr.writer

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ome_zarr.writer, "write_image", broken)
    with pytest.raises(OSError):
        zarr_io.write_ome_zarr(target, np.full((8, 8), 3.0), 0.1, {"run": 3})
    with pytest.raises(OSError):
        zarr_io.write_ome_zarr(tmp_path / "new.zarr", np.ones((8, 8)), 0.1, {})
    assert _outputs(tmp_path) == ["x.ome.zarr"]  # the old one intact, no partial, no temp
    assert read_image(target)[1].extra["provenance"] == {"run": 2}


# ---------------------------------------------------------------- commands


def test_predict_zarr_in_zarr_out_halves_the_pixel_and_refuses_overwrite(
    tmp_path, sr_model, capsys
):
    data = _widefield((2, 16, 16))
    src = ngff(
        tmp_path / "cells.ome.zarr",
        data[:, None],  # t, c=1, y, x: the channel axis is dropped, t is a frame axis
        "tcyx",
        (1, 1, 62.6, 62.6),
        {"y": "nanometer", "x": "nanometer"},
    )
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(sr_model), "--output-dir", str(out), *FAST]
    assert main([*argv, "--output-format", "zarr"]) == 0
    names = ["cells_mean.ome.zarr", "cells_schedule.ome.zarr", "cells_std.ome.zarr"]
    assert _outputs(out) == names
    captured = capsys.readouterr()
    assert "pixel 0.0626 µm (from the file)" in captured.err
    for suffix in ("mean", "std", "schedule"):
        folder = out / f"cells_{suffix}.ome.zarr"
        (multiscale,) = _attrs(folder)["multiscales"]
        assert [a["name"] for a in multiscale["axes"]] == ["t", "y", "x"]
        scale = multiscale["datasets"][0]["coordinateTransformations"][0]["scale"]
        assert scale[-2:] == pytest.approx([0.0313, 0.0313])  # the input's 0.0626 / 2
        array, meta = read_image(folder)
        assert array.shape == (2, 32, 32) and array.dtype == np.float32
        assert np.isfinite(array).all()
        prov = meta.extra["provenance"]
        assert prov["output"] == suffix and prov["model"] == "tiny-sr-zarr"
        assert prov["input_name"] == "cells.ome.zarr" and prov["status"] == "complete"
        assert prov["source_metadata"]["axes"] == "TYX"
    before = _attrs(out / "cells_mean.ome.zarr")

    assert main([*argv, "--output-format", "zarr", "--seed", "3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cells_mean.ome.zarr already exists" in err[0]
    assert "--overwrite" in err[0]
    assert _attrs(out / "cells_mean.ome.zarr") == before  # untouched

    assert main([*argv, "--output-format", "zarr", "--seed", "3", "--overwrite"]) == 0
    assert _outputs(out) == names  # replaced in place, no temp folders left
    prov = read_image(out / "cells_mean.ome.zarr")[1].extra["provenance"]
    assert prov["seed"] == 3


def test_predict_refuses_a_huge_zarr_before_reading_it(tmp_path, sr_model, capsys):
    # 200,000² uint16 with no chunk written: 80 GB if it were read; refused from its shape
    group = zarr.open_group(str(tmp_path / "huge.ome.zarr"), mode="w", zarr_format=2)
    group.create_array("0", shape=(200_000, 200_000), chunks=(1024, 1024), dtype="uint16")
    axes = [{"name": n, "type": "space", "unit": "micrometer"} for n in "yx"]
    scale = [{"type": "scale", "scale": [0.0626, 0.0626]}]
    group.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": axes,
            "datasets": [{"path": "0", "coordinateTransformations": scale}],
        }
    ]
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            str(tmp_path / "huge.ome.zarr"),
            "--model",
            str(sr_model),
            "--output-dir",
            str(out),
            *FAST,
        ]
    )
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "memory" in err[0] and "400000×400000" in err[0]
    assert _outputs(out) == []


def test_predict_with_dask_scheduler_and_zarr_output_is_refused(tmp_path, sr_model, capsys):
    src = ngff(
        tmp_path / "a.zarr",
        _widefield(),
        "yx",
        (62.6, 62.6),
        {"y": "nanometer", "x": "nanometer"},
    )
    argv = ["predict", str(src), "--model", str(sr_model), "--output-dir", str(tmp_path / "o")]
    assert main([*argv, "--output-format", "zarr", "--dask-scheduler", "local", *FAST]) == 2
    assert "not supported with --dask-scheduler" in capsys.readouterr().err


def test_predict_zarr_in_tif_out(tmp_path, sr_model):
    src = ngff(
        tmp_path / "cells.zarr",
        _widefield(),
        "yx",
        (0.0626, 0.0626),
        {"y": "micrometer", "x": "micrometer"},
        version="0.4",
    )
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(sr_model), "--output-dir", str(out), *FAST]
    assert main(argv) == 0
    assert _outputs(out) == ["cells_mean.tif", "cells_schedule.tif", "cells_std.tif"]
    assert read_image(out / "cells_mean.tif")[1].pixel_size_um == pytest.approx((0.0313, 0.0313))


def test_baseline_reads_and_writes_zarr(tmp_path, capsys):
    src = ngff(
        tmp_path / "wf.ome.zarr",
        _widefield(),
        "yx",
        (0.0626, 0.0626),
        {"y": "micrometer", "x": "micrometer"},
    )
    out = tmp_path / "out"
    argv = ["baseline", "bicubic", str(src), "--output-dir", str(out), "--output-format", "zarr"]
    assert main(argv) == 0
    array, meta = read_image(out / "wf_bicubic.ome.zarr")
    assert array.shape == (32, 32) and meta.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert meta.extra["provenance"]["method"] == "bicubic"
    capsys.readouterr()
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "wf_bicubic.ome.zarr already exists" in err[0]


def test_predict_qpi_stack_from_zarr_drops_the_focus_axis(tmp_path, capsys):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_model

    loaded = make_untrained_model("qpi", "tiny", seed=1)
    model = save_model(tmp_path / "qpi.safetensors", loaded.model, loaded.metadata)
    rng = np.random.default_rng(5)
    stack = (1 + 0.05 * rng.standard_normal((3, 16, 16))).astype(np.float32)
    um = {"z": "micrometer", "y": "micrometer", "x": "micrometer"}
    src = ngff(tmp_path / "focus.ome.zarr", stack, "zyx", (1.0, 0.21, 0.21), um, version="0.4")
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(model), "--output-dir", str(out), *FAST]
    assert main([*argv, "--output-format", "zarr"]) == 0
    image = zarr_io.open_ome_zarr(out / "focus_mean.ome.zarr")
    assert image.axes == "YX" and image.data.shape == (16, 16)
    assert image.pixel_size_um == pytest.approx((0.21, 0.21))  # QPI keeps the input grid
    assert image.extra["provenance"]["mode"] == "qpi"


def test_restore_reads_and_writes_zarr(tmp_path, capsys):
    from napari_cvdm.engine.modelfile import save_model
    from napari_cvdm.engine.registry import make_untrained_prior

    loaded = make_untrained_prior("tiny", seed=0)
    meta = {k: v for k, v in loaded.metadata.items() if k != "architecture"}
    prior = save_model(tmp_path / "prior.safetensors", loaded.model, meta)
    yy, xx = np.indices((32, 32))
    signal = 20 + 300 * np.exp(-((yy - 12) ** 2 + (xx - 20) ** 2) / 15.0)
    image = (np.random.default_rng(0).poisson(signal) * 2.0 + 100).astype(np.float32)
    src = zarr_io.write_ome_zarr(tmp_path / "cell.ome.zarr", image, 0.0626, {})
    out = tmp_path / "out"
    argv = ["restore", str(src), "--na", "1.49", "--wavelength", "0.525", "--offset", "100"]
    argv += ["--prior", str(prior), "--budget", "fast", "--threads", "1"]
    argv += ["--output-dir", str(out), "--output-format", "zarr"]
    assert main(argv) == 0
    assert _outputs(out) == ["cell_residual.ome.zarr", "cell_restored.ome.zarr"]
    restored = zarr_io.open_ome_zarr(out / "cell_restored.ome.zarr")
    assert restored.data.shape == (64, 64)
    assert restored.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert restored.extra["provenance"]["command"] == "restore"
    residual = zarr_io.open_ome_zarr(out / "cell_residual.ome.zarr")
    assert residual.pixel_size_um == pytest.approx((0.0626, 0.0626))
    capsys.readouterr()
    assert main(argv) == 2  # existing outputs: one line, nothing rewritten
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already exists" in err[0]


def test_output_set_commits_folders_and_a_killed_commit_is_finished(tmp_path):
    from napari_cvdm.outputset import OutputSet, _finish

    names = ["a_mean.ome.zarr", "a_std.ome.zarr"]
    with OutputSet(tmp_path, names, label="a") as out:
        for name in names:
            zarr_io.write_ome_zarr(out.path(name), np.ones((8, 8)), 0.1, {"n": name})
        out.commit()
    assert _outputs(tmp_path) == names
    # a commit killed after its manifest: the next sweep renames the staged folders in
    staging = tmp_path / ".b.ncvdm-host-1-x.set"
    staging.mkdir()
    zarr_io.write_ome_zarr(staging / "a_mean.ome.zarr", np.zeros((8, 8)), 0.1, {"n": "new"})
    (staging / ".commit").write_text(json.dumps({"files": ["a_mean.ome.zarr"]}))
    _finish(staging)
    assert read_image(tmp_path / "a_mean.ome.zarr")[1].extra["provenance"] == {"n": "new"}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".b.")) == names


# ---------------------------------------------------------------- napari reader and writer


def test_get_reader_claims_only_ome_zarr_folders(tmp_path):
    from napari_cvdm._reader import get_reader

    good = ngff(tmp_path / "good.zarr", _widefield(), "yx", (1, 1))
    plain = _plain_array(tmp_path)[0]
    assert get_reader(str(good)) is not None and get_reader([str(good)]) is not None
    assert get_reader(str(plain)) is None
    assert get_reader(str(tmp_path)) is None
    assert get_reader(str(tmp_path / "missing.zarr")) is None


def test_reader_splits_channels_and_keeps_scale(tmp_path):
    from napari_cvdm._reader import read_ome_zarr_layers

    data = np.random.default_rng(3).random((2, 3, 16, 16)).astype(np.float32)
    path = ngff(
        tmp_path / "two.ome.zarr",
        data,
        "czyx",
        (1, 0.5, 0.1, 0.1),
        {"z": "micrometer", "y": "micrometer", "x": "micrometer"},
    )
    layers = read_ome_zarr_layers(str(path))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["two [c0]", "two [c1]"]
    for i, (array, kwargs, kind) in enumerate(layers):
        assert kind == "image" and isinstance(array, da.Array) and array.shape == (3, 16, 16)
        assert kwargs["scale"] == pytest.approx([0.5, 0.1, 0.1])
        assert kwargs["units"] == ["micrometer"] * 3 and kwargs["axis_labels"] == ["z", "y", "x"]
        assert kwargs["metadata"]["pixel_size_um"] == pytest.approx(0.1)
        np.testing.assert_array_equal(np.asarray(array), data[i])


def test_napari_writer_round_trip(tmp_path):
    from napari_cvdm._writer import write_ome_zarr

    data = np.random.default_rng(4).random((3, 10, 12)).astype(np.float32)
    meta = {
        "name": "cells_cvdm_gamma",
        "scale": (1.0, 31.3, 31.3),
        "translate": (0.0, -15.65, -15.65),
        "units": ("pixel", "nanometer", "nanometer"),
        "axis_labels": ("t*", "y", "x"),
        "metadata": {"cvdm": {"mode": "sr", "seed": 7}},
    }
    (written,) = write_ome_zarr(str(tmp_path / "g.ome.zarr"), data, meta)
    image = zarr_io.open_ome_zarr(written)
    assert image.axes == "ZYX" and image.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert image.translate[1:] == pytest.approx((-0.01565, -0.01565))
    assert image.extra["provenance"]["cvdm"] == {"mode": "sr", "seed": 7}
    assert image.extra["provenance"]["layer"]["name"] == "cells_cvdm_gamma"
    np.testing.assert_array_equal(np.asarray(image.data), data)


@pytest.mark.gui
def test_napari_opens_zarr_lazily_and_the_reconstruct_widget_runs_on_it(
    make_napari_viewer, tmp_path, sr_model, qtbot, monkeypatch
):
    from napari_cvdm._widgets import common
    from napari_cvdm._widgets.reconstruct import LOAD_FROM_FILE, ReconstructWidget

    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    path = ngff(
        tmp_path / "wf.ome.zarr",
        _widefield((2, 16, 16)),
        "tyx",
        (1, 62.6, 62.6),
        {"y": "nanometer", "x": "nanometer"},
    )
    from napari.plugins import _npe2

    viewer = make_napari_viewer()
    readers = _npe2.get_readers(str(path))  # napari's reader choice offers the plugin
    assert "napari-cvdm" in readers, readers
    (layer,) = viewer.open(str(path), plugin="napari-cvdm")
    assert isinstance(layer.data, da.Array)  # dask-backed, read plane by plane
    assert layer.name == "wf" and layer.data.shape == (2, 16, 16)
    assert_allclose(layer.scale, (1.0, 0.0626, 0.0626))
    assert [str(u) for u in layer.units][1:] == ["micrometer", "micrometer"]
    assert layer.metadata["pixel_size_um"] == pytest.approx(0.0626)

    _, widget = viewer.window.add_plugin_dock_widget("napari-cvdm", "Reconstruct")
    assert isinstance(widget, ReconstructWidget)
    widget.image.reset_choices()
    widget.image.value = layer
    assert widget.pixel_size_um.value == pytest.approx(0.0626)  # from the layer's scale
    widget.model.value = LOAD_FROM_FILE
    widget.model_file.value = sr_model
    widget.steps.value, widget.samples.value = 2, 2
    with common.recording_notifications() as seen:
        widget.run()
        qtbot.waitUntil(lambda: widget.status.idle, timeout=60_000)
    assert [s for s in seen if "error" in str(s).lower()] == []
    mean = viewer.layers["wf_cvdm"]
    assert mean.data.shape == (2, 32, 32) and np.isfinite(mean.data).all()
    assert_allclose(mean.scale[-2:], (0.0313, 0.0313))
    assert mean.metadata["cvdm"]["status"] == "complete"

    # and saved as OME-Zarr through the plugin's writer (File > Save Selected Layer(s))
    target = tmp_path / "wf_cvdm.ome.zarr"
    viewer.layers.selection = {mean}
    viewer.layers.save(str(target), selected=True, plugin="napari-cvdm")
    _, meta = read_image(target)
    assert meta.pixel_size_um == pytest.approx((0.0313, 0.0313))
    assert meta.extra["provenance"]["cvdm"]["status"] == "complete"
