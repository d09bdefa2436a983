"""``select_groups(method="auto")`` beyond 40 tasks (issue 20, item 5): it keeps its time limit,
returns a valid grouping with a bound and a gap, labels itself a heuristic, and its bound is a
true upper bound where the optimum is known."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

import taskgroup as tg
from taskgroup.grouping import bounds, select
from tests.grouping.conftest import random_matrix, reference


def planted_like(n: int, groups: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % groups)
    same = labels[:, None] == labels[None, :]
    return 0.01 * (np.where(same, 1.0, -0.5) + noise * rng.normal(size=(n, n))), labels


@pytest.mark.parametrize("partition", [False, True])
def test_auto_at_120_tasks_keeps_its_time_limit_and_reports_its_gap(partition):
    values, _ = planted_like(120, 4, 0.5, seed=0)
    started = time.perf_counter()
    g = tg.select_groups(values, 5, time_limit=3.0, partition=partition)
    elapsed = time.perf_counter() - started
    assert elapsed <= 3.0 + 2.0  # slack for a loaded machine's last uninterruptible step
    assert g.info["time_limit"] == 3.0 and isinstance(g.info["cut_by_time_limit"], list)
    assert "heuristics beyond 40 tasks" in g.info["auto"]
    assert g.method in ("spectral", "community")  # the start that won, not "exact"
    # a valid grouping: at most B groups, every task covered, disjoint under partition=True
    assert len(g.groups) <= 5
    members = [t for group in g.groups for t in group]
    assert set(members) == set(g.tasks)
    if partition:
        assert len(members) == len(set(members))
    # its score is the objective of its groups, computed again from the matrix
    again = tg.grouping.score(values, g.groups, partition=partition)
    assert abs(again - g.score) <= 1e-12
    # an honest bound and gap
    assert (
        g.bound is not None
        and g.bound >= g.score
        and g.gap == pytest.approx((g.bound - g.score) / abs(g.bound))
    )
    assert g.optimal == (g.gap <= 1e-9)
    # local search only improves on its starts, one of which is all tasks in one group
    assert g.score >= tg.grouping.score(values, [g.tasks], partition=partition) - 1e-12


def test_auto_at_120_tasks_recovers_clear_hidden_groups():
    values, labels = planted_like(120, 4, 0.3, seed=1)
    g = tg.select_groups(values, 4, time_limit=5.0)
    found = [g.serves[t] for t in g.tasks]
    assert adjusted_rand_score(labels, found) == pytest.approx(1.0)
    assert g.gap < 0.05


@pytest.mark.parametrize("partition", [False, True])
@pytest.mark.parametrize("singleton_score", [None, 0.0])
def test_the_scalable_path_stays_below_the_optimum_and_its_bound_above(
    monkeypatch, partition, singleton_score
):
    """The path for large n, forced on problems whose optimum brute force knows."""
    monkeypatch.setattr(select, "AUTO_SCALABLE_TASKS", 2)
    for n, seed, kind in ((6, 6, "normal"), (7, 107, "ties")):
        values = random_matrix(n, seed, kind)
        for budget in (1, 2, n):
            optimum = reference(n, seed, kind, partition, singleton_score, budget)
            g = tg.select_groups(
                values, budget, partition=partition, singleton_score=singleton_score,
                time_limit=1.0,
            )  # fmt: skip
            tol = 1e-9 * max(1.0, abs(optimum))
            assert "heuristics beyond" in g.info["auto"]
            assert g.score <= optimum + tol
            assert g.bound >= optimum - tol, (n, budget, g.info["bound_from"])


def test_subgradient_prices_give_a_valid_bound_from_any_start():
    rng = np.random.default_rng(3)
    for partition in (False, True):
        values = random_matrix(7, 7)
        optimum = reference(7, 7, "normal", partition, None, 3)
        for _ in range(3):
            bound, pi = bounds.subgradient_prices(
                values, 3, rng.normal(size=7), partition=partition, singleton_score=None,
                target=optimum, deadline=time.perf_counter() + 1.0, iterations=200,
            )  # fmt: skip
            assert bound >= optimum - 1e-9
            # and it is the size relaxation's bound at the prices it returns
            upper = bounds.size_relaxation(values, pi, partition=partition).max()
            assert bound == pytest.approx(pi.sum() + 3 * max(upper, 0.0), rel=1e-12)
