"""The opt-in semidefinite certificate: its per-size bounds against a brute-force pricing, every
round's bound against the brute-force optimum, and its errors."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

import taskgroup as tg
from taskgroup.grouping.bounds import size_relaxation
from taskgroup.grouping.certificate import SizeRelaxation, certify, proximal_master
from tests.grouping.conftest import random_matrix
from tests.grouping.reference import affinity, optimum


def brute_force_pricing(values, pi, k, partition) -> float:
    """max over groups S of k tasks of Σ_{j ∈ S} g(a(j, S) − π_j), by enumeration."""
    best = -np.inf
    for group in itertools.combinations(range(len(values)), k):
        terms = [affinity(values, j, group, None) - pi[j] for j in group]
        best = max(best, sum(terms) if partition else sum(max(t, 0.0) for t in terms))
    return best


@pytest.mark.parametrize("partition", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_size_relaxation_bounds_the_pricing_problem(seed, partition):
    n = 6
    values = random_matrix(n, seed)
    pi = np.random.default_rng(seed).normal(scale=0.5, size=n)
    cheap = size_relaxation(values, pi, partition=partition)
    for k in range(2, n + 1):
        exact = brute_force_pricing(values, pi, k, partition)
        upper, y, value = SizeRelaxation(n, k, partition).solve(values, pi)
        assert upper >= exact - 1e-7
        assert cheap[k] >= exact - 1e-9
        assert ((y >= 0) & (y <= 1)).all() and value - pi @ y <= upper + 1e-6
        if not partition and k == n:  # the whole set: nothing to choose but the served tasks
            assert upper == pytest.approx(exact, abs=1e-3)


def test_every_round_bounds_the_optimum():
    values = random_matrix(9, 4)
    grouping = tg.select_groups(values, 3, method="greedy")
    best = optimum(values, 3, partition=False, singleton_score=None)
    rounds = []
    forced = dataclasses.replace(grouping, optimal=False, bound=10 * abs(best))
    certified = certify(values, forced, time_limit=60, on_round=lambda *r: rounds.append(r))
    assert rounds
    assert all(bound >= best - 1e-7 for _, bound, _ in rounds)
    assert best - 1e-7 <= certified.bound < forced.bound
    facts = certified.info["certificate"]
    assert facts["rounds"] == len(rounds) and facts["default_bound"] == forced.bound


@pytest.mark.parametrize("step", [0.05, 1.0, 20.0])
def test_proximal_master_minimises_the_model_plus_the_proximal_term(step):
    rng = np.random.default_rng(7)
    n, m, budget = 5, 30, 2
    cover = (rng.random((n, m)) < 0.4).astype(float)
    cover[:, :n] = np.eye(n)  # every task covered
    weights = rng.normal(size=m) + cover.sum(axis=0)
    center = rng.normal(size=n)

    def model(pi):
        return pi.sum() + budget * max(0.0, float(np.max(weights - cover.T @ pi)))

    def objective(pi):
        return model(pi) + ((pi - center) ** 2).sum() / (2 * step)

    pi, value = proximal_master(cover, weights, budget, center, step)
    assert value == pytest.approx(model(pi), abs=1e-12)
    # convex: no point nearby (nor the center) is lower, up to the solver's tolerance
    for _ in range(300):
        other = pi + rng.normal(scale=rng.choice([1e-3, 1e-1, 1.0]), size=n)
        assert objective(pi) <= objective(other) + 1e-6
    assert objective(pi) <= objective(center) + 1e-6


def test_an_optimal_grouping_is_returned_as_it_is():
    values = random_matrix(6, 0)
    grouping = tg.select_groups(values, 2)
    assert grouping.optimal and certify(values, grouping) is grouping


def test_bad_input():
    values = random_matrix(6, 0)
    grouping = tg.select_groups(values, 2)
    with pytest.raises(ValueError, match="time_limit must be a positive"):
        certify(values, grouping, time_limit=0)
    with pytest.raises(ValueError, match="the matrix it was selected from"):
        certify(values + 1.0, grouping)


@pytest.mark.slow
def test_certificate_tightens_a_loose_bound_at_24_tasks():
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))
    from bench_grouping import matrix

    values = matrix("planted-2B", 24, 0)
    grouping = tg.select_groups(values, 4)
    certified = certify(values, grouping, time_limit=120)
    assert grouping.gap > 0.4 and certified.gap < 0.06
