"""The suite's guard (tests/conftest.py): a test session that leaves a new file or folder in the
repository root fails, whatever its tests said."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import root_listing

CONFTEST = Path(__file__).with_name("conftest.py")

LEAKS = """
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_writes_a_run_into_the_checkout():
    (ROOT / "runs" / "planted").mkdir(parents=True)
    (ROOT / "runs" / "planted" / "manifest.json").write_text("{}")
"""


def session(tmp_path: Path, test: str):
    """A pytest session in a copy of the repository layout: ``tests/conftest.py`` and ``test``."""
    root = tmp_path / "repo"
    (root / "tests").mkdir(parents=True)
    shutil.copy(CONFTEST, root / "tests" / "conftest.py")
    (root / "tests" / "test_it.py").write_text(test)
    (root / "runs" / "earlier").mkdir(parents=True)  # a new run directory in runs/ counts
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"]
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, timeout=120)
    return done, root


def test_a_session_that_leaves_a_run_directory_fails(tmp_path):
    done, root = session(tmp_path, LEAKS)
    assert done.returncode == pytest.ExitCode.TESTS_FAILED, done.stdout + done.stderr
    assert "1 passed" in done.stdout  # the test itself passed: the guard failed the run
    assert f"\nERROR: tests left runs/planted in {root};" in done.stdout


def test_what_the_guard_counts(tmp_path):
    """New entries of the root and of runs/ count; the test tools' caches do not."""
    before = root_listing(tmp_path)
    (tmp_path / ".hypothesis" / "examples").mkdir(parents=True)
    (tmp_path / "taskgroup.egg-info").mkdir()
    (tmp_path / "__pycache__").mkdir()
    assert root_listing(tmp_path) == before == set()
    (tmp_path / "runs" / "planted").mkdir(parents=True)
    (tmp_path / "report.html").write_text("")
    assert root_listing(tmp_path) == {"runs", "runs/planted", "report.html"}
