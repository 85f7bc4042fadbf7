"""The package's shape: no import circles, nothing imports a later stage of the data flow,
small modules, and no patches of other libraries' internals or process-wide tweaks."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "expkit"

#: The stages of the data flow (docs/design.md), earliest first. A module may import
#: modules of its own or an earlier stage, never of a later one. Every module must be
#: listed (by its dotted name or a package prefix ending in ".").
STAGES = [
    ["expkit.errors", "expkit._lazy", "expkit.paths", "expkit.files", "expkit.formatting",
     "expkit.domains", "expkit.engine", "expkit.engine."],
    ["expkit.data", "expkit.sql", "expkit.datasets."],
    ["expkit.schema"],
    ["expkit.profiling", "expkit.drift"],
    ["expkit.features."],
    ["expkit.models."],
    ["expkit.db", "expkit.templates"],
    ["expkit.run", "expkit.runs", "expkit.report", "expkit.tracking"],
    ["expkit.kernel", "expkit.execute", "expkit.watch"],
    ["expkit.registry"],
    ["expkit.promote"],
    ["expkit.scoring."],
    ["expkit.index"],
    ["expkit.schedules"],
    ["expkit.monitoring."],
    ["expkit.scheduler"],
    ["expkit.cli.", "expkit.widgets."],
]
#: Not part of the flow: the package's lazy front and deprecated aliases.
OUTSIDE = {"expkit", "expkit.plots"}
MAX_LINES = 500
#: Patches of other libraries and process-wide tweaks that library code must not make.
FORBIDDEN = re.compile(r"import ctypes|mallopt|prctl|gc\.freeze|/proc/self/maps|sys\.meta_path|"
                       r"os\._exit|setrecursionlimit|signal\.signal\(|all_estimators|_async_launch_kernel|"
                       r"FunctionDoc|whichmodule")
#: Where a process-wide setting is the module's job: the CLI owns its process's signals.
FORBIDDEN_OK = {"expkit.cli.main": {"signal.signal("}}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def _imports(name: str, path: Path, modules) -> set[str]:
    """Every expkit module ``name`` imports, at the top or inside functions."""
    is_pkg = path.name == "__init__.py"
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in modules else prefix for a in node.names]
        else:
            continue
        for target in targets:
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in modules and target != name and target.split(".")[0] == "expkit":
                out.add(target)
    return out


@pytest.fixture(scope="module")
def graph():
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _stage(name: str) -> int | None:
    for i, stage in enumerate(STAGES):
        if any(name == s or (s.endswith(".") and (name + ".").startswith(s)) for s in stage):
            return i
    return None


def _cycles(graph) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycles(graph):
    assert _cycles(graph) == []


def test_the_cycle_check_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_every_module_has_a_stage(graph):
    assert [m for m in graph if m not in OUTSIDE and _stage(m) is None] == []


def test_no_module_imports_a_later_stage(graph):
    late = [(m, d) for m, deps in graph.items() if m not in OUTSIDE
            for d in deps if d not in OUTSIDE and _stage(d) > _stage(m)]
    assert late == []


def test_modules_are_small():
    long = {p.relative_to(PACKAGE.parent).as_posix(): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


def test_no_patches_of_other_libraries_or_process_wide_tweaks():
    found = []
    for name, path in _modules().items():
        for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for match in FORBIDDEN.finditer(line):
                if match.group(0) not in FORBIDDEN_OK.get(name, ()):
                    found.append(f"{name}:{i}: {line.strip()}")
    assert found == []
