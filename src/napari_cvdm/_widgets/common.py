"""Small pieces shared by the napari-cvdm widgets: notifications, devices, Run/Cancel, status.

Qt, magicgui and napari only; torch is imported inside :func:`device_choices` (building a CVDM
widget may import torch to list devices, importing this module must not).
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Callable, Iterator
from typing import Any

from magicgui.widgets import PushButton
from psygnal import Signal as PsygnalSignal
from qtpy.QtCore import QObject, Signal

__all__ = [
    "CUDA_GUIDE",
    "MODEL_EVENTS",
    "RunButton",
    "RunState",
    "RunStatus",
    "TRAIN_PREVIEW",
    "describe_error",
    "device_choices",
    "device_tooltip",
    "notify",
    "recording_notifications",
]

CUDA_GUIDE = "https://pytorch.org/get-started/locally/"
#: name and metadata key of the Train widget's preview layer (never a Reconstruct input)
TRAIN_PREVIEW = "cvdm_train_preview"


_RECORDERS: list[list[tuple[str, str]]] = []


class ModelFolderEvents:
    """Widget-to-widget news about the user models folder (no Qt object, so no lifetime issue).

    ``saved(path)`` is emitted after the Train widget wrote a model file; the Reconstruct widgets
    refresh their model lists on it. psygnal holds bound methods weakly, so a closed widget
    that was garbage-collected is dropped by itself.
    """

    saved = PsygnalSignal(str)


MODEL_EVENTS = ModelFolderEvents()


@contextlib.contextmanager
def recording_notifications() -> Iterator[list[tuple[str, str]]]:
    """Collect every ``(severity, message)`` passed to :func:`notify` inside the block.

    Works however :func:`notify` was imported (the recording happens inside it); the
    notifications are still shown.
    """
    seen: list[tuple[str, str]] = []
    _RECORDERS.append(seen)
    try:
        yield seen
    finally:
        _RECORDERS.remove(seen)


def notify(message: str, severity: str = "error") -> None:
    """Show one napari notification. Every widget message goes through here (tests record it
    with :func:`recording_notifications`).

    ``severity``: ``"error"``, ``"warning"`` or ``"info"``.
    """
    from napari.utils import notifications

    for seen in _RECORDERS:
        seen.append((severity, message))

    show: Callable[[str], Any] = {
        "error": notifications.show_error,
        "warning": notifications.show_warning,
        "info": notifications.show_info,
    }[severity]
    show(message)


class RunState(enum.Enum):
    """Life cycle of a widget job."""

    IDLE = "idle"
    RUNNING = "running"
    CANCELLING = "cancelling"


class RunStatus(QObject):
    """Observable job status: ``state``, progress ``step``/``total`` and a one-line ``message``.

    ``changed`` is emitted (on the main thread) whenever any field changes.
    """

    changed = Signal()

    def __init__(self) -> None:
        super().__init__()
        self.state = RunState.IDLE
        self.step = 0
        self.total = 0
        self.message = ""

    @property
    def idle(self) -> bool:
        return self.state is RunState.IDLE

    def update(self, **fields: Any) -> None:
        for key, value in fields.items():
            if not hasattr(self, key):
                raise AttributeError(f"RunStatus has no field {key!r}")
            setattr(self, key, value)
        self.changed.emit()


class RunButton:
    """One button that reads **Run** → **Cancel** → **Cancelling…** (disabled) → **Run**.

    ``on_run`` is called when pressed while idle, ``on_cancel`` while running. While idle the
    button is enabled only when :meth:`set_problem` was last given ``None``; the problem text is
    its tooltip otherwise.
    """

    RUN, CANCEL, CANCELLING = "Run", "Cancel", "Cancelling…"

    def __init__(
        self, status: RunStatus, on_run: Callable[[], Any], on_cancel: Callable[[], Any]
    ) -> None:
        self.widget = PushButton(text=self.RUN)
        self.status = status
        self._on_run = on_run
        self._on_cancel = on_cancel
        self._problem: str | None = None
        self.widget.changed.connect(self._pressed)
        status.changed.connect(self.refresh)
        self.refresh()

    def _pressed(self, *_: Any) -> None:
        if self.status.state is RunState.IDLE:
            self._on_run()
        elif self.status.state is RunState.RUNNING:
            self._on_cancel()

    def set_problem(self, problem: str | None) -> None:
        """What stops a run (shown as tooltip, Run disabled), or ``None`` when all is valid."""
        self._problem = problem
        self.refresh()

    def refresh(self) -> None:
        state = self.status.state
        if state is RunState.IDLE:
            self.widget.text = self.RUN
            self.widget.enabled = self._problem is None
            self.widget.tooltip = self._problem or "Start the reconstruction"
        elif state is RunState.RUNNING:
            self.widget.text = self.CANCEL
            self.widget.enabled = True
            self.widget.tooltip = "Stop after the current diffusion step"
        else:
            self.widget.text = self.CANCELLING
            self.widget.enabled = False
            self.widget.tooltip = "Stopping after the current diffusion step…"


def device_choices() -> list[tuple[str, str]]:
    """``(label, value)`` pairs for a device dropdown: ``auto`` and only the devices present.

    Imports torch (through ``engine.device``).
    """
    from ..engine.device import available_devices

    choices = []
    for entry in available_devices():
        if isinstance(entry, tuple | list):
            value, label = str(entry[0]), str(entry[1])
            if label != value and not label.startswith(value):
                label = f"{value} ({label})"
        else:
            value = label = str(entry)
        choices.append((label, value))
    return choices


def device_tooltip() -> str:
    """Why a GPU may be missing from the device list, with the install guide's address."""
    import torch

    reasons = []
    if not torch.cuda.is_available():
        if torch.version.cuda is None:
            reasons.append("this torch build has no CUDA (a CPU-only wheel)")
        else:
            reasons.append(f"torch was built for CUDA {torch.version.cuda} but finds no GPU/driver")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and not mps.is_available():
        reasons.append("no Apple MPS")
    text = "Only devices present are listed; 'auto' picks CUDA, then MPS, then CPU."
    if reasons:
        text += " Missing GPU: " + "; ".join(reasons) + f". To use a GPU see {CUDA_GUIDE}"
    return text


def describe_error(exc: BaseException) -> str:
    """One line naming what went wrong in a job and what to do about it.

    ``UserError`` messages already say both. Out-of-memory and unsupported-operation failures
    from torch are mapped to an action; anything else is reported as a bug.
    """
    from ..errors import DeviceError, ModelFileError, UserError

    text = str(exc).strip() or type(exc).__name__
    if isinstance(exc, ModelFileError):
        return f"Model file problem: {text}"
    if isinstance(exc, DeviceError):
        return f"Device problem: {text}"
    if isinstance(exc, UserError):
        return f"Input problem: {text}"
    name = type(exc).__name__
    lowered = text.lower()
    if name == "OutOfMemoryError" or "out of memory" in lowered:
        return (
            "Out of GPU memory while sampling. Set a smaller tile size (e.g. 256), fewer "
            f"samples, or choose the CPU device. ({name}: {text.splitlines()[0]})"
        )
    if isinstance(exc, MemoryError):
        return (
            "Out of memory (RAM). Reconstruct the current frame only, or use fewer samples or a "
            "smaller tile size."
        )
    if "mps" in lowered and (isinstance(exc, NotImplementedError) or "not implemented" in lowered):
        return (
            "An operation is not supported on Apple MPS. Choose the CPU device "
            f"(or set PYTORCH_ENABLE_MPS_FALLBACK=1 before starting napari). ({text})"
        )
    from ..failures import internal_message, user_message

    message = user_message(exc)  # full disk, read-only folder, ...: the CLI's one line
    if message is not None:
        return f"File problem: {message}"
    return f"Reconstruction failed: {internal_message(exc, 'napari-cvdm widget')}"
