"""Rerunning a finished stage reuses it unless --force is given: `taskgroup affinity`, `group`,
`train` and `run` on a run directory that holds the stage finished with the same inputs print
one line, compute nothing and leave every file as it was."""

from __future__ import annotations

import shutil

import pytest

from taskgroup import pipeline
from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.cli import main
from tests.recipes import tiny

QUIET = ["--no-progress"]


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A run directory of the tiny recipe, every stage finished (its [group]: budget 2, sweep)."""
    root = tmp_path_factory.mktemp("reuse")
    recipe = root / "tiny.toml"
    recipe.write_text(tiny(seed=4))
    out = root / "out"
    assert main(["run", str(recipe), "--out", str(out), *QUIET]) == 0
    return recipe, out


@pytest.fixture
def run_copy(finished, tmp_path):
    recipe, out = finished
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    return str(recipe), copy


def snapshot(out):
    return {p.relative_to(out): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def event_files(out, stage="affinity"):
    return sorted((out / "tensorboard" / stage).rglob("events.out.tfevents.*"))


def fail(*args, **kwargs):
    raise AssertionError("a finished stage was computed again")


def reuse_lines(printed):
    return [line for line in printed.splitlines() if "reusing" in line]


def test_affinity_is_reused_and_nothing_is_written(run_copy, capsys, monkeypatch):
    recipe, out = run_copy
    before = snapshot(out)
    capsys.readouterr()
    monkeypatch.setattr(pipeline, "measure_affinity", fail)
    assert main(["affinity", recipe, "--out", str(out), *QUIET]) == 0
    printed = capsys.readouterr().out
    assert reuse_lines(printed) == [
        f"affinity: reusing {out / 'affinity.json'}, finished with the same inputs; "
        "--force recomputes it"
    ]
    assert "Top 5 helping pairs" in printed  # the reused matrix is shown
    assert snapshot(out) == before  # affinity.json, manifest, log, event file: byte-identical
    assert len(event_files(out)) == 1


def test_force_recomputes_and_replaces_the_event_file(run_copy, capsys):
    recipe, out = run_copy
    [old_events] = event_files(out)
    old = AffinityMatrix.load(out / "affinity.json")
    log_lines = (out / "log.jsonl").read_text().count("\n")
    assert main(["affinity", recipe, "--out", str(out), "--force", *QUIET]) == 0
    assert not reuse_lines(capsys.readouterr().out)
    [new_events] = event_files(out)  # one run in TensorBoard, the new one
    assert new_events != old_events and new_events.stat().st_size > 0
    new = AffinityMatrix.load(out / "affinity.json")
    assert new.values.tolist() == old.values.tolist()  # the same seed measures the same matrix
    assert (out / "log.jsonl").read_text().count("\n") > log_lines  # it did train again


def test_other_settings_measure_again_in_one_event_file(run_copy, capsys):
    recipe, out = run_copy
    assert main(["affinity", recipe, "--out", str(out), "--steps", "4", *QUIET]) == 0
    assert not reuse_lines(capsys.readouterr().out)
    assert AffinityMatrix.load(out / "affinity.json").metadata["steps_trained"] == 4
    assert len(event_files(out)) == 1


def test_group_is_reused_unless_its_input_or_options_change(run_copy, capsys, monkeypatch):
    _, out = run_copy
    before = snapshot(out)
    capsys.readouterr()
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "sweep_budgets", fail)
        assert main(["group", str(out), "--budget", "2", "--sweep"]) == 0
    printed = capsys.readouterr().out
    assert reuse_lines(printed) == [
        f"group: reusing {out / 'groups.json'}, finished with the same inputs; "
        "--force recomputes it"
    ]
    assert "group 1:" in printed  # the reused groups are shown
    assert snapshot(out) == before
    for args in (["--budget", "2"], ["--budget", "3", "--sweep"], ["--budget", "2", "--force"]):
        assert main(["group", str(out), *args]) == 0
        assert not reuse_lines(capsys.readouterr().out)
    # a measured-again affinity (other values) is another input: the groups are selected again
    affinity = AffinityMatrix.load(out / "affinity.json")
    AffinityMatrix(affinity.values * 2, affinity.tasks).save(out / "affinity.json")
    assert main(["group", str(out), "--budget", "2", "--force"]) == 0  # groups of that matrix
    capsys.readouterr()
    AffinityMatrix(affinity.values * 3, affinity.tasks).save(out / "affinity.json")
    assert main(["group", str(out), "--budget", "2"]) == 0
    assert not reuse_lines(capsys.readouterr().out)


def test_train_is_reused_unless_forced(run_copy, capsys, monkeypatch):
    _, out = run_copy
    before = snapshot(out)
    capsys.readouterr()
    with monkeypatch.context() as patched:
        patched.setattr(pipeline, "train_groups", fail)
        assert main(["train", str(out), *QUIET]) == 0
    printed = capsys.readouterr().out
    assert reuse_lines(printed) == [
        f"train: reusing {out / 'results.json'}, finished with the same inputs; "
        "--force retrains the networks"
    ]
    assert "Δm vs single-task" in printed
    assert snapshot(out) == before
    assert main(["train", str(out), "--force", *QUIET]) == 0  # retrains: test_force_retrain.py
    assert not reuse_lines(capsys.readouterr().out)
    # another aggregator trains other networks: the results are not reused
    assert main(["train", str(out), "--aggregator", "pcgrad", *QUIET]) == 0
    assert not reuse_lines(capsys.readouterr().out)
    assert main(["train", str(out), "--aggregator", "pcgrad", *QUIET]) == 0
    assert len(reuse_lines(capsys.readouterr().out)) == 1


def test_run_reuses_every_finished_stage(run_copy, capsys, monkeypatch):
    recipe, out = run_copy
    before = snapshot(out)
    capsys.readouterr()
    for name in ("measure_affinity", "select_groups", "sweep_budgets", "train_groups"):
        monkeypatch.setattr(pipeline, name, fail)
    assert main(["run", recipe, "--out", str(out), *QUIET]) == 0
    printed = capsys.readouterr().out
    assert [line.split(":")[0] for line in reuse_lines(printed)] == ["affinity", "group", "train"]
    changed = {str(p) for p, data in snapshot(out).items() if before.get(p) != data}
    assert changed == {"manifest.json"}  # the report stage alone ran (the same page again)
    monkeypatch.undo()
    assert main(["run", recipe, "--out", str(out), "--force", *QUIET]) == 0
    assert not reuse_lines(capsys.readouterr().out)
    assert len(event_files(out)) == 1
