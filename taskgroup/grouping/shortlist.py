"""The k best groupings by TAG's objective: a shortlist for a selection that verifies by training.

Every grouping's served sets partition the tasks (see :mod:`taskgroup.grouping.objective`), and
the best grouping around a partition is each served set P plus its best helpers, worth at least
Σ w(P). :func:`top_groupings` enumerates every partition of the tasks into at most B served sets
(Σ_{k ≤ B} S(n, k) of them: 32 for n = 6, B = 2; 122 for n = 6, B = 3; 11,051 for n = 9, B = 4),
ranks them by Σ w(P), turns the best into groupings and merges the ones that give the same
groups. The first is the optimum of :func:`~taskgroup.select_groups` (``exact``). Time
O(partitions · B) after the O(2^n n log n) table of w; limited to ``MAX_PARTITIONS`` partitions.
"""

from __future__ import annotations

import heapq
import math
import time
from collections.abc import Sequence

import numpy as np

from taskgroup.grouping.bounds import mask_members
from taskgroup.grouping.exact import check_size, count_partitions, partitions, served_set_values
from taskgroup.grouping.objective import (
    Grouping,
    affinity_problem,
    check_singleton_score,
    make_grouping,
    served_set_value,
)

MAX_PARTITIONS = 500_000


def top_groupings(
    Z_or_A,
    budget: int,
    k: int,
    *,
    tasks: Sequence[str] | None = None,
    partition: bool = False,
    singleton_score: float | None = None,
) -> list[Grouping]:
    """The ``k`` best distinct groupings of at most ``budget`` groups, best first (fewer when
    fewer exist). Each is a :class:`Grouping` with ``method="top_k"``, ``info["rank"]`` (1 =
    best) and ``optimal`` set on the first only; arguments as in
    :func:`~taskgroup.select_groups`. ``ValueError`` when the tasks have more than
    ``MAX_PARTITIONS`` partitions into at most ``budget`` blocks: shortlist by hand then."""
    started = time.perf_counter()
    values, names = affinity_problem(Z_or_A, tasks)
    singleton_score = check_singleton_score(singleton_score)
    n = len(names)
    _check_arguments(n, budget, k, partition)
    count = count_partitions(n, budget)
    if count > MAX_PARTITIONS:
        raise ValueError(
            f"{n} tasks have {count:,} partitions into at most {budget} groups (more than "
            f"{MAX_PARTITIONS:,}); pass the candidate groupings yourself"
        )
    w = served_set_values(values, partition=partition, singleton_score=singleton_score)
    # Distinct partitions can give the same groups (a helper makes two served sets one group),
    # so keep more partitions than k and merge.
    keep = min(count, 4 * k + 16)
    ranked = heapq.nlargest(
        keep,
        ((float(w[blocks].sum()), -i, blocks) for i, blocks in enumerate(partitions(n, budget))),
    )
    out = _distinct_groupings(
        values,
        names,
        [(value, blocks) for value, _, blocks in ranked],
        k,
        budget=budget,
        partition=partition,
        singleton_score=singleton_score,
        count=count,
    )
    seconds = time.perf_counter() - started
    for g in out:
        g.seconds = seconds
    return out


def _check_arguments(n: int, budget, k, partition) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= n:
        raise ValueError(f"budget must be an integer in 1..{n}, got {budget!r}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    if not isinstance(partition, bool):
        raise ValueError(f"partition must be True or False, got {partition!r}")
    check_size(n, "top_groupings")


def _distinct_groupings(
    values: np.ndarray,
    names: list[str],
    ranked: list[tuple[float, list[int]]],
    k: int,
    *,
    budget: int,
    partition: bool,
    singleton_score: float | None,
    count: int,
) -> list[Grouping]:
    """The first ``k`` distinct groupings made from ``ranked`` (value, served-set masks), best
    first; a partition of value −inf ends the list."""
    out: list[Grouping] = []
    seen: set[tuple[tuple[str, ...], ...]] = set()
    for value, blocks in ranked:
        if not math.isfinite(value):
            break
        groups = [
            served_set_value(
                values, mask_members(b), partition=partition, singleton_score=singleton_score
            )[1]
            for b in blocks
        ]
        grouping = make_grouping(
            values,
            names,
            groups,
            budget=budget,
            partition=partition,
            singleton_score=singleton_score,
            method="top_k",
            bound=None,
            optimal=not out,
            info={"rank": len(out) + 1, "partitions": count},
        )
        key = tuple(grouping.groups)
        if key in seen:
            continue
        seen.add(key)
        out.append(grouping)
        if len(out) == k:
            break
    if not out:
        raise ValueError("no admissible grouping: every task needs a partner")
    return out
