"""The package's shape (docs/architecture.md): no import cycles, the engine does not import the
workflows, physics does not import the metrics, and the CLI fails loudly on a missing
subcommand. Static checks over the source (ast), no imports of the checked modules."""

from __future__ import annotations

import ast
import collections
import importlib.util
from pathlib import Path

import pytest

PACKAGE = Path(importlib.util.find_spec("napari_cvdm").origin).parent


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Module → the package modules it imports (at module level or inside functions; imports
    under ``if TYPE_CHECKING:`` are for annotations only and do not count)."""
    files = sorted(PACKAGE.rglob("*.py"))
    modules = {_module(p) for p in files}
    graph: dict[str, set[str]] = collections.defaultdict(set)
    for path in files:
        name = _module(path)
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(sub)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.dump(node.test)
            for sub in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package[: len(package) - node.level + 1] if node.level else []
                module = ".".join(base + ([node.module] if node.module else []))
                targets = [f"{module}.{a.name}" for a in node.names] + [module]
            for target in targets:
                parts = target.split(".")
                while parts and ".".join(parts) not in modules:
                    parts = parts[:-1]
                found = ".".join(parts)
                if parts and found != name and not name.startswith(found + "."):
                    graph[name].add(found)
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in list(graph):
        if v not in index:
            visit(v)
    return found


def test_the_package_has_no_import_cycles():
    assert _cycles(_imports()) == []


def test_the_engine_does_not_import_workflows_commands_or_widgets():
    layers = ("napari_cvdm.workflows", "napari_cvdm.commands", "napari_cvdm._widgets")
    climbs = [
        (a, b)
        for a, targets in _imports().items()
        if a.startswith("napari_cvdm.engine")
        for b in targets
        if b.startswith(layers)
    ]
    assert climbs == []


def test_physics_does_not_import_the_metrics():
    climbs = [
        (a, b)
        for a, targets in _imports().items()
        if a.startswith("napari_cvdm.physics")
        for b in targets
        if b == "napari_cvdm.metrics"
    ]
    assert climbs == []


def test_the_cli_fails_loudly_when_a_subcommand_is_missing(monkeypatch):
    from napari_cvdm import cli

    monkeypatch.setattr(cli, "SUBCOMMANDS", (*cli.SUBCOMMANDS, "no_such_command"))
    with pytest.raises(ModuleNotFoundError, match="no_such_command"):
        cli.build_parser()


TASK_NAMES = {"sr", "qpi", "prior", "restore"}


def _names_a_task(node: ast.AST) -> bool:
    """A string constant that is a task name, or a tuple/list/set of them."""
    if isinstance(node, ast.Constant):
        return node.value in TASK_NAMES
    if isinstance(node, ast.Tuple | ast.List | ast.Set) and node.elts:
        return all(isinstance(e, ast.Constant) and e.value in TASK_NAMES for e in node.elts)
    return False


def test_only_the_tasks_compare_task_names():
    """What a task is lives in napari_cvdm/tasks/: elsewhere the code asks the task instead of
    comparing its name (at most 3 such comparisons, issue 12)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] == "tasks":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Compare) and any(
                _names_a_task(o) for o in (node.left, *node.comparators)
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert len(found) <= 3, found


def test_long_functions_are_few_and_say_why():
    """At most 2 functions over 80 lines, each with the reason written above it."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for node in ast.walk(ast.parse("\n".join(lines))):
            function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            if function and node.end_lineno - node.lineno + 1 > 80:
                above = "\n".join(lines[max(0, node.lineno - 4) : node.lineno - 1])
                long.append((f"{path.relative_to(PACKAGE)}:{node.name}", above))
    assert len(long) <= 2, long
    assert all("Over 80 lines by choice" in above for _, above in long), long
