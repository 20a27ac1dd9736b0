"""The error boundary: every exception becomes one line a user can act on.

:func:`user_message` turns failures the user can fix (``UserError``, file-system errors such as
a full disk or a read-only folder, running out of RAM or GPU memory) into one line with what to
do. Anything else is a bug: :func:`log_internal_error` writes the traceback to a log file and
returns its path, and :func:`internal_message` says where it is and where to report it. The CLI
(``cli.main``) and the widgets (``_widgets/common.describe_error``) use the same functions.

No torch, Qt or napari here (torch errors are recognised by their class name).
"""

from __future__ import annotations

import datetime as _dt
import errno
import os
import sys
import tempfile
import traceback
from pathlib import Path

from .errors import UserError

__all__ = ["ISSUES_URL", "internal_message", "log_internal_error", "user_message"]

ISSUES_URL = "https://github.com/napari-cvdm/napari-cvdm/issues"

_OS_ADVICE = {
    errno.ENOSPC: "the disk is full; free some space or choose another output folder",
    errno.EDQUOT: "your disk quota is exhausted; free some space or choose another output folder",
    errno.EACCES: "permission denied; choose a file or folder you can write to",
    errno.EPERM: "operation not permitted; choose a file or folder you can write to",
    errno.EROFS: "the file system is read-only; choose a writable output folder",
    errno.ENOENT: "no such file or folder; check the path",
    errno.ENOTDIR: "a part of the path is not a folder; check the path",
    errno.EISDIR: "it is a folder, not a file; give a file path",
    errno.ENAMETOOLONG: "the file name is too long; choose a shorter path",
    errno.EMFILE: "too many open files; close other programs or raise the limit (ulimit -n)",
    errno.EIO: "input/output error; the disk or network share may be failing",
    errno.EPIPE: "the output stream was closed before everything was written (e.g. piped into "
    "`head`); write to a file instead",
}


def _os_message(exc: OSError) -> str:
    where = exc.filename
    target = f" ({where})" if where else ""
    advice = _OS_ADVICE.get(exc.errno or -1)
    if advice is None:
        reason = exc.strerror or str(exc)
        return f"file system error{target}: {reason}; check the paths and free space"
    return f"{advice}{target}"


def _is_out_of_memory(exc: BaseException) -> bool:
    name = type(exc).__name__
    text = str(exc).lower()
    return (
        isinstance(exc, MemoryError)
        or name == "OutOfMemoryError"
        or (isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate" in text))
        or (isinstance(exc, RuntimeError) and "not enough memory" in text)
    )


def user_message(exc: BaseException) -> str | None:
    """One line for a failure the user can fix, or None when ``exc`` is a bug."""
    if isinstance(exc, UserError):
        return str(exc).strip() or type(exc).__name__
    if _is_out_of_memory(exc):
        gpu = "cuda" in str(exc).lower() or type(exc).__name__ == "OutOfMemoryError"
        where = "GPU memory" if gpu else "memory (RAM)"
        return (
            f"out of {where}; use a smaller --tile, fewer --samples, a smaller crop of the "
            "image" + (", or the CPU (--device cpu)" if gpu else "")
        )
    if isinstance(exc, OSError) and exc.errno is not None:
        return _os_message(exc)
    if isinstance(exc, OSError) and "requested and" in str(exc) and "written" in str(exc):
        # a short write (tifffile, numpy tofile) without errno: the disk filled up
        return _OS_ADVICE[errno.ENOSPC]
    return None


def _log_folder() -> Path:
    override = os.environ.get("NAPARI_CVDM_CACHE_DIR")
    if override:
        return Path(override).expanduser() / "logs"
    try:
        import pooch

        return Path(pooch.os_cache("napari-cvdm")) / "logs"
    except Exception:  # noqa: BLE001 - any failure: fall back to the temp folder
        return Path(tempfile.gettempdir()) / "napari-cvdm-logs"


def log_internal_error(exc: BaseException, where: str) -> Path | None:
    """Write ``exc``'s traceback (with version and command line) to a log file; its path, or
    None when no log file could be written."""
    from . import __version__

    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    text = (
        f"napari-cvdm {__version__}, Python {sys.version.split()[0]}, {sys.platform}\n"
        f"where: {where}\ncommand: {' '.join(sys.argv)}\n\n"
        + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    )
    for folder in (_log_folder(), Path(tempfile.gettempdir())):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"napari-cvdm-error-{stamp}-{os.getpid()}.log"
            path.write_text(text)
            return path
        except OSError:
            continue
    return None


def internal_message(exc: BaseException, where: str) -> str:
    """One line for a bug: what failed, where the traceback was logged, where to report it."""
    log = log_internal_error(exc, where)
    first = (str(exc).strip().splitlines() or [""])[0][:200]
    saved = f"the details are in {log}" if log else "no log file could be written"
    return (
        f"internal error ({type(exc).__name__}: {first}); this is a bug in napari-cvdm — "
        f"{saved}; please report it at {ISSUES_URL} with that file"
    )
