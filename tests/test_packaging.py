"""The built distributions work where the checkout is not: `python -m build` makes an sdist and a
wheel (built from that sdist) holding the recipes; the wheel, installed (not editable, no
dependencies) into a fresh venv that takes torch and the rest from this machine, runs the
packaged default recipe and, end to end with a resume and `train`, a factory recipe and a plugin
from a package outside the repository."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from taskgroup._version import __version__
from taskgroup.data import data_fingerprint
from tests.factories import factory_recipe, write_package

ROOT = Path(__file__).resolve().parents[1]
RECIPES = {"celeba", "multidigits", "multimnist", "nyuv2", "planted", "qm9"}


def sh(*args, cwd: Path, env: dict | None = None, timeout: float = 300) -> str:
    done = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"{args}: {done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory) -> Path:
    """`python -m build` of a copy of the sources (the checkout stays untouched)."""
    tmp = tmp_path_factory.mktemp("build")
    source = tmp / "source"
    shutil.copytree(
        ROOT / "taskgroup",
        source / "taskgroup",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    sh(sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", source, cwd=tmp)
    return tmp / "dist"


def test_the_sdist_and_the_wheel_hold_the_recipes(dist):
    wheel = dist / f"taskgroup-{__version__}-py3-none-any.whl"
    sdist = dist / f"taskgroup-{__version__}.tar.gz"
    in_wheel = zipfile.ZipFile(wheel).namelist()
    with tarfile.open(sdist) as archive:
        in_sdist = archive.getnames()
    for recipe in RECIPES:
        assert f"taskgroup/recipes/{recipe}.toml" in in_wheel
        assert f"taskgroup-{__version__}/taskgroup/recipes/{recipe}.toml" in in_sdist
    assert "taskgroup/recipe.py" in in_wheel and not any("tests/" in n for n in in_wheel)
    entry_points = zipfile.ZipFile(wheel).read(
        f"taskgroup-{__version__}.dist-info/entry_points.txt"
    )
    assert b"taskgroup = taskgroup.cli:main" in entry_points


# the fixture package as an installed distribution that declares a benchmark plugin
PLUGIN = """[project]
name = "mytasks"
version = "0.1"
[project.entry-points."taskgroup.benchmarks"]
mytasks = "mytasks:make"
[tool.setuptools]
packages = ["mytasks"]
"""

# run by the venv's python: where taskgroup comes from, the packaged default recipe (parsed and
# its benchmark built), and the plugin's benchmark by name
CHECK = """
import json, taskgroup
from taskgroup.data import data_fingerprint
from taskgroup.recipe import load_recipe, parse_recipe
default = load_recipe("multidigits")
bench = default.load_benchmark()
plugin = parse_recipe({"seed": 2, "benchmark": {"name": "mytasks", "n": 40}}).load_benchmark()
print(json.dumps({
    "taskgroup": taskgroup.__file__,
    "recipe": default.source,
    "tasks": bench.tasks.names,
    "plugin": data_fingerprint(plugin),
}))
"""


def test_the_installed_wheel_runs_a_factory_recipe_and_a_plugin(dist, tmp_path):
    venv, work = tmp_path / "venv", tmp_path / "work"
    work.mkdir()
    sh(sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv, cwd=work)
    python, taskgroup = venv / "bin" / "python", venv / "bin" / "taskgroup"
    # the venv's python runs this machine's pip (a system site package) and installs into the venv
    install = [python, "-m", "pip", "install", "--no-deps", "--no-index"]
    sh(*install, "--ignore-installed", next(dist.glob("*.whl")), cwd=work)
    project = write_package(tmp_path / "mytasks")  # outside the repository
    (project / "pyproject.toml").write_text(PLUGIN)
    sh(*install, "--no-build-isolation", project, cwd=work)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}

    checked = json.loads(sh(python, "-c", CHECK, cwd=work, env=env))
    assert Path(checked["taskgroup"]).is_relative_to(venv), checked  # not the checkout
    assert Path(checked["recipe"]).is_relative_to(venv) and len(checked["tasks"]) == 6
    sys.path.insert(0, str(project))
    try:
        import mytasks

        assert checked["plugin"] == data_fingerprint(mytasks.make(seed=2, n=40))
    finally:
        sys.path.remove(str(project))
        sys.modules.pop("mytasks", None)
    assert sh(taskgroup, "--version", cwd=work, env=env) == f"taskgroup {__version__}\n"

    (work / "recipe.toml").write_text(factory_recipe("mytasks:make", seed=1, n=96))
    run = [taskgroup, "run", "recipe.toml", "--out", "run", "--no-progress"]
    sh(*run, cwd=work, env=env)
    for output in ("affinity.json", "groups.json", "results.json", "report.html"):
        assert (work / "run" / output).exists(), output
    assert isinstance(json.loads((work / "run" / "results.json").read_text())["delta_m"], float)
    assert "affinity: reusing" in sh(*run, cwd=work, env=env)
    train = [taskgroup, "train", "run", "--aggregator", "nash_mtl", "--no-progress"]
    assert "Δm vs single-task" in sh(*train, cwd=work, env=env)
    assert json.loads((work / "run" / "results.json").read_text())["aggregator"] == "nash_mtl"
