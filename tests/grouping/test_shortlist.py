"""top_groupings: the shortlist of the verified selection."""

from __future__ import annotations

import itertools

import pytest

import taskgroup as tg
from taskgroup.grouping import top_groupings
from tests.grouping.conftest import random_matrix
from tests.grouping.reference import affinity


def disjoint_scores(Z, budget, singleton_score) -> list[float]:
    """Every disjoint grouping of at most ``budget`` groups, scored by definition (n ≤ 5)."""
    n = len(Z)
    groups = [c for k in range(1, n + 1) for c in itertools.combinations(range(n), k)]
    scores = []
    for k in range(1, budget + 1):
        for combo in itertools.combinations(groups, k):
            members = [j for g in combo for j in g]
            if sorted(members) != list(range(n)):
                continue
            value = sum(affinity(Z, j, g, singleton_score) for g in combo for j in g)
            if value > float("-inf"):
                scores.append(value)
    return sorted(scores, reverse=True)


@pytest.mark.parametrize("n, seed", [(3, 0), (4, 1), (5, 2)])
@pytest.mark.parametrize("singleton_score", [None, 0.0])
def test_disjoint_shortlist_is_the_top_k_of_all_disjoint_groupings(n, seed, singleton_score):
    Z = random_matrix(n, seed)
    for budget in range(1, n + 1):
        expected = disjoint_scores(Z, budget, singleton_score)
        got = top_groupings(Z, budget, 6, partition=True, singleton_score=singleton_score)
        assert [g.score for g in got] == pytest.approx(expected[:6])


@pytest.mark.parametrize("n, seed", [(4, 3), (6, 4)])
def test_overlapping_shortlist_starts_at_the_optimum_and_is_admissible(n, seed):
    Z = random_matrix(n, seed)
    for budget in range(1, n + 1):
        got = top_groupings(Z, budget, 5)
        best = tg.select_groups(Z, budget)
        assert got[0].score == pytest.approx(best.score) and got[0].optimal
        assert len({tuple(g.groups) for g in got}) == len(got)  # distinct
        for rank, g in enumerate(got, 1):
            assert len(g.groups) <= budget and g.info["rank"] == rank
            assert {t for grp in g.groups for t in grp} == set(g.tasks)
            assert g.score == pytest.approx(tg.grouping.score(Z, g.groups))
            assert g.score <= best.score + 1e-12


def test_bad_arguments():
    Z = random_matrix(4, 0)
    with pytest.raises(ValueError, match="k must"):
        top_groupings(Z, 2, 0)
    with pytest.raises(ValueError, match="budget"):
        top_groupings(Z, 5, 3)
