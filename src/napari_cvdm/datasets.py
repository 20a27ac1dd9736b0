"""Downloadable sample data: a hashed pooch registry with a user-overridable cache folder.

The registry lives in the packaged ``registry.txt`` (``name sha256:hash url`` per line). Every
call builds a fresh :func:`pooch.create` so that environment changes (``NAPARI_CVDM_CACHE_DIR``)
take effect without restarting napari. Files are downloaded only on explicit user action, never
at import. A cached file whose sha256 matches needs no network; a download whose sha256 differs
is refused and nothing is kept. SSL verification is never disabled.

No torch, Qt or napari here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InputError

__all__ = [
    "BIOSR_MT",
    "CACHE_ENV",
    "DATA_URL_ENV",
    "DownloadError",
    "SampleFile",
    "bundled_copy",
    "cache_folder",
    "fetch",
    "fetch_or_bundled",
    "read_biosr_widefield",
    "sample_files",
]

CACHE_ENV = "NAPARI_CVDM_CACHE_DIR"
"""Environment variable replacing the default cache folder, ``pooch.os_cache("napari-cvdm")``."""

DATA_URL_ENV = "NAPARI_CVDM_DATA_BASE_URL"
"""Environment variable with a base URL (a mirror) used instead of each file's registry URL.
The sha256 check still applies, so a mirror cannot substitute different data."""

BIOSR_MT = "MT.mrc"
"""Real TIRF-SIM raw frames of microtubules (9 x 256 x 256 uint16, 0.0626 µm, MIT licence)."""

_RETRIES = 2


class DownloadError(InputError):
    """A registry file could not be downloaded or failed its sha256 check."""


@dataclass(frozen=True)
class SampleFile:
    """One registry entry: file name, ``sha256:...`` hash and its public URL."""

    name: str
    known_hash: str
    url: str


def _registry_text() -> str:
    return resources.files("napari_cvdm").joinpath("registry.txt").read_text(encoding="utf-8")


def sample_files() -> dict[str, SampleFile]:
    """All files in the packaged registry, by name."""
    entries: dict[str, SampleFile] = {}
    for line in _registry_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ValueError(f"registry.txt line needs 'name hash url': {line!r}")
        entries[parts[0]] = SampleFile(*parts)
    return entries


def _make_pooch(base_url: str | None):
    import pooch

    files = sample_files()
    base_url = base_url or os.environ.get(DATA_URL_ENV) or None
    if base_url:
        base = base_url if base_url.endswith("/") else base_url + "/"
        urls = {name: base + name for name in files}
    else:
        urls = {name: f.url for name, f in files.items()}
    return pooch.create(
        path=pooch.os_cache("napari-cvdm"),
        base_url="",
        env=CACHE_ENV,
        registry={name: f.known_hash for name, f in files.items()},
        urls=urls,
        retry_if_failed=_RETRIES,
    )


def cache_folder() -> Path:
    """The folder downloads go to: ``$NAPARI_CVDM_CACHE_DIR`` if set, else pooch's OS cache."""
    return Path(_make_pooch(None).abspath)


def fetch(name: str, *, base_url: str | None = None, progressbar: Any = False) -> Path:
    """Path of registry file ``name`` in the cache, downloading and verifying it if needed.

    Parameters
    ----------
    name
        A file name from ``registry.txt``, e.g. :data:`BIOSR_MT`.
    base_url
        A mirror to download from instead of the registry URL (tests use a loopback server);
        defaults to ``$NAPARI_CVDM_DATA_BASE_URL`` and then to the registry URL.
    progressbar
        Passed to pooch (``True`` needs tqdm, or a custom progress object).

    Raises
    ------
    DownloadError
        The download failed (offline, proxy, HTTP error) or the file's sha256 did not match. The
        message names the file, URL, cache folder and ``NAPARI_CVDM_CACHE_DIR`` and says how to
        place the file by hand.
    """
    import pooch
    import requests

    files = sample_files()
    if name not in files:
        raise InputError(f"{name!r} is not a napari-cvdm sample file; known: {sorted(files)}.")
    registry = _make_pooch(base_url)
    url = registry.get_url(name)
    folder = Path(registry.abspath)
    try:
        path = registry.fetch(
            name, downloader=pooch.HTTPDownloader(progressbar=progressbar, timeout=30)
        )
    except ValueError as exc:  # pooch: sha256 mismatch (the download is deleted)
        raise DownloadError(
            f"The download of {name} from {url} does not match its expected sha256 "
            f"({files[name].known_hash}); it was discarded ({exc}). Download the file yourself "
            f"from {url} and place the file there by hand: {folder / name} (the cache folder "
            f"{folder} can be changed with the environment variable {CACHE_ENV})."
        ) from exc
    except (requests.RequestException, OSError) as exc:
        raise DownloadError(
            f"Could not download {name} from {url} ({type(exc).__name__}: {exc}). If this "
            f"computer is offline, download the file elsewhere and place the file there by hand: "
            f"{folder / name} (cache folder {folder}; set the environment variable {CACHE_ENV} "
            f"to use another folder). Behind a proxy, set HTTPS_PROXY, and REQUESTS_CA_BUNDLE or "
            f"SSL_CERT_FILE for a corporate certificate."
        ) from exc
    return Path(path)


#: registry files that also ship inside the package (identical bytes, same sha256), by name
_BUNDLED = {BIOSR_MT: ("data", "rdlsim-mt", "MT.mrc")}


def bundled_copy(name: str) -> Path | None:
    """The package's own copy of registry file ``name`` when it ships one and its sha256 is the
    registry's (a damaged copy is ignored), else None."""
    import hashlib

    parts = _BUNDLED.get(name)
    if parts is None:
        return None
    path = Path(str(resources.files("napari_cvdm").joinpath(*parts)))
    if not path.is_file():
        return None
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return path if f"sha256:{digest}" == sample_files()[name].known_hash else None


def fetch_or_bundled(name: str, *, base_url: str | None = None) -> tuple[Path, str | None]:
    """:func:`fetch`, falling back to the identical copy bundled in the package when the download
    fails (offline, proxy); returns the path and a note saying so (None when downloaded or
    cached). Raises :class:`DownloadError` when there is no bundled copy either."""
    try:
        return fetch(name, base_url=base_url), None
    except DownloadError as exc:
        copy = bundled_copy(name)
        if copy is None:
            raise
        url = sample_files()[name].url
        cause = exc.__cause__
        if isinstance(cause, ValueError):  # pooch: the download's sha256 did not match
            reason = "the download did not match its sha256"
        elif cause is not None:  # offline, proxy, refused connection, ...: the error's kind
            reason = type(cause).__name__
        else:
            reason = "download failed"
        return copy, (
            f"{name} could not be downloaded from {url} ({reason}); opened the identical copy "
            f"bundled with napari-cvdm instead ({copy}, sha256 checked)"
        )


def read_biosr_widefield(path: str | os.PathLike) -> tuple[np.ndarray, dict[str, Any]]:
    """Widefield image from a BioSR/rDL-SIM raw-SIM ``.mrc`` file: the mean of its raw frames.

    Returns
    -------
    widefield
        float32 (Y, X) in camera ADU (offset included), the mean over the 9 raw SIM frames
        (3 orientations x 3 phases), which is how BioSR defines widefield.
    metadata
        ``pixel_size_um`` (the BioSR camera's 0.0626 µm, via :func:`napari_cvdm.io.read_image`),
        ``wavelength_um`` (0.525 µm emission), ``na`` (1.49), ``frames``, ``source``, ``licence``.
    """
    from .io import read_image, widefield_from_raw_sim

    raw, info = read_image(path)
    if raw.ndim != 3:
        raise InputError(
            f"{path} should hold a stack of raw SIM frames (9, Y, X); got shape {raw.shape}. "
            "Delete it so that it is downloaded again."
        )
    widefield = widefield_from_raw_sim(raw)
    pixel_um = float(info.pixel_size_um[-1]) if info.pixel_size_um else 0.0626
    metadata = {
        "pixel_size_um": pixel_um,
        "wavelength_um": 0.525,
        "excitation_um": 0.488,
        "na": 1.49,
        "frames": int(raw.shape[0]),
        "source": "BioSR Multi-SIM microscope, rDL-SIM test data (Qiao, Li et al., Nat. Biotechnol."
        " 41, 367-377, 2023)",
        "licence": "MIT, Copyright (c) 2022 Chang Qiao",
    }
    return widefield, metadata
