"""Install the model file of a bioimage.io package exported by napari-cvdm.

A package written by :mod:`~napari_cvdm.workflows.bioimageio_export` carries the original
``<name>.safetensors`` model file as an attachment and records it (name and sha256) under
``config.napari_cvdm`` of its ``rdf.yaml``. :func:`import_package` checks the zip is such a
package, streams that file out of the zip into the user models folder
(``engine.registry.user_models_dir()``) through a temporary file, verifies its sha256 and the
model file itself (header, tensor shapes, finite weights; safetensors only, so nothing from the
package is executed — the TorchScript network in it is never loaded), and only then renames it
into place. An existing model of the same name is replaced only with ``overwrite``.

No bioimageio library is needed (zipfile and a YAML reader only).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import InputError, UserError
from .bioimageio_package import CONFIG_KEY, EXPORT_FORMAT, EXPORT_FORMAT_VERSION

__all__ = ["ImportReport", "import_package", "read_package_record"]

#: the package description file names bioimage.io accepts at the root of a zip
RDF_NAMES = ("rdf.yaml", "bioimageio.yaml")
#: largest rdf.yaml read (bytes) and largest model file installed (bytes)
MAX_RDF_BYTES = 1 << 20
MAX_MODEL_BYTES = 8 << 30
#: model names that make safe file names (the Train widget's rule)
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class ImportReport:
    """The installed model: its ``name``, ``path`` and file ``sha256``; ``replaced``: an earlier
    user model of that name was overwritten; ``already_bundled``: nothing was installed because a
    bundled model is this very file."""

    name: str
    path: Path
    sha256: str
    replaced: bool = False
    already_bundled: bool = False


def _foreign(path: Path, why: str) -> InputError:
    return InputError(
        f"{path} is not a package exported by napari-cvdm ({why}); `models --import` installs "
        "only packages written by `napari-cvdm export-bioimageio`"
    )


def _rdf(archive: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    import yaml

    names = {info.filename: info for info in archive.infolist()}
    entry = next((names[n] for n in RDF_NAMES if n in names), None)
    if entry is None:
        entry = next((i for n, i in names.items() if n.endswith(".bioimageio.yaml")), None)
    if entry is None:
        raise InputError(
            f"{path} is not a bioimage.io model package: it holds no rdf.yaml at its top level"
        )
    if entry.file_size > MAX_RDF_BYTES:
        raise _foreign(path, f"its {entry.filename} is {entry.file_size} bytes")
    try:
        rdf = yaml.safe_load(archive.read(entry).decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise InputError(f"the {entry.filename} of {path} is not readable YAML ({exc})") from None
    if not isinstance(rdf, dict) or rdf.get("type") != "model":
        raise InputError(f"{path} is not a bioimage.io *model* package")
    return rdf


def read_package_record(path: str | os.PathLike) -> dict[str, Any]:
    """``config.napari_cvdm`` of a package exported by napari-cvdm (checked), else
    ``InputError`` saying what the file is instead (missing, not a zip, foreign package)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"no such package file: {path}")
    if not zipfile.is_zipfile(path):
        raise InputError(f"{path} is not a zip file; a bioimage.io package is a .zip")
    try:
        with zipfile.ZipFile(path) as archive:
            rdf = _rdf(archive, path)
    except zipfile.BadZipFile as exc:
        raise InputError(f"{path} is a damaged zip file ({exc})") from None
    config = rdf.get("config")
    record = config.get(CONFIG_KEY) if isinstance(config, dict) else None
    if not isinstance(record, dict) or record.get("format") != EXPORT_FORMAT:
        raise _foreign(path, f"its config has no {CONFIG_KEY!r} record")
    version = record.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise _foreign(path, f"invalid {CONFIG_KEY}.format_version {version!r}")
    if version > EXPORT_FORMAT_VERSION:
        raise InputError(
            f"{path} was exported by a newer napari-cvdm (package format {version}, this one "
            f"reads {EXPORT_FORMAT_VERSION}); update napari-cvdm"
        )
    name = record.get("model_file")
    digest = record.get("model_sha256")
    if (
        not isinstance(name, str)
        or PurePosixPath(name).name != name
        or not name.endswith(".safetensors")
        or not SAFE_NAME.fullmatch(name)
    ):
        raise _foreign(path, f"its model_file {name!r} is not a plain .safetensors file name")
    if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
        raise _foreign(path, "its record has no valid model_sha256")
    attachments = rdf.get("attachments") or []
    listed = {a.get("source") for a in attachments if isinstance(a, dict)}
    if name not in listed:
        raise _foreign(path, f"{name} is not among its attachments")
    return record


def _extract(archive: zipfile.ZipFile, member: str, target: Path, path: Path) -> str:
    """Stream ``member`` into ``target`` (at most its declared size); returns its sha256."""
    try:
        info = archive.getinfo(member)
    except KeyError:
        raise _foreign(path, f"the attachment {member} is missing from the zip") from None
    if info.file_size > MAX_MODEL_BYTES:
        raise InputError(f"the model file in {path} is {info.file_size} bytes; refusing it")
    digest = hashlib.sha256()
    written = 0
    with archive.open(info) as source, open(target, "wb") as sink:
        for chunk in iter(lambda: source.read(1 << 20), b""):
            written += len(chunk)
            if written > info.file_size:
                raise InputError(f"the model file in {path} is larger than its zip entry says")
            digest.update(chunk)
            sink.write(chunk)
    return digest.hexdigest()


def _named(name: str, source: str) -> list[Any]:
    """The listed models (``source`` bundled or user) called ``name``."""
    from ..engine.registry import list_models

    return [i for i in list_models() if i.source == source and i.name == name]


def import_package(path: str | os.PathLike, *, overwrite: bool = False) -> ImportReport:
    """Install the model file of the napari-cvdm package ``path`` into the user models folder.

    Raises ``InputError``/``UserError`` (one line each) for a missing file, a non-zip, a
    package not exported by napari-cvdm, a model file whose sha256 or contents do not check out,
    or an existing model of the same name without ``overwrite``; nothing is left behind then.
    A package holding a bundled model's very file installs nothing (``already_bundled``).
    """
    from ..engine.modelfile import file_sha256, load_model
    from ..engine.registry import user_models_dir
    from ..fsutil import check_writable_folder, folder_lock, sweep_stale, temp_path

    path = Path(path).expanduser()
    record = read_package_record(path)
    member = record["model_file"]
    folder = user_models_dir()
    with zipfile.ZipFile(path) as archive:
        size = archive.getinfo(member).file_size if member in archive.namelist() else 0
        check_writable_folder(folder, "the user models folder", need_bytes=size)
        sweep_stale(folder)
        tmp = temp_path(folder / member, ".tmp")  # not "*.safetensors": never listed
        try:
            digest = _extract(archive, member, tmp, path)
            if digest != record["model_sha256"]:
                raise InputError(
                    f"the model file in {path} does not match the sha256 its package records "
                    "(damaged or edited); nothing was installed"
                )
            loaded = load_model(tmp, "cpu")  # header, digests, shapes, finite weights
            name = loaded.metadata["name"]
            del loaded
            if not SAFE_NAME.fullmatch(name):
                raise InputError(
                    f"the model in {path} is named {name!r}, which is not a safe file name "
                    "(letters, digits, '.', '_', '-'); nothing was installed"
                )
            bundled = _named(name, "bundled")
            if bundled:
                if file_sha256(bundled[0].path) == digest:
                    tmp.unlink()
                    return ImportReport(name, bundled[0].path, digest, already_bundled=True)
                raise UserError(
                    f"a bundled model is already called {name!r} and would hide the imported "
                    "one; rename the model (re-train or re-save it under another name) before "
                    "exporting it; nothing was installed"
                )
            target = folder / f"{name}.safetensors"
            with folder_lock(folder):
                others = [i.path for i in _named(name, "user") if i.path != target]
                if others:
                    raise UserError(
                        f"the user model file {others[0]} is already called {name!r}; rename or "
                        "remove it first (nothing was installed)"
                    )
                replaced = target.exists() or target.is_symlink()
                if replaced and not overwrite:
                    raise UserError(
                        f"a user model {name!r} already exists ({target}); pass --overwrite to "
                        "replace it (nothing was installed)"
                    )
                os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
    return ImportReport(name, target, digest, replaced=replaced)
