"""`napari-cvdm train`: one set of defaults with the widget, --config/--save-config, and the
measured time estimate printed before step 1."""

from __future__ import annotations

import json

import pytest
import torch

from napari_cvdm.cli import build_parser, main
from napari_cvdm.train_settings import TRAIN_DEFAULTS, read_settings

TINY = ["--preset", "tiny", "--batch", "2", "--patch", "32", "--sim", "size=32",
        "--val-every", "2", "--val-count", "1", "--val-steps", "2", "--threads", "1"]  # fmt: skip


@pytest.fixture(autouse=True)
def _restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cli_defaults_are_the_shared_ones():
    args = build_parser().parse_args(["train", "--task", "sr", "--data", "synthetic"])
    for key in ("steps", "batch", "patch", "val_every", "val_fraction", "ckpt_every"):
        assert getattr(args, key) == TRAIN_DEFAULTS[key], key
    assert (args.lr_schedule, args.preset) == ("cosine", "small")
    assert "(default 2000)" in build_parser()._subparsers._group_actions[0].choices[
        "train"
    ].format_help().replace("\n", " ")


def test_save_config_then_config_with_an_override(tmp_path, capsys):
    settings = tmp_path / "run.json"
    argv = ["train", "--task", "qpi", "--data", "synthetic", "--steps", "300", "--lr", "2e-4",
            "--dz", "1.5", "--save-config", str(settings)]  # fmt: skip
    assert main(argv) == 0
    assert f"train with --config {settings}" in capsys.readouterr().out
    saved = read_settings(settings)
    assert saved["task"] == "qpi" and saved["steps"] == 300 and saved["lr"] == 2e-4
    assert saved["physics"] == {"dz_um": 1.5} and saved["batch"] == TRAIN_DEFAULTS["batch"]
    assert main(argv) == 2  # never replaced silently
    assert "already exists" in capsys.readouterr().err

    # the file's settings replace the defaults; an option on the command line wins
    again = tmp_path / "again.json"
    argv = ["train", "--config", str(settings), "--steps", "5", "--save-config", str(again)]
    assert main(argv) == 0
    loaded = read_settings(again)
    assert loaded["task"] == "qpi" and loaded["steps"] == 5 and loaded["lr"] == 2e-4
    assert loaded["physics"] == {"dz_um": 1.5}


def test_missing_task_or_bad_config_is_one_line(tmp_path, capsys):
    assert main(["train", "--data", "synthetic", "--output", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--task is required" in err
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"napari_cvdm_train_settings": 1, "stpes": 3}))
    assert main(["train", "--config", str(bad), "--output", str(tmp_path / "m.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown training setting 'stpes'" in err
    # a folder that does not exist is named (not a temp file), and nothing is created
    missing = tmp_path / "nx" / "cfg.json"
    argv = ["train", "--task", "sr", "--data", "synthetic", "--save-config", str(missing)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"the folder {missing.parent} does not exist" in err
    assert ".tmp" not in err and not missing.parent.exists()


def test_estimate_printed_before_step_1_from_a_config(tmp_path, capsys):
    settings = tmp_path / "tiny.json"
    argv = ["train", "--task", "sr", "--data", "synthetic", *TINY, "--steps", "2",
            "--save-config", str(settings)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    out = tmp_path / "m.safetensors"
    assert read_settings(settings)["sim"] == {"size": 32}
    argv = ["train", "--config", str(settings), "--output", str(out), "--quiet", "--threads", "1"]
    assert main(argv) == 0
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("napari-cvdm train: estimated training time on cpu: about ")
    assert "for 2 steps" in err[0] and err[-1].startswith("finished after 2 steps")
    assert out.is_file()
