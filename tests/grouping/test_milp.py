"""``milp``: the cvxpy/HiGHS set-partitioning model equals the brute force on every case, also
beyond its full-column size (columns from column generation and reduced-cost enumeration)."""

from __future__ import annotations

import pytest

import taskgroup as tg
from taskgroup.grouping import milp
from tests.grouping.conftest import CASES, close, random_matrix, reference

MODES = [(p, s) for p in (False, True) for s in (None, 0.0)]


@pytest.mark.parametrize("n, seed, kind", CASES)
@pytest.mark.parametrize("partition, singleton_score", MODES)
def test_milp_equals_brute_force(n, seed, kind, partition, singleton_score):
    values = random_matrix(n, seed, kind)
    curve = tg.grouping.sweep(
        values, method="milp", partition=partition, singleton_score=singleton_score
    )
    assert [g.budget for g in curve] == list(range(1, n + 1))
    for g in curve:
        expected = reference(n, seed, kind, partition, singleton_score, g.budget)
        assert close(g.score, expected), (g.budget, g.score, expected)
        assert g.optimal and g.method == "milp" and len(g.groups) <= g.budget
    single = tg.select_groups(
        values, n // 2 + 1, method="milp", partition=partition, singleton_score=singleton_score
    )
    assert close(single.score, curve[n // 2].score)


@pytest.mark.parametrize("partition", [False, True])
def test_column_generation_model_is_exact(monkeypatch, partition):
    monkeypatch.setattr(milp, "FULL_TASKS", 3)
    for n, seed, kind in [(5, 1, "normal"), (6, 2, "ties"), (7, 3, "normal"), (7, 4, "planted")]:
        values = random_matrix(n, seed, kind)
        for budget in range(1, n + 1):
            expected = reference(n, seed, kind, partition, None, budget)
            g = tg.select_groups(values, budget, method="milp", partition=partition)
            # the reduced-cost columns make the restricted model exact
            assert g.optimal and close(g.score, expected) and g.bound == g.score
            assert g.info["model"] != "all served sets"


def test_milp_time_limit_is_respected():
    values = random_matrix(12, 5)
    g = tg.select_groups(values, 3, method="milp", time_limit=30)
    exact = tg.select_groups(values, 3, method="exact")
    assert close(g.score, exact.score) and g.optimal
