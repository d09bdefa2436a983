"""One command per run directory (issue 21): a second `taskgroup run`, `train`, `group`,
`affinity` or `report` on a folder that another live process holds is refused with one line
naming that process, exit 2, touching nothing; a lock whose process is gone is taken over, and
the message says so."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.cli import main
from taskgroup.pipeline import run as run_pipeline
from taskgroup.recipe import load_recipe
from taskgroup.rundir import LOCK, RunDirBusy, StaleLockWarning, hold_run_dir
from tests.recipes import tiny

ROOT = Path(__file__).resolve().parents[1]
FORK = multiprocessing.get_context("fork")  # a real second process, without a fresh import
TASKS = ["a", "b", "c", "d"]


def _hold(run_dir) -> None:
    with hold_run_dir(run_dir):
        time.sleep(600)  # until killed


def start_holder(run_dir) -> multiprocessing.Process:
    """A second process that holds ``run_dir``'s lock until it is killed."""
    process = FORK.Process(target=_hold, args=(run_dir,), daemon=True)
    process.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if json.loads((run_dir / LOCK).read_text())["pid"] == process.pid:
                return process
        except (OSError, ValueError):
            pass
        time.sleep(0.01)
    raise AssertionError("the holder did not take the lock")


@pytest.fixture
def holder(tmp_path):
    run_dir = tmp_path / "run"
    process = start_holder(run_dir)
    yield run_dir, process
    process.kill()
    process.join(30)


def _affinity(run_dir) -> None:
    rng = np.random.default_rng(0)
    AffinityMatrix(rng.normal(size=(4, 4)) * 0.01, TASKS).save(run_dir / "affinity.json")


def _snapshot(folder) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(folder)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


def test_every_command_on_a_held_folder_is_refused_and_touches_nothing(holder, tmp_path, capsys):
    run_dir, process = holder
    _affinity(run_dir)
    (run_dir / "groups.json").write_text(json.dumps({"groups": [["a", "b"], ["c", "d"]]}))
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(tiny())
    before = _snapshot(run_dir)
    assert json.loads((run_dir / LOCK).read_text())["pid"] == process.pid
    commands = [
        ["run", str(recipe), "--out", str(run_dir), "--no-progress"],
        ["run", str(recipe), "--out", str(run_dir), "--no-progress", "--nproc", "2"],
        ["affinity", str(recipe), "--out", str(run_dir), "--no-progress"],
        ["group", str(run_dir), "--budget", "2"],
        ["train", str(run_dir), "--recipe", str(recipe), "--no-progress"],
        ["report", str(run_dir)],
    ]
    for argv in commands:
        assert main(argv) == 2, argv
        line = _one_line(capsys.readouterr().err)
        assert line.startswith(f"taskgroup: error: {run_dir} is in use by another taskgroup")
        assert f"process {process.pid} on {socket.gethostname()}" in line, line
        assert _snapshot(run_dir) == before, argv
    with pytest.raises(RunDirBusy, match=f"process {process.pid} "):
        run_pipeline(load_recipe(str(recipe)), run_dir)
    assert _snapshot(run_dir) == before


def test_the_folder_is_free_again_once_the_holder_ends(holder, capsys):
    run_dir, process = holder
    _affinity(run_dir)
    assert main(["group", str(run_dir), "--budget", "2"]) == 2
    capsys.readouterr()
    process.terminate()  # SIGTERM: the context manager does not run; the system frees the lock
    process.join(30)
    assert main(["group", str(run_dir), "--budget", "2"]) == 0
    assert (run_dir / "groups.json").exists()
    assert not (run_dir / LOCK).exists()


def test_a_lock_left_by_a_killed_process_is_taken_over_and_said(tmp_path, capsys):
    run_dir = tmp_path / "run"
    process = start_holder(run_dir)
    process.kill()  # SIGKILL: no clean-up ran, the lock file still names the process
    process.join(30)
    assert json.loads((run_dir / LOCK).read_text())["pid"] == process.pid
    _affinity(run_dir)
    assert main(["group", str(run_dir), "--budget", "2"]) == 0
    err = capsys.readouterr().err
    assert (
        f"taskgroup: warning: {run_dir}: taking over the lock of process {process.pid} on "
        f"{socket.gethostname()}, which is gone" in err
    ), err
    assert not (run_dir / LOCK).exists()


def test_the_takeover_is_one_line_on_stderr_of_the_command(tmp_path):
    """The same in a real `taskgroup` process: the warning reaches the user as one line."""
    run_dir = tmp_path / "run"
    _affinity(run_dir)
    (run_dir / LOCK).write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    done = subprocess.run(
        [sys.executable, "-m", "taskgroup.cli", "group", str(run_dir), "--budget", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "taking over the lock" in line]
    assert len(warned) == 1, done.stderr
    assert warned[0].startswith(f"taskgroup: warning: {run_dir}: taking over the lock of process")


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_without_flock_the_recorded_holder_decides(tmp_path, monkeypatch):
    """A file system without flock (ENOLCK): a live holder on this host, or any holder on
    another host, is refused; a holder on this host whose process is gone is taken over."""

    def no_flock(fd, operation):
        raise OSError(37, "No locks available")  # ENOLCK

    monkeypatch.setattr(fcntl, "flock", no_flock)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    here = socket.gethostname()
    for holder, refused in [
        ({"pid": os.getppid(), "host": here}, True),
        ({"pid": _dead_pid(), "host": "another-host"}, True),
        ({"pid": _dead_pid(), "host": here}, False),
    ]:
        (run_dir / LOCK).write_text(json.dumps(holder))
        if refused:
            busy = f"process {holder['pid']} on {holder['host']}"
            with pytest.raises(RunDirBusy, match=busy), hold_run_dir(run_dir):
                pytest.fail("entered a held run directory")
            assert json.loads((run_dir / LOCK).read_text()) == holder  # untouched
        else:
            taken = f"taking over the lock of process {holder['pid']}"
            with pytest.warns(StaleLockWarning, match=taken), hold_run_dir(run_dir):
                assert json.loads((run_dir / LOCK).read_text())["pid"] == os.getpid()
            assert not (run_dir / LOCK).exists()


def test_nested_holds_share_the_lock_and_release_it_once(tmp_path):
    run_dir = tmp_path / "a" / "b" / "run"
    with hold_run_dir(run_dir):
        with hold_run_dir(run_dir):
            assert (run_dir / LOCK).exists()
        assert json.loads((run_dir / LOCK).read_text())["pid"] == os.getpid()
        (run_dir / "kept.json").write_text("{}")
    assert not (run_dir / LOCK).exists() and (run_dir / "kept.json").exists()


def test_a_command_that_fails_its_checks_leaves_no_folder(tmp_path):
    run_dir = tmp_path / "a" / "b" / "run"
    with pytest.raises(ValueError, match="bad"), hold_run_dir(run_dir):
        raise ValueError("bad input")
    assert list(tmp_path.iterdir()) == []


def test_ranks_other_than_0_take_no_lock(holder, monkeypatch):
    """In a distributed run only rank 0 holds the lock: the other ranks of the same run are
    not locked out by it (here: a rank 1 beside a holder)."""
    import taskgroup.distributed

    run_dir, _ = holder
    monkeypatch.setattr(taskgroup.distributed, "is_writer", lambda: False)
    with hold_run_dir(run_dir) as held:
        assert held == run_dir
