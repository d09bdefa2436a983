"""Test-wide settings, and a guard: tests write only into temporary folders."""

from __future__ import annotations

import fnmatch
from pathlib import Path

import pytest
import torch

# The models under test are tiny: one intra-op thread is as fast as two, and it keeps the suite
# fast and stable when other processes share the 2 cores (OpenMP spin-waits collapse otherwise).
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
# what tools of the test command leave in the repository root by design (caches, build outputs)
TOOL_OUTPUTS = (
    ".pytest_cache",
    ".hypothesis",
    "__pycache__",
    ".grimp_cache",
    ".import_linter_cache",
    ".ruff_cache",
    ".benchmarks",  # pytest-benchmark's storage, made at every session start
    "build",
    "dist",
    "*.egg-info",
)
WATCHED = ("runs",)  # the command line's default output folder: new run directories in it count


def root_listing(root: Path = ROOT) -> set[str]:
    """The entries of the repository root (and of its ``runs/``), tool caches left out."""
    entries = {
        p.relative_to(root).as_posix()
        for folder in (root, *(root / w for w in WATCHED))
        if folder.is_dir()
        for p in folder.iterdir()
    }
    return {e for e in entries if not any(fnmatch.fnmatch(e, t) for t in TOOL_OUTPUTS)}


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[ROOT_BEFORE] = root_listing()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run when its tests left a new file or folder in the repository root."""
    before = session.config.stash.get(ROOT_BEFORE, None)
    left = [] if before is None else sorted(root_listing() - before)
    session.config.stash[ROOT_LEFT] = left
    if left:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    left = config.stash.get(ROOT_LEFT, [])
    if left:
        terminalreporter.write_sep("=", "files left in the repository", red=True)
        terminalreporter.write_line(
            f"ERROR: tests left {', '.join(left)} in {ROOT}; tests write only into temporary "
            f"folders (tmp_path)",
            red=True,
        )


ROOT_BEFORE = pytest.StashKey[set]()
ROOT_LEFT = pytest.StashKey[list]()
