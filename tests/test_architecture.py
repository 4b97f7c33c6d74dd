"""The layout rules of ARCHITECTURE.md, checked on the import statements (AST) of every module.

click only under ``clibd_cli/commands/`` and the entry point ``clibd_cli/main.py``; the library
never imports the command line; ``models/`` imports nothing from ``clibd_cli``; no import circles
among project modules (function-level and TYPE_CHECKING imports included); no module over ~400 lines.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("clibd_cli", "models")
CLI = ("clibd_cli.commands", "clibd_cli.main", "clibd_cli.__main__")
MAX_LINES = 400


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    return {module_name(p, root): p for package in PACKAGES for p in sorted((root / package).rglob("*.py"))}


def imports(name: str, path: Path, known: set[str]) -> dict[str, set[str]]:
    """Every module ``name`` imports, anywhere in it: ``{imported module: {names}}`` (project
    modules resolved to the deepest one that exists; ``from pkg import mod`` names ``pkg.mod``)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: dict[str, set[str]] = {}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found.setdefault(alias.name, set())
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.setdefault(target if target in known else base, set()).add(alias.name)
    return found


def graph(root: Path = ROOT) -> dict[str, set[str]]:
    """Project module -> the project modules it imports."""
    modules = project_modules(root)
    known = set(modules)
    return {name: {m for m in imports(name, path, known) if m in known and m != name}
            for name, path in modules.items()}


def all_imports(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {name: set(imports(name, path, set(modules))) for name, path in modules.items()}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return found


def in_package(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def test_click_only_in_the_command_line():
    offenders = sorted(name for name, found in all_imports().items()
                       if any(in_package(m, ("click",)) for m in found) and not in_package(name, CLI))
    assert offenders == []


def test_the_library_does_not_import_the_command_line():
    offenders = sorted(f"{name} -> {target}" for name, targets in graph().items() for target in targets
                       if in_package(target, CLI) and not in_package(name, CLI))
    assert offenders == []


def test_models_import_nothing_from_clibd_cli():
    offenders = sorted(f"{name} -> {m}" for name, found in all_imports().items()
                       if in_package(name, ("models",)) for m in found if in_package(m, ("clibd_cli",)))
    assert offenders == []


def test_no_import_circles():
    assert cycles(graph()) == []


def test_no_module_over_400_lines():
    long = {name: n for name, path in project_modules().items()
            if (n := len(path.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_the_checks_catch_what_they_forbid(tmp_path):
    """A circle, click in the library and models importing clibd_cli are all seen."""
    (tmp_path / "clibd_cli" / "reference").mkdir(parents=True)
    (tmp_path / "models").mkdir()
    files = {
        "clibd_cli/__init__.py": "",
        "clibd_cli/reference/__init__.py": "",
        "clibd_cli/reference/a.py": "def f():\n    from clibd_cli.reference import b\n",
        "clibd_cli/reference/b.py": "from . import a\nimport click\n",
        "models/__init__.py": "",
        "models/core.py": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                           "    from clibd_cli.reference.a import f\n"),
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    assert cycles(graph(tmp_path)) == [["clibd_cli.reference.a", "clibd_cli.reference.b"]]
    found = all_imports(tmp_path)
    assert "click" in found["clibd_cli.reference.b"]
    assert "clibd_cli.reference.a" in found["models.core"]


@pytest.mark.parametrize("module", ["clibd_cli.main", "clibd_cli.commands.index", "models.checkpoint"])
def test_the_graph_sees_real_imports(module):
    assert graph()[module], f"{module} imports no project module?"


def test_packages_form_layers():
    """No circle among the packages either (``reference`` below ``classification``, both below
    ``indexing``, which makes and ships indexes): a package's modules may import a lower
    package's, never the other way round."""
    from graphlib import CycleError, TopologicalSorter

    def package(module: str) -> str:
        parts = module.split(".")
        return ".".join(parts[:2]) if parts[0] == "clibd_cli" and len(parts) > 2 else parts[0]

    layers: dict[str, set[str]] = {}
    for module, imported in graph().items():
        layers.setdefault(package(module), set()).update(package(m) for m in imported if package(m) != package(module))
    try:
        tuple(TopologicalSorter(layers).static_order())
    except CycleError as exc:
        pytest.fail(f"packages import each other in a circle: {' -> '.join(exc.args[1])}")
