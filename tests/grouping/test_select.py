"""``select_groups`` / ``sweep``: input validation at the boundary, AffinityMatrix input, the
``auto`` choice."""

from __future__ import annotations

import math

import numpy as np
import pytest

import taskgroup as tg
from taskgroup.grouping import milp, select
from taskgroup.grouping.bounds import LPBound, mask_members
from tests.grouping.conftest import random_matrix
from tests.grouping.reference import optimum, served_value, set_partitions

Z = random_matrix(5, 0)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        ((np.zeros((3, 4)), 2), {}, "square"),
        ((np.zeros(4), 2), {}, "square"),
        ((np.zeros((0, 0)), 1), {}, "no tasks"),
        ((np.array([[0.0, np.nan], [1.0, 0.0]]), 1), {}, "NaN or infinite"),
        ((np.array([[0.0, np.inf], [1.0, 0.0]]), 1), {}, "NaN or infinite"),
        (([["a", "b"], ["c", "d"]], 1), {}, "numeric"),
        ((Z, 0), {}, r"budget must lie in 1\.\.5"),
        ((Z, 6), {}, r"budget must lie in 1\.\.5"),
        ((Z, 2.5), {}, "budget must be an integer"),
        ((Z, True), {}, "budget must be an integer"),
        ((Z, "2"), {}, "budget must be an integer"),
        ((Z, 2), {"method": "annealing"}, "method must be one of auto, exact"),
        ((Z, 2), {"tasks": ["a", "b"]}, "names 2 tasks but the matrix is 5×5"),
        ((Z, 2), {"tasks": ["a", "b", "c", "d", "a"]}, "repeated: a"),
        ((Z, 2), {"tasks": "abcde"}, "list of task names"),
        ((Z, 2), {"singleton_score": "zero"}, "singleton_score must be None or a number"),
        ((Z, 2), {"singleton_score": float("inf")}, "finite"),
        ((Z, 2), {"partition": "yes"}, "partition must be True or False"),
        ((Z, 2), {"time_limit": 0}, "time_limit must be a positive"),
        ((np.ones((1, 1)), 1), {}, "single task has no partner"),
        ((np.zeros((23, 23)), 2), {"method": "exact"}, "up to 22 tasks"),
    ],
)
def test_bad_input_is_a_clear_value_error(args, kwargs, message):
    with pytest.raises(ValueError, match=message):
        tg.select_groups(*args, **kwargs)


def test_affinity_matrix_input_and_task_subsets():
    names = ["a", "b", "c", "d", "e"]
    a = tg.AffinityMatrix(Z, names)
    g = tg.select_groups(a, 2)
    assert g.tasks == names
    same = tg.select_groups(Z, 2, tasks=names)
    assert g.groups == same.groups and g.score == same.score
    sub = tg.select_groups(a, 1, tasks=["e", "b", "c"])
    assert sub.tasks == ["e", "b", "c"] and sub.groups == [("e", "b", "c")]
    assert sub.score == pytest.approx(
        tg.grouping.score(a.select(["e", "b", "c"]), [("e", "b", "c")])
    )
    with pytest.raises(ValueError, match=r"unknown task.*'z'"):
        tg.select_groups(a, 1, tasks=["a", "z"])


def test_single_task_alone_and_torch_input():
    import torch

    g = tg.select_groups(np.ones((1, 1)), 1, singleton_score=0.0)
    assert g.groups == [("0",)] and g.score == 0.0 and g.optimal
    t = tg.select_groups(torch.tensor(Z), 2)
    assert t.score == pytest.approx(tg.select_groups(Z, 2).score)


def test_auto_is_exact_when_affordable_and_heuristic_beyond():
    small = tg.select_groups(Z, 2)
    assert small.method == "exact" and small.optimal and small.info["auto"] == "exact"
    large = tg.select_groups(random_matrix(23, 1, "planted"), 3, time_limit=0.5)
    assert large.method in ("beam", "spectral", "community", "restarts", "price-and-branch")
    assert large.bound >= large.score and set(large.info["scores"]) == {
        "beam",
        "spectral",
        "community",
        "restarts",
        "price-and-branch",
    }
    assert large.score == max(large.info["scores"].values())


def test_sweep_budgets_and_errors():
    curve = tg.grouping.sweep(Z, [3, 1, 3])
    assert [g.budget for g in curve] == [1, 3]
    with pytest.raises(ValueError, match="budgets is empty"):
        tg.grouping.sweep(Z, [])
    with pytest.raises(ValueError, match="budget must lie in"):
        tg.grouping.sweep(Z, [1, 9])


def test_with_singleton_zero_a_hurt_task_trains_alone():
    # task 2 is hurt by everyone and hurts everyone: alone it scores 0 instead of negative
    values = np.array([[0, 1.0, -1.0], [1.0, 0, -1.0], [-1.0, -1.0, 0]])
    tag = tg.select_groups(values, 2)
    alone = tg.select_groups(values, 2, singleton_score=0.0)
    assert alone.groups == [("0", "1"), ("2",)] and alone.score == pytest.approx(2.0)
    assert tag.score < alone.score and all(len(g) >= 2 for g in tag.groups)
    assert "(trained alone)" in alone.describe()


def _brute_force_over_columns(values, budget, allowed) -> float:
    """The best grouping whose served sets all lie in ``allowed`` (bitmasks), by enumeration."""
    best = -np.inf
    for blocks in set_partitions(list(range(len(values))), budget):
        masks = [sum(1 << j for j in block) for block in blocks]
        if all(m in allowed for m in masks):
            total = sum(
                served_value(values, tuple(sorted(b)), partition=False, singleton_score=None)
                for b in blocks
            )
            best = max(best, total)
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_set_partition_model_over_some_columns_is_the_brute_force_best(seed):
    n, budget = 7, 3
    values = random_matrix(n, seed)
    sets = select._Problem(values, [str(i) for i in range(n)], False, None, 0).sets
    rng = np.random.default_rng(seed)
    columns = [m for m in range(1, 2**n) if m & (m - 1) and rng.random() < 0.25]
    columns += [0b0000111, 0b1111000]  # so that a grouping exists
    weights = np.array([sets.of(m) for m in columns])
    chosen, _, proven = milp.SetPartitionModel(columns, weights, n).solve(budget, None)
    assert proven and len(chosen) <= budget
    assert sorted(j for b in chosen for j in mask_members(b)) == list(range(n))
    assert sets.total(chosen) == pytest.approx(
        _brute_force_over_columns(values, budget, set(columns)), abs=1e-9
    )


@pytest.mark.parametrize("seed", [0, 1])
def test_price_and_branch_is_between_its_columns_best_and_the_optimum(seed):
    n, budget = 7, 3
    values = random_matrix(n, seed)
    problem = select._Problem(values, [str(i) for i in range(n)], False, None, 0)
    rng = np.random.default_rng(seed)
    columns = [m for m in range(1, 2**n) if m & (m - 1) and rng.random() < 0.25]
    known = [0b0000111, 0b1111000]
    bound = LPBound(math.inf, np.zeros(n), 0.0, columns, 0.0, 0)
    blocks = select._price_and_branch(problem, budget, bound, [known])
    assert sorted(j for b in blocks for j in mask_members(b)) == list(range(n))
    assert len(blocks) <= budget
    value = problem.sets.total(blocks)
    assert value >= _brute_force_over_columns(values, budget, {*columns, *known}) - 1e-9
    assert value <= optimum(values, budget, partition=False, singleton_score=None) + 1e-9


def test_price_and_branch_falls_back_to_the_best_known_grouping(monkeypatch):
    def no_solution(self, budget, time_limit):
        raise milp.NoSolution("no grouping in time")

    monkeypatch.setattr(milp.SetPartitionModel, "solve", no_solution)
    values = random_matrix(6, 0)
    problem = select._Problem(values, [str(i) for i in range(6)], False, None, 0)
    worse, better = [0b000011, 0b111100], [0b000111, 0b111000]
    if problem.sets.total(worse) > problem.sets.total(better):
        worse, better = better, worse
    bound = LPBound(math.inf, np.zeros(6), 0.0, [], 0.0, 0)
    blocks = select._price_and_branch(problem, 2, bound, [worse, better])
    assert problem.sets.total(blocks) >= problem.sets.total(better)


def test_auto_beyond_exact_beats_the_constructive_heuristics():
    # a matrix where beam, spectral and community stop 1.6% short of the best grouping over the
    # LP's columns, which price and branch finds, and so do random restarts
    g = tg.select_groups(random_matrix(23, 8), 3)
    scores = g.info["scores"]
    assert g.score == pytest.approx(9.403468607296713, rel=1e-9)
    constructive = max(scores[k] for k in ("beam", "spectral", "community"))
    assert scores["price-and-branch"] == pytest.approx(g.score, rel=1e-12)
    assert scores["restarts"] == pytest.approx(g.score, rel=1e-12)
    assert g.score > 1.01 * constructive
    assert g.score == pytest.approx(tg.grouping.score(random_matrix(23, 8), g.groups))
