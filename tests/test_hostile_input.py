"""Hostile and clumsy input (issue 14): one line + exit 2, nothing overwritten, sets or nothing.

A table of bad options for every writing command, the CLI error boundary (full disk, read-only
folders, internal errors → log file), output sets (no overwrite, inputs protected, SIGTERM,
SIGKILL leftovers swept, concurrent runs), umask, and model files with bad weights.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from napari_cvdm import cli
from napari_cvdm.engine.modelfile import load_model, save_model
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.errors import InputError, ModelFileError, UserError
from napari_cvdm.fsutil import current_umask, temp_path
from napari_cvdm.io import write_tiff
from napari_cvdm.limits import check_value
from napari_cvdm.outputset import OutputSet, sweep

FAST = ["--samples", "2", "--steps", "2", "--device", "cpu"]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    loaded = make_untrained_model("sr", "tiny")
    meta = {
        k: loaded.metadata[k]
        for k in ("task", "normalization", "physics", "training", "description")
    }
    meta["name"] = "tiny-sr-hostile"
    return save_model(tmp_path_factory.mktemp("models") / "tiny.safetensors", loaded.model, meta)


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


def _tif(path, shape=(16, 16), seed=0):
    data = (100 + np.random.default_rng(seed).poisson(50, size=shape)).astype(np.uint16)
    return write_tiff(path, data, 0.0626, {})


def _one_error_line(err: str) -> str:
    lines = [
        line
        for line in err.strip().splitlines()
        if line.strip() and "%" not in line and ": note: " not in line  # progress, assumptions
    ]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


BAD_PREDICT = [
    (["--seed", "-1"], "--seed"),
    (["--steps", "1000000000"], "--steps"),
    (["--steps", "0"], "--steps"),
    (["--samples", "-3"], "--samples"),
    (["--pixel-size", "62.6"], "--pixel-size"),
    (["--pixel-size", "1e-9"], "--pixel-size"),
    (["--pixel-size", "nan"], "--pixel-size"),
    (["--pixel-size", "-0.1"], "--pixel-size"),
    (["--offset", "nan"], "--offset"),
    (["--offset", "1e6"], "--offset"),
    (["--na", "inf"], "--na"),
    (["--wavelength", "525"], "--wavelength"),
    (["--dz", "0"], "--dz"),
    (["--tile", "-5"], "--tile"),
    (["--eta", "2"], "--eta"),
    (["--steps", "abc"], "--steps"),
]


@pytest.mark.parametrize(("extra", "flag"), BAD_PREDICT)
def test_bad_predict_options_one_line_exit_2_nothing_written(
    tmp_path, model_path, capsys, extra, flag
):
    src = _tif(tmp_path / "a.tif")
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(model_path), "--output-dir", str(out), *FAST]
    with pytest.raises(SystemExit) if extra[-1] == "abc" else _nothing():
        code = cli.main([*argv, *extra])
        assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert flag in line
    assert not out.exists()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


BAD_TRAIN = [
    (["--lr", "nan"], "--lr"),
    (["--lr", "-1"], "--lr"),
    (["--seed", "-1"], "--seed"),
    (["--threads", "-1"], "--threads"),
    (["--steps", "0"], "--steps"),
    (["--pixel-size", "62.6"], "--pixel-size"),
]


@pytest.mark.parametrize(("extra", "flag"), BAD_TRAIN)
def test_bad_train_options(tmp_path, capsys, extra, flag):
    out = tmp_path / "m.safetensors"
    code = cli.main(["train", "--task", "sr", "--data", "synthetic", "--output", str(out), *extra])
    assert code == 2
    assert flag in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("seed", -1),
        ("steps", 10**9),
        ("lr", float("nan")),
        ("lr", 0.0),
        ("tile", 8),
        ("pixel_size_um", float("inf")),
        ("steps", 2.5),
        ("na", True),
        ("na", "1.4"),
    ],
)
def test_limits_refuse(name, value):
    with pytest.raises(InputError):
        check_value(name, value)


@pytest.mark.parametrize(
    ("name", "value"), [("seed", 0), ("tile", 0), ("tile", 256), ("pixel_size_um", 0.0626)]
)
def test_limits_accept(name, value):
    assert check_value(name, value) == value


def test_train_refuses_existing_model_and_unwritable_folder(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    out.write_bytes(b"precious")
    code = cli.main(["train", "--task", "sr", "--data", "synthetic", "--output", str(out)])
    assert code == 2 and "--overwrite" in _one_error_line(capsys.readouterr().err)
    assert out.read_bytes() == b"precious"
    if os.geteuid() != 0:
        locked = tmp_path / "ro"
        locked.mkdir()
        locked.chmod(0o500)
        code = cli.main(
            [
                "train",
                "--task",
                "sr",
                "--data",
                "synthetic",
                "--output",
                str(locked / "m.safetensors"),
            ]
        )
        assert code == 2 and "cannot write" in _one_error_line(capsys.readouterr().err)


def test_predict_never_overwrites_and_protects_inputs(tmp_path, model_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    src = _tif(out / "a.tif")
    user_file = _tif(out / "a_mean.tif", seed=5)  # a user's file that is also an input
    before = user_file.read_bytes()
    argv = [
        "predict",
        str(src),
        str(user_file),
        "--model",
        str(model_path),
        "--output-dir",
        str(out),
        *FAST,
    ]
    assert cli.main(argv) == 2
    assert "would replace the input" in _one_error_line(capsys.readouterr().err)
    assert cli.main([*argv, "--overwrite"]) == 2  # inputs are protected even with --overwrite
    capsys.readouterr()
    assert user_file.read_bytes() == before

    other = tmp_path / "out2"
    argv = ["predict", str(src), "--model", str(model_path), "--output-dir", str(other), *FAST]
    assert cli.main(argv) == 0
    first = (other / "a_mean.tif").read_bytes()
    capsys.readouterr()
    assert cli.main(argv) == 2
    assert "already exists" in _one_error_line(capsys.readouterr().err)
    assert (other / "a_mean.tif").read_bytes() == first
    assert cli.main([*argv, "--overwrite", "--seed", "3"]) == 0
    assert sorted(p.name for p in other.iterdir()) == ["a_mean.tif", "a_schedule.tif", "a_std.tif"]


def test_outputs_respect_umask(tmp_path, model_path):
    old = os.umask(0o022)
    try:
        src = _tif(tmp_path / "a.tif")
        out = tmp_path / "out"
        assert (
            cli.main(
                ["predict", str(src), "--model", str(model_path), "--output-dir", str(out), *FAST]
            )
            == 0
        )
        assert current_umask() == 0o022
        for p in out.iterdir():
            assert p.stat().st_mode & 0o777 == 0o644, p
        assert (src.stat().st_mode & 0o777) == 0o644
    finally:
        os.umask(old)


def test_error_boundary_disk_full_and_internal_error(tmp_path, model_path, capsys, monkeypatch):
    import napari_cvdm.io as io_mod

    src = _tif(tmp_path / "a.tif")
    out = tmp_path / "out"

    def full(*_a, **_k):
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "x"))

    monkeypatch.setattr(
        io_mod.tifffile if hasattr(io_mod, "tifffile") else __import__("tifffile"), "imwrite", full
    )
    argv = ["predict", str(src), "--model", str(model_path), "--output-dir", str(out), *FAST]
    assert cli.main(argv) == 2
    assert "disk is full" in _one_error_line(capsys.readouterr().err)
    assert [p.name for p in out.iterdir()] == []  # no staging folder, no partial file
    monkeypatch.undo()
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))

    import napari_cvdm.commands.predict as predict_cmd

    def boom(*_a, **_k):
        raise ZeroDivisionError("synthetic bug")

    monkeypatch.setattr(predict_cmd, "write_outputs", boom)
    assert cli.main(argv) == 1
    line = _one_error_line(capsys.readouterr().err)
    assert "internal error" in line and "bug" in line
    logs = list((tmp_path / "cache" / "logs").glob("napari-cvdm-error-*.log"))
    assert len(logs) == 1 and "ZeroDivisionError" in logs[0].read_text()


def test_output_set_is_all_or_nothing(tmp_path):
    names = ["s_mean.tif", "s_std.tif"]
    with pytest.raises(KeyboardInterrupt), OutputSet(tmp_path, names) as out:
        out.path("s_mean.tif").write_bytes(b"1")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with OutputSet(tmp_path, names) as out:
        for n in names:
            out.path(n).write_bytes(n.encode())
        assert out.commit() == [tmp_path / n for n in names]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    with pytest.raises(UserError):
        OutputSet(tmp_path, names).__enter__()


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_sweep_removes_orphans_and_finishes_interrupted_commits(tmp_path):
    pid = _dead_pid()
    host = temp_path(tmp_path / "probe").name.split("ncvdm-")[1].split("-")[0]
    (tmp_path / "probe").unlink(missing_ok=True)
    for p in tmp_path.iterdir():
        p.unlink()
    orphan = tmp_path / f".x_mean.tif.ncvdm-{host}-{pid}-abcd1234.tmp"
    orphan.write_bytes(b"partial")
    staged = tmp_path / f".x.ncvdm-{host}-{pid}-abcd1234.set"
    staged.mkdir()
    (staged / "x_std.tif").write_bytes(b"std")
    committing = tmp_path / f".y.ncvdm-{host}-{pid}-efgh5678.set"
    committing.mkdir()
    (tmp_path / "y_mean.tif").write_bytes(b"mean")  # moved before the kill
    (committing / "y_std.tif").write_bytes(b"std")
    (committing / ".commit").write_text(json.dumps({"files": ["y_mean.tif", "y_std.tif"]}))
    alive = tmp_path / f".z.tif.ncvdm-{host}-{os.getpid()}-abcd1234.tmp"
    alive.write_bytes(b"in progress")
    assert sweep(tmp_path) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [alive.name, "y_mean.tif", "y_std.tif"]
    )


def test_model_with_nan_weights_or_wrong_dtype_is_refused(tmp_path):
    import torch

    loaded = make_untrained_model("sr", "tiny")
    meta = {
        k: loaded.metadata[k]
        for k in ("task", "normalization", "physics", "training", "description")
    }
    meta["name"] = "nan-model"
    with torch.no_grad():
        next(loaded.model.parameters()).fill_(float("nan"))
    path = save_model(tmp_path / "nan.safetensors", loaded.model, meta)  # valid digest
    with pytest.raises(ModelFileError, match="NaN or Inf"):
        load_model(path)


def test_bundled_models_still_load():
    from napari_cvdm.engine.registry import list_models

    bundled = [m for m in list_models() if m.source == "bundled"]
    assert len(bundled) >= 2
    for info in bundled:
        assert load_model(info.path).metadata["name"] == info.name


def _predict_proc(src, model, out, *extra, more=()):
    code = "import sys; from napari_cvdm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            code,
            "predict",
            str(src),
            *map(str, more),
            "--model",
            str(model),
            "--output-dir",
            str(out),
            "--samples",
            "2",
            "--steps",
            "40",
            "--device",
            "cpu",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _assert_complete_sets(folder, stems):
    names = sorted(p.name for p in folder.iterdir()) if folder.exists() else []
    for stem in stems:
        have = [n for n in names if n.startswith(f"{stem}_")]
        assert have in ([], [f"{stem}_mean.tif", f"{stem}_schedule.tif", f"{stem}_std.tif"]), names


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_signal_during_predict_leaves_no_partial_set(tmp_path, model_path, sig):
    srcs = [_tif(tmp_path / f"i{k}.tif", seed=k) for k in range(3)]
    out = tmp_path / "out"
    proc = _predict_proc(srcs[0], model_path, out, more=srcs[1:])
    deadline = time.time() + 120
    while time.time() < deadline and not (out / "i0_mean.tif").exists():
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGTERM:
        assert proc.returncode in (130, 0), err
        assert not [p for p in out.iterdir() if p.name.startswith(".")]
    sweep(out)  # what the next run does first
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    _assert_complete_sets(out, ["i0", "i1", "i2"])


def test_two_concurrent_predicts_into_one_folder(tmp_path, model_path):
    src = _tif(tmp_path / "a.tif")
    out = tmp_path / "out"
    procs = [_predict_proc(src, model_path, out, "--seed", str(k), "--overwrite") for k in (1, 2)]
    for p in procs:
        p.communicate(timeout=300)
    assert [p.returncode for p in procs] == [0, 0]
    _assert_complete_sets(out, ["a"])
    from napari_cvdm.io import read_image

    seeds = {
        read_image(out / f"a_{k}.tif")[1].extra["provenance"]["seed"]
        for k in ("mean", "std", "schedule")
    }
    assert len(seeds) == 1  # one run's set, never a mix

    again = [_predict_proc(src, model_path, tmp_path / "fresh", "--seed", str(k)) for k in (1, 2)]
    results = [p.communicate(timeout=300) for p in again]
    codes = sorted(p.returncode for p in again)
    assert codes in ([0, 0], [0, 2]), results  # [0, 0] only if one finished before the other began
    _assert_complete_sets(tmp_path / "fresh", ["a"])


def test_tmpfs_full_disk(tmp_path, model_path, capsys):
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], capture_output=True
        ).returncode
        != 0
    ):
        pytest.skip("cannot mount a tmpfs here")
    try:
        src = _tif(tmp_path / "a.tif", shape=(64, 64))
        argv = ["predict", str(src), "--model", str(model_path), "--output-dir", str(mnt), *FAST]
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert "disk is full" in _one_error_line(err)
        assert [p.name for p in mnt.iterdir()] == []
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _edit_header(path, out, change):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="numpy") as fh:
        meta = json.loads(fh.metadata()["napari_cvdm"])
    change(meta)
    save_file(load_file(str(path)), str(out), metadata={"napari_cvdm": json.dumps(meta)})
    return out


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m["physics"].update(na=1.2),
        lambda m: m.update(name="renamed"),
        lambda m: m["normalization"]["input"].update(p_high=99.0),
        lambda m: m["architecture"].update(extra={**m["architecture"].get("extra", {}), "x": 1}),
        lambda m: m.update(calibration={"scale": 2.0}),
        lambda m: m["weights"].update(digest_version=3),
    ],
)
def test_header_edits_are_refused(tmp_path, model_path, change):
    edited = _edit_header(model_path, tmp_path / "edited.safetensors", change)
    with pytest.raises(ModelFileError):
        load_model(edited)


def test_old_files_without_digest_version_still_load_and_resave_with_it(tmp_path, model_path):
    def old(m):
        m["weights"].pop("digest_version")
        m["weights"].pop("header_sha256")

    legacy = _edit_header(model_path, tmp_path / "legacy.safetensors", old)
    loaded = load_model(legacy)
    again = save_model(tmp_path / "resaved.safetensors", loaded.model, loaded.metadata)
    from napari_cvdm.engine.modelfile import read_metadata

    assert read_metadata(again)["weights"]["digest_version"] == 2


def test_preflight_caps_resampling_and_memory(model_path):
    from napari_cvdm.workflows.preflight import check_job

    meta = load_model(model_path).metadata
    ok = check_job("sr", (64, 64), meta, {"pixel_size_um": 0.0626}, 4, available=2**34)
    assert ok["output_shape"] == (128, 128)
    with pytest.raises(InputError, match="resampling by"):
        check_job("sr", (64, 64), meta, {"pixel_size_um": 1.0}, 4, available=2**34)
    with pytest.raises(InputError, match="resampling by"):
        check_job("sr", (64, 64), meta, {"pixel_size_um": 0.005}, 4, available=2**34)
    with pytest.raises(InputError, match="needs about"):
        check_job("sr", (50, 4096, 4096), meta, {}, 4, available=2**32)


def test_predict_file_with_implausible_pixel_size_is_refused(tmp_path, model_path, capsys):
    src = write_tiff(tmp_path / "a.tif", np.full((32, 32), 200, np.uint16), 0.5, {})
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(model_path), "--output-dir", str(out), *FAST]
    assert cli.main(argv) == 2
    assert "resampling by" in _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_raw_sim_rule_is_the_same_everywhere(tmp_path):
    from types import SimpleNamespace

    from napari_cvdm.imagekind import prepare_input

    stack = np.random.default_rng(0).poisson(50, (9, 16, 16)).astype(np.uint16)
    tiff = SimpleNamespace(axes="ZYX", extra={})
    mrc = SimpleNamespace(axes="IYX", extra={"raw_sim_frames": True})
    assert prepare_input(stack, tiff, "sr", "z.tif").shape == (9, 16, 16)  # a z-stack stays
    assert prepare_input(stack, tiff, "sr", "z.tif", raw_sim=True).shape == (16, 16)
    assert prepare_input(stack, mrc, "sr", "MT.mrc").shape == (16, 16)
    with pytest.raises(InputError, match="raw SIM"):
        prepare_input(stack, mrc, "qpi", "MT.mrc")
    with pytest.raises(InputError, match="RGB"):
        prepare_input(np.zeros((16, 16, 3)), SimpleNamespace(axes="YXS", extra={}), "sr", "c.tif")
    with pytest.warns(UserWarning, match="negative"):
        prepare_input(np.full((16, 16), -5.0), tiff, "sr", "n.tif")


def test_predict_on_real_raw_sim_mrc_averages_it(tmp_path, model_path):
    from conftest import REAL_MT_MRC

    out = tmp_path / "out"
    argv = [
        "predict",
        str(REAL_MT_MRC),
        "--model",
        str(model_path),
        "--output-dir",
        str(out),
        "--tile",
        "0",
        *FAST,
    ]
    assert cli.main(argv) == 0
    from napari_cvdm.io import read_image

    assert read_image(out / "MT_mean.tif")[0].shape == (512, 512)  # one frame, not 9


@pytest.mark.parametrize("border", ["-1", "40"])
def test_evaluate_border_is_checked_not_clamped(tmp_path, capsys, border):
    a = write_tiff(tmp_path / "a.tif", np.zeros((64, 64), np.float32), 0.1, {})
    b = write_tiff(tmp_path / "b.tif", np.ones((64, 64), np.float32), 0.1, {})
    assert cli.main(["evaluate", str(a), str(b), "--task", "qpi", "--border", border]) == 2
    assert "--border" in _one_error_line(capsys.readouterr().err)
