"""``analysis/bench_scale.py``'s grouping of each signal's matrix: the incremental local search
returns disjoint groups of at least two tasks that no single move improves (checked by
re-scoring every move with :func:`tag_score`), and on small problems the optimum that
exhaustive search finds."""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))

import bench_scale


def exhaustive(Z: np.ndarray, budget: int) -> float:
    n, best = len(Z), -np.inf
    for labels in itertools.product(range(budget), repeat=n):
        counts = np.bincount(labels, minlength=budget)
        if (counts >= 2).all():
            groups = [[t for t in range(n) if labels[t] == g] for g in range(budget)]
            best = max(best, bench_scale.tag_score(Z, groups))
    return best


@pytest.mark.parametrize(("n", "budget", "seed"), [(12, 3, 0), (30, 5, 1), (40, 8, 2)])
def test_local_search_ends_at_a_local_optimum(n, budget, seed):
    Z = np.random.default_rng(seed).normal(size=(n, n))
    groups, labels = bench_scale.local_search(Z, budget, seed=seed)
    assert sorted(t for g in groups for t in g) == list(range(n))
    assert all(len(g) >= 2 for g in groups)
    score = bench_scale.tag_score(Z, groups)
    for t, g in itertools.product(range(n), range(budget)):
        if g == labels[t] or (labels == labels[t]).sum() <= 2:
            continue
        moved = labels.copy()
        moved[t] = g
        trial = [list(np.flatnonzero(moved == h)) for h in range(budget)]
        assert bench_scale.tag_score(Z, trial) <= score + 1e-9


@pytest.mark.parametrize("seed", range(4))
def test_local_search_finds_the_exhaustive_optimum_on_small_problems(seed):
    rng = np.random.default_rng(10 + seed)
    hidden = np.repeat(np.arange(3), 3)
    Z = 0.5 * (hidden[:, None] == hidden[None, :]) + rng.normal(scale=0.3, size=(9, 9))
    groups, _ = bench_scale.local_search(Z, 3, seed=seed)
    assert bench_scale.tag_score(Z, groups) == pytest.approx(exhaustive(Z, 3), abs=1e-12)
