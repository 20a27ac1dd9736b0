"""Tasks: one module per task holds everything that makes the task what it is.

* ``sr`` (:mod:`.sr`): widefield → SIM-like super-resolution on a 2× finer grid;
* ``qpi`` (:mod:`.qpi`): through-focus brightfield → quantitative phase in radians;
* ``prior`` (:mod:`.restore`): the unconditional prior of zero-shot restoration.

Everything else asks the task (``tasks.get(loaded.task).upscale``, ...) instead of comparing
its name. Adding a task is adding one module with a :class:`~.base.Task` subclass and its name
in :data:`_MODULES` (docs/architecture.md, "Adding a task"). No torch here.
"""

from __future__ import annotations

from importlib import import_module

from .base import Task

__all__ = ["Task", "all_tasks", "get", "names"]

#: task name → module (in the order the model lists and ``--task`` choices show them)
_MODULES = {"sr": "sr", "qpi": "qpi", "prior": "restore"}
_CACHE: dict[str, Task] = {}


def get(name: str) -> Task:
    """The task called ``name`` (a model file's ``task``); raises ``KeyError`` for others."""
    task = _CACHE.get(name)
    if task is None:
        if name not in _MODULES:
            raise KeyError(name)
        task = _CACHE[name] = import_module(f"{__name__}.{_MODULES[name]}").TASK
    return task


def all_tasks() -> list[Task]:
    """Every task, in :data:`_MODULES` order."""
    return [get(name) for name in _MODULES]


def names(*, reconstructs: bool | None = None, trainable: bool | None = None) -> tuple[str, ...]:
    """Task names, optionally only those that reconstruct (predict) or train."""
    return tuple(
        t.name
        for t in all_tasks()
        if (reconstructs is None or t.reconstructs == reconstructs)
        and (trainable is None or t.trainable == trainable)
    )
