"""Safe file writing: temp files that respect the umask, no-clobber checks, stale-temp sweeping.

Every file napari-cvdm writes goes through a temporary file in the destination folder whose
name marks it as ours and records the writing process (``.<name>.ncvdm-<host>-<pid>-<rand>.tmp``),
then ``os.replace``. A run killed with SIGKILL leaves such a file behind; :func:`sweep_stale`
(called by every writing command before it writes) removes the ones whose process is gone.

Temporary files are created with ``tempfile.mkstemp`` (mode 0600) and then given the mode an
ordinary ``open()`` would have (0666 minus the umask), so outputs are not private by accident.

No torch, Qt or napari here.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from .errors import UserError

__all__ = [
    "TEMP_TAG",
    "atomic_write",
    "check_writable_folder",
    "current_umask",
    "folder_lock",
    "free_bytes",
    "is_disk_full",
    "pid_alive",
    "refuse_existing",
    "replace_path",
    "respect_umask",
    "same_file",
    "sweep_stale",
    "temp_dir",
    "temp_path",
]

#: marker in the names of our temporary files and staging folders
TEMP_TAG = "ncvdm"
#: temp files without a process id (older napari-cvdm versions) are swept after this many seconds
LEGACY_TEMP_AGE_S = 24 * 3600
_HOST = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:20] or "host"
_OURS = re.compile(rf"\.{TEMP_TAG}-(?P<host>[A-Za-z0-9]+)-(?P<pid>\d+)-[A-Za-z0-9_]+\.(tmp|set)$")
_LEGACY = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.(tmp|partial)$")


def current_umask() -> int:
    """The process umask (read from /proc on Linux, else by setting and restoring it)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _apply_umask(path: str | os.PathLike, directory: bool = False) -> None:
    with contextlib.suppress(OSError):
        os.chmod(path, (0o777 if directory else 0o666) & ~current_umask())


def respect_umask(path: str | os.PathLike) -> None:
    """Give the file ``path`` the mode ``open()`` would have (0666 minus the umask): for files a
    library wrote with a private mode (safetensors' ``save_file`` creates them 0600)."""
    _apply_umask(path)


def temp_path(target: Path, suffix: str = ".tmp") -> Path:
    """Create an empty temporary file next to ``target`` (our marked name, umask-respecting)."""
    target = Path(target)
    prefix = f".{target.name[:80]}.{TEMP_TAG}-{_HOST}-{os.getpid()}-"
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    os.close(fd)
    _apply_umask(name)
    return Path(name)


def temp_dir(folder: Path, label: str) -> Path:
    """Create a staging folder in ``folder`` (our marked name, umask-respecting)."""
    prefix = f".{label[:80]}.{TEMP_TAG}-{_HOST}-{os.getpid()}-"
    name = tempfile.mkdtemp(prefix=prefix, suffix=".set", dir=folder)
    _apply_umask(name, directory=True)
    return Path(name)


def atomic_write(
    path: str | os.PathLike, write: Callable[[Path], object], suffix: str = ".tmp"
) -> Path:
    """Call ``write(temp)`` on a temp file next to ``path``, then ``os.replace`` it onto ``path``.

    The file at ``path`` appears complete or not at all; the temp file is removed on any
    failure (including ``KeyboardInterrupt``). Returns ``path``.
    """
    path = Path(path)
    tmp = temp_path(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def replace_path(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """``os.replace(src, dst)`` that also replaces a folder (an OME-Zarr output) or a folder by
    a file: an existing ``dst`` that ``os.replace`` cannot overwrite is first renamed aside to
    one of our marked temp names (swept by the next run if this process dies), ``src`` is
    renamed onto ``dst``, and the old entry is removed. ``dst`` never holds a partial folder."""
    src, dst = Path(src), Path(dst)
    folder = (src.is_dir() and not src.is_symlink()) or (dst.is_dir() and not dst.is_symlink())
    if not folder or not (dst.exists() or dst.is_symlink()):
        os.replace(src, dst)
        return
    aside = Path(
        tempfile.mktemp(  # noqa: S306 - a name to rename to; os.replace fails if it is taken
            prefix=f".{dst.name[:80]}.{TEMP_TAG}-{_HOST}-{os.getpid()}-",
            suffix=".tmp",
            dir=dst.parent,
        )
    )
    os.replace(dst, aside)
    try:
        os.replace(src, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.replace(aside, dst)
        raise
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            aside.unlink()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return True
    return True


def _stale(entry: Path) -> bool:
    match = _OURS.search(entry.name)
    if match is not None:
        if match["host"] != _HOST:  # another machine's run (shared folder): only when old
            return _age(entry) > LEGACY_TEMP_AGE_S
        return int(match["pid"]) != os.getpid() and not pid_alive(int(match["pid"]))
    if _LEGACY.match(entry.name):
        return _age(entry) > LEGACY_TEMP_AGE_S
    return False


def _age(entry: Path) -> float:
    try:
        return time.time() - entry.lstat().st_mtime
    except OSError:
        return 0.0


def sweep_stale(folder: str | os.PathLike, finish: Callable[[Path], None] | None = None) -> int:
    """Remove temp files and staging folders left in ``folder`` by killed napari-cvdm runs.

    Only names carrying our marker whose process is gone (or, for older or other machines'
    names, older than a day) are touched. ``finish(staging)`` is called first for each stale
    staging folder (e.g. to complete a set whose commit had begun). Returns how many entries
    were removed; a folder that does not exist or cannot be listed sweeps nothing.
    """
    folder = Path(folder)
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    removed = 0
    for entry in entries:
        if not entry.name.startswith(".") or not _stale(entry):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink():
                if finish is not None:
                    finish(entry)
                shutil.rmtree(entry)
            else:
                entry.unlink()
            removed += 1
        except OSError:
            continue
    return removed


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name the same existing file (hard links and symlinks included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def refuse_existing(
    outputs: Iterable[Path], inputs: Iterable[str | os.PathLike] = (), overwrite: bool = False
) -> None:
    """Raise ``UserError`` if an output is one of the inputs, or exists and ``overwrite`` is off.

    An output that *is* an input is refused even with ``overwrite``: the run would destroy
    data it has not read yet.
    """
    inputs = [Path(p) for p in inputs]
    outputs = [Path(p) for p in outputs]
    for out in outputs:
        for src in inputs:
            if same_file(out, src) or out.resolve() == src.resolve():
                raise UserError(
                    f"the output {out} would replace the input {src}; "
                    "choose another --output-dir (nothing was written)"
                )
    if overwrite:
        return
    existing = [p for p in outputs if p.exists() or p.is_symlink()]
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UserError(
            f"{existing[0]} already exists{more}; pass --overwrite to replace it, or choose "
            "another output (nothing was written)"
        )


def free_bytes(folder: str | os.PathLike) -> int | None:
    """Free bytes on the file system of ``folder`` (None if unknown)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


def check_writable_folder(
    folder: str | os.PathLike, what: str, need_bytes: int = 0, create: bool = True
) -> Path:
    """Create ``folder`` if asked and prove a file can be written there (and ``need_bytes`` fit).

    Raises ``UserError`` naming ``what`` (e.g. ``"the output folder"``) and the OS reason.
    """
    folder = Path(folder)
    try:
        if folder.exists() and not folder.is_dir():
            raise UserError(f"{what} {folder} exists and is not a folder; choose another path")
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        probe = temp_path(folder / "write-test")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UserError(
            f"cannot write to {what} {folder} ({reason}); choose a folder you can write to"
        ) from None
    free = free_bytes(folder)
    if need_bytes and free is not None and free < need_bytes:
        raise UserError(
            f"{what} {folder} has {_human(free)} free but about {_human(need_bytes)} are needed; "
            "free some space or choose another location"
        )
    return folder


@contextlib.contextmanager
def folder_lock(folder: Path) -> Iterator[None]:
    """Hold an exclusive advisory lock (``flock``) on ``folder`` itself while the block runs.

    Serialises the commits of concurrent runs into one folder; no file is created. Where
    ``fcntl`` or directory locks are unavailable, the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # pragma: no cover - platforms that cannot open folders
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an out-of-space / quota error."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)
