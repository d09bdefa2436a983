"""AffinityMatrix: validation, JSON round trip, networkx view, clear errors on corrupt files."""

from __future__ import annotations

import json

import networkx as nx
import numpy as np
import pytest

from taskgroup.affinity.matrix import AffinityMatrix

TASKS = ["a", "b", "c"]


def example() -> AffinityMatrix:
    rng = np.random.default_rng(0)
    trace = rng.normal(size=(4, 3, 3))
    return AffinityMatrix(
        trace.mean(0),
        TASKS,
        trace=trace,
        trace_steps=[0, 5, 10, 15],
        trace_lr=[1e-3] * 4,
        lookahead="sgd",
        note="ünïcode",
    )


def test_round_trip_is_exact(tmp_path):
    a = example()
    a.save(tmp_path / "affinity.json")
    b = AffinityMatrix.load(tmp_path / "affinity.json")
    assert b.tasks == a.tasks
    np.testing.assert_array_equal(b.values, a.values)
    np.testing.assert_array_equal(b.trace, a.trace)
    assert b.trace_steps == a.trace_steps and b.trace_lr == a.trace_lr
    assert b.metadata == a.metadata
    assert [p.name for p in tmp_path.iterdir()] == ["affinity.json"]  # no temp files left


def test_networkx_view_has_every_ordered_pair():
    a = example()
    g = a.to_networkx()
    assert isinstance(g, nx.DiGraph)
    assert set(g.nodes) == set(TASKS)
    assert g.number_of_edges() == 6
    assert g["a"]["c"]["weight"] == a.values[0, 2]
    assert g.nodes["b"]["self_affinity"] == a.values[1, 1]


def test_pairs_are_sorted_and_select_reorders():
    a = example()
    values = [v for _, _, v in a.pairs()]
    assert values == sorted(values, reverse=True) and len(values) == 6
    sub = a.select(["c", "a"])
    assert sub.value("c", "a") == a.value("c", "a")
    np.testing.assert_array_equal(sub.trace[:, 0, 1], a.trace[:, 2, 0])
    with pytest.raises(ValueError, match="unknown task 'z'"):
        a.select(["z"])


@pytest.mark.parametrize(
    "values, tasks, message",
    [
        ([[1.0, 2.0]], ["a"], "square"),
        (np.eye(2), ["a", "b", "c"], "3 tasks"),
        ([[np.nan, 0], [0, 0]], ["a", "b"], "NaN"),
        (np.eye(2), ["a", "a"], "distinct"),
        ([["x", "y"], ["z", "w"]], ["a", "b"], "numeric"),
        ([["0.3", "0"], ["0", "1"]], ["a", "b"], "numeric, got entries of type <U3"),
    ],
)
def test_invalid_matrices_are_refused(values, tasks, message):
    with pytest.raises(ValueError, match=message):
        AffinityMatrix(values, tasks)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "malformed JSON"),
        ('{"format": "something-else"}', "not a taskgroup affinity file"),
        ('{"format": "taskgroup.affinity", "version": 9}', "unsupported version"),
        ('{"format": "taskgroup.affinity", "version": 1, "tasks": ["a"]}', "missing 'values'"),
        (
            '{"format": "taskgroup.affinity", "version": 1, "tasks": ["a", "b"], '
            '"values": [[1, 2]]}',
            "square",
        ),
        ("[1, 2]", "not a taskgroup affinity file"),
        (
            '{"format": "taskgroup.affinity", "version": 1, "tasks": ["a", "b"], '
            '"values": [["0.3", "0"], ["0", "0.1"]]}',
            r"values\[0\]\[0\] must be a number",
        ),
    ],
)
def test_corrupt_files_name_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "affinity.json"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        AffinityMatrix.load(path)
    assert str(path) in str(info.value)


def test_missing_file(tmp_path):
    with pytest.raises(ValueError, match="no such file"):
        AffinityMatrix.load(tmp_path / "nope.json")


def test_saved_json_states_the_sign_convention(tmp_path):
    example().save(tmp_path / "a.json")
    data = json.loads((tmp_path / "a.json").read_text())
    assert "source task i" in data["convention"]


def test_relative_divides_each_source_row_by_its_self_improvement():
    values = np.array([[2.0, 1.0, -0.5], [0.1, 0.5, 0.25], [3.0, 0.0, 1.5]])
    R = AffinityMatrix(values, ["a", "b", "c"], lookahead="sgd").relative()
    expected = np.array([[1.0, 0.5, -0.25], [0.2, 1.0, 0.5], [2.0, 0.0, 1.0]])
    np.testing.assert_allclose(R.values, expected)
    assert R.metadata == {"lookahead": "sgd", "normalized": "source"} and R.trace is None
    with pytest.raises(ValueError, match="Z\\[i, i\\] <= 0 for b"):
        AffinityMatrix(np.array([[1.0, 0.2], [0.3, 0.0]]), ["a", "b"]).relative()
