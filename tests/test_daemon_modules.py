"""The daemon package's modules: each imports on its own in a fresh interpreter, and the imports
among them (function-level ones included) form no cycle."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import xray_autoinst.daemon

PACKAGE = "xray_autoinst.daemon"
DAEMON_DIR = Path(xray_autoinst.daemon.__file__).resolve().parent
MODULES = sorted(p.stem for p in DAEMON_DIR.glob("*.py") if p.stem not in ("__init__", "__main__"))


def import_graph(directory: Path) -> dict[str, set[str]]:
    """``{module: {daemon modules it imports}}``, from every import statement of each module."""
    names = {p.stem for p in directory.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in sorted(directory.glob("*.py")):
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith(PACKAGE + "."):
                        targets.add(alias.name.split(".")[2])
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level == 1:  # from . import x / from .x import y
                    base = f"{PACKAGE}.{base}" if base else PACKAGE
                if base == PACKAGE:
                    targets.update(a.name for a in node.names if a.name in names)
                elif base.startswith(PACKAGE + "."):
                    targets.add(base.split(".")[2])
        graph[path.stem] = targets - {path.stem}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph.get(node, ())):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        cycle = visit(start)
        if cycle:
            return cycle
    return None


def test_find_cycle_finds_one():
    graph = {"cli": {"server"}, "server": {"writer"}, "writer": {"cli"}}
    assert find_cycle(graph) == ["cli", "server", "writer", "cli"]
    assert find_cycle({"cli": {"server", "logsetup"}, "writer": {"logsetup"}}) is None


def test_no_import_cycle_among_the_daemon_modules():
    graph = import_graph(DAEMON_DIR)
    assert graph["writer"] >= {"logsetup"}  # the graph sees function-level imports
    assert find_cycle(graph) is None


def test_logging_setup_is_not_the_command_line():
    graph = import_graph(DAEMON_DIR)
    for name in ("server", "writer", "lifecycle", "console", "ui"):
        assert "cli" not in graph[name], name
    assert graph["logsetup"] == set()


def test_models_do_not_import_their_views():
    graph = import_graph(DAEMON_DIR)
    assert "views" not in graph["servicemap"] and "views" not in graph["tree"]
    assert "ui" not in graph["console"] and "views" not in graph["console"]


@pytest.mark.parametrize("module", MODULES)
def test_each_module_imports_alone(module):
    proc = subprocess.run(
        [sys.executable, "-c", f"import {PACKAGE}.{module}"],
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
