"""Tests for napari_cvdm.engine.registry: bundled, user and file models; the cache folder."""

import warnings
from pathlib import Path

import pytest
import torch

from napari_cvdm.engine import registry
from napari_cvdm.engine.cvdm import CVDM, CVDMConfig
from napari_cvdm.engine.modelfile import save_model
from napari_cvdm.errors import ModelFileError
from napari_cvdm.tasks.qpi import rule as qpi_rule
from napari_cvdm.tasks.sr import rule as sr_rule


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(registry, "_bundled_files", lambda: [])
    return tmp_path / "cache"


def _save(path, task="sr", name=None):
    torch.manual_seed(0)
    config = CVDMConfig(
        condition_channels=1 if task == "sr" else 3,
        target_channels=1,
        preset="tiny",
        residual=True,
    )
    physics = (
        {"pixel_size_um": 0.0626, "upscale": 2.0, "wavelength_um": 0.525, "na": 1.49}
        if task == "sr"
        else {"pixel_size_um": 0.21, "wavelength_um": 0.521, "dz_um": 1.0}
    )
    meta = {
        "task": task,
        "name": name or Path(path).stem,
        "description": f"{task} test model",
        "normalization": sr_rule() if task == "sr" else qpi_rule(),
        "physics": physics,
        "training": {"steps": 1},
    }
    return save_model(path, CVDM(config), meta)


def test_cache_dir_follows_the_environment_on_each_call(tmp_path, monkeypatch):
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "a"))
    assert registry.cache_dir() == tmp_path / "a"
    monkeypatch.setenv("NAPARI_CVDM_CACHE_DIR", str(tmp_path / "b"))
    assert registry.cache_dir() == tmp_path / "b"
    assert registry.user_models_dir() == tmp_path / "b" / "models"
    monkeypatch.delenv("NAPARI_CVDM_CACHE_DIR")
    assert registry.cache_dir().name == "napari-cvdm"


def test_list_models_reads_user_models(cache):
    assert registry.list_models() == []
    path = _save(cache / "models" / "my-sr.safetensors", name="my sr")
    _save(cache / "models" / "my-qpi.safetensors", task="qpi")
    infos = registry.list_models()
    assert [i.name for i in infos] == ["my sr", "my-qpi"]
    sr = infos[0]
    assert (sr.task, sr.preset, sr.source, sr.path) == ("sr", "tiny", "user", path)
    assert sr.pixel_size_um == pytest.approx(0.0626)
    assert sr.size_bytes == path.stat().st_size > 0
    assert sr.description == "sr test model"
    assert [i.name for i in registry.list_models("qpi")] == ["my-qpi"]


def test_broken_user_file_is_skipped_with_a_warning(cache):
    (cache / "models").mkdir(parents=True)
    (cache / "models" / "broken.safetensors").write_bytes(b"garbage")
    _save(cache / "models" / "good.safetensors")
    with pytest.warns(UserWarning, match="broken.safetensors"):
        infos = registry.list_models()
    assert [i.name for i in infos] == ["good"]


def test_resolve_model_by_name_stem_and_path(cache, tmp_path):
    path = _save(cache / "models" / "file-stem.safetensors", name="pretty name")
    assert registry.resolve_model("pretty name") == path
    assert registry.resolve_model("file-stem") == path
    elsewhere = _save(tmp_path / "elsewhere.safetensors")
    assert registry.resolve_model(str(elsewhere)) == elsewhere
    assert registry.resolve_model(elsewhere) == elsewhere


def test_unknown_model_lists_available_names(cache):
    _save(cache / "models" / "alpha.safetensors")
    with pytest.raises(ModelFileError, match=r"unknown model 'beta'; available models: alpha"):
        registry.resolve_model("beta")
    with pytest.raises(ModelFileError, match="model file not found"):
        registry.resolve_model("missing/dir/x.safetensors")


def test_default_model_prefers_bundled_default_name(cache, tmp_path, monkeypatch):
    assert registry.default_model("sr") is None
    bundled = tmp_path / "bundled"
    other = _save(bundled / "a-first.safetensors")
    default = _save(bundled / "sr-fluorescence-2x.safetensors")
    monkeypatch.setattr(registry, "_bundled_files", lambda: [other, default])
    info = registry.default_model("sr")
    assert info.path == default and info.source == "bundled"
    assert registry.default_model("qpi") is None
    monkeypatch.setattr(registry, "_bundled_files", lambda: [other])
    assert registry.default_model("sr").path == other


def test_bundled_models_folder_is_listed_without_error():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        infos = [i for i in registry.list_models() if i.source == "bundled"]
    for info in infos:
        assert info.path.suffix == ".safetensors" and info.task in ("sr", "qpi", "prior")


@pytest.mark.parametrize("task, channels", [("sr", 1), ("qpi", 3)])
def test_make_untrained_model(task, channels):
    loaded = registry.make_untrained_model(task)
    assert loaded.metadata["training"]["untrained"] is True
    assert loaded.name.startswith("UNTRAINED")
    assert loaded.model.config.condition_channels == channels
    assert loaded.sha256 is None and loaded.path is None
    again = registry.make_untrained_model(task)
    for a, b in zip(loaded.model.parameters(), again.model.parameters()):
        assert torch.equal(a, b)
