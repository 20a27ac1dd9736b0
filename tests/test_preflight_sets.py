"""Issue 14, second part: checks before any work (memory, disk, camera offset) in every command,
output sets for train, simulate and demo, non-finite baseline results, model-file modes."""

import os

import numpy as np
import pytest

from napari_cvdm import cli
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.engine.registry import make_untrained_model
from napari_cvdm.errors import InputError
from napari_cvdm.imagekind import check_offset
from napari_cvdm.io import write_tiff
from napari_cvdm.workflows import preflight

TINY_TRAIN = [
    "--task", "sr", "--data", "synthetic", "--preset", "tiny", "--batch", "2", "--patch", "32",
    "--sim", "size=32", "--val-every", "2", "--val-count", "1", "--val-steps", "2",
    "--threads", "1", "--quiet",
]  # fmt: skip
FAST = ["--samples", "2", "--steps", "2", "--device", "cpu"]


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    loaded = make_untrained_model("sr", "tiny")
    meta = {
        k: loaded.metadata[k]
        for k in ("task", "normalization", "physics", "training", "description")
    }
    meta["name"] = "tiny-sr-preflight"
    return save_model(tmp_path_factory.mktemp("models") / "tiny.safetensors", loaded.model, meta)


def _tif(path, level=100, shape=(32, 32), seed=0):
    data = (level + np.random.default_rng(seed).poisson(50, size=shape)).astype(np.uint16)
    return write_tiff(path, data, 0.0626, {})


def _error_line(err):
    lines = [line for line in err.strip().splitlines() if ": error: " in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# --- camera offset against the image --------------------------------------------------------


def test_check_offset_rule():
    rng = np.random.default_rng(0)
    image = 100 + rng.normal(0, 3, (64, 64))  # background at the offset, read noise 3 ADU
    assert check_offset(image, 100.0, "x", given=True) is None  # the true offset passes
    assert check_offset(image, 102.0, "x", given=True) is None  # within the noise
    with pytest.raises(InputError, match="above most of x"):
        check_offset(image, 150.0, "x", given=True)
    note = check_offset(image, 150.0, "x", given=False)
    assert "(the default)" in note and "--offset 0" in note
    stack = np.broadcast_to(image, (5, 64, 64))  # frames are sampled, not copied
    with pytest.raises(InputError):
        check_offset(stack, 150.0, "x", given=True)
    assert check_offset(np.zeros((0, 4)), 1e4, "x", given=True) is None


def test_predict_refuses_offset_above_the_image(tmp_path, model_path, capsys):
    src = _tif(tmp_path / "a.tif")  # median about 150 ADU
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(model_path), "--output-dir", str(out), *FAST]
    assert cli.main([*argv, "--offset", "60000"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "--offset 60000 ADU is above most of" in line and "median" in line
    assert not out.exists()


def test_predict_notes_a_default_offset_above_the_image(tmp_path, model_path, capsys):
    src = write_tiff(tmp_path / "dim.tif", np.random.default_rng(1).random((32, 32)), 0.0626, {})
    out = tmp_path / "out"
    argv = ["predict", str(src), "--model", str(model_path), "--output-dir", str(out), *FAST]
    assert cli.main(argv) == 0  # the model's 100 ADU on an offset-free image: a warning
    err = capsys.readouterr().err
    assert "warning: the camera offset 100 ADU (the default) is above most of" in err
    assert sorted(p.name for p in out.iterdir()) == ["dim_mean.tif", "dim_schedule.tif",
                                                     "dim_std.tif"]  # fmt: skip


def test_baseline_refuses_offset_above_the_image(tmp_path, capsys):
    src = _tif(tmp_path / "a.tif")
    out = tmp_path / "out"
    argv = ["baseline", "rl", str(src), "--na", "1.49", "--wavelength", "0.525"]
    assert cli.main([*argv, "--output-dir", str(out), "--offset", "1000"]) == 2
    assert "--offset 1000 ADU is above most" in _error_line(capsys.readouterr().err)
    assert not out.exists()


# --- baselines: memory, writable folder, non-finite results ---------------------------------


def test_baseline_refuses_nan_results(tmp_path, capsys, monkeypatch):
    import napari_cvdm.physics.sr_baselines as sr

    src = _tif(tmp_path / "a.tif")
    out = tmp_path / "out"
    monkeypatch.setattr(sr, "run_sr_baseline", lambda *a, **k: np.full((64, 64), np.nan))
    assert cli.main(["baseline", "bicubic", str(src), "--output-dir", str(out)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "NaN or Inf" in line and "was not written" in line
    assert [p.name for p in out.iterdir()] == []


def test_baseline_memory_estimate_refuses_before_work():
    preflight.check_baseline_job("rl", (512, 512), "x", available=2**34)
    with pytest.raises(InputError, match="needs about .* of memory"):
        preflight.check_baseline_job("us-tie", (2, 40000, 40000), "x", available=2**34)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_baseline_unwritable_folder_is_refused_before_work(tmp_path, capsys, monkeypatch):
    import napari_cvdm.commands.baseline as baseline

    src = _tif(tmp_path / "a.tif")
    locked = tmp_path / "ro"
    locked.mkdir()
    locked.chmod(0o500)
    monkeypatch.setattr(baseline, "_compute", lambda *a: pytest.fail("computed"))
    assert cli.main(["baseline", "bicubic", str(src), "--output-dir", str(locked)]) == 2
    assert "cannot write" in _error_line(capsys.readouterr().err)


# --- demo and simulate: memory, disk, sets ---------------------------------------------------


def test_demo_refuses_a_size_that_does_not_fit(tmp_path, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--size", "4096", "--output-dir", str(out)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "--size 4096" in line and "of memory" in line
    assert not out.exists()


def test_simulate_refuses_memory_and_disk_before_writing(tmp_path, capsys):
    out = tmp_path / "sim"
    assert cli.main(["simulate", "sr", "--size", "4096", "--output-dir", str(out)]) == 2
    assert "of memory" in _error_line(capsys.readouterr().err)
    assert cli.main(["simulate", "qpi", "--n", "1000000", "--output-dir", str(out)]) == 2
    assert "on disk" in _error_line(capsys.readouterr().err)
    assert not out.exists()


def test_simulate_writes_all_pairs_or_none(tmp_path, capsys, monkeypatch):
    import napari_cvdm.io as io_mod

    out = tmp_path / "sim"
    real, calls = io_mod.write_tiff, []

    def dies_on_the_fifth(path, *a, **k):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt  # Ctrl-C (or SIGTERM) in the middle of the run
        return real(path, *a, **k)

    monkeypatch.setattr(io_mod, "write_tiff", dies_on_the_fifth)
    argv = ["simulate", "sr", "--n", "4", "--size", "32", "--output-dir", str(out)]
    assert cli.main(argv) == 130
    assert list(out.iterdir()) == []  # no pair, no staging folder
    monkeypatch.undo()
    assert cli.main(argv) == 0
    assert len(list(out.glob("*_input.tif"))) == 4 and len(list(out.glob("*_target.tif"))) == 4


# --- train: disk, memory, writable folders, the model/log set ---------------------------------


def test_train_refuses_memory_before_step_1(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    argv = ["train", "--task", "sr", "--data", "synthetic", "--output", str(out)]
    assert cli.main([*argv, "--preset", "base", "--batch", "4096", "--patch", "2048"]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "of memory" in line and "--batch" in line
    assert list(tmp_path.iterdir()) == []


def test_train_checks_disk_always_not_only_when_fine_tuning(tmp_path, capsys, monkeypatch):
    import napari_cvdm.fsutil as fsutil

    monkeypatch.setattr(fsutil, "free_bytes", lambda _folder: 1000)
    out = tmp_path / "m.safetensors"
    assert cli.main(["train", *TINY_TRAIN, "--steps", "1", "--output", str(out)]) == 2
    line = _error_line(capsys.readouterr().err)
    assert "free" in line and "needed" in line
    assert list(tmp_path.iterdir()) == []


def test_train_disk_estimate_counts_the_checkpoint_and_model():
    need = preflight.train_disk_bytes(1_000_000)
    assert need >= 2 * 16_000_000 + 2 * 4_000_000  # a checkpoint next to the old one, the model
    assert preflight.train_disk_bytes(1_000_000, fp16=True) < need


def test_train_checks_the_checkpoint_folder_before_step_1(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = tmp_path / "m.safetensors"
    argv = ["train", *TINY_TRAIN, "--output", str(out), "--checkpoint", str(blocker / "m.ckpt")]
    assert cli.main(argv) == 2
    assert "checkpoint folder" in _error_line(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_train_publishes_model_and_logs_together(tmp_path, capsys, monkeypatch):
    import napari_cvdm.workflows.train_log as train_log

    out = tmp_path / "m.safetensors"
    argv = ["train", *TINY_TRAIN, "--steps", "2", "--ckpt-every", "1", "--output", str(out)]

    def png_fails_in_the_set(path, history):
        if ".set" in str(path):  # the final set's curves: the disk filled up
            raise OSError(28, "No space left on device")
        train_log.write_bytes_atomic(path, b"\x89PNG")

    monkeypatch.setattr(train_log, "write_png", png_fails_in_the_set)
    assert cli.main(argv) == 2
    assert "disk is full" in _error_line(capsys.readouterr().err)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert "m.safetensors" not in names  # the model never appears without its logs
    assert "m.ckpt" in names  # the checkpoint is kept: resume from it
    assert not [n for n in names if n.startswith(".")]  # no staging folder left
    monkeypatch.undo()
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    resume = [*argv, "--resume", str(tmp_path / "m.ckpt")]
    assert cli.main(resume) == 0
    assert {"m.safetensors", "m.log.csv", "m.curves.png"} <= {p.name for p in tmp_path.iterdir()}


def test_model_files_respect_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        loaded = make_untrained_model("sr", "tiny")
        meta = {
            k: loaded.metadata[k]
            for k in ("task", "normalization", "physics", "training", "description")
        }
        meta["name"] = "mode"
        path = save_model(tmp_path / "m.safetensors", loaded.model, meta)
        assert path.stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(old)


# --- simulator options, baseline input rules ----------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("size=nan", "--set size must be a whole number"),
        ('size="abc"', "--set size must be a whole number"),
        ("size=100000", "--set size must be an integer from 16 to 4096"),
        ("na=9", "--set na must be a number from 0.05 to 1.7"),
        ('background_e=[1, "x"]', "--set background_e must be a finite number or a [low, high]"),
        ("envelope=1", "--set envelope must be true or false"),
    ],
)
def test_simulator_options_of_the_wrong_kind_are_refused(tmp_path, capsys, value, expected):
    out = tmp_path / "sim"
    assert cli.main(["simulate", "sr", "--set", value, "--output-dir", str(out)]) == 2
    assert expected in _error_line(capsys.readouterr().err)
    assert not out.exists()


def test_train_sim_options_are_checked_before_any_work(tmp_path, capsys):
    out = tmp_path / "m.safetensors"
    argv = ["train", "--task", "sr", "--data", "synthetic", "--output", str(out)]
    assert cli.main([*argv, "--sim", "size=nan"]) == 2
    assert "--sim size must be a whole number" in _error_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_baseline_follows_predict_input_rules(tmp_path, capsys):
    import tifffile

    rgb = tmp_path / "rgb.tif"
    tifffile.imwrite(rgb, np.zeros((32, 32, 3), np.uint8), photometric="rgb")
    stack = write_tiff(tmp_path / "z9.tif", np.ones((9, 32, 32), np.uint16), 0.0626, {})
    out = tmp_path / "out"
    assert cli.main(["baseline", "bicubic", str(rgb), "--output-dir", str(out)]) == 2
    assert "RGB(A) colour image" in _error_line(capsys.readouterr().err)
    assert cli.main(["baseline", "bicubic", str(stack), "--output-dir", str(out)]) == 2
    assert "only with --raw-sim" in _error_line(capsys.readouterr().err)
    assert not out.exists()


def test_broken_pipe_is_one_line():
    from napari_cvdm.failures import user_message

    assert "piped into `head`" in user_message(BrokenPipeError(32, "Broken pipe"))
