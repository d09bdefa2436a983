"""method="hoa": Standley's higher-order approximation against a brute force of its definition.

The references below compute est(t, S) = mean over u ∈ S \\ {t} of pair[t][u] (single[t] alone)
straight from the table, with no code shared with the reduction to TAG's score matrix.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

import taskgroup as tg
from taskgroup.grouping import PairTable
from tests.grouping.reference import set_partitions


def random_table(n: int, seed: int, ties: bool = False) -> PairTable:
    rng = np.random.default_rng(seed)
    tasks = [f"t{i}" for i in range(n)]
    single = {t: float(rng.uniform(0.5, 2.0)) for t in tasks}
    pair = {}
    for t in tasks:
        factors = rng.uniform(0.6, 1.4, size=n)
        if ties:
            factors = np.round(factors, 1)
        pair[t] = {u: single[t] * float(f) for u, f in zip(tasks, factors, strict=True) if u != t}
    return PairTable(tasks, single, pair)


def estimate(table: PairTable, t: str, group: tuple[str, ...]) -> float:
    others = [u for u in group if u != t]
    if not others:
        return table.single[t]
    return sum(table.pair[t][u] for u in others) / len(others)


def cost(table: PairTable, groups, relative: bool) -> float:
    """Σ_t min over the groups holding t of est(t, S) (/ single[t] when ``relative``)."""
    total = 0.0
    for t in table.tasks:
        best = min(estimate(table, t, g) for g in groups if t in g)
        total += best / table.single[t] if relative else best
    return total


def literal_minimum(table: PairTable, budget: int, partition: bool, relative: bool) -> float:
    """Every combination of at most ``budget`` of the 2^n − 1 groups (n ≤ 4)."""
    tasks = table.tasks
    groups = [c for k in range(1, len(tasks) + 1) for c in itertools.combinations(tasks, k)]
    best = math.inf
    for k in range(1, budget + 1):
        for combo in itertools.combinations(groups, k):
            members = [t for g in combo for t in g]
            if set(members) != set(tasks) or (partition and len(members) != len(tasks)):
                continue
            best = min(best, cost(table, combo, relative))
    return best


def served_minimum(table: PairTable, budget: int, partition: bool, relative: bool) -> float:
    """Every partition of the tasks into at most ``budget`` served sets P, each served by its
    best group S ⊇ P (S = P with ``partition``); see tests/grouping/reference.py for why this
    is the same optimum."""
    tasks = table.tasks
    best = math.inf
    for blocks in set_partitions(list(tasks), budget):
        total = 0.0
        for block in blocks:
            outside = [u for u in tasks if u not in block]
            extras = (
                [()]
                if partition
                else [
                    c for k in range(len(outside) + 1) for c in itertools.combinations(outside, k)
                ]
            )
            total += min(
                sum(
                    estimate(table, t, (*block, *extra)) / (table.single[t] if relative else 1)
                    for t in block
                )
                for extra in extras
            )
        best = min(best, total)
    return best


def brute_minimum(table, budget, partition, relative=True) -> float:
    if len(table.tasks) <= 4:
        return literal_minimum(table, budget, partition, relative)
    return served_minimum(table, budget, partition, relative)


CASES = [(n, seed, ties) for n in range(2, 7) for seed, ties in ((n, False), (50 + n, True))]


def check_admissible(grouping: tg.Grouping, budget: int, partition: bool) -> None:
    assert 1 <= len(grouping.groups) <= budget
    members = [t for g in grouping.groups for t in g]
    assert set(members) == set(grouping.tasks)
    if partition:
        assert len(members) == len(grouping.tasks)
    for t, g in grouping.serves.items():
        assert t in grouping.groups[g]


@pytest.mark.parametrize("n, seed, ties", CASES)
@pytest.mark.parametrize("partition", [False, True])
def test_hoa_is_the_brute_force_optimum_of_standleys_estimate(n, seed, ties, partition):
    table = random_table(n, seed, ties)
    for budget in range(1, n + 1):
        g = tg.select_groups(table, budget, method="hoa", partition=partition)
        check_admissible(g, budget, partition)
        best = brute_minimum(table, budget, partition)
        assert cost(table, g.groups, relative=True) == pytest.approx(best, rel=1e-9, abs=1e-12)
        assert g.score == pytest.approx(n - best, rel=1e-9, abs=1e-12)  # Σ_t (1 − est/single)
        assert g.method == "hoa" and g.optimal
        assert g.info["estimated_delta_m_loss"] == pytest.approx(100 * (best - n) / n)
        for t in table.tasks:  # values: 1 − est / single of the serving group
            served = estimate(table, t, g.groups[g.serves[t]]) / table.single[t]
            assert g.values[t] == pytest.approx(1 - served)


@pytest.mark.parametrize("n, seed", [(4, 1), (5, 2), (6, 3)])
@pytest.mark.parametrize("partition", [False, True])
def test_raw_losses_standleys_literal_sum_through_the_score_matrix(n, seed, partition):
    table = random_table(n, seed)
    for budget in range(1, n + 1):
        g = tg.select_groups(
            table.scores(relative=False),
            budget,
            tasks=table.tasks,
            partition=partition,
            singleton_score=0.0,
        )
        best = brute_minimum(table, budget, partition, relative=False)
        assert cost(table, g.groups, relative=False) == pytest.approx(best, rel=1e-9)


def test_the_two_references_agree():
    for n, seed in [(3, 7), (4, 8)]:
        table = random_table(n, seed)
        for budget in range(1, n + 1):
            for partition in (False, True):
                assert literal_minimum(table, budget, partition, True) == pytest.approx(
                    served_minimum(table, budget, partition, True)
                )


def test_estimate_is_the_mean_of_the_pair_losses():
    table = PairTable(
        ["a", "b", "c"],
        {"a": 1.0, "b": 2.0, "c": 4.0},
        {"a": {"b": 0.8, "c": 1.4}, "b": {"a": 1.0, "c": 3.0}, "c": {"a": 5.0, "b": 6.0}},
    )
    assert table.estimate("a", ["a"]) == 1.0
    assert table.estimate("a", ["a", "b"]) == 0.8
    assert table.estimate("a", ["a", "b", "c"]) == pytest.approx(1.1)
    assert table.estimate("c", ("a", "b", "c")) == pytest.approx(5.5)
    Z = table.scores()
    assert Z[1, 0] == pytest.approx(1 - 0.8 / 1.0)  # row = partner b, column = task a
    assert Z[0, 2] == pytest.approx(1 - 5.0 / 4.0)
    assert np.all(np.diag(Z) == 0)
    # a and b help each other, every partner hurts c: {a, b} and c alone at two networks
    g = tg.select_groups(table, 2, method="hoa")
    assert g.groups == [("a", "b"), ("c",)]


def test_sweep_and_a_subset_of_tasks():
    table = random_table(5, 11)
    curve = tg.grouping.sweep(table, method="hoa")
    assert [g.budget for g in curve] == [1, 2, 3, 4, 5]
    assert all(g.method == "hoa" for g in curve)
    scores = [g.score for g in curve]
    assert scores == sorted(scores)
    sub = tg.select_groups(table, 2, method="hoa", tasks=["t3", "t0", "t1"])
    assert sub.tasks == ["t3", "t0", "t1"]
    best = brute_minimum(table.select(["t3", "t0", "t1"]), 2, False)
    assert sub.score == pytest.approx(3 - best)


def test_round_trip_and_bad_tables(tmp_path):
    table = random_table(3, 0)
    table = PairTable(table.tasks, table.single, table.pair, cost={"networks": 6.0})
    table.save(tmp_path / "pairs.json")
    loaded = PairTable.load(tmp_path / "pairs.json")
    assert loaded == table
    with pytest.raises(ValueError, match="misses the pair"):
        PairTable(["a", "b"], {"a": 1.0, "b": 1.0}, {"a": {"b": 1.0}, "b": {}})
    with pytest.raises(ValueError, match="single"):
        PairTable(["a", "b"], {"a": 0.0, "b": 1.0}, {"a": {"b": 1.0}, "b": {"a": 1.0}})
    with pytest.raises(ValueError, match="finite"):
        PairTable(["a", "b"], {"a": 1.0, "b": 1.0}, {"a": {"b": math.nan}, "b": {"a": 1.0}})
    (tmp_path / "bad.json").write_text('{"format": "taskgroup.groups"}')
    with pytest.raises(ValueError, match=r"bad\.json"):
        PairTable.load(tmp_path / "bad.json")


def test_hoa_input_errors():
    table = random_table(3, 0)
    with pytest.raises(ValueError, match="PairTable"):
        tg.select_groups(np.zeros((3, 3)), 2, method="hoa")
    with pytest.raises(ValueError, match="method='hoa'"):
        tg.select_groups(table, 2, method="exact")
    with pytest.raises(ValueError, match="singleton_score"):
        tg.select_groups(table, 2, method="hoa", singleton_score=0.0)
    with pytest.raises(ValueError, match="budget"):
        tg.select_groups(table, 4, method="hoa")
    with pytest.raises(ValueError, match="unknown task"):
        tg.select_groups(table, 1, method="hoa", tasks=["t0", "zz"])
