"""The runner's imports point one way: no cycle among its modules, and a command loads
only what it uses.

The imports are read with ``ast`` from the source, at module level and inside functions,
and those under ``if TYPE_CHECKING:`` too: a type a module needs from one above it is a
cycle in the design even when Python never runs it.
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

RUNNER = ROOT / "runner"


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(path: Path, modules: set[str], root: Path = ROOT) -> set[str]:
    """The ``modules`` one file imports, wherever in the file."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = importlib.util.resolve_name("." * node.level + (node.module or ""), package)
            found.add(source)
            found.update(f"{source}.{alias.name}" for alias in node.names)
    return {module for module in found & modules if module != name}


def import_graph(package: Path = RUNNER) -> dict[str, set[str]]:
    """Each module of ``package`` and the modules of it that it imports."""
    root = package.parent
    paths = {module_name(path, root): path for path in package.rglob("*.py")}
    return {name: imported(path, set(paths), root) for name, path in paths.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One cycle through each group of modules that import each other (a depth-first walk)."""
    found: list[list[str]] = []
    state: dict[str, str] = {}

    def walk(name: str, path: list[str]) -> None:
        state[name] = "open"
        for target in sorted(graph[name]):
            if state.get(target) == "open":
                found.append([*path[path.index(target) :], target])
            elif target not in state:
                walk(target, [*path, target])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    return found


def test_no_import_cycle_among_runner_modules() -> None:
    found = cycles(import_graph())
    assert not found, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in found)


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import d\n")
    for name in ("a", "b", "c", "e"):
        (package / f"{name}.py").write_text("import os\n")
    (package / "sub" / "d.py").write_text("from ..e import thing\n")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nimport pkg.b\nif TYPE_CHECKING:\n    from pkg import c\n"
        "def later():\n    from .sub import d\n"
    )
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg", "pkg.b", "pkg.c", "pkg.sub", "pkg.sub.d"}
    assert graph["pkg.sub"] == {"pkg.sub.d"}
    assert graph["pkg.sub.d"] == {"pkg.e"}
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def loaded_by(statement: str) -> set[str]:
    """The runner modules a fresh interpreter holds after ``statement``."""
    code = f"{statement}; import sys; print(' '.join(sorted(sys.modules)))"
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    return {name for name in done.stdout.split() if name.startswith("runner")}


def test_sonar_does_not_load_services_or_the_run_command() -> None:
    loaded = loaded_by("import runner.sonar")
    assert not {name for name in loaded if name.startswith("runner.services")}
    assert "runner.run" not in loaded


def test_the_command_line_loads_only_what_every_command_uses() -> None:
    # testgate merge of a large report is mostly start-up: run, flaky, sonar and the
    # services load when their command runs
    loaded = loaded_by("import runner.cli")
    assert "runner.merge" in loaded
    assert not {"runner.run", "runner.flaky", "runner.sonar"} & loaded
    assert not {name for name in loaded if name.startswith("runner.services.")}
