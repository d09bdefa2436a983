"""Wrong types inside the JSON files of a run directory (issue 21, item 5): every file a
command reads — ``results.json``, ``groups.json``, ``affinity.json``, a network's
``result.json``, a pair table — holding a value of the wrong type, a missing key, or a name or
index that points nowhere, is refused by the command that reads it in one line on stderr that
names the file and the key path, with exit code 2, and no file of the run directory changes."""

from __future__ import annotations

import json
import shutil

import pytest

from taskgroup.cli import main
from taskgroup.grouping.hoa import PairTable
from taskgroup.rundir import RESULT, TRAIN
from taskgroup.storage import check_json
from taskgroup.training.groups import GroupResults, read_groups
from tests.recipes import tiny


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished run of the tiny recipe (copied by each test that spoils it), with a pair
    table of its four tasks as ``pairs.json``."""
    tmp = tmp_path_factory.mktemp("finished")
    recipe = tmp / "tiny.toml"
    recipe.write_text(tiny(seed=1))
    assert main(["run", str(recipe), "--out", str(tmp / "out"), "--no-progress"]) == 0
    tasks = json.loads((tmp / "out" / "results.json").read_text())["tasks"]
    single = {t: 1.0 + i / 10 for i, t in enumerate(tasks)}
    pair = {
        t: {u: single[t] * (0.9 if t[:2] == u[:2] else 1.1) for u in tasks if u != t} for t in tasks
    }
    PairTable(tasks, single, pair).save(tmp / "out" / "pairs.json")
    return tmp / "out"


def _network(out, tasks: str) -> str:
    """The path of ``train/<key>/result.json`` of the network on exactly ``tasks`` (+-joined),
    relative to the run directory."""
    (folder,) = [p for p in (out / TRAIN).iterdir() if p.name.rsplit("-", 1)[0] == f"mean-{tasks}"]
    return str((folder / RESULT).relative_to(out))


def _set(path: str, value):
    """A change that sets the key path ``path`` (dots between keys, ints index lists)."""

    def change(data):
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in parents:
            data = data[key]
        data[last] = value

    return change


def _drop(path: str):
    def change(data):
        *parents, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for key in parents:
            data = data[key]
        del data[last]

    return change


REPORT = ["report", "{out}"]
TRAIN_AGAIN = ["train", "{out}", "--no-progress"]
GROUP = ["group", "{out}", "--budget", "2"]
HOA = ["group", "{out}", "--budget", "2", "--method", "hoa"]

# name -> (file, change, command, what the line must name besides the file)
CASES = {
    # results.json, read by `report`
    "results: tasks a list of numbers": (
        "results.json",
        _set("tasks", [1, 2, 3, 4]),
        REPORT,
        "tasks[0]",
    ),
    "results: a metric as a string": (
        "results.json",
        _set("metrics.g0_t0.loss", "0.7"),
        REPORT,
        "metrics.g0_t0.loss",
    ),
    "results: metrics as a string": ("results.json", _set("metrics", "0.7"), REPORT, "metrics"),
    "results: serves a list": ("results.json", _set("serves", [0, 0, 1, 1]), REPORT, "serves"),
    "results: serves out of range": (
        "results.json",
        _set("serves.g0_t0", 5),
        REPORT,
        "serves.g0_t0",
    ),
    "results: a network's test metric a string": (
        "results.json",
        _set("groups.0.test.g0_t0.loss", "x"),
        REPORT,
        "groups[0].test.g0_t0.loss",
    ),
    "results: a network without test": (
        "results.json",
        _drop("groups.0.test"),
        REPORT,
        "groups[0].test",
    ),
    "results: a network's tasks a string": (
        "results.json",
        _set("groups.1.tasks", "g1_t0"),
        REPORT,
        "groups[1].tasks",
    ),
    "results: single a list": ("results.json", _set("single", []), REPORT, "single"),
    "results: a direction a string": (
        "results.json",
        _set("directions.g0_t0.mae", "yes"),
        REPORT,
        "directions.g0_t0.mae",
    ),
    "results: a direction missing": (
        "results.json",
        _drop("directions.g1_t1"),
        REPORT,
        "directions",
    ),
    "results: together lacks a task": (
        "results.json",
        _drop("together.test.g1_t1"),
        REPORT,
        "together.test",
    ),
    "results: trained_for a list": (
        "results.json",
        _set("trained_for", ["x"]),
        REPORT,
        "trained_for",
    ),
    "results: diverged a string": (
        "results.json",
        _set("groups.0.diverged", "yes"),
        REPORT,
        "groups[0].diverged",
    ),
    # groups.json, read by `report` (Grouping.from_dict) and `train` (read_groups)
    "groups: serves a list": ("groups.json", _set("serves", [0, 0, 1, 1]), REPORT, "serves"),
    "groups: a value a string": ("groups.json", _set("values.g0_t0", "x"), REPORT, "values.g0_t0"),
    "groups: info a list": ("groups.json", _set("info", [1]), REPORT, "info"),
    "groups: sweep a list of numbers": ("groups.json", _set("sweep", [1, 2]), REPORT, "sweep[0]"),
    "groups: a sweep score a string": (
        "groups.json",
        _set("sweep.0.score", "x"),
        REPORT,
        "sweep[0].score",
    ),
    "groups: a sweep record without budget": (
        "groups.json",
        _drop("sweep.1.budget"),
        REPORT,
        "sweep[1].budget",
    ),
    "groups: an unknown task name (train)": (
        "groups.json",
        _set("groups.0.0", "nope"),
        TRAIN_AGAIN,
        "nope",
    ),
    # affinity.json, read by `group`
    "affinity: tasks a list of numbers": (
        "affinity.json",
        _set("tasks", [1, 2, 3, 4]),
        GROUP,
        "tasks",
    ),
    "affinity: trace values a string": ("affinity.json", _set("trace.values", "x"), GROUP, "trace"),
    # a network's result.json, read by `train` once results.json is gone
    "network: result a list": ("network", _set("result", []), TRAIN_AGAIN, "result"),
    "network: a test metric a string": (
        "network",
        _set("result.test.g0_t0.loss", "x"),
        TRAIN_AGAIN,
        "result.test.g0_t0.loss",
    ),
    "network: the file a list": ("network", lambda data: data.clear(), TRAIN_AGAIN, "the file"),
    "network: config a number": ("network", _set("config", 3), TRAIN_AGAIN, "config"),
    # pairs.json, read by `group --method hoa`
    "pairs: single a list": ("pairs.json", _set("single", [1.0, 2.0]), HOA, "single"),
    "pairs: tasks a number": ("pairs.json", _set("tasks", 5), HOA, "tasks"),
}


def _files(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case", list(CASES))
def test_a_wrong_type_is_one_line_naming_file_and_key(tmp_path, finished, capsys, case):
    name, change, command, key = CASES[case]
    out = tmp_path / "out"
    shutil.copytree(finished, out)
    if name == "network":
        name = _network(out, "g0_t0")  # the single-task network of g0_t0
        (out / "results.json").unlink()  # so `train` reads each network's result.json
    data = json.loads((out / name).read_text())
    if case == "network: the file a list":
        data = []
    else:
        change(data)
    (out / name).write_text(json.dumps(data))
    before = _files(out)
    capsys.readouterr()
    code = main([a.format(out=out) for a in command])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert str(out / name) in lines[0] and key in lines[0], lines[0]
    assert _files(out) == before  # nothing written, nothing removed


def test_an_unknown_task_in_a_groups_file_names_the_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text('{"groups": [["a", "b"], ["c", "zz"]]}')
    assert read_groups(path) == [("a", "b"), ("c", "zz")]  # names unchecked without tasks
    with pytest.raises(ValueError) as raised:
        read_groups(path, tasks=["a", "b", "c"])
    assert str(raised.value).startswith(f"{path}: ") and "'zz'" in str(raised.value)


def test_results_that_load_are_whole(finished):
    """Whatever ``GroupResults.load`` accepts can be shown: the table, Δm and the record, for
    every value of the file replaced by one of another type, or removed (each either refused
    naming the file, or loaded and usable)."""
    source = json.loads((finished / "results.json").read_text())
    paths = list(_paths(source))
    tried = refused = 0
    for path in paths:
        for change in (_drop(path), _set(path, "x"), _set(path, [1]), _set(path, {"a": None})):
            data = json.loads(json.dumps(source))
            change(data)
            if data == source:
                continue
            tried += 1
            try:
                results = GroupResults.from_dict(data, source="R")
            except ValueError as e:
                assert str(e).startswith("R: ") and "\n" not in str(e), str(e)
                refused += 1
                continue
            results.table(), results.to_dict(), results.delta_m(), results.cost
    assert tried > 300 and refused > tried // 2, (tried, refused)


def _paths(value, prefix=""):
    """Every key path of ``value`` in :func:`_set`'s notation (lists: their first item)."""
    items = value.items() if isinstance(value, dict) else enumerate(value[:1])
    for key, item in items:
        path = f"{prefix}{key}"
        yield path
        if isinstance(item, dict | list) and item:
            yield from _paths(item, path + ".")


@pytest.mark.parametrize(
    ("value", "schema", "message"),
    [
        ({"a": [1, "2"]}, {"a": [int]}, "S: a[1] must be an integer, got the string '2'"),
        ({"a": 1.5}, {"a": int}, "S: a must be an integer, got the number 1.5"),
        ({"a": True}, {"a": float}, "S: a must be a number, got true"),
        ({}, {"a": int}, "S: missing 'a'"),
        ({"b": {"c": []}}, {"b": {str: {str: float}}}, "S: b.c must be an object, got a list"),
        ([], {"a": int}, "S: the file must be an object, got a list"),
        ({"a": "x"}, {"?a": (None, [str])}, "S: a must be null or a list, got the string 'x'"),
    ],
)
def test_check_json_names_the_key_path(value, schema, message):
    with pytest.raises(ValueError) as raised:
        check_json(value, schema, "S")
    assert str(raised.value) == message


@pytest.mark.parametrize(
    ("value", "schema"),
    [
        ({"a": [1, 2], "extra": "kept"}, {"a": [int]}),
        ({"a": 1}, {"a": float}),
        ({}, {"?a": int}),
        ({"x": {"y": 1.5}}, {str: {str: float}}),
        ({"a": None}, {"a": (None, {str: object})}),
    ],
)
def test_check_json_accepts_what_fits(value, schema):
    check_json(value, schema, "S")
