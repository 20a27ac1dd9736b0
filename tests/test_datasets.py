"""Sample-data registry: download from a loopback server, sha256 verification, offline message."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import http.server
import shutil
import socket
import threading
import types
from pathlib import Path

import numpy as np
import pooch
import pytest

from napari_cvdm import datasets
from napari_cvdm.errors import InputError, UserError

MT_SOURCE = Path(__file__).parent / "data" / "rdlsim-mt" / "MT.mrc"
MT_SHA256 = "8436eb446828b3db69848d29ed93a00cd38105a1c5d8daab204107589d1c55fa"

needs_mt = pytest.mark.skipif(not MT_SOURCE.exists(), reason="local copy of MT.mrc not present")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - signature from the stdlib
        pass


@contextlib.contextmanager
def serve_folder(folder: Path):
    """Serve ``folder`` over HTTP on 127.0.0.1 (a free port) for the duration of the block."""
    handler = functools.partial(_QuietHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.timeout = 5
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    monkeypatch.setenv(datasets.CACHE_ENV, str(folder))
    monkeypatch.delenv(datasets.DATA_URL_ENV, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # pooch sleeps 1 s, 2 s between retries; the retries themselves still happen
    monkeypatch.setattr(pooch.core, "time", types.SimpleNamespace(sleep=lambda s: None))
    return folder


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_registry_has_hash_and_url_for_every_file():
    files = datasets.sample_files()
    mt = files[datasets.BIOSR_MT]
    assert mt.known_hash == f"sha256:{MT_SHA256}"
    assert mt.url.startswith("https://raw.githubusercontent.com/qc17-THU/rDL-SIM/")
    assert mt.url.endswith("/MT.mrc")
    for f in files.values():
        assert f.known_hash.startswith("sha256:") and len(f.known_hash) == 7 + 64


def test_cache_folder_follows_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "a"))
    assert datasets.cache_folder() == tmp_path / "a"
    monkeypatch.setenv(datasets.CACHE_ENV, str(tmp_path / "b"))  # no restart needed
    assert datasets.cache_folder() == tmp_path / "b"


@needs_mt
def test_download_from_loopback_verifies_and_caches(cache, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(MT_SOURCE, served / "MT.mrc")
    with serve_folder(served) as url:
        path = datasets.fetch(datasets.BIOSR_MT, base_url=url)
    assert path == cache / "MT.mrc"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MT_SHA256
    # the server is gone: a cached file with the right hash needs no network
    assert datasets.fetch(datasets.BIOSR_MT, base_url=f"http://127.0.0.1:{_closed_port()}/") == path


@needs_mt
def test_mirror_from_environment_variable(cache, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(MT_SOURCE, served / "MT.mrc")
    with serve_folder(served) as url:
        monkeypatch.setenv(datasets.DATA_URL_ENV, url.rstrip("/"))
        path = datasets.fetch(datasets.BIOSR_MT)
    assert path.stat().st_size == MT_SOURCE.stat().st_size


def test_wrong_hash_is_refused_and_nothing_is_kept(cache, tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    (served / "MT.mrc").write_bytes(b"not the microtubules" * 100)
    with serve_folder(served) as url, pytest.raises(datasets.DownloadError) as info:
        datasets.fetch(datasets.BIOSR_MT, base_url=url)
    message = str(info.value)
    assert "sha256" in message and "MT.mrc" in message
    assert datasets.CACHE_ENV in message and "place the file there by hand" in message
    assert not (cache / "MT.mrc").exists()
    assert [p.name for p in cache.iterdir()] == []  # the temporary download was deleted too


@needs_mt
def test_cached_file_with_wrong_hash_is_replaced(cache, tmp_path):
    cache.mkdir()
    (cache / "MT.mrc").write_bytes(b"truncated")
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(MT_SOURCE, served / "MT.mrc")
    with serve_folder(served) as url:
        path = datasets.fetch(datasets.BIOSR_MT, base_url=url)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == MT_SHA256


def test_offline_message_names_file_url_folder_and_variable(cache):
    url = f"http://127.0.0.1:{_closed_port()}/"
    with pytest.raises(datasets.DownloadError) as info:
        datasets.fetch(datasets.BIOSR_MT, base_url=url)
    message = str(info.value)
    assert isinstance(info.value, UserError) and isinstance(info.value, InputError)
    assert "MT.mrc" in message
    assert url + "MT.mrc" in message
    assert str(cache) in message
    assert datasets.CACHE_ENV in message
    assert "place the file there by hand" in message


def test_unknown_file_name(cache):
    with pytest.raises(InputError, match="not a napari-cvdm sample file"):
        datasets.fetch("nope.tif")


@needs_mt
def test_read_biosr_widefield_is_mean_of_raw_frames():
    import mrcfile

    widefield, meta = datasets.read_biosr_widefield(MT_SOURCE)
    with mrcfile.open(MT_SOURCE, permissive=True) as mrc:
        raw = np.asarray(mrc.data, dtype=np.float64)
    assert widefield.shape == (256, 256) and widefield.dtype == np.float32
    np.testing.assert_allclose(widefield, raw.mean(axis=0), rtol=1e-6)
    assert meta["pixel_size_um"] == pytest.approx(0.0626)
    assert meta["frames"] == 9
    assert "MIT" in meta["licence"]


def test_read_biosr_widefield_rejects_garbage(tmp_path):
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(UserError):
        datasets.read_biosr_widefield(bad)
