"""A hostile ``.retired.json`` (the journal of an interrupted ``train --force``) cannot make the
retirement move or delete anything outside the run directory's ``train/`` folder."""

from __future__ import annotations

import json

import pytest

from taskgroup.rundir import RETIRED, RETIRED_KEYS, TRAIN
from taskgroup.training.groups import retire_networks


@pytest.mark.parametrize(
    "keys",
    [["../../victim"], ["../victim"], [".."], ["."], [""], [3], {"a": 1}, ["link"]],
    ids=["up-two", "up-one", "dotdot", "dot", "empty", "number", "not-a-list", "symlink-out"],
)
def test_a_journal_naming_folders_outside_train_is_refused_and_touches_nothing(tmp_path, keys):
    run_dir, victim = tmp_path / "run", tmp_path / "victim"
    (run_dir / TRAIN / "kept").mkdir(parents=True)
    (run_dir / TRAIN / "kept" / "result.json").write_text("{}")
    victim.mkdir()
    (victim / "precious.txt").write_text("keep me")
    (run_dir / TRAIN / "link").symlink_to(victim, target_is_directory=True)
    (run_dir / RETIRED_KEYS).write_text(json.dumps(keys))
    with pytest.raises(ValueError, match=str(RETIRED_KEYS)):
        retire_networks(run_dir, [])
    assert (victim / "precious.txt").read_text() == "keep me"
    assert (run_dir / TRAIN / "kept" / "result.json").read_text() == "{}"
    assert not (run_dir / RETIRED).exists() and (run_dir / RETIRED_KEYS).exists()


def test_a_journal_of_network_folders_is_still_finished(tmp_path):
    run_dir = tmp_path / "run"
    for key in ("a+b", "init1/a+b", "c"):
        (run_dir / TRAIN / key).mkdir(parents=True)
    (run_dir / RETIRED_KEYS).write_text(json.dumps(["a+b", "init1/a+b"]))
    retire_networks(run_dir, [])
    assert sorted(p.name for p in (run_dir / TRAIN).iterdir()) == ["c", "init1"]
    assert not (run_dir / TRAIN / "init1" / "a+b").exists()
    assert not (run_dir / RETIRED).exists() and not (run_dir / RETIRED_KEYS).exists()
