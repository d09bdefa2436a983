"""The objective: TAG's score by hand, the singleton convention, the served-set reduction, the
Grouping record and its JSON round trip."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest

import taskgroup as tg
from taskgroup.grouping.exact import served_set_values
from taskgroup.grouping.objective import Grouping, served_set_value, served_sets_values
from tests.grouping.conftest import random_matrix
from tests.grouping.reference import affinity, served_value

# rows = source, columns = target
Z = np.array(
    [
        [9.0, 0.2, -0.4, 0.1],
        [0.6, 9.0, 0.3, 0.0],
        [-0.2, 0.5, 9.0, 0.8],
        [0.4, -0.1, 0.7, 9.0],
    ]
)
TASKS = ["a", "b", "c", "d"]


def test_score_by_hand():
    # {a, b}: a gets Z[b, a] = 0.6, b gets Z[a, b] = 0.2; {c, d}: c gets 0.7, d gets 0.8
    assert tg.grouping.score(Z, [("a", "b"), ("c", "d")], tasks=TASKS) == pytest.approx(2.3)
    # {a, b, c}: a gets (0.6 - 0.2) / 2, b (0.2 + 0.5) / 2, c (-0.4 + 0.3) / 2; d is served by
    # {c, d} (0.8) though c does better in {c, d} (0.7): each task takes its best group
    groups = [("a", "b", "c"), ("c", "d")]
    assert tg.grouping.score(Z, groups, tasks=TASKS) == pytest.approx(0.2 + 0.35 + 0.7 + 0.8)
    # the diagonal never counts, and indices work like names
    assert tg.grouping.score(Z, [(0, 1), (2, 3)]) == pytest.approx(2.3)


def test_singleton_convention():
    groups = [("a",), ("b", "c", "d")]
    assert tg.grouping.score(Z, groups, tasks=TASKS) == -math.inf  # a is served by nothing
    with_zero = tg.grouping.score(Z, groups, tasks=TASKS, singleton_score=0.0)
    assert with_zero == pytest.approx(0.0 + (0.3 - 0.1) / 2 + (0.5 + 0.7) / 2 + (0.0 + 0.8) / 2)
    # a singleton next to a group that already serves the task changes nothing
    both = [("a",), ("a", "b"), ("c", "d")]
    assert tg.grouping.score(Z, both, tasks=TASKS) == pytest.approx(2.3)
    assert tg.grouping.score(Z, both, tasks=TASKS, singleton_score=0.0) == pytest.approx(2.3)
    assert tg.grouping.score(Z, both, tasks=TASKS, singleton_score=1.0) == pytest.approx(2.7)


@pytest.mark.parametrize(
    "groups, kwargs, message",
    [
        ([("a", "b")], {}, "do not cover task(s) c, d"),
        ([("a", "b", "c"), ("c", "d")], {"partition": True}, "disjoint"),
        ([("a", "z"), ("c", "d")], {}, "unknown task 'z'"),
        ([("a", "a"), ("b", "c", "d")], {}, "names a task twice"),
        ([(), ("a", "b", "c", "d")], {}, "a group is empty"),
        ([], {}, "groups is empty"),
        ("ab", {}, "list of groups"),
        ([("a", "b"), (7,)], {}, "out of range"),
        ([("a", "b", "c", "d")], {"singleton_score": float("nan")}, "finite"),
    ],
)
def test_bad_groups(groups, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        tg.grouping.score(Z, groups, tasks=TASKS, **kwargs)


@pytest.mark.parametrize("partition", [False, True])
@pytest.mark.parametrize("singleton_score", [None, 0.0, -0.3])
def test_served_set_values_match_superset_enumeration(partition, singleton_score):
    for n, seed in ((1, 0), (2, 1), (3, 2), (5, 3), (6, 4)):
        values = random_matrix(n, seed)
        table = served_set_values(values, partition=partition, singleton_score=singleton_score)
        assert table[0] == 0.0
        for mask in range(1, 1 << n):
            served = tuple(j for j in range(n) if mask >> j & 1)
            expected = served_value(
                values, served, partition=partition, singleton_score=singleton_score
            )
            value, group = served_set_value(
                values, served, partition=partition, singleton_score=singleton_score
            )
            assert table[mask] == pytest.approx(expected, abs=1e-12) or table[mask] == expected
            assert value == pytest.approx(expected, abs=1e-12) or value == expected
            if math.isfinite(value):  # the group returned achieves the value
                assert set(served) <= set(group)
                assert not partition or set(group) == set(served)
                achieved = sum(affinity(values, j, group, singleton_score) for j in served)
                assert achieved == pytest.approx(value, abs=1e-12)


def test_vectorised_and_single_served_values_agree():
    values = random_matrix(8, 5)
    rng = np.random.default_rng(0)
    member = rng.random((50, 8)) < 0.4
    many = served_sets_values(values, member, partition=False, singleton_score=None)
    for row, value in zip(member, many, strict=True):
        single = (
            served_set_value(
                values, list(np.flatnonzero(row)), partition=False, singleton_score=None
            )[0]
            if row.any()
            else 0.0
        )
        assert value == pytest.approx(single) or value == single


def test_grouping_json_round_trip(tmp_path):
    a = tg.AffinityMatrix(Z, TASKS)
    g = tg.select_groups(a, 2)
    assert isinstance(g, tg.Grouping)
    g.save(tmp_path / "groups.json")
    back = Grouping.load(tmp_path / "groups.json")
    assert back.groups == g.groups and back.serves == g.serves and back.values == g.values
    assert back.score == g.score and back.bound == g.bound and back.optimal == g.optimal
    assert back.method == g.method and back.tasks == TASKS and back.budget == 2
    assert [p.name for p in tmp_path.iterdir()] == ["groups.json"]
    assert "group 1:" in g.describe() and "optimal" in g.describe()


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.update(format="other"), "not a taskgroup groups file"),
        (lambda d: d.update(version=9), "unsupported version"),
        (lambda d: d.pop("groups"), "missing 'groups'"),
        (lambda d: d.update(groups=[["a", "zz"]]), "unknown task 'zz'"),
        (lambda d: d["serves"].update(a=5), "does not hold the task"),
        (lambda d: d.update(score="high"), "score must be a number"),
    ],
)
def test_corrupt_groups_file_is_named(tmp_path, edit, message):
    data = tg.select_groups(Z, 2, tasks=TASKS).to_dict()
    edit(data)
    path = tmp_path / "groups.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=message) as info:
        Grouping.load(path)
    assert str(path) in str(info.value)


def test_groups_are_canonical_and_serve_every_task():
    values = random_matrix(6, 11)
    g = tg.select_groups(values, 3)
    firsts = [g.tasks.index(group[0]) for group in g.groups]
    assert firsts == sorted(firsts)
    for group in g.groups:
        assert list(group) == sorted(group, key=g.tasks.index)
    assert set(g.serves) == set(g.tasks)
    assert sorted(set(g.serves.values())) == list(range(len(g.groups)))  # none idle
    assert sum(g.values.values()) == pytest.approx(g.score)
    assert tg.grouping.score(values, g.groups) == pytest.approx(g.score)
    for task, index in g.serves.items():
        assert task in g.groups[index]
    assert list(itertools.chain(g.groups))  # non-empty


def test_describe_names_the_lp_estimate_only_when_it_says_more_than_the_bound():
    from taskgroup.grouping.objective import make_grouping

    def grouping(bound, optimal, estimate):
        return make_grouping(
            Z, TASKS, [(0, 1), (2, 3)], budget=2, partition=False, singleton_score=None,
            method="beam", bound=bound, optimal=optimal,
            info={"lp_estimate": estimate, "lp_columns": 17},
        )  # fmt: skip

    score = grouping(None, False, None).score
    assert score > 0  # this matrix's grouping
    loose = grouping(3 * score, False, score / 0.99).describe()
    assert "not a proof: the LP over the 17 served sets" in loose
    assert "1.00% above the score" in loose  # (estimate − score) / estimate
    assert "not a proof" not in grouping(score, True, score).describe()
    assert "not a proof" not in grouping(3 * score, False, None).describe()
    assert "not a proof" not in grouping(3 * score, False, 0.5 * score).describe()
    assert "not a proof" not in grouping(3 * score, False, 3 * score).describe()
