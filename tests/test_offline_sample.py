"""Offline, the real BioSR sample opens the identical copy bundled in the package, with a note."""

from __future__ import annotations

import hashlib
import shutil

import numpy as np
import pytest

from conftest import REAL_MT_MRC
from napari_cvdm import _sample_data, datasets


@pytest.fixture
def offline(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv(datasets.DATA_URL_ENV, "http://127.0.0.1:9/")  # a closed port
    monkeypatch.setattr("pooch.core.time", type("T", (), {"sleep": staticmethod(lambda s: None)}))
    return tmp_path


def test_the_package_ships_the_registry_file():
    copy = datasets.bundled_copy(datasets.BIOSR_MT)
    assert copy is not None and copy.parent.name == "rdlsim-mt"
    digest = hashlib.sha256(copy.read_bytes()).hexdigest()
    assert datasets.sample_files()[datasets.BIOSR_MT].known_hash == f"sha256:{digest}"
    assert (copy.parent / "LICENSE").read_text().startswith("MIT License")


def test_offline_sample_falls_back_to_the_bundled_copy_with_a_note(offline):
    with pytest.warns(UserWarning, match="opened the identical copy bundled with napari-cvdm"):
        ((array, kwargs),) = _sample_data.biosr_microtubules()
    note = kwargs["metadata"]["note"]
    assert "MT.mrc could not be downloaded" in note and "sha256 checked" in note
    url = datasets.sample_files()[datasets.BIOSR_MT].url
    # the URL once, and why (the kind of error), not the URL again in place of the reason
    assert note.count(url) == 1 and "(MT.mrc from" not in note
    assert array.shape == (256, 256) and array.dtype == np.float32
    expected, _meta = datasets.read_biosr_widefield(REAL_MT_MRC)
    assert np.array_equal(array, expected)  # the same data as the download
    assert kwargs["metadata"]["task"] == "sr"


def test_a_damaged_bundled_copy_is_never_used(offline, monkeypatch, tmp_path):
    damaged = tmp_path / "pkg" / "data" / "rdlsim-mt" / "MT.mrc"
    damaged.parent.mkdir(parents=True)
    (tmp_path / "pkg" / "registry.txt").write_text(datasets._registry_text())
    shutil.copy(REAL_MT_MRC, damaged)
    with damaged.open("r+b") as handle:
        handle.seek(5000)
        handle.write(b"\x00\x01")
    monkeypatch.setattr(datasets.resources, "files", lambda package: tmp_path / "pkg")
    assert datasets.bundled_copy(datasets.BIOSR_MT) is None
    with pytest.raises(datasets.DownloadError, match="place the file there by hand"):
        _sample_data.biosr_microtubules()


def test_offline_sample_opens_in_napari(make_napari_viewer, offline):
    viewer = make_napari_viewer()
    with pytest.warns(UserWarning, match="bundled"):
        viewer.open_sample("napari-cvdm", "biosr_microtubules")
    layer = viewer.layers["biosr_microtubules_widefield"]
    assert layer.data.shape == (256, 256)
    assert "note" in layer.metadata
