"""Killed at any moment (issue 21): the fast sample of analysis/kill_test.py, about five
SIGKILLs of `taskgroup run` on the tiny recipe, external ones at a random moment of a stage and
ones aimed inside a write (half a checkpoint, result or log record written, or just before the
rename that publishes it); after every kill no file a reader opens is truncated, and the rerun
ends with the uninterrupted run's results. The study itself (N >= 50, `--nproc 2` included) is
the script, and the slow test below."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "analysis"))

import kill_test

from taskgroup.cli import main
from taskgroup.storage import read_json


def _options(work: Path, kills: int, **given) -> argparse.Namespace:
    options = {
        "kills": kills,
        "seed": 3,
        "nproc_every": 10**9,
        "modes": [1],
        "in_write_share": 0.5,
        "max_attempts": 3,
        "work": str(work),
        "fork": True,  # attempts are forks of this process: no second import of torch
    }
    return argparse.Namespace(**(options | given))


def test_five_kills_lose_nothing(tmp_path):
    lines = []
    summary = kill_test.study(_options(tmp_path, 5), say=lines.append)
    report = "\n".join(lines)
    assert summary["kills"] == 5, report
    assert summary["truncated_files_seen"] == 0, report
    assert summary["episodes_equal"] == summary["episodes"], report
    assert summary["leftovers"] == 0, report
    assert summary["survived"] == 5, report


def test_a_kill_inside_a_checkpoint_write_keeps_the_previous_checkpoint(tmp_path):
    """The k-th checkpoint write dies half-written: the checkpoint a reader finds is the one
    before it, whole, and the rerun completes with the reference's results."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(kill_test.tiny(seed=1))
    expected, _ = kill_test.reference(tmp_path, recipe, 1, fork=True)
    out = tmp_path / "killed"
    argv = kill_test.command(recipe, out, 1)
    for phase in kill_test.PHASES:
        attempt = kill_test.Attempt(
            argv, tmp_path / f"{phase}.log", f"checkpoint.pt:{phase}:4", True
        )
        assert attempt.wait() == -9, attempt.output()
        problems, _, _ = kill_test.scan(out)
        assert problems == []
        assert [p for p in out.rglob("*") if p.name.startswith(".checkpoint.pt.")]  # the torn one
    done = kill_test.Attempt(argv, tmp_path / "rerun.log", None, True)
    assert done.wait() == 0, done.output()
    assert kill_test.comparable(out) == expected
    assert kill_test.leftovers(out) == []  # the rerun cleared the killed write's temporary file


def test_scan_finds_a_truncated_file(tmp_path):
    """The scan that vouches for every kill does see a truncated file of each kind."""
    (tmp_path / "results.json").write_text('{"groups": [')
    (tmp_path / "model.pt").write_bytes(b"PK\x03\x04")
    (tmp_path / "plot.png").write_bytes(b"\x89PNG\r\n\x1a\n....")
    (tmp_path / "report.html").write_text("<html><body>")
    problems, _, _ = kill_test.scan(tmp_path)
    assert len(problems) == 4, problems


def test_run_with_nproc_2_completes(tmp_path):
    """`taskgroup run --nproc 2` to the end: rank 1 reads affinity.json and results.json only
    after rank 0 wrote them (the ranks wait for each other between stages)."""
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(kill_test.tiny(seed=1))
    out = tmp_path / "out"
    argv = ["run", str(recipe), "--out", str(out), "--no-progress", "--nproc", "2"]
    assert main(argv) == 0
    assert read_json(out / "results.json")["groups"]
    assert kill_test.leftovers(out) == []


@pytest.mark.slow
def test_fifty_kills_with_nproc_2_lose_nothing(tmp_path):
    options = _options(tmp_path, 50, modes=[1, 2], nproc_every=4, fork=False, in_write_share=0.35)
    summary = kill_test.study(options, say=print)
    assert summary["kills"] >= 50 and summary["survived"] == summary["kills"]
    assert summary["by_mode"].get("--nproc 2", 0) > 0 and summary["leftovers"] == 0
