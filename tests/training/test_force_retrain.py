"""`taskgroup train --force` (``train_groups(force=True)``) retrains every network of the groups
and baselines from scratch, and a forced retrain killed at any point never leaves results or
networks of the old training beside new ones: the next call, forced or not, finishes setting the
old networks aside and resumes the new trainings."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from taskgroup.cli import main
from taskgroup.rundir import RESULT, RESULTS, RETIRED, RETIRED_KEYS
from taskgroup.training import groups as groups_module
from tests.recipes import tiny

QUIET = ["--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    root = tmp_path_factory.mktemp("force")
    recipe = root / "tiny.toml"
    recipe.write_text(tiny(seed=5))
    out = root / "out"
    assert main(["run", str(recipe), "--out", str(out), *QUIET]) == 0
    return out


@pytest.fixture
def out(finished, tmp_path):
    copy = tmp_path / "out"
    shutil.copytree(finished, copy)
    return copy


def networks(out: Path) -> dict[str, int]:
    """Every finished network of the run directory: its key -> the inode and modification time
    of its result.json (a network trained again has a new file; the file system may give it
    the freed inode, never the same time in nanoseconds as well)."""
    return {
        str(p.parent.relative_to(out / "train")): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (out / "train").rglob(RESULT)
    }


class Spy:
    """Wraps train_group: records each network it is asked for, and whether its folder held a
    finished result then (read back) or not (trained); raises ``interrupt`` at call ``at``."""

    def __init__(self, monkeypatch, at: int | None = None):
        self.calls: list[tuple[str, bool]] = []
        self.at = at
        self.real = groups_module.train_group
        monkeypatch.setattr(groups_module, "train_group", self)

    def __call__(self, *args, directory=None, name=None, **kwargs):
        if self.at is not None and len(self.calls) == self.at:
            raise KeyboardInterrupt
        self.calls.append((name, (Path(directory) / RESULT).exists()))
        return self.real(*args, directory=directory, name=name, **kwargs)

    @property
    def read_back(self) -> list[str]:
        return [name for name, finished in self.calls if finished]


def results_values(out: Path) -> dict:
    """results.json without its timings (a network's seconds differ between trainings)."""
    data = json.loads((out / RESULTS).read_text())
    return json.loads(json.dumps(data), object_hook=_no_seconds)


def _no_seconds(record: dict) -> dict:
    return {k: v for k, v in record.items() if "second" not in k and k != "cost"}


def test_force_retrains_every_network_and_reproduces_the_results(out, monkeypatch, capsys):
    before, results = networks(out), results_values(out)
    spy = Spy(monkeypatch)
    assert main(["train", str(out), "--force", *QUIET]) == 0
    assert "reusing" not in capsys.readouterr().out
    assert spy.calls and spy.read_back == []  # every network trained, none read back
    after = networks(out)
    assert sorted(after) == sorted(before)
    assert all(after[key] != before[key] for key in before)  # each result.json is new
    assert results_values(out) == results  # the same seed trains the same networks
    assert not (out / RETIRED).exists() and not (out / RETIRED_KEYS).exists()
    spy.calls.clear()
    assert main(["train", str(out), *QUIET]) == 0  # without --force: reused, nothing trained
    assert spy.calls == [] and networks(out) == after


def test_force_retrains_with_other_settings_that_finished_networks_would_refuse(out, capsys):
    # without --force a finished network of other settings is refused, naming its folder
    assert main(["train", str(out), "--steps", "10", *QUIET]) == 2
    assert RESULT in capsys.readouterr().err
    assert main(["train", str(out), "--steps", "10", "--force", *QUIET]) == 0
    steps = {json.loads(p.read_text())["config"]["settings"]["steps"] for p in out.rglob(RESULT)}
    assert steps == {10}


def test_a_forced_retrain_killed_while_training_leaves_no_old_results(out, monkeypatch):
    before = networks(out)
    spy = Spy(monkeypatch, at=2)
    assert main(["train", str(out), "--force", *QUIET]) == 130  # Ctrl-C at the third network
    assert not (out / RESULTS).exists() and not (out / "results.png").exists()
    left = networks(out)
    assert len(left) == 2 and all(left[key] != before[key] for key in left)  # the new ones
    spy.at, spy.calls = None, []
    assert main(["train", str(out), *QUIET]) == 0  # resumes the forced retrain
    assert sorted(spy.read_back) == sorted(left)  # the two new networks are read back
    assert all(networks(out)[key] != before[key] for key in before)
    assert (out / RESULTS).exists()


def test_a_forced_retrain_killed_while_setting_networks_aside_is_finished_next_time(
    out, monkeypatch
):
    before = networks(out)
    moves = []
    real_rename = Path.rename

    def rename_then_die(self, target):
        if len(moves) == 1:
            raise KeyboardInterrupt
        moves.append(self)
        return real_rename(self, target)

    with monkeypatch.context() as patched:
        patched.setattr(Path, "rename", rename_then_die)
        assert main(["train", str(out), "--force", *QUIET]) == 130
    assert not (out / RESULTS).exists() and (out / RETIRED_KEYS).exists()
    assert len(networks(out)) == len(before) - 1  # one network set aside, the others not yet
    spy = Spy(monkeypatch)
    assert main(["train", str(out), *QUIET]) == 0  # not forced: it still replaces them all
    assert spy.read_back == []
    assert all(networks(out)[key] != before[key] for key in before)
    assert not (out / RETIRED).exists() and not (out / RETIRED_KEYS).exists()


def test_force_keeps_networks_the_call_does_not_train(out, monkeypatch):
    other = out / "train" / "someone-else"
    other.mkdir()
    (other / RESULT).write_text("{}")
    Spy(monkeypatch)
    assert main(["train", str(out), "--force", *QUIET]) == 0
    assert (other / RESULT).read_text() == "{}"
