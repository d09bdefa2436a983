"""``exact``: exhaustive enumeration and branch and bound equal the brute force on every case
(n ≤ 7, every budget, both partition modes, both singleton conventions)."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

import taskgroup as tg
from taskgroup.grouping import exact
from tests.grouping.conftest import CASES, close, random_matrix, reference

MODES = [(p, s) for p in (False, True) for s in (None, 0.0)]


@pytest.mark.parametrize("n, seed, kind", CASES)
@pytest.mark.parametrize("partition, singleton_score", MODES)
def test_exact_equals_brute_force(n, seed, kind, partition, singleton_score):
    values = random_matrix(n, seed, kind)
    table = exact.served_set_values(values, partition=partition, singleton_score=singleton_score)
    for budget in range(1, n + 1):
        expected = reference(n, seed, kind, partition, singleton_score, budget)
        g = tg.select_groups(
            values, budget, method="exact", partition=partition, singleton_score=singleton_score
        )
        assert close(g.score, expected), (budget, g.score, expected)
        assert g.optimal and g.bound == g.score and g.method == "exact"
        assert len(g.groups) <= budget
        assert close(
            tg.grouping.score(
                values, g.groups, partition=partition, singleton_score=singleton_score
            ),
            expected,
        )
        if partition:
            members = [t for group in g.groups for t in group]
            assert sorted(members) == sorted(g.tasks)
        solution = exact.branch_and_bound(table, n, budget)
        assert solution.optimal and close(solution.value, expected), (budget, solution.value)
        assert len(solution.blocks) <= budget
        assert (
            sum(solution.blocks) == (1 << n) - 1
            and all(  # the blocks partition the tasks
                a & b == 0 for i, a in enumerate(solution.blocks) for b in solution.blocks[i + 1 :]
            )
        )


@pytest.mark.parametrize("partition", [False, True])
def test_branch_and_bound_equals_exhaustive_beyond_tiny_n(partition):
    values = random_matrix(9, 3)
    table = exact.served_set_values(values, partition=partition, singleton_score=None)
    for budget in (2, 4):
        assert exact.count_partitions(9, budget) > 200
        full = exact.exhaustive(table, 9, budget)
        bnb = exact.branch_and_bound(table, 9, budget)
        assert bnb.optimal and math.isclose(bnb.value, full.value, rel_tol=1e-12)
        assert bnb.info["nodes"] < full.info["visited"]


def test_count_partitions_are_stirling_sums():
    assert exact.count_partitions(9, 4) == 1 + 255 + 3025 + 7770
    assert exact.count_partitions(5, 5) == 52  # Bell(5)
    assert exact.count_partitions(7, 1) == 1


def test_time_limit_returns_a_valid_bound():
    values = random_matrix(14, 7)
    table = exact.served_set_values(values, partition=False, singleton_score=None)
    optimum = exact.branch_and_bound(table, 14, 5).value
    started = time.perf_counter()
    stopped = exact.branch_and_bound(table, 14, 5, time_limit=1e-9)
    assert time.perf_counter() - started < 5
    assert stopped.value <= optimum + 1e-12
    assert stopped.bound >= optimum - 1e-12
    assert stopped.optimal == (stopped.value >= optimum - 1e-12 and stopped.bound <= optimum)


def test_nine_tasks_budget_four_is_fast():
    values = random_matrix(9, 0)
    started = time.perf_counter()
    g = tg.select_groups(values, 4, method="exact")
    assert g.optimal and time.perf_counter() - started < 1.0


def test_too_many_tasks_for_exact_is_a_clear_error():
    with pytest.raises(ValueError, match="handles up to 22 tasks"):
        tg.select_groups(np.zeros((23, 23)), 2, method="exact")
