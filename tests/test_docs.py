"""The files the documents name exist: every repository path in ARCHITECTURE.md, the READMEs and the
docstrings of the code, benchmarks and tests (``clibd_cli/reference/holdings.py``,
``models/files.atomic_path``, ARCHITECTURE.md's bare ``sources.py`` in the bullet of its package), and
every module of the application is on ARCHITECTURE.md's map; the functions, classes and modules
docstrings cite (``:func:`held_out_similarity```) are defined somewhere in the project.

A path counts when it starts at a folder of the repository (``benchmarks/``, ``tests/``), or is a
module under a package of the application (``classification/calibration.py``); placeholders (``RUN/args.json``) and other projects'
files (``bioscanclip/util/dataset.py``) are not paths of this repository and are passed over.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ("ARCHITECTURE.md", "README.md", "benchmarks/README.md", "examples/pipeline/README.md")
CODE = ("clibd_cli", "models", "benchmarks", "tests", "examples")
PATH = re.compile(r"(?<![\w./~$-])((?:[A-Za-z_][\w.-]*/)+[\w.-]*)")
BULLET = re.compile(r"^- `((?:[\w]+/)+)`")  # ARCHITECTURE.md's "- `clibd_cli/io/` — ..." bullets
BARE_MODULE = re.compile(r"`(\w+\.py)`")
CITED = re.compile(r":(?:func|meth|class|attr|data|exc|mod):`~?\.?([\w.]+)`")  # the name is its last part


def _bases(root: Path) -> list[Path]:
    """Where a path may start: the repository, or the application and the model core."""
    return [root, root / "clibd_cli", root / "models"]


def _ours(path: str, root: Path) -> bool:
    """Whether ``path`` is of this repository: it starts at one of its folders, or it is a module
    (``.py``) under a package of the application (``classification/calibration.py``), not a
    placeholder (``RUN/args.json``), another project's file or a data set's folder (``data/BIOSCAN_1M/``)."""
    first = path.split("/", 1)[0]
    if first.startswith("."):
        return False
    return (root / first).is_dir() or (path.endswith(".py") and any((base / first).is_dir() for base in _bases(root)))


def _exists(path: str, root: Path) -> bool:
    """A file or folder under one of the bases, or ``module.attribute`` defined in that module."""
    for base in _bases(root):
        if (base / path).exists():
            return True
        module, dot, name = path.rpartition(".")
        source = base / f"{module}.py"
        if dot and source.is_file() and re.search(rf"^(?:def |class )?{re.escape(name)}\b", source.read_text(), re.M):
            return True
    return False


def missing_paths(text: str, where: str, root: Path = ROOT) -> list[str]:
    """``where: path`` for each path of this repository that ``text`` names and that does not exist."""
    paths = [path.rstrip(".,;:)") for path in PATH.findall(text)]
    return [f"{where}: {path}" for path in paths if _ours(path, root) and not _exists(path, root)]


def missing_bullet_modules(text: str, where: str, root: Path = ROOT) -> list[str]:
    """A bare ``name.py`` in a package's bullet of ARCHITECTURE.md that its package lacks."""
    found, package = [], None
    for line in text.splitlines():
        if line.startswith("- ") or not line.strip():
            head = BULLET.match(line)
            package = head.group(1) if head else None
        if package:
            found += [f"{where}: {package}{name}" for name in BARE_MODULE.findall(line)
                      if not (root / package / name).exists()]
    return found


def docstrings(path: Path) -> list[str]:
    """The module's, its classes' and its functions' docstrings."""
    nodes = ast.walk(ast.parse(path.read_text(), str(path)))
    return [doc for node in nodes if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and (doc := ast.get_docstring(node))]


def defined_names(root: Path = ROOT) -> set[str]:
    """Every name the project's code defines, assigns or imports, and its modules' and packages' names."""
    names: set[str] = set()
    for folder in CODE:
        for path in (root / folder).rglob("*.py"):
            names |= {path.stem, path.parent.name}
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    names.add(node.name)
                elif isinstance(node, (ast.Name, ast.Attribute)) and isinstance(node.ctx, ast.Store):
                    names.add(node.id if isinstance(node, ast.Name) else node.attr)
                elif isinstance(node, ast.alias):
                    names.add((node.asname or node.name).rsplit(".", 1)[-1])
    return names


def unknown_citations(root: Path = ROOT) -> list[str]:
    """``file: name`` for each ``:func:``/``:meth:``/``:class:``/``:mod:`` … a docstring cites that
    nothing in the project defines (a function renamed or removed since)."""
    names = defined_names(root)
    return [f"{path.relative_to(root)}: {cited}" for folder in CODE for path in sorted((root / folder).rglob("*.py"))
            for doc in docstrings(path) for cited in CITED.findall(doc) if cited.rsplit(".", 1)[-1] not in names]


def unmapped_modules(text: str, root: Path = ROOT) -> list[str]:
    """Modules of the application and the model core that ARCHITECTURE.md does not name."""
    modules = [p for package in ("clibd_cli", "models") for p in sorted((root / package).rglob("*.py"))
               if p.name != "__init__.py" and "bundled" not in p.parts]
    return [str(p.relative_to(root)) for p in modules if not re.search(rf"\b{p.stem}\b", text)]


@pytest.mark.parametrize("document", DOCUMENTS)
def test_documents_name_only_files_that_exist(document):
    text = (ROOT / document).read_text()
    bad = missing_paths(text, document) + missing_bullet_modules(text, document)
    assert not bad, "stale paths:\n" + "\n".join(bad)


def test_docstrings_name_only_files_that_exist():
    bad = [miss for folder in CODE for path in sorted((ROOT / folder).rglob("*.py"))
           for doc in docstrings(path) for miss in missing_paths(doc, str(path.relative_to(ROOT)))]
    assert not bad, "stale paths:\n" + "\n".join(bad)


def test_docstrings_cite_only_names_that_exist():
    assert not unknown_citations(), "stale citations:\n" + "\n".join(unknown_citations())


def test_every_module_is_on_the_map():
    assert not unmapped_modules((ROOT / "ARCHITECTURE.md").read_text())


def test_the_checks_catch_a_stale_path(tmp_path):
    (tmp_path / "clibd_cli" / "reference").mkdir(parents=True)
    (tmp_path / "clibd_cli" / "reference" / "holdings.py").write_text("def containment():\n    pass\n")
    (tmp_path / "benchmarks").mkdir()
    good = ("`clibd_cli/reference/holdings.py`, `reference/holdings.py`, `clibd_cli/reference/holdings.containment`, "
            "RUN/args.json, bioscanclip/util/dataset.py, `benchmarks/`")
    assert missing_paths(good, "doc", tmp_path) == []
    bad = "see benchmarks/foo.py, clibd_cli/reference/holding.py and `clibd_cli/reference/holdings.overlap`."
    assert missing_paths(bad, "doc", tmp_path) == [
        "doc: benchmarks/foo.py", "doc: clibd_cli/reference/holding.py", "doc: clibd_cli/reference/holdings.overlap"]
    bullets = "- `clibd_cli/reference/` — `holdings.py` (k-mers),\n  `sketch.py` (the sketch)\n- `models/` — `x.py`"
    assert missing_bullet_modules(bullets, "A.md", tmp_path) == ["A.md: clibd_cli/reference/sketch.py",
                                                                  "A.md: models/x.py"]
    assert unmapped_modules("`holdings.py`", tmp_path) == []
    assert unmapped_modules("nothing", tmp_path) == ["clibd_cli/reference/holdings.py"]


def test_the_checks_catch_a_stale_citation(tmp_path):
    (tmp_path / "clibd_cli" / "reference").mkdir(parents=True)
    (tmp_path / "clibd_cli" / "reference" / "centroids.py").write_text(
        '"""Floors (:func:`held_out_similarity`, :mod:`clibd_cli.reference.centroids`)."""\n\n\n'
        'def held_out_similarity():\n    """Not :func:`_held_out_similarity`, nor :meth:`Sketch.judge`."""\n')
    assert unknown_citations(tmp_path) == ["clibd_cli/reference/centroids.py: _held_out_similarity",
                                           "clibd_cli/reference/centroids.py: Sketch.judge"]
