"""A full disk (issue 21): every stage fails with one line, keeps every file it had (the file
it was writing byte-identical, the event log's earlier lines as they were), leaves no temporary
file, and the same command completes the run once space is freed.

The disk fills up in two ways: ``FullDisk`` gives taskgroup's one writer (``taskgroup.storage``:
atomic writes, checkpoints through them, the event log and TensorBoard's files) a number of
bytes that fit, after which a write puts down what fits and fails with ENOSPC, as a real disk
does; and, where this user may mount one, a real tmpfs of a few hundred kilobytes.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess

import pytest

import taskgroup.storage as storage
from taskgroup.cli import main
from taskgroup.rundir import LOCK
from taskgroup.storage import TEMPORARY, AppendFile, read_json, write_atomic
from taskgroup.training.checkpoint import load_checkpoint
from taskgroup.training.events import read_log
from tests.recipes import tiny


class FullDisk:
    """``taskgroup.storage``'s ``os`` with ``free`` bytes left on the disk."""

    def __init__(self, free: int) -> None:
        self.free = free

    def __getattr__(self, name):
        return getattr(os, name)

    def write(self, fd, data) -> int:
        if self.free <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = os.write(fd, bytes(data)[: self.free])
        self.free -= written
        return written


@pytest.fixture
def full_disk(monkeypatch):
    def fill(free: int) -> FullDisk:
        disk = FullDisk(free)
        monkeypatch.setattr(storage, "os", disk)
        return disk

    yield fill
    monkeypatch.setattr(storage, "os", os)


def _files(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _failed_path(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    line = lines[0]
    assert line.startswith("taskgroup: error: cannot use ") and (
        ": no space left on device; every file written before is kept whole: free some space, "
        "then run the same command again to resume" in line
    ), line
    return line.removeprefix("taskgroup: error: cannot use ").split(": no space left")[0]


def check_kept(before: dict[str, bytes], run_dir, failed: str) -> None:
    """After a failed command: no temporary or lock file; every file still there and whole;
    the file being written as it was; the event log's earlier lines unchanged."""
    after = _files(run_dir)
    assert not [n for n in after if n.endswith(TEMPORARY) or n.endswith(LOCK)], list(after)
    assert set(before) <= set(after), set(before) - set(after)
    failed_name = os.path.relpath(failed, run_dir)
    if failed_name in before:  # (a file new to this command may hold its earlier write, whole)
        assert after[failed_name] == before[failed_name], failed_name
    if "log.jsonl" in before:
        assert after["log.jsonl"].startswith(before["log.jsonl"])
    for name in after:
        path = run_dir / name
        if name == "log.jsonl":
            for line in path.read_text().splitlines():
                json.loads(line)
        elif name.endswith(".json"):
            read_json(path)
        elif name.endswith(".pt"):
            load_checkpoint(path)


def untimed(value):
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if k != "seconds"}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run of the tiny recipe."""
    tmp = tmp_path_factory.mktemp("reference")
    recipe = tmp / "tiny.toml"
    recipe.write_text(tiny(seed=1))
    out = tmp / "out"
    assert main(["run", str(recipe), "--out", str(out), "--no-progress"]) == 0
    return recipe, out


# ---------------------------------------------------------------- the writer itself


def test_an_atomic_write_on_a_full_disk_keeps_the_old_file(tmp_path, full_disk):
    path = tmp_path / "results.json"
    path.write_bytes(b'{"old": true}\n')
    full_disk(10)  # part of the new file fits, then the disk is full
    with pytest.raises(OSError) as raised:
        write_atomic(path, json.dumps({"new": list(range(1000))}))
    assert raised.value.errno == errno.ENOSPC and raised.value.filename == str(path)
    assert path.read_bytes() == b'{"old": true}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temporary file
    with pytest.raises(OSError):  # the folders it made for a new file go again
        write_atomic(tmp_path / "train" / "net" / "checkpoint.pt", b"x" * 100)
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_an_append_that_does_not_fit_is_taken_back(tmp_path, full_disk):
    log = AppendFile(tmp_path / "log.jsonl", lines=True)
    log.append(b'{"step": 1}\n')
    before = (tmp_path / "log.jsonl").read_bytes()
    full_disk(5)  # 5 bytes of the next record fit
    with pytest.raises(OSError) as raised:
        log.append(b'{"step": 2, "values": [1, 2, 3]}\n')
    assert raised.value.errno == errno.ENOSPC
    assert raised.value.filename == str(tmp_path / "log.jsonl")
    assert (tmp_path / "log.jsonl").read_bytes() == before
    log.close()


def test_a_torn_last_line_is_ended_before_the_next_record(tmp_path):
    """A kill in the middle of a record leaves a line without its end; the next writer ends it,
    so that the reader skips only that record and keeps every one after it."""
    (tmp_path / "log.jsonl").write_bytes(b'{"step": 1}\n{"step": 2, "val')
    log = AppendFile(tmp_path / "log.jsonl", lines=True)
    log.append(b'{"step": 3}\n')
    log.close()
    assert [r["step"] for r in read_log(tmp_path)] == [1, 3]


def test_an_append_refuses_a_symbolic_link(tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("keep\n")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "log.jsonl").symlink_to(outside)
    with pytest.raises(OSError) as raised:
        AppendFile(tmp_path / "run" / "log.jsonl", lines=True)
    assert raised.value.filename == str(tmp_path / "run" / "log.jsonl")
    assert outside.read_text() == "keep\n"


# ---------------------------------------------------------------- every stage


def test_the_affinity_stage_on_a_full_disk(tmp_path, reference, full_disk, capsys):
    recipe, _ = reference
    out = tmp_path / "out"
    full_disk(20_000)  # the event log and affinity.json fit, its plots do not
    assert main(["affinity", str(recipe), "--out", str(out), "--no-progress"]) == 2
    failed = _failed_path(capsys.readouterr().err)
    check_kept({}, out, failed)
    assert failed.endswith(".png")
    assert "affinity" not in read_json(out / "manifest.json").get("stages", {})  # not finished


@pytest.mark.parametrize(
    ("command", "free"),
    [
        (["group", "{out}", "--budget", "2"], 3_000),
        (["train", "{out}", "--aggregator", "pcgrad", "--no-progress"], 40_000),
        (["report", "{out}"], 100_000),
        (["run", "{recipe}", "--out", "{out}", "--no-progress"], 60_000),
    ],
)
def test_each_stage_on_a_full_disk_keeps_what_it_had_and_the_rerun_completes(
    tmp_path, reference, full_disk, capsys, command, free
):
    recipe, finished = reference
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    if command[0] == "run":
        shutil.rmtree(out / "train")  # the rerun trains them all again
        (out / "results.json").unlink()
    before = _files(out)
    argv = [a.format(out=out, recipe=recipe) for a in command]
    full_disk(free)
    assert main(argv) == 2
    check_kept(before, out, _failed_path(capsys.readouterr().err))
    full_disk(10**9)  # space freed: the same command completes
    assert main(argv) == 0
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMPORARY) or p.name == LOCK]
    if command[0] in ("run", "group"):
        expected = untimed(read_json(finished / "results.json"))
        assert untimed(read_json(out / "results.json")) == expected
        assert (
            read_json(out / "groups.json")["groups"]
            == read_json(finished / "groups.json")["groups"]
        )


# ---------------------------------------------------------------- a real small disk


@pytest.fixture
def tmpfs(tmp_path):
    """A tmpfs of 320 KiB mounted at tmp_path/disk (skipped where this user may not mount)."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=320k", "tmpfs", str(disk)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")

    def grow(size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(disk)], check=True)

    yield disk, grow
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_real_full_disk(reference, tmpfs, capsys):
    recipe, finished = reference
    disk, grow = tmpfs
    out = disk / "out"
    argv = ["run", str(recipe), "--out", str(out), "--no-progress"]
    failures = []
    for size in ["320k", "640k", "960k", "64m"]:
        grow(size)
        before = _files(out) if out.exists() else {}
        code = main(argv)
        err = capsys.readouterr().err
        if code == 0:
            break
        assert code == 2
        failed = _failed_path(err)
        check_kept(before, out, failed)
        failures.append(failed)
    assert code == 0 and len(failures) >= 2, failures
    assert untimed(read_json(out / "results.json")) == untimed(read_json(finished / "results.json"))
    assert not [p for p in out.rglob("*") if p.name.endswith(TEMPORARY) or p.name == LOCK]
