"""Independent brute-force references for the grouping tests (no code shared with the solvers).

``literal_optimum`` is DESIGN.md §3 read literally: every combination of at most B of the
2^n − 1 groups that covers the tasks (and is disjoint with ``partition``), each scored by
"each task served by its best group". It is affordable up to n = 5 (206,367 combinations).

``partition_optimum`` reaches n = 7 by enumerating the *served sets* instead: every grouping's
serving assignment partitions the tasks into at most B served sets, each served set P by one
group S ⊇ P; conversely any such choice is a grouping whose score is at least Σ_j a(j, S(j)).
So the optimum is the best, over partitions into at most B blocks, of Σ_P max over S ⊇ P (every
superset enumerated) of Σ_{j ∈ P} a(j, S). With ``partition=True`` S = P and this *is* the
literal enumeration. The tests check both references agree up to n = 5.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def affinity(Z: np.ndarray, j: int, group: tuple[int, ...], singleton_score) -> float:
    """a(j, S) computed by its definition."""
    if len(group) == 1:
        return -math.inf if singleton_score is None else float(singleton_score)
    others = [i for i in group if i != j]
    return sum(float(Z[i, j]) for i in others) / len(others)


def literal_optimum(Z, budget, *, partition, singleton_score) -> float:
    n = len(Z)
    groups = [c for k in range(1, n + 1) for c in itertools.combinations(range(n), k)]
    table = np.full((len(groups), n), -np.inf)
    for g, group in enumerate(groups):
        for j in group:
            table[g, j] = affinity(Z, j, group, singleton_score)
    covers = np.array([[j in group for j in range(n)] for group in groups])
    best = -math.inf
    for k in range(1, budget + 1):
        combos = np.array(list(itertools.combinations(range(len(groups)), k)))
        covered = covers[combos].any(axis=1).all(axis=1)
        if partition:
            covered &= covers[combos].sum(axis=1).max(axis=1) <= 1
        if not covered.any():
            continue
        with np.errstate(invalid="ignore"):
            scores = table[combos[covered]].max(axis=1).sum(axis=1)
        best = max(best, float(scores.max()))
    return best


def set_partitions(items: list[int], budget: int):
    """Every partition of ``items`` into at most ``budget`` blocks (lists of tuples)."""
    if not items:
        yield []
        return
    first, rest = items[0], items[1:]
    for smaller in set_partitions(rest, budget):
        for b in range(len(smaller)):
            yield [*smaller[:b], (first, *smaller[b]), *smaller[b + 1 :]]
        if len(smaller) < budget:
            yield [(first,), *smaller]


def served_value(Z, served: tuple[int, ...], *, partition, singleton_score) -> float:
    n = len(Z)
    outside = [i for i in range(n) if i not in served]
    best = -math.inf
    extras = (
        [()]
        if partition
        else [c for k in range(len(outside) + 1) for c in itertools.combinations(outside, k)]
    )
    for extra in extras:
        group = tuple(sorted(served + extra))
        best = max(best, sum(affinity(Z, j, group, singleton_score) for j in served))
    return best


def partition_optimum(Z, budget, *, partition, singleton_score) -> float:
    n = len(Z)
    cache: dict[tuple[int, ...], float] = {}
    best = -math.inf
    for blocks in set_partitions(list(range(n)), budget):
        total = 0.0
        for block in blocks:
            key = tuple(sorted(block))
            if key not in cache:
                cache[key] = served_value(
                    Z, key, partition=partition, singleton_score=singleton_score
                )
            total += cache[key]
        best = max(best, total)
    return best


def optimum(Z, budget, *, partition, singleton_score) -> float:
    """The brute-force optimum, by the literal enumeration where affordable."""
    if len(Z) <= 4:
        return literal_optimum(Z, budget, partition=partition, singleton_score=singleton_score)
    return partition_optimum(Z, budget, partition=partition, singleton_score=singleton_score)
