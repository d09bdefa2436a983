"""Invariances of the selection (hypothesis): permuting the task order permutes the result,
scaling the matrix by a positive constant keeps the chosen groups, budgets only help."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import taskgroup as tg
from taskgroup.grouping import bounds, exact
from tests.grouping.reference import optimum

PRIMES = [p for p in range(2, 200) if all(p % d for d in range(2, p))][:36]


@st.composite
def problems(draw, max_n: int = 6):
    """A matrix of drawn integers in [-3, 3] plus a tiny generic part (1e-3 √p, distinct primes
    p), so no two groupings tie exactly and "the" optimum is unique."""
    n = draw(st.integers(2, max_n))
    entries = draw(st.lists(st.integers(-3, 3), min_size=n * n, max_size=n * n))
    generic = 1e-3 * np.sqrt(np.array(PRIMES[: n * n], dtype=float))
    values = (np.array(entries, dtype=float) + generic).reshape(n, n)
    budget = draw(st.integers(1, n))
    partition = draw(st.booleans())
    singleton_score = draw(st.sampled_from([None, 0.0]))
    return values, budget, partition, singleton_score


def as_sets(grouping: tg.Grouping) -> set[frozenset[str]]:
    return {frozenset(g) for g in grouping.groups}


@settings(max_examples=60, deadline=None)
@given(problems(), st.randoms(use_true_random=False))
def test_permuting_the_tasks_permutes_the_groups(problem, random):
    values, budget, partition, singleton_score = problem
    n = len(values)
    names = [f"t{i}" for i in range(n)]
    order = list(range(n))
    random.shuffle(order)
    kwargs = dict(partition=partition, singleton_score=singleton_score, method="exact")
    g = tg.select_groups(values, budget, tasks=names, **kwargs)
    p = tg.select_groups(
        values[np.ix_(order, order)], budget, tasks=[names[i] for i in order], **kwargs
    )
    assert math.isclose(g.score, p.score, rel_tol=1e-12, abs_tol=1e-12)
    assert as_sets(g) == as_sets(p)
    assert {t: g.groups[i] for t, i in g.serves.items()} == {
        t: tuple(sorted(p.groups[i], key=names.index)) for t, i in p.serves.items()
    }


@settings(max_examples=60, deadline=None)
@given(problems(), st.sampled_from([1e-4, 0.37, 1.0, 8.0, 3e5]))
def test_positive_scaling_keeps_the_groups(problem, factor):
    values, budget, partition, singleton_score = problem
    kwargs = dict(partition=partition, singleton_score=singleton_score, method="exact")
    g = tg.select_groups(values, budget, **kwargs)
    s = tg.select_groups(values * factor, budget, **kwargs)
    assert as_sets(g) == as_sets(s)
    assert math.isclose(s.score, factor * g.score, rel_tol=1e-9, abs_tol=1e-12)


@settings(max_examples=25, deadline=None)
@given(problems(max_n=5), st.sampled_from(["milp", "beam"]))
def test_scaling_and_permutation_for_other_solvers(problem, method):
    values, budget, partition, singleton_score = problem
    kwargs = dict(partition=partition, singleton_score=singleton_score)
    exact = tg.select_groups(values, budget, method="exact", **kwargs)
    g = tg.select_groups(values * 5.0, budget, method=method, **kwargs)
    assert g.score <= 5.0 * exact.score + 1e-9
    if method == "milp":
        assert as_sets(g) == as_sets(exact)


@settings(max_examples=30, deadline=None)
@given(problems(max_n=6), st.sampled_from(["exact", "beam", "community"]))
def test_sweep_never_decreases(problem, method):
    values, _, partition, singleton_score = problem
    curve = tg.grouping.sweep(
        values, method=method, partition=partition, singleton_score=singleton_score
    )
    scores = [g.score for g in curve]
    assert scores == sorted(scores)
    assert all(g.bound >= g.score for g in curve)
    assert [len(g.groups) <= g.budget for g in curve] == [True] * len(curve)


@settings(max_examples=40, deadline=None)
@given(problems(), st.randoms(use_true_random=False))
def test_score_ignores_the_order_of_groups_and_members(problem, random):
    values, budget, partition, singleton_score = problem
    g = tg.select_groups(
        values, budget, partition=partition, singleton_score=singleton_score, method="exact"
    )
    shuffled = [tuple(random.sample(group, len(group))) for group in g.groups]
    random.shuffle(shuffled)
    again = tg.grouping.score(
        values, shuffled, partition=partition, singleton_score=singleton_score
    )
    assert math.isclose(again, g.score, rel_tol=1e-12, abs_tol=1e-12)


@settings(max_examples=60, deadline=None)
@given(
    problems(max_n=5),
    st.lists(st.floats(-4, 4), min_size=5, max_size=5),
    st.sampled_from([1, 3, 20_000]),
)
def test_lagrangian_bound_is_above_the_brute_force_optimum_for_any_prices(
    problem, prices, node_limit
):
    """Σ π + B · max(0, max_P w(P) − π(P)) bounds every grouping whatever π is, also when the
    pricing search stops early; when it completes it is exactly that expression (checked against
    the table of every served set)."""
    values, budget, partition, singleton_score = problem
    n = len(values)
    pi = np.array(prices[:n])
    kwargs = dict(partition=partition, singleton_score=singleton_score)
    best = optimum(values, budget, **kwargs)
    bound, pricing = bounds.lagrangian_bound(values, pi, budget, node_limit=node_limit, **kwargs)
    if math.isfinite(best):
        assert bound >= best - 1e-9 * max(1.0, abs(best))
    if pricing.complete:
        table = exact.served_set_values(values, **kwargs)
        reduced = np.where(np.isfinite(table), table - bounds.subset_sums(pi), -np.inf)[1:]
        expected = pi.sum() + budget * max(0.0, reduced.max())
        assert math.isclose(bound, expected, rel_tol=1e-9, abs_tol=1e-9)
