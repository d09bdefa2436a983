"""Standley et al.'s network selection: choose among *trained* networks under a compute budget.

Standley, Zamir, Chen, Guibas, Malik, Savarese, "Which Tasks Should Be Learned Together in
Multi-task Learning?", ICML 2020, §3.3, and the reference program (``tstandley/taskgrouping``,
``network_selection/main.cpp``). A :class:`NetworkTable` lists trained networks, each with the
tasks it holds, a loss per held task (lower is better) and a cost (inference time; Standley's
half-size single-task networks cost 0.5, every other network 1). A selection is a set of networks
whose costs sum to at most the budget and that together hold every task; each task is served by
the chosen network with its lowest loss, and

    score(selection) = Σ_t min over chosen S ∋ t of loss[S, t]        (lower is better)

:func:`select_networks` returns the exact optimum (branch and bound, below). ``table.hoa()``
replaces the measured losses of every network of three or more tasks by Standley's
higher-order approximation from the pair networks, so the selection needs only the singles and
pairs trained; ``table.score(selection)`` scores a selection made on one table (validation
losses, an approximation) on another (test losses), which is how his curves are drawn.

Unlike :mod:`~taskgroup.grouping.hoa` (one cost per network, losses divided by single-task
losses) this module follows Standley literally: raw losses summed, fractional costs.
"""

from __future__ import annotations

import bisect
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np

from taskgroup.grouping.hoa import PairTable

# A selection fits the budget when its cost (a float sum of fractional costs, e.g. 0.1 + 0.2)
# is at most budget + COST_TOLERANCE.
COST_TOLERANCE = 1e-9
# A bound summed in another order than a selection's score may exceed it by rounding: such a
# bound cuts only when it is above the best score by more than this (relative).
SCORE_TOLERANCE = 1e-9
# Up to this many tasks the search bounds with the Pareto fronts of every set of tasks (3^n work
# to build); beyond, with per-task bounds only.
FRONT_TASK_LIMIT = 12
STANDLEY_HALF_COST = 0.5  # line 1 of a results file: the half-size single-task networks
STANDLEY_COST = 1.0  # every later line


@dataclass(frozen=True, eq=False)
class NetworkTable:
    """Trained networks: which tasks each holds, its loss on each, and its cost.

    Attributes:
        tasks: the task names, in column order.
        networks: network k's tasks (a task-set, written in column order).
        losses: ``[m, n]`` float64, read-only; ``losses[k, j]`` is network k's loss on
            ``tasks[j]`` (lower is better), NaN where the network does not hold the task. Given
            as rows aligned with ``tasks`` (NaN or None for a task not held) or as
            ``{task: loss}`` mappings.
        costs: ``[m]`` float64, read-only, each > 0 (what the network costs at inference).
        metadata: free-form facts (the file read, the split, ``hoa``).

    Every network holds at least one task, every held task has a finite loss, and every task is
    held by some network; a violation is a ``ValueError`` naming the network and the task.
    """

    tasks: tuple[str, ...]
    networks: tuple[tuple[str, ...], ...]
    losses: np.ndarray
    costs: np.ndarray
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tasks = _task_names(self.tasks)
        networks = [_network_tasks(k, held, tasks) for k, held in enumerate(self.networks)]
        if not networks:
            raise ValueError("a network table needs at least one network")
        losses = _loss_rows(self.losses, networks, tasks)
        costs = _costs(self.costs, len(networks))
        uncovered = [t for j, t in enumerate(tasks) if np.isnan(losses[:, j]).all()]
        if uncovered:
            raise ValueError(
                f"no network holds task(s) {_names(uncovered)}: add a network that holds them "
                f"or leave them out of the table's tasks"
            )
        losses.flags.writeable = False
        costs.flags.writeable = False
        object.__setattr__(self, "tasks", tasks)
        object.__setattr__(self, "networks", tuple(networks))
        object.__setattr__(self, "losses", losses)
        object.__setattr__(self, "costs", costs)
        object.__setattr__(self, "metadata", dict(self.metadata))

    def __len__(self) -> int:
        return len(self.networks)

    def label(self, k: int) -> str:
        """``"{a, b} (cost 1)"``: network k as a person reads it."""
        return f"{{{', '.join(self.networks[k])}}} (cost {self.costs[k]:g})"

    def index(self, tasks: Sequence[str], cost: float | None = None) -> int:
        """The position of the network holding exactly ``tasks`` (and costing ``cost``, when
        given); ``ValueError`` when there is none, or several and no cost tells them apart."""
        wanted = set(tasks)
        found = [
            k
            for k, held in enumerate(self.networks)
            if set(held) == wanted and (cost is None or self.costs[k] == cost)
        ]
        if len(found) == 1:
            return found[0]
        what = f"{{{', '.join(sorted(wanted))}}}" + ("" if cost is None else f" at cost {cost:g}")
        if not found:
            raise ValueError(f"the table has no network {what}")
        costs = ", ".join(f"{self.costs[k]:g}" for k in found)
        raise ValueError(
            f"the table has {len(found)} networks {what} (costs {costs}): pass positions or the "
            f"selection of select_networks, which names each network's cost"
        )

    def positions(self, networks: Any) -> list[int]:
        """``networks`` as positions in this table: a :class:`NetworkSelection` (matched by
        its positions when this table has the same networks there, else by tasks and cost, like
        Standley's ``translate_scores_to_test_set``, so a selection made on another table
        scores on this one), or a list of positions or task-sets."""
        if isinstance(networks, NetworkSelection):
            chosen = list(zip(networks.networks, networks.costs, strict=True))
            here = [
                (self.networks[k], float(self.costs[k])) if 0 <= k < len(self) else None
                for k in networks.positions
            ]
            if here == chosen:  # made on this table (or one laid out alike)
                return list(networks.positions)
            return [self.index(held, cost) for held, cost in chosen]
        if isinstance(networks, (str, bytes)) or not isinstance(networks, Sequence):
            raise TypeError(f"networks must be a selection or a list of networks, got {networks!r}")
        found = []
        for item in networks:
            if isinstance(item, (int, np.integer)) and not isinstance(item, bool):
                if not 0 <= item < len(self):
                    raise ValueError(f"network position {item} is outside 0..{len(self) - 1}")
                found.append(int(item))
            else:
                found.append(self.index([item] if isinstance(item, str) else list(item)))
        return found

    def best_losses(self, networks: Any) -> np.ndarray:
        """``[n]``: each task's lowest loss among ``networks`` (NaN where none holds it)."""
        rows = self.losses[self.positions(networks)]
        best = np.full(len(self.tasks), np.nan)
        for j in range(len(self.tasks)):
            held = rows[:, j][~np.isnan(rows[:, j])]
            if held.size:
                best[j] = held.min()
        return best

    def score(self, networks: Any) -> float:
        """Σ over tasks of the lowest loss among ``networks`` (lower is better); see
        :meth:`positions` for what ``networks`` may be. ``ValueError`` if a task is left out."""
        best = self.best_losses(networks)
        missing = [t for t, v in zip(self.tasks, best, strict=True) if np.isnan(v)]
        if missing:
            raise ValueError(f"the networks do not hold task(s) {_names(missing)}")
        return float(sum(best.tolist()))  # in task order, as main.cpp sums

    def hoa(self) -> NetworkTable:
        """Standley's higher-order approximation: every network of three or more tasks gets,
        for each task t it holds, the mean of t's losses in the pair networks (exactly two
        tasks, any cost) whose tasks both lie in it; the others keep their losses.

        ``main.cpp``'s ``higher_order_approximation``; the pairs are summed in table order and
        divided by their count, as there. It prices the estimated networks at 1, the cost of
        every such network in his files; here each keeps its own cost. Where no pair inside
        a network holds one of its tasks, ``main.cpp`` silently drops the task from the
        network; this is a ``ValueError`` naming the pair to train.
        """
        pairs = [k for k, held in enumerate(self.networks) if len(held) == 2]
        losses = np.array(self.losses)
        for k, held in enumerate(self.networks):
            if len(held) < 3:
                continue
            inside = [p for p in pairs if set(self.networks[p]) <= set(held)]
            for t in held:
                j = self.tasks.index(t)
                mine = [p for p in inside if t in self.networks[p]]
                if not mine:
                    raise ValueError(
                        f"hoa: no pair network inside {self.label(k)} holds task {t!r}; train "
                        f"{t!r} with one of {_names(u for u in held if u != t)}"
                    )
                total = 0.0
                for p in mine:
                    total += float(self.losses[p, j])
                losses[k, j] = total / len(mine)
        return NetworkTable(
            self.tasks, self.networks, losses, self.costs, self.metadata | {"hoa": True}
        )

    @classmethod
    def read_standley(
        cls, path: str | os.PathLike, tasks: Sequence[str] | None = None
    ) -> NetworkTable:
        """Read one of Standley's ``network_selection/results*.txt`` files.

        The format, as ``main.cpp``'s ``get_model_performances`` reads it: one network per line,
        tab-separated, one field per task; an empty field means the network does not hold that
        task (his program stores it as 99, "infinity"), so a network's tasks are its non-empty
        fields. Line 1 is special: each of its fields is a half-size single-task network of that
        one task, at cost 0.5; every later line is one network at cost 1. Blank lines at the end
        are ignored.

        Stricter than ``main.cpp``, which hard-codes five tasks and loops forever or reads out
        of range on a malformed line: the number of tasks is line 1's number of fields and every
        line must have as many; a field that is not a finite number, a line holding no loss,
        and a blank line inside the file are ``ValueError`` naming the file, line and field.
        An empty field on line 1 means no half-size network for that task.

        Args:
            path: the results file.
            tasks: names of the columns (default ``task1``, ``task2``, ...).
        """
        path = Path(path)
        rows = _standley_rows(path.read_text(encoding="utf-8"), str(path))
        n = len(rows[0])
        names = [f"task{j + 1}" for j in range(n)] if tasks is None else list(tasks)
        if len(names) != n:
            raise ValueError(f"{path}: line 1 has {n} fields but {len(names)} task names given")
        networks, losses, costs = [], [], []
        for j, value in enumerate(rows[0]):
            if value is not None:
                networks.append((names[j],))
                losses.append([value if i == j else None for i in range(n)])
                costs.append(STANDLEY_HALF_COST)
        for row in rows[1:]:
            networks.append(tuple(names[j] for j, v in enumerate(row) if v is not None))
            losses.append(row)
            costs.append(STANDLEY_COST)
        try:
            return cls(names, networks, losses, costs, {"source": str(path), "format": "standley"})
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_pairs(cls, pairs: PairTable, *, cost: float = 1.0) -> NetworkTable:
        """The single-task and pair networks of a :class:`~taskgroup.grouping.PairTable` (e.g.
        :func:`taskgroup.pair_results`: validation losses), each at ``cost``; select among
        them, or among the networks of three or more tasks too after adding their estimates
        with :meth:`with_hoa_groups`."""
        networks: list[tuple[str, ...]] = [(t,) for t in pairs.tasks]
        losses: list[dict[str, float]] = [{t: pairs.single[t]} for t in pairs.tasks]
        for i, a in enumerate(pairs.tasks):
            for b in pairs.tasks[i + 1 :]:
                networks.append((a, b))
                losses.append({a: pairs.pair[a][b], b: pairs.pair[b][a]})
        metadata = {"from": "pairs", **pairs.metadata}
        return cls(pairs.tasks, networks, losses, [cost] * len(networks), metadata)

    def with_hoa_groups(self, *, size: int | None = None, cost: float = 1.0) -> NetworkTable:
        """This table plus every group of 3 to ``size`` tasks (default all) that it lacks, each at
        ``cost`` with Standley's pair-mean estimate (:meth:`hoa`): what a selection may choose
        when only singles and pairs were trained."""
        have = {frozenset(h) for h in self.networks}
        networks, costs = list(self.networks), list(self.costs)
        rows = [list(r) for r in self.losses]
        for k in range(3, (size or len(self.tasks)) + 1):
            for group in combinations(self.tasks, k):
                if frozenset(group) not in have:
                    networks.append(group)
                    rows.append([0.0 if t in group else None for t in self.tasks])
                    costs.append(cost)
        return NetworkTable(self.tasks, networks, rows, costs, self.metadata).hoa()


@dataclass(frozen=True)
class NetworkSelection:
    """The networks :func:`select_networks` chose.

    Attributes:
        networks: each chosen network's tasks, in table order; costs: their costs.
        positions: their positions in the table.
        cost: the total cost (≤ budget); budget: the budget asked for.
        score: Σ over tasks of the lowest loss among the chosen networks (lower is better).
        serves: task → index into ``networks`` of the network with its lowest loss (the first
            in table order on a tie).
        nodes: search nodes explored (what the exact search cost).
    """

    networks: tuple[tuple[str, ...], ...]
    costs: tuple[float, ...]
    positions: tuple[int, ...]
    cost: float
    budget: float
    score: float
    serves: dict[str, int]
    nodes: int

    def describe(self) -> str:
        """A few lines: each network, its cost and the tasks it serves."""
        lines = [
            f"budget {self.budget:g}: {len(self.networks)} networks, cost {self.cost:g}, "
            f"score {self.score:.6g}"
        ]
        for i, (held, cost) in enumerate(zip(self.networks, self.costs, strict=True)):
            served = [t for t, s in self.serves.items() if s == i]
            lines.append(
                f"  {{{', '.join(held)}}}  cost {cost:g}  serves {', '.join(served) or '-'}"
            )
        return "\n".join(lines)


def cheapest_cover(table: NetworkTable) -> float:
    """The least total cost of networks that together hold every task (exact; memoised
    recursion over the sets of tasks still to hold, branching on the networks that hold the
    first of them: at most 2^n sets, each O(m))."""
    return _Covers(table).cost((1 << len(table.tasks)) - 1)


def select_networks(table: NetworkTable, budget: float) -> NetworkSelection:
    """The networks of ``table`` that minimise the summed lowest loss per task, at total cost
    ≤ ``budget`` (fractional costs and budgets allowed), holding every task. Exact.

    Ties are broken deterministically: lowest score, then lowest cost, then fewest networks,
    then the earliest positions in the table (lexicographically on the sorted positions).

    Branch and bound over assignments: the tasks are taken in order, and task t is served by
    a network that holds it, either one already chosen (the best of those, at no cost) or a
    new one with a lower loss on t that the budget left affords. A node's bound sums the
    assigned losses and, for each task still open, the least loss of a chosen or affordable
    network; it is cut when that exceeds the best score found (or ties it at a higher cost), or
    when the tasks that no chosen network holds cannot be covered within the budget left
    (:func:`cheapest_cover` of them). Up to ``FRONT_TASK_LIMIT`` tasks a second bound serves
    the open tasks partly by the chosen networks and the rest by the Pareto front (cost,
    score) of serving exactly that set with new networks, precomputed for every set of tasks
    (O(3^n) to build). The best selection is reached through the assignment of each task to
    its best chosen network, so the search is exact. Worst case O(Π_t m_t) for m_t networks
    holding task t; measured: Standley's 36 networks of 5 tasks in milliseconds per budget,
    all 255 groups of 8 tasks in under a second, all 1,023 of 10 tasks in 10 to 30 s.

    ``ValueError`` when the budget is not a positive number or is below the cheapest cover of
    all tasks.
    """
    if not isinstance(table, NetworkTable):
        raise TypeError(f"table must be a NetworkTable, got {type(table).__name__}")
    budget = _budget(budget)
    search = _Search(table, budget)
    need = search.covers.cost((1 << len(table.tasks)) - 1)
    if need > budget + COST_TOLERANCE:
        raise ValueError(
            f"budget {budget:g} is below the cheapest set of networks that holds all "
            f"{len(table.tasks)} tasks (cost {need:g}); raise the budget to at least {need:g}"
        )
    search.visit(0, [], [])
    chosen = tuple(search.best)
    best = table.best_losses(chosen)
    serves = {}
    for j, t in enumerate(table.tasks):
        serves[t] = next(i for i, k in enumerate(chosen) if table.losses[k, j] == best[j])
    return NetworkSelection(
        networks=tuple(table.networks[k] for k in chosen),
        costs=tuple(float(table.costs[k]) for k in chosen),
        positions=chosen,
        cost=math.fsum(table.costs[k] for k in chosen),
        budget=budget,
        score=table.score(list(chosen)),
        serves=serves,
        nodes=search.nodes,
    )


class _Covers:
    """Memoised cheapest covers of sets of tasks (bit masks) by a table's networks."""

    def __init__(self, table: NetworkTable) -> None:
        self.masks = [_mask(table, k) for k in range(len(table))]
        self.costs = table.costs.tolist()
        self.memo: dict[int, float] = {0: 0.0}

    def cost(self, mask: int) -> float:
        if mask not in self.memo:
            first = mask & -mask
            pairs = zip(self.masks, self.costs, strict=True)
            self.memo[mask] = min(
                (c + self.cost(mask & ~m) for m, c in pairs if m & first), default=math.inf
            )
        return self.memo[mask]


class _Search:
    """The branch and bound of :func:`select_networks` (state shared by the recursion)."""

    def __init__(self, table: NetworkTable, budget: float) -> None:
        self.table = table
        self.budget = budget
        self.covers = _Covers(table)
        self.cost = table.costs.tolist()
        n = len(table.tasks)
        # holders[j]: (loss on task j, position) of every network holding it, best first
        self.holders = [
            sorted((float(table.losses[k, j]), k) for k in range(len(table)) if self.has(k, j))
            for j in range(n)
        ]
        self.best: list[int] = []
        self.key: tuple = (math.inf, math.inf)
        self.nodes = 0
        fronts = n <= FRONT_TASK_LIMIT
        self.fronts = _Fronts(table, self.covers.masks, budget) if fronts else None

    def has(self, k: int, j: int) -> bool:
        return bool(self.covers.masks[k] >> j & 1)

    def least(self, j: int, chosen: list[int], left: float) -> float:
        """Task j's least loss on a chosen network or one that ``left`` affords."""
        for loss, k in self.holders[j]:
            if k in chosen or self.cost[k] <= left + COST_TOLERANCE:
                return loss
        return math.inf

    def visit(self, j: int, chosen: list[int], values: list[float]) -> None:
        """Serve task j onwards; ``values``: the losses assigned to tasks 0..j-1."""
        self.nodes += 1
        n = len(self.holders)
        if j == n:
            self.consider(chosen)
            return
        spent = math.fsum(self.cost[k] for k in chosen)
        left = self.budget - spent
        bound = sum(values + [self.least(t, chosen, left) for t in range(j, n)])
        if bound > self.key[0] or (bound == self.key[0] and spent > self.key[1]):
            return  # (an infinite bound: some task can no longer be held)
        held = 0
        for k in chosen:
            held |= self.covers.masks[k]
        open_tasks = ((1 << n) - 1) & ~((1 << j) - 1) & ~held
        if open_tasks and self.covers.cost(open_tasks) > left + COST_TOLERANCE:
            return
        if self.fronts is not None and j > 0:
            slack = SCORE_TOLERANCE * max(1.0, abs(self.key[0]))
            if sum(values) + self.open_bound(j, chosen, left) > self.key[0] + slack:
                return
        for loss, k in self.holders[j]:
            if k in chosen:  # the best chosen network: later holders are worse and cost more
                self.visit(j + 1, chosen, [*values, loss])
                return
            if self.cost[k] <= left + COST_TOLERANCE:
                self.visit(j + 1, [*chosen, k], [*values, loss])

    def open_bound(self, j: int, chosen: list[int], left: float) -> float:
        """A lower bound on serving tasks j..n-1: some (C) by the chosen networks, free, at
        their best chosen loss, the rest by new networks within ``left`` (:class:`_Fronts`);
        the least over every C."""
        n = len(self.holders)
        free = {}
        for t in range(j, n):
            loss = next((v for v, k in self.holders[t] if k in chosen), math.inf)
            if loss < math.inf:
                free[t] = loss
        tasks = ((1 << n) - 1) & ~((1 << j) - 1)
        servable = sum(1 << t for t in free)
        best, sub = math.inf, servable
        while True:
            kept = sum(free[t] for t in free if sub >> t & 1)
            best = min(best, kept + self.fronts.least(tasks & ~sub, left))
            if sub == 0:
                return best
            sub = (sub - 1) & servable

    def consider(self, chosen: list[int]) -> None:
        positions = sorted(chosen)
        score = self.table.score(positions)
        key = (score, math.fsum(self.cost[k] for k in positions), len(positions), positions)
        if key < self.key:
            self.key, self.best = key, positions


class _Fronts:
    """For every set of tasks, the Pareto front of (cost, least score) of serving exactly those
    tasks by networks that each serve a block of them (their served sets partition the set).

    A bound for :class:`_Search`: any selection serves its tasks so, and two blocks on one
    network (paying its cost twice) never beat the merged block. Partitions are enumerated by
    the block holding the lowest task, so building costs O(3^n · f²) for fronts of f points;
    beyond ``FRONT_TASK_LIMIT`` tasks the search goes without it. Scores are summed in another
    order than the selection's score, so a bound cuts only when it exceeds the best by
    ``SCORE_TOLERANCE`` (relative).
    """

    def __init__(self, table: NetworkTable, masks: list[int], budget: float) -> None:
        n, limit = len(table.tasks), budget + COST_TOLERANCE
        blocks: dict[int, dict[float, float]] = {}
        for k, held in enumerate(masks):
            cost = float(table.costs[k])
            if cost > limit:
                continue
            sub = held
            while sub:
                score = sum(float(table.losses[k, j]) for j in range(n) if sub >> j & 1)
                least = blocks.setdefault(sub, {})
                least[cost] = min(score, least.get(cost, math.inf))
                sub = (sub - 1) & held
        block = {P: _pareto(least.items()) for P, least in blocks.items()}
        fronts: list[list[tuple[float, float]]] = [[(0.0, 0.0)]]
        for mask in range(1, 1 << n):
            low, points = mask & -mask, []
            rest = sub = mask ^ low
            while True:
                for c1, s1 in block.get(sub | low, ()):
                    for c2, s2 in fronts[mask ^ (sub | low)]:
                        if c1 + c2 <= limit:
                            points.append((c1 + c2, s1 + s2))
                if sub == 0:
                    break
                sub = (sub - 1) & rest
            fronts.append(_pareto(points))
        self.fronts = fronts
        self.costs = [[c for c, _ in front] for front in fronts]

    def least(self, mask: int, left: float) -> float:
        """The least score of serving exactly ``mask`` at cost ≤ ``left``."""
        i = bisect.bisect_right(self.costs[mask], left + COST_TOLERANCE) - 1
        return self.fronts[mask][i][1] if i >= 0 else math.inf


def _pareto(points) -> list[tuple[float, float]]:
    """(cost, score) points with no other both cheaper-or-equal and lower-or-equal: cost
    ascending, score strictly descending."""
    front: list[tuple[float, float]] = []
    for cost, score in sorted(points):
        if not front or score < front[-1][1]:
            front.append((cost, score))
    return front


def _mask(table: NetworkTable, k: int) -> int:
    return sum(1 << j for j in range(len(table.tasks)) if not np.isnan(table.losses[k, j]))


def _standley_rows(text: str, source: str) -> list[list[float | None]]:
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip(" "):  # a line of tabs is a network without losses
        lines.pop()
    if not lines:
        raise ValueError(f"{source}: the file is empty")
    rows: list[list[float | None]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip(" "):
            raise ValueError(f"{source}: line {number} is blank")
        fields = line.split("\t")
        if rows and len(fields) != len(rows[0]):
            raise ValueError(
                f"{source}: line {number} has {len(fields)} tab-separated fields, line 1 has "
                f"{len(rows[0])} (one per task)"
            )
        row = [_field(f, source, number, j + 1) for j, f in enumerate(fields)]
        if number > 1 and all(v is None for v in row):
            raise ValueError(f"{source}: line {number} holds no loss")
        rows.append(row)
    return rows


def _field(text: str, source: str, line: int, column: int) -> float | None:
    if not text.strip():
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(
            f"{source}: line {line}, field {column}: {text.strip()!r} is not a finite loss "
            f"(fields are tab-separated numbers; leave a field empty for a task not in the network)"
        )
    return value


def _task_names(tasks: Any) -> tuple[str, ...]:
    if isinstance(tasks, str) or not isinstance(tasks, Sequence) or len(tasks) == 0:
        raise ValueError(f"tasks must be a non-empty list of task names, got {tasks!r}")
    if not all(isinstance(t, str) and t for t in tasks):
        raise ValueError(f"task names must be non-empty strings, got {list(tasks)!r}")
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task names must be distinct, got {list(tasks)!r}")
    return tuple(tasks)


def _network_tasks(k: int, held: Any, tasks: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(held, str) or not isinstance(held, (Sequence, set, frozenset)):
        raise ValueError(f"network {k} must be a collection of task names, got {held!r}")
    unknown = [t for t in held if t not in tasks]
    if unknown:
        raise ValueError(f"network {k} names unknown task(s) {_names(map(str, unknown))}")
    if not held:
        raise ValueError(f"network {k} holds no task")
    if len(set(held)) != len(held):
        raise ValueError(f"network {k} names a task twice: {list(held)!r}")
    return tuple(t for t in tasks if t in set(held))


def _loss_rows(losses: Any, networks: list[tuple[str, ...]], tasks: tuple[str, ...]) -> np.ndarray:
    rows = list(losses)
    if len(rows) != len(networks):
        raise ValueError(f"losses has {len(rows)} rows for {len(networks)} networks")
    out = np.full((len(networks), len(tasks)), np.nan)
    for k, (row, held) in enumerate(zip(rows, networks, strict=True)):
        if isinstance(row, Mapping):
            unknown = [t for t in row if t not in tasks]
            if unknown:
                raise ValueError(f"losses of network {k} name unknown task(s) {_names(unknown)}")
            values = [row.get(t) for t in tasks]
        else:
            values = list(row)
            if len(values) != len(tasks):
                raise ValueError(
                    f"losses of network {k} have {len(values)} entries for {len(tasks)} tasks"
                )
        for j, (t, value) in enumerate(zip(tasks, values, strict=True)):
            out[k, j] = _loss(value, k, held, t)
    return out


def _loss(value: Any, k: int, held: tuple[str, ...], task: str) -> float:
    missing = value is None or (isinstance(value, float | np.floating) and math.isnan(value))
    where = f"network {k} {{{', '.join(held)}}}"
    if task not in held:
        if not missing:
            raise ValueError(
                f"{where} has a loss for task {task!r} but does not hold it: add the task to "
                f"the network or give NaN/None"
            )
        return math.nan
    if missing:
        raise ValueError(f"{where} holds task {task!r} but its loss is missing (NaN or None)")
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{where}: the loss of task {task!r} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ValueError(f"{where}: the loss of task {task!r} must be finite, got {value!r}")
    return float(value)


def _costs(costs: Any, m: int) -> np.ndarray:
    values = np.asarray(costs, dtype=object).reshape(-1)
    if values.size != m:
        raise ValueError(f"costs has {values.size} entries for {m} networks")
    out = np.empty(m)
    for k, c in enumerate(values):
        if isinstance(c, bool) or not isinstance(c, int | float | np.integer | np.floating):
            raise ValueError(f"the cost of network {k} must be a number, got {c!r}")
        if not (math.isfinite(c) and c > 0):
            raise ValueError(f"the cost of network {k} must be a finite number > 0, got {c!r}")
        out[k] = float(c)
    return out


def _budget(budget: Any) -> float:
    if isinstance(budget, bool) or not isinstance(budget, int | float | np.integer | np.floating):
        raise ValueError(f"budget must be a number, got {budget!r}")
    if not (math.isfinite(budget) and budget > 0):
        raise ValueError(f"budget must be a finite number > 0, got {budget!r}")
    return float(budget)


def _names(names) -> str:
    return ", ".join(map(repr, sorted(names))) or "none"
