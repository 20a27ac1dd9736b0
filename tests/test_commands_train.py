"""`napari-cvdm train`: outputs, CSV/PNG logs, resume, errors, Ctrl-C, no torch at import."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from napari_cvdm.cli import main
from napari_cvdm.commands.train import ProgressBar, _sim_options
from napari_cvdm.engine.modelfile import read_metadata
from napari_cvdm.errors import InputError
from napari_cvdm.workflows.checkpoint import load_checkpoint

TINY = [
    "--task",
    "sr",
    "--data",
    "synthetic",
    "--preset",
    "tiny",
    "--batch",
    "2",
    "--patch",
    "32",
    "--sim",
    "size=32",
    "--val-every",
    "2",
    "--val-count",
    "1",
    "--val-steps",
    "2",
    "--threads",
    "1",
]


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_train_writes_model_checkpoint_csv_and_png(tmp_path, capsys):
    out = tmp_path / "sr.safetensors"
    argv = ["train", *TINY, "--output", str(out), "--steps", "3", "--name", "my-sr", "--fp16"]
    assert main([*argv, "--na", "1.4", "--wavelength", "0.6"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "sr.ckpt",
        "sr.curves.png",
        "sr.log.csv",
        "sr.safetensors",
    ]
    meta = read_metadata(out)
    assert meta["name"] == "my-sr" and meta["weights"]["dtype"] == "float16"
    assert meta["physics"]["na"] == 1.4 and meta["physics"]["wavelength_um"] == 0.6
    assert meta["training"]["command"].startswith("napari-cvdm train ")
    assert meta["normalization"]["target"] == {"kind": "fit_to_input", "blur_px": 2.0}
    assert meta["architecture"]["extra"] == {"denoised_bound": 6.0}  # the sampler's clamp
    assert meta["training"]["data"]["overrides"] == {"size": "32"}
    rows = _rows(tmp_path / "sr.log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert float(rows[0]["total"]) > 0 and rows[0]["val_psnr"] == ""
    assert rows[1]["val_psnr"] != "" and rows[2]["val_ssim"] != ""
    assert {"lr", "diff", "boundary", "prior", "gamma_curvature", "grad_norm", "val_loss"} <= set(
        rows[0]
    )
    assert (tmp_path / "sr.curves.png").read_bytes()[:4] == b"\x89PNG"
    err = capsys.readouterr().err
    assert "step 3/3" in err and "finished after 3 steps" in err


def test_cosine_schedule_option_decays_the_logged_rate(tmp_path):
    out = tmp_path / "sr.safetensors"
    argv = ["train", *TINY, "--output", str(out), "--steps", "4", "--lr", "1e-3"]
    assert main([*argv, "--lr-schedule", "cosine"]) == 0
    rates = [float(r["lr"]) for r in _rows(tmp_path / "sr.log.csv")]
    assert rates[-1] == pytest.approx(1e-4) and rates == sorted(rates, reverse=True)
    assert read_metadata(out)["training"]["command"].count("--lr-schedule cosine") == 1


def test_resume_continues_the_log_and_the_steps(tmp_path):
    out = tmp_path / "m.safetensors"
    assert main(["train", *TINY, "--output", str(out), "--steps", "2", "--quiet"]) == 0
    ckpt = tmp_path / "m.ckpt"
    assert (
        main(
            ["train", *TINY, "--output", str(out), "--steps", "4", "--resume", str(ckpt), "--quiet"]
        )
        == 0
    )
    assert [int(r["step"]) for r in _rows(tmp_path / "m.log.csv")] == [1, 2, 3, 4]
    assert load_checkpoint(ckpt).step == 4
    assert read_metadata(out)["training"]["steps"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "/no/such/folder"], "neither 'synthetic' nor a folder"),
        (["--patch", "30"], "multiple of 8"),
        (["--sim", "novalue"], "KEY=VALUE"),
        (["--sim", "bogus=1"], "Unknown SR simulator option"),
        (["--resume", "/no/such.ckpt"], "does not exist"),
    ],
)
def test_user_errors_exit_2_with_one_line(tmp_path, capsys, args, message):
    argv = ["train", *TINY, "--output", str(tmp_path / "m.safetensors"), "--steps", "1", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("napari-cvdm train: error:")


def test_sim_options_parse_json_values():
    assert _sim_options(["photons=500", "structure=er", 'absorption="random"']) == {
        "photons": 500,
        "structure": "er",
        "absorption": "random",
    }
    with pytest.raises(InputError):
        _sim_options(["=3"])


def test_progress_bar_reports_rate_eta_and_validation():
    import io

    stream = io.StringIO()
    bar = ProgressBar(stream=stream, total=10)
    bar.validation = "val psnr 21.5"
    bar.train_step(5, 0.5, force=True)
    text = stream.getvalue()
    assert text.startswith("step 5/10 [############............]") and "it/s ETA" in text
    assert "loss 0.5" in text and "val psnr 21.5" in text and text.endswith("\n")


def test_ctrl_c_saves_a_checkpoint_and_a_model(tmp_path):
    out = tmp_path / "m.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "napari_cvdm.cli",
        "train",
        *TINY,
        "--output",
        str(out),
        "--steps",
        "100000",
        "--ckpt-every",
        "1",
        "--val-every",
        "100000",
    ]
    env = {**os.environ, "CI": "true"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while (
        not (tmp_path / "m.ckpt").exists() and time.monotonic() < deadline and proc.poll() is None
    ):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "stopped after" in err and "--resume" in err
    assert out.is_file() and read_metadata(out)["training"]["stopped_early"] is True
    assert load_checkpoint(tmp_path / "m.ckpt").step >= 1


def test_importing_the_command_and_widget_modules_does_not_import_torch():
    code = (
        "import sys; import napari_cvdm.commands.train, napari_cvdm.cli as c; c.build_parser(); "
        "import napari_cvdm._widgets.train; "
        "assert 'torch' not in sys.modules, 'torch imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_same_command_under_torchrun_trains_with_two_processes(tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "ddp.safetensors"
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc-per-node",
        "2",
        "--master-port",
        str(port),
        "-m",
        "napari_cvdm.cli",
        "train",
        *TINY,
        "--batch",
        "4",
        "--steps",
        "2",
        "--output",
        str(out),
        "--quiet",
    ]
    result = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "CI": "true"}
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_metadata(out)["training"]["world_size"] == 2
    assert result.stderr.count("finished after 2 steps") == 1  # only rank 0 reports
    assert [int(r["step"]) for r in _rows(tmp_path / "ddp.log.csv")] == [1, 2]
