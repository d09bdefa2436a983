"""Heuristics never beat the exact optimum and their bound never falls below it; the LP bounds
(table, column generation + pricing search, size bound) are valid upper bounds."""

from __future__ import annotations

import numpy as np
import pytest

import taskgroup as tg
from taskgroup.grouping import bounds, exact, heuristics
from tests.grouping.conftest import CASES, random_matrix, reference

HEURISTICS = ["beam", "greedy", "spectral", "community", "restarts"]
MODES = [(p, s) for p in (False, True) for s in (None, 0.0)]


@pytest.mark.parametrize("n, seed, kind", CASES[2:])
@pytest.mark.parametrize("partition, singleton_score", MODES)
def test_heuristics_are_below_the_optimum_and_bounds_above(
    n, seed, kind, partition, singleton_score
):
    values = random_matrix(n, seed, kind)
    for budget in range(1, n + 1):
        optimum = reference(n, seed, kind, partition, singleton_score, budget)
        tol = 1e-9 * max(1.0, abs(optimum))
        for method in HEURISTICS:
            g = tg.select_groups(
                values,
                budget,
                method=method,
                partition=partition,
                singleton_score=singleton_score,
            )
            assert g.score <= optimum + tol, (method, budget)
            assert g.bound is not None and g.bound >= optimum - tol, (method, budget)
            assert len(g.groups) <= budget and g.method == method
            assert g.optimal == (g.bound - g.score <= 1e-9 * max(1.0, abs(g.bound)))


@pytest.mark.parametrize("partition", [False, True])
@pytest.mark.parametrize("singleton_score", [None, 0.0])
def test_search_bound_beyond_the_table_is_valid(monkeypatch, partition, singleton_score):
    """The large-n path (greedy column generation, pricing search, size bound) on problems small
    enough to know the optimum."""
    monkeypatch.setattr(heuristics, "TABLE_TASKS", 2)
    for n, seed in ((6, 1), (8, 2), (10, 3)):
        values = random_matrix(n, seed)
        table = exact.served_set_values(
            values, partition=partition, singleton_score=singleton_score
        )
        sets = heuristics.ServedSets(values, partition=partition, singleton_score=singleton_score)
        for budget in (1, 2, 3, n):
            optimum = exact.branch_and_bound(table, n, budget).value
            bound = heuristics.upper_bound(sets, budget, time_limit=1.0)
            assert bound.value >= optimum - 1e-9, (n, budget)
            by_size, size_pi = bounds.size_bound_prices(
                values, budget, partition=partition, singleton_score=singleton_score
            )
            assert by_size >= optimum - 1e-9
            at_size_prices, _ = bounds.lagrangian_bound(
                values, size_pi, budget, partition=partition, singleton_score=singleton_score
            )
            assert optimum - 1e-9 <= at_size_prices <= by_size + 1e-9


@pytest.mark.parametrize("partition", [False, True])
@pytest.mark.parametrize("singleton_score", [None, 0.0])
def test_pricing_search_finds_the_best_reduced_value(partition, singleton_score):
    rng = np.random.default_rng(3)
    for n in (2, 4, 7, 9):
        values = random_matrix(n, n + 10)
        pi = 0.5 * rng.normal(size=n)
        table = exact.served_set_values(
            values, partition=partition, singleton_score=singleton_score
        )
        reduced = np.where(np.isfinite(table), table - bounds.subset_sums(pi), -np.inf)
        reduced[0] = -np.inf
        expected = reduced.max() if partition else max(reduced.max(), 0.0)
        found = bounds.price(
            values, pi, partition=partition, singleton_score=singleton_score, floor=-1e9
        )
        assert found.complete and found.best == pytest.approx(expected, abs=1e-9)
        stopped = bounds.price(
            values,
            pi,
            partition=partition,
            singleton_score=singleton_score,
            floor=-1e9,
            node_limit=1,
        )
        assert stopped.upper >= expected - 1e-9


def test_lp_bound_is_tight_on_planted_groups():
    values = random_matrix(12, 5, "planted")
    sets = heuristics.ServedSets(values, partition=False, singleton_score=None)
    g = tg.select_groups(values, 2, method="beam")
    bound = heuristics.upper_bound(sets, 2)
    assert g.optimal and bound.value == pytest.approx(g.score)


def test_heuristics_handle_large_n_with_a_bound():
    values = random_matrix(26, 4, "planted")
    for method in ("beam", "spectral", "community", "restarts"):
        g = tg.select_groups(values, 3, method=method, time_limit=0.5)
        assert g.bound >= g.score and len(g.groups) <= 3


def test_restarts_is_seeded_and_keeps_its_best_start():
    values = random_matrix(14, 6)
    sets = heuristics.ServedSets(values, partition=False, singleton_score=None)
    first = heuristics.restarts(sets, 3, starts=12, seed=4)
    assert first == heuristics.restarts(sets, 3, starts=12, seed=4)
    # independently: the best of the same 12 seeded labellings, each polished, then kicked
    rng = np.random.default_rng(4)
    polished = [
        heuristics.local_search(
            sets,
            heuristics.repair(sets, heuristics._partition_from_labels(rng.integers(3, size=14)), 3),
            3,
        )
        for _ in range(12)
    ]
    best = max(polished, key=sets.total)
    kicked = heuristics.perturbed_search(sets, best, 3, kicks=30, seed=4)
    assert sets.total(first) == pytest.approx(sets.total(kicked), rel=1e-12)
    assert sets.total(first) >= max(sets.total(p) for p in polished) - 1e-12
    more = heuristics.restarts(sets, 3, starts=60, seed=4)
    assert len(more) <= 3 and sorted(j for b in more for j in bounds.mask_members(b)) == list(
        range(14)
    )
