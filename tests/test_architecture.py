"""The package's shape: layers without upward imports or cycles, no private names across modules,
short functions, and each default in one settings dataclass (docs/architecture.md)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import grimp
import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "taskgroup"
LONG = 60
KEPT_WHOLE = "Kept as one function because"


def _lint_imports(root: Path) -> subprocess.CompletedProcess:
    """import-linter's check of ``root/pyproject.toml`` on the package found under ``root``."""
    code = (
        "import sys; from importlinter.cli import lint_imports; "
        "sys.exit(lint_imports(config_filename='pyproject.toml', no_cache=True))"
    )
    env = {"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True
    )


@pytest.fixture
def package_copy(tmp_path) -> Path:
    """A copy of the package and its pyproject.toml, to break on purpose."""
    shutil.copytree(PACKAGE, tmp_path / "taskgroup", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_the_layer_contract_holds():
    checked = _lint_imports(ROOT)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "1 kept, 0 broken" in checked.stdout


def test_the_layer_contract_fails_on_an_upward_import(package_copy):
    storage = package_copy / "taskgroup" / "storage.py"
    storage.write_text(storage.read_text() + "\nimport taskgroup.cli  # core reaching up\n")
    checked = _lint_imports(package_copy)
    assert checked.returncode == 1, checked.stdout
    assert "taskgroup.storage -> taskgroup.cli" in checked.stdout


def test_no_import_cycle():
    graph = grimp.build_graph("taskgroup", cache_dir=None)
    edges = nx.DiGraph(
        (importer, imported)
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
    )
    cycles = [sorted(c) for c in nx.strongly_connected_components(edges) if len(c) > 1]
    assert not cycles, f"import cycles: {cycles}"


def _python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_no_private_name_is_imported_from_another_module():
    crossing = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module != "__future__":
                private = [a.name for a in node.names if a.name.startswith("_")]
                private = [n for n in private if not (n.startswith("__") and n.endswith("__"))]
                crossing += [f"{path.relative_to(ROOT)}: {node.module}.{n}" for n in private]
    assert not crossing, crossing


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """The lines of a function's body, its docstring and signature left out, plus the ``def``."""
    body = node.body[1:] if ast.get_docstring(node, clean=False) is not None else node.body
    return 1 + (node.end_lineno - body[0].lineno + 1 if body else 0)


def test_no_function_over_60_lines_unless_its_docstring_says_why():
    long = []
    for path in _python_files():
        for node in ast.walk(ast.parse(path.read_text())):
            function = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
            explained = function and KEPT_WHOLE in (ast.get_docstring(node) or "")
            if function and _body_lines(node) > LONG and not explained:
                long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long, long


def _run_python(root: Path, code: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_default_changed_in_its_dataclass_changes_cli_recipe_and_library(package_copy):
    settings = package_copy / "taskgroup" / "settings.py"
    text = settings.read_text()
    assert text.count('"optimizer",\n        one_of(SIGNALS),') == 1
    settings.write_text(
        text.replace(
            '"optimizer",\n        one_of(SIGNALS),', '"cosine",\n        one_of(SIGNALS),'
        )
    )
    shown = _run_python(
        package_copy,
        "import taskgroup as tg\n"
        "from taskgroup.cli import main\n"
        "from taskgroup.recipe import parse_recipe\n"
        "print('recipe', parse_recipe({'benchmark': {'name': 'planted'}}).affinity.lookahead)\n"
        "A = tg.measure_affinity('planted', steps=2, every=1)\n"
        "print('library', A.metadata['lookahead'])\n"
        "main(['affinity', '--help'])\n",
    )
    assert "recipe cosine" in shown and "library cosine" in shown
    help_text = " ".join(shown.split())
    assert "a recipe without it: cosine]" in help_text
