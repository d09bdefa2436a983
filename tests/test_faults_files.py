"""Hostile files (issue 21): a checkpoint that is a pickle carrying code is refused unexecuted;
JSON files with huge numbers, deep nesting, NaN literals or wrong types are one-line errors
naming the file; a symbolic link for the run directory, or one inside it leading outside, is
refused, and what it points at stays byte-identical."""

from __future__ import annotations

import json
import pickle
import re
import shutil

import pytest
import torch

import taskgroup as tg
from taskgroup.cli import main
from taskgroup.rundir import CHECKPOINT, hold_run_dir, network_dir
from taskgroup.settings import TrainSettings
from taskgroup.storage import read_json, write_atomic
from taskgroup.training.checkpoint import load_checkpoint
from taskgroup.training.trainer import group_key, train_group
from tests.recipes import tiny


class Payload:
    """Unpickled, it would create ``MARKER`` (a harmless stand-in for running any code)."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.fixture
def payload(tmp_path):
    Payload.marker = tmp_path / "executed"
    yield Payload()
    assert not Payload.marker.exists(), "the pickle's code ran"


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of the tiny recipe (copied by each test that spoils it)."""
    tmp = tmp_path_factory.mktemp("finished")
    recipe = tmp / "tiny.toml"
    recipe.write_text(tiny(seed=1))
    assert main(["run", str(recipe), "--out", str(tmp / "out"), "--no-progress"]) == 0
    return tmp / "out"


def _one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# ---------------------------------------------------------------- checkpoints


@pytest.mark.parametrize("form", ["torch.save", "plain pickle"])
def test_a_checkpoint_carrying_code_is_refused_unexecuted(tmp_path, payload, form):
    path = tmp_path / "checkpoint.pt"
    if form == "torch.save":
        torch.save({"config": {}, "model": payload}, path)
    else:
        path.write_bytes(pickle.dumps({"config": {}, "model": payload}, protocol=2))
    with pytest.raises(ValueError, match="refused: it holds Python objects") as raised:
        load_checkpoint(path)
    assert str(raised.value).startswith(f"{path}: ") and "\n" not in str(raised.value)


def test_a_checkpoint_that_is_no_dict_or_garbage_is_named(tmp_path):
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match=r"list.pt: not a taskgroup checkpoint \(a list"):
        load_checkpoint(tmp_path / "list.pt")
    (tmp_path / "cut.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(ValueError, match=r"cut.pt: unreadable checkpoint"):
        load_checkpoint(tmp_path / "cut.pt")


def test_resuming_from_a_planted_checkpoint_refuses_it(tmp_path, payload):
    """A training whose checkpoint someone replaced: refused with its name, the code unrun."""
    bench = tg.data.get("planted", n_train=64, n_val=32, n_test=32, groups=2, tasks_per_group=1)
    settings = TrainSettings.for_benchmark(bench, steps=4, eval_every=2, batch_size=16)
    folder = network_dir(tmp_path, group_key(bench.tasks.names, "mean"))
    folder.mkdir(parents=True)
    torch.save({"config": {}, "model": payload}, folder / CHECKPOINT)
    with pytest.raises(ValueError, match=re.escape(f"{folder / CHECKPOINT}: refused")):
        train_group(bench, bench.tasks.names, settings, directory=folder)


# ---------------------------------------------------------------- JSON

HOSTILE_JSON = {
    "a number beyond float range": ('{"values": [[1e999]]}', "beyond float range"),
    "an integer of 5000 digits": ('{"values": [[1' + "0" * 5000 + "]]}", "digits"),
    "100k nested lists": ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    "a NaN literal": ('{"values": [[NaN]]}', "NaN is not a JSON number"),
    "an Infinity literal": ('{"values": [[-Infinity]]}', "-Infinity is not a JSON number"),
    "a torn file": ('{"values": [[0.1, 0.2', "malformed JSON"),
}


@pytest.mark.parametrize("case", list(HOSTILE_JSON))
def test_read_json_names_the_file(tmp_path, case):
    text, reason = HOSTILE_JSON[case]
    (tmp_path / "affinity.json").write_text(text)
    with pytest.raises(ValueError) as raised:
        read_json(tmp_path / "affinity.json")
    message = str(raised.value)
    assert message.startswith(f"{tmp_path / 'affinity.json'}: malformed JSON (")
    assert reason in message and "\n" not in message


# the files of a run each command reads, and a command that reads it
READERS = {
    "affinity.json": ["group", "{out}", "--budget", "2"],
    "groups.json": ["train", "{out}", "--no-progress"],
    "manifest.json": ["report", "{out}"],
    "results.json": ["report", "{out}"],
}
WRONG_TYPES = {
    "affinity.json": [[1, 2], {"values": "0.3", "tasks": ["a"]}, {"values": [[1]], "tasks": 3}],
    "groups.json": [{"groups": "g0_t0"}, {"groups": [[1, 2]]}, {"groups": 7}],
    "manifest.json": [[], {"stages": []}, {"stages": {"affinity": 5}}, {"run": "x"}],
    "results.json": [[], {"groups": "x"}, {"format": 3, "tasks": {}}],
}


@pytest.mark.parametrize(
    ("name", "content"),
    [(n, text) for n in READERS for text, _ in HOSTILE_JSON.values()]
    + [(n, json.dumps(bad)) for n, cases in WRONG_TYPES.items() for bad in cases],
)
def test_every_command_names_a_hostile_json_file_in_one_line(
    tmp_path, finished, capsys, name, content
):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    (out / name).write_text(content)
    code = main([a.format(out=out) for a in READERS[name]])
    line = _one_line(capsys.readouterr().err)
    assert code == 2 and str(out / name) in line, line


# ---------------------------------------------------------------- symbolic links


def _bytes(folder):
    return {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_symlinked_run_directory_is_refused(tmp_path, finished, capsys):
    target = tmp_path / "elsewhere"
    shutil.copytree(finished, target)
    before = _bytes(target)
    (tmp_path / "link").symlink_to(target)
    for argv in (
        ["group", str(tmp_path / "link"), "--budget", "2"],
        ["report", str(tmp_path / "link")],
    ):
        assert main(argv) == 2
        line = _one_line(capsys.readouterr().err)
        assert f"{tmp_path / 'link'} is a symbolic link (to {target})" in line
    assert _bytes(target) == before


@pytest.mark.parametrize("inside", ["groups.json", "log.jsonl", "train", "tensorboard"])
def test_a_link_inside_the_run_directory_leading_out_is_refused(tmp_path, finished, capsys, inside):
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    outside = tmp_path / "outside"
    shutil.move(out / inside, outside)  # the real file or folder now lives outside the run
    (out / inside).symlink_to(outside)
    before = _bytes(tmp_path / "outside") if outside.is_dir() else {outside: outside.read_bytes()}
    assert main(["train", str(out), "--aggregator", "pcgrad", "--no-progress"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert f"{out / inside} is a symbolic link to {outside}, outside the run directory" in line
    after = _bytes(tmp_path / "outside") if outside.is_dir() else {outside: outside.read_bytes()}
    assert after == before


def test_a_link_that_stays_inside_is_fine(tmp_path):
    run_dir = tmp_path / "run"
    (run_dir / "plots").mkdir(parents=True)
    (run_dir / "latest").symlink_to(run_dir / "plots")
    with hold_run_dir(run_dir):
        pass


def test_an_atomic_write_replaces_a_link_and_never_writes_through_it(tmp_path):
    outside = tmp_path / "outside.json"
    outside.write_text('{"keep": true}\n')
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "groups.json").symlink_to(outside)
    write_atomic(tmp_path / "run" / "groups.json", '{"groups": []}\n')
    assert outside.read_text() == '{"keep": true}\n'
    assert not (tmp_path / "run" / "groups.json").is_symlink()
