"""One finished tiny run (`taskgroup run` on the planted recipe of tests/recipes.py), shared by
the report tests; a test that changes it works on its own copy (:func:`copy_run`)."""

from __future__ import annotations

import shutil

import pytest

from taskgroup.cli import main
from tests.recipes import tiny


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """The run directory of a finished tiny run (affinity, groups, results, report)."""
    tmp_path = tmp_path_factory.mktemp("tiny_run")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(tiny(seed=0))
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--out", str(out), "--no-progress"]) == 0
    return out


@pytest.fixture
def copy_run(tiny_run, tmp_path):
    """A copy of the tiny run that the test may change."""
    return shutil.copytree(tiny_run, tmp_path / "run")
