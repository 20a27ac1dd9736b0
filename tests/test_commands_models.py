"""Tests for `napari-cvdm models`."""

import re

import pytest

from napari_cvdm.cli import main
from napari_cvdm.engine import registry
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.engine.registry import make_untrained_model


def _install(folder, name, task="sr"):
    loaded = make_untrained_model(task, "tiny")
    meta = {
        k: loaded.metadata[k]
        for k in ("task", "normalization", "physics", "training", "description")
    }
    meta["name"] = name
    return save_model(folder / f"{name}.safetensors", loaded.model, meta)


def test_models_lists_user_models_as_a_table(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(registry, "_bundled_files", lambda: [])
    path = _install(tmp_path / "models", "my-sr")
    _install(tmp_path / "models", "my-qpi", task="qpi")
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["NAME", "TASK", "SIZE", "PIXEL", "SIZE", "SOURCE", "PATH"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {"my-sr", "my-qpi"}
    assert (
        "sr" in rows["my-sr"].split() and "0.0626 µm" in rows["my-sr"] and "user" in rows["my-sr"]
    )
    assert re.search(r"tiny, \d+(\.\d)? (MB|kB)", rows["my-sr"])
    assert str(path) in rows["my-sr"]
    assert "0.21 µm" in rows["my-qpi"]
    assert main(["models", "--task", "qpi"]) == 0
    out = capsys.readouterr().out
    assert "my-qpi" in out and "my-sr" not in out


def test_models_without_any_model_says_where_they_go(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(registry, "_bundled_files", lambda: [])
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no models found: the bundled models (sr-fluorescence-2x, qpi-2plane)")
    assert "reinstall napari-cvdm" in out and f"models you train go in {tmp_path / 'models'}" in out
    assert "untrained" not in out and "until trained ones are bundled" not in out  # not stale


def test_models_without_a_prior_says_so_in_current_words(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(registry, "_bundled_files", lambda: [])
    assert main(["models", "--task", "prior"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("no prior models found: no zero-shot restore prior is bundled")
    assert str(tmp_path / "models") in out and "untrained" not in out
    with pytest.raises(SystemExit) as info:  # no such task: argparse's one line
        main(["models", "--task", "denoise"])
    assert info.value.code == 2


def test_broken_model_file_gives_a_warning_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(registry, "_bundled_files", lambda: [])
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "broken.safetensors").write_bytes(b"junk")
    _install(tmp_path / "models", "fine")
    assert main(["models"]) == 0
    captured = capsys.readouterr()
    assert "fine" in captured.out and "broken.safetensors" not in captured.out
    warning = [line for line in captured.err.splitlines() if "broken.safetensors" in line]
    assert len(warning) == 1 and warning[0].startswith("napari-cvdm models: warning: skipping")
