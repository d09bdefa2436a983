"""Exact group selection: exhaustive enumeration for tiny n, branch and bound beyond.

Both work on the served-set reduction of :mod:`taskgroup.grouping.objective`: the optimum is the
best partition of the tasks into at most B served sets P, each worth w(P). The table of w over all
2^n sets is built once (O(2^n n log n), vectorised), so both are limited to
``MAX_TASKS`` = 22 tasks.

- :func:`exhaustive` enumerates every partition into at most B blocks
  (Σ_{k ≤ B} S(n, k) of them, Stirling numbers of the second kind): 11,051 for n = 9, B = 4.
- :func:`branch_and_bound` builds the partition block by block, always branching on the block of
  the lowest task not yet served. Its bound is a price per task: the LP dual (π, λ) of
  :mod:`taskgroup.grouping.bounds` satisfies π(P) + λ ≥ w(P) for every P, so a node that still
  has to serve tasks R with b blocks is worth at most Σ_{j ∈ R} π_j + b λ, and a child that
  serves P next loses exactly its reduced cost λ + π(P) − w(P) ≥ 0 from its parent's bound.
  Children are visited best bound first; those that cannot beat the incumbent are never pushed.
  When the time limit stops it, the bound reported is the largest bound of an unexplored node.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taskgroup.grouping.bounds import lp_bound_table, mask_members, subset_sums
from taskgroup.grouping.objective import served_sets_values

MAX_TASKS = 22
_CHUNK = 1 << 15


@dataclass
class Solution:
    """Served sets (bitmasks) of a grouping, Σ w over them, an upper bound, and solver facts."""

    blocks: list[int]
    value: float
    bound: float | None
    optimal: bool
    info: dict[str, Any] = field(default_factory=dict)


def check_size(n: int, method: str) -> None:
    if n > MAX_TASKS:
        raise ValueError(
            f"method={method!r} handles up to {MAX_TASKS} tasks, got {n}; use method='auto' "
            "or a heuristic ('beam', 'spectral', 'community'), which also report a bound"
        )


def served_set_values(
    values: np.ndarray, *, partition: bool, singleton_score: float | None
) -> np.ndarray:
    """w(P) for every served set P = bitmask (bit j = task j), ``-inf`` where P cannot be
    served; ``w[0] = 0``. Vectorised in chunks of 2^15 sets; O(2^n n log n) time."""
    n = len(values)
    out = np.empty(1 << n)
    shifts = np.arange(n)
    for start in range(0, 1 << n, _CHUNK):
        masks = np.arange(start, min(start + _CHUNK, 1 << n))
        member = ((masks[:, None] >> shifts) & 1).astype(bool)
        out[start : start + len(masks)] = served_sets_values(
            values, member, partition=partition, singleton_score=singleton_score
        )
    return out


def partitions(n: int, budget: int) -> Iterator[list[int]]:
    """Every partition of range(n) into at most ``budget`` blocks, each a new list of bitmasks
    (bit j = task j) in the order of their lowest tasks: Σ_{k ≤ budget} S(n, k) of them
    (:func:`count_partitions`)."""
    blocks: list[int] = []

    def extend(j: int):
        if j == n:
            yield list(blocks)
            return
        for b in range(len(blocks)):
            blocks[b] |= 1 << j
            yield from extend(j + 1)
            blocks[b] &= ~(1 << j)
        if len(blocks) < budget:
            blocks.append(1 << j)
            yield from extend(j + 1)
            blocks.pop()

    yield from extend(0)


def count_partitions(n: int, budget: int) -> int:
    """Σ_{k ≤ budget} S(n, k): how many partitions :func:`exhaustive` visits."""
    row = [1]  # S(0, 0)
    for m in range(1, n + 1):
        row = [0] + [k * (row[k] if k < len(row) else 0) + row[k - 1] for k in range(1, m + 1)]
    return sum(row[1 : budget + 1])


def exhaustive(w: np.ndarray, n: int, budget: int) -> Solution:
    """The best partition into at most ``budget`` served sets by enumerating all of them."""
    best_value, best_blocks, visited = -math.inf, None, 0
    for blocks in partitions(n, budget):
        visited += 1
        value = float(w[blocks].sum())
        if value > best_value:
            best_value, best_blocks = value, blocks
    if best_blocks is None or not math.isfinite(best_value):
        raise ValueError("no admissible grouping: every task needs a partner")
    return Solution(
        best_blocks, best_value, best_value, True, {"search": "exhaustive", "visited": visited}
    )


def _submasks_with_lowest(rest: int) -> np.ndarray:
    """All subsets of ``rest`` that contain its lowest task (int64 bitmasks)."""
    bits = mask_members(rest)
    low, others = 1 << bits[0], bits[1:]
    idx = np.arange(1 << len(others), dtype=np.int64)
    out = np.full(len(idx), low, dtype=np.int64)
    for k, b in enumerate(others):
        out |= ((idx >> k) & 1) << b
    return out


def branch_and_bound(
    w: np.ndarray,
    n: int,
    budget: int,
    *,
    incumbent: Sequence[int] | None = None,
    time_limit: float | None = None,
) -> Solution:
    """The best partition into at most ``budget`` served sets, by branch and bound on the LP
    prices (see the module docstring). ``incumbent``: served sets of a known grouping to prune
    with from the start. Stops at ``time_limit`` seconds with ``optimal=False``."""
    started = time.perf_counter()
    lp = lp_bound_table(w, n, budget, initial=incumbent or ())
    scale = max(1.0, float(np.abs(w[np.isfinite(w)]).max()) * n)
    tol = 1e-12 * scale
    best_value, best_blocks, nodes, open_bound = _depth_first(
        w,
        n,
        budget,
        lp.pi,
        lp.lam,
        _starting_grouping(w, n, incumbent),
        tol=tol,
        started=started,
        time_limit=time_limit,
    )
    optimal = open_bound <= best_value + tol
    bound = best_value if optimal else max(best_value, min(open_bound, lp.value))
    return Solution(
        best_blocks,
        best_value,
        bound,
        optimal,
        {
            "search": "branch_and_bound",
            "nodes": nodes,
            "lp_bound": lp.value,
            "lp_columns": len(lp.columns),
        },
    )


def _starting_grouping(
    w: np.ndarray, n: int, incumbent: Sequence[int] | None
) -> tuple[float, list[int]]:
    """``(value, blocks)`` of the better of one group for all tasks and ``incumbent``."""
    full = (1 << n) - 1
    best_blocks = [full] if math.isfinite(w[full]) else None
    best_value = float(w[full])
    if incumbent is not None:
        value = float(w[list(incumbent)].sum())
        if value > best_value:
            best_value, best_blocks = value, list(incumbent)
    if best_blocks is None:
        raise ValueError("no admissible grouping: every task needs a partner")
    return best_value, best_blocks


def _depth_first(
    w: np.ndarray,
    n: int,
    budget: int,
    pi: np.ndarray,
    lam: float,
    start: tuple[float, list[int]],
    *,
    tol: float,
    started: float,
    time_limit: float | None,
) -> tuple[float, list[int], int, float]:
    """The search of :func:`branch_and_bound` from the grouping ``start`` (value, blocks) at the
    prices ``pi``, ``lam``: ``(best value, its blocks, nodes, open bound)``, the open bound the
    largest bound of an unexplored node when the time limit stopped it (−inf when it finished)."""
    full = (1 << n) - 1
    price_of = subset_sums(pi)
    best_value, best_blocks = start
    # stack entries: (bound, tasks left to serve, blocks left, value so far, blocks so far)
    stack: list[tuple[float, int, int, float, tuple[int, ...]]] = [
        (float(price_of[full] + budget * lam), full, budget, 0.0, ())
    ]
    nodes = 0
    stopped = False
    while stack:
        bound, rest, left, value, blocks = stack.pop()
        if bound <= best_value + tol:
            continue
        if time_limit is not None and time.perf_counter() - started > time_limit:
            stack.append((bound, rest, left, value, blocks))
            stopped = True
            break
        nodes += 1
        if left == 1:  # the last block must serve everything left
            total = value + float(w[rest])
            if total > best_value:
                best_value, best_blocks = total, [*blocks, rest]
            continue
        subs = _submasks_with_lowest(rest)
        child_bound = value + w[subs] + price_of[rest ^ subs] + (left - 1) * lam
        keep = np.flatnonzero(child_bound > best_value + tol)
        if keep.size == 0:
            continue
        done = keep[subs[keep] == rest]
        if done.size:  # serving every remaining task in one block is a complete grouping
            total = value + float(w[rest])
            if total > best_value:
                best_value, best_blocks = total, [*blocks, rest]
            keep = keep[subs[keep] != rest]
        order = keep[np.argsort(child_bound[keep], kind="stable")]  # worst first: best popped
        for c in order:
            sub = int(subs[c])
            stack.append(
                (float(child_bound[c]), rest ^ sub, left - 1, value + float(w[sub]), (*blocks, sub))
            )
    open_bound = max((entry[0] for entry in stack), default=-math.inf) if stopped else -math.inf
    return best_value, list(best_blocks), nodes, open_bound
