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
from typing import Any

from .base import Task

__all__ = ["Task", "all_tasks", "get", "make_adapter", "names", "validate_rule"]

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


def validate_rule(rule: Any, task: str | None = None) -> dict[str, Any]:
    """Check a normalisation rule dict; returns it unchanged or raises ``ValueError``.

    ``task`` (``"sr"``/``"qpi"``), when given, must match ``rule["task"]``; the rule's task
    checks the rest (a ``prior`` model has no conditional input: any target rule).
    """
    if not isinstance(rule, dict):
        raise ValueError(f"normalization must be a JSON object, got {type(rule).__name__}")
    rtask = rule.get("task")
    if task is not None and rtask != task:
        raise ValueError(f"normalization.task is {rtask!r} but the model task is {task!r}")
    if rtask not in _MODULES:
        known = [repr(name) for name in _MODULES]
        raise ValueError(
            f"normalization.task must be {', '.join(known[:-1])} or {known[-1]}, got {rtask!r}"
        )
    return get(rtask).validate_rule(rule)


def make_adapter(task: str, image: Any, metadata: dict[str, Any], **options: Any) -> Any:
    """The input adapter of ``task`` for ``image`` (validated at once: a bad input raises
    :class:`~napari_cvdm.errors.InputError` before any work); unknown options raise
    ``InputError`` too. Tasks that do not reconstruct are refused in one line."""
    from ..errors import InputError

    known = task in _MODULES
    if not known or not get(task).reconstructs:
        raise InputError(
            f"models of task {task!r} cannot reconstruct images; use an SR or QPI model"
        )
    try:
        return get(task).adapter(image, metadata, **options)
    except TypeError as exc:
        if "unexpected keyword" in str(exc):
            raise InputError(f"unknown option for {task.upper()} reconstruction: {exc}") from None
        raise
