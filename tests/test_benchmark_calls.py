"""The benchmark scripts call the library as it is now: no test runs them (they need the BOLD
data and hours), so a changed signature would only show when one is next run, after its long
first steps (``benchmarks/export_default_model.py`` passed ``partial_read_queries`` the rates it
no longer takes, session 26)."""

import ast
import importlib
import inspect
from pathlib import Path

import pytest

BENCHMARKS = sorted((Path(__file__).resolve().parents[1] / "benchmarks").glob("*.py"))


def _library_calls(script: Path) -> list[tuple[int, str, object, ast.Call]]:
    """``(line, name, function, call)`` of each plain call in ``script`` to a function it imports by
    name from clibd_cli or models, without ``*args`` or ``**kwargs`` (those cannot be checked)."""
    tree = ast.parse(script.read_text(), str(script))
    imported = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in ("clibd_cli", "models"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                found = getattr(module, alias.name, None)
                if inspect.isfunction(found):
                    imported[alias.asname or alias.name] = found
    return [(node.lineno, node.func.id, imported[node.func.id], node) for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in imported
            and not any(isinstance(a, ast.Starred) for a in node.args) and all(k.arg for k in node.keywords)]


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_a_benchmark_script_calls_library_functions_with_the_arguments_they_take(script):
    for line, name, function, call in _library_calls(script):
        try:
            inspect.signature(function).bind(*call.args, **{k.arg: k.value for k in call.keywords})
        except TypeError as exc:
            pytest.fail(f"{script.name}:{line}: {name}(...) does not fit {name}{inspect.signature(function)}: {exc}")


@pytest.mark.parametrize("script", BENCHMARKS, ids=lambda p: p.name)
def test_a_benchmark_embeds_for_an_index_with_the_profile_it_was_built_with(script):
    """``MODEL_FREE[index.manifest["model"]]()`` is today's profile of that name: for an index of
    ``kmer-aa``'s amino-acid pairs (before session 32) the triplets, of other dimensions.
    ``embedder.load_model_for(name, towers, built_with)`` gives the index's own."""
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.Subscript) and ast.unparse(node.value) == "MODEL_FREE":
            assert "manifest" not in ast.unparse(node.slice), \
                f"{script.name}:{node.lineno}: {ast.unparse(node)} for an index; use load_model_for(built_with=)"
