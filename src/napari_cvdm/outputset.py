"""Write the output files of one input as a set: all of them appear together, or none.

Files are written into a private staging folder inside the output folder
(``.<label>.ncvdm-<host>-<pid>-<rand>.set``), then *committed*: under an exclusive lock on the
output folder (so two runs into one folder never interleave), with SIGINT/SIGTERM/SIGHUP held
back, the existing-file check is repeated, a ``.commit`` manifest is written and each file is
renamed into place. A run killed before the commit leaves only its staging folder, which the
next run removes (:func:`sweep`); a run killed *during* the commit (SIGKILL) leaves a manifest,
and the next run completes the renames, so no mixed or partial set survives.

No torch, Qt or napari here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import TracebackType

from .errors import UserError
from .fsutil import (
    _HOST,
    _OURS,
    folder_lock,
    pid_alive,
    refuse_existing,
    replace_path,
    sweep_stale,
    temp_dir,
)

__all__ = ["OutputSet", "other_live_writers", "sweep"]

_MANIFEST = ".commit"
_HELD_SIGNALS = {signal.SIGINT, signal.SIGTERM} | (
    {signal.SIGHUP} if hasattr(signal, "SIGHUP") else set()
)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Delay SIGINT/SIGTERM/SIGHUP until the block ends (main thread, POSIX; else no-op)."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(
        signal, "pthread_sigmask"
    ):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, _HELD_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _finish(staging: Path) -> None:
    """Complete the commit of a killed run's staging folder if it had begun (else nothing)."""
    manifest = staging / _MANIFEST
    if not manifest.is_file():
        return
    try:
        names = json.loads(manifest.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return
    for name in names:
        if isinstance(name, str) and "/" not in name and (staging / name).exists():
            replace_path(staging / name, staging.parent / name)


def sweep(folder: str | os.PathLike) -> int:
    """Remove what killed runs left in ``folder`` (finishing interrupted commits); returns the
    number of entries removed. Holds the folder lock, so it never races a live commit."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    with folder_lock(folder):
        return sweep_stale(folder, finish=_finish)


def other_live_writers(folder: str | os.PathLike, label: str) -> list[int]:
    """Process ids of other live runs on this machine staging a set labelled ``label`` in
    ``folder`` (e.g. a second ``train`` into the same model file while the first still runs)."""
    found = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return []
    prefix = f".{label[:80]}."
    for entry in entries:
        match = _OURS.search(entry.name)
        if match is None or not entry.name.startswith(prefix) or not entry.name.endswith(".set"):
            continue
        pid = int(match["pid"])
        if match["host"] == _HOST and pid != os.getpid() and pid_alive(pid):
            found.append(pid)
    return found


class OutputSet:
    """Stage the files ``names`` for ``folder`` and publish them together.

    A name may also be a folder (an OME-Zarr image, ``<stem>_mean.ome.zarr``): it is staged and
    renamed into place like a file.

    Use as a context manager::

        with OutputSet(folder, ["a_mean.tif", "a_std.tif"], overwrite=False) as out:
            write_tiff(out.path("a_mean.tif"), ...)
            write_tiff(out.path("a_std.tif"), ...)
            written = out.commit()

    Leaving the block without :meth:`commit` (an error, Ctrl-C, SIGTERM turned into an
    exception) removes the staging folder; nothing appears in ``folder``. ``inputs``: files
    the outputs must never replace.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        names: Sequence[str],
        overwrite: bool = False,
        inputs: Sequence[str | os.PathLike] = (),
        label: str = "outputs",
    ) -> None:
        self.folder = Path(folder)
        self.names = list(names)
        if len(set(self.names)) != len(self.names) or any(
            "/" in n or os.sep in n or n.startswith(".") for n in self.names
        ):
            raise ValueError(f"output names must be distinct plain file names, got {names}")
        self.overwrite = overwrite
        self.inputs = list(inputs)
        self.label = label
        self.staging: Path | None = None
        self.committed = False

    @property
    def targets(self) -> list[Path]:
        """The final paths, in order."""
        return [self.folder / name for name in self.names]

    def check(self) -> None:
        """Raise ``UserError`` if a target is an input, or exists and overwriting is off."""
        refuse_existing(self.targets, self.inputs, self.overwrite)

    def __enter__(self) -> OutputSet:
        self.check()
        self.staging = temp_dir(self.folder, self.label)
        return self

    def path(self, name: str) -> Path:
        """Where to write the file ``name`` now (inside the staging folder)."""
        if self.staging is None:
            raise RuntimeError("OutputSet.path() outside its with-block")
        if name not in self.names:
            raise ValueError(f"{name!r} is not one of this set's files {self.names}")
        return self.staging / name

    def commit(self) -> list[Path]:
        """Publish every staged file; returns the final paths. All names must be staged."""
        if self.staging is None:
            raise RuntimeError("OutputSet.commit() outside its with-block")
        missing = [n for n in self.names if not (self.staging / n).exists()]
        if missing:
            raise RuntimeError(f"output set committed without {missing}")
        with _signals_held(), folder_lock(self.folder):
            try:
                self.check()
            except UserError as exc:
                raise UserError(
                    f"{exc} — another run wrote it while this one was working"
                ) from None
            manifest = self.staging / (_MANIFEST + ".tmp")
            manifest.write_text(json.dumps({"files": self.names}))
            os.replace(manifest, self.staging / _MANIFEST)
            # from here on the set is decided: if a rename fails, the staging folder stays and
            # the next run's sweep completes the set
            self.committed = True
            for name in self.names:  # files, or folders (OME-Zarr images)
                replace_path(self.staging / name, self.folder / name)
            shutil.rmtree(self.staging, ignore_errors=True)
        return self.targets

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.staging is not None and not self.committed:
            shutil.rmtree(self.staging, ignore_errors=True)
        self.staging = None
