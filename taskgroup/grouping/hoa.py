"""Standley et al.'s higher-order approximation (HOA): group selection from pair trainings.

Standley, Zamir, Chen, Guibas, Malik, Savarese, "Which Tasks Should Be Learned Together in
Multi-task Learning?", ICML 2020, §5 and the reference code (``tstandley/taskgrouping``,
``network_selection/main.cpp``, ``higher_order_approximation``). Train every task alone and every
pair of tasks; then a task t's loss in a group S of three or more tasks is estimated by the mean
of its losses in the pairs it forms with the other members:

    est(t, S) = mean over u ∈ S, u ≠ t of pair[t][u]        (|S| ≥ 2; the measured pair at |S| = 2)
    est(t, {t}) = single[t]                                 (the measured single-task loss)

A grouping (at most B networks, overlaps allowed, each task served by the group where its
estimate is lowest) is chosen to minimise the served estimates. Standley sums raw losses (their
tasks share a scale) and prices a single-task network at half a network; here every network
counts 1 towards the budget, and each task's estimate is divided by its single-task loss so that
tasks of different loss scales weigh alike:

    minimise Σ_t min over S ∋ t of est(t, S) / single[t].

**Exact reduction to TAG's objective.** With Z[u, t] = 1 − pair[t][u] / single[t] (row u =
source, column t = target, like the lookahead affinity) TAG's a(t, S) = mean over u ≠ t of
Z[u, t] = 1 − est(t, S) / single[t], and a singleton's value 1 − single[t] / single[t] = 0 is
``singleton_score=0.0``. So HOA's optimum is TAG's optimum of that matrix with singletons worth 0,
and every solver of :func:`~taskgroup.select_groups` applies (``method="hoa"`` uses ``auto``).
Standley's literal raw-loss sum is the same reduction with Z[u, t] = single[t] − pair[t][u]
(``PairTable.scores(relative=False)``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.storage import check_json, read_json, write_json

FORMAT = "taskgroup.pairs"
VERSION = 1
PAIRS_SCHEMA = {  # PairTable.to_dict(); the constructor checks the losses and their tasks
    "tasks": [str],
    "single": {str: float},
    "pair": {str: {str: float}},
    "?cost": (None, {str: float}),
    "?metadata": (None, {str: object}),
}


@dataclass(frozen=True)
class PairTable:
    """Single-task and pair results: the input of ``select_groups(table, B, method="hoa")``.

    Attributes:
        tasks: the task names, in order.
        single: task t → its loss trained alone (lower is better, > 0: it divides).
        pair: ``pair[t][u]`` = task t's loss when trained with u alone (every u ≠ t).
        cost: what the table cost to measure (``networks``, ``steps``, ``seconds``).
        metadata: free-form facts (the split the losses come from, the training settings).

    :func:`taskgroup.pair_results` builds one from validation losses.
    """

    tasks: list[str]
    single: dict[str, float]
    pair: dict[str, dict[str, float]]
    cost: dict[str, float] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        tasks = self.tasks
        if isinstance(tasks, str) or not isinstance(tasks, Sequence) or len(tasks) == 0:
            raise ValueError(f"tasks must be a non-empty list of task names, got {tasks!r}")
        if len(set(tasks)) != len(tasks):
            raise ValueError("task names must be distinct")
        object.__setattr__(self, "tasks", [str(t) for t in tasks])
        single = {str(t): _loss(v, f"single[{t!r}]") for t, v in dict(self.single).items()}
        if set(single) != set(self.tasks):
            raise ValueError(
                f"single needs one loss per task; missing {_names(set(self.tasks) - set(single))}"
                f", unknown {_names(set(single) - set(self.tasks))}"
            )
        pair: dict[str, dict[str, float]] = {}
        for t in self.tasks:
            row = dict(self.pair.get(t, {}))
            missing = [u for u in self.tasks if u != t and u not in row]
            if missing:
                raise ValueError(f"pair[{t!r}] misses the pair(s) with {_names(missing)}")
            pair[t] = {
                u: _loss(row[u], f"pair[{t!r}][{u!r}]", positive=False)
                for u in self.tasks
                if u != t
            }
        object.__setattr__(self, "single", single)
        object.__setattr__(self, "pair", pair)
        object.__setattr__(self, "cost", dict(self.cost))
        object.__setattr__(self, "metadata", dict(self.metadata))

    def estimate(self, task: str, group: Sequence[str]) -> float:
        """Standley's estimate of ``task``'s loss in ``group`` (see the module doc)."""
        members = list(group)
        if task not in members:
            raise ValueError(f"task {task!r} is not in the group {members}")
        others = [u for u in members if u != task]
        if not others:
            return self.single[task]
        return sum(self.pair[task][u] for u in others) / len(others)

    def scores(self, *, relative: bool = True) -> np.ndarray:
        """The TAG score matrix ``Z [n, n]`` (row u = partner, column t = task) whose objective
        with ``singleton_score=0.0`` is HOA's: ``1 − pair[t][u] / single[t]`` (``relative``) or
        ``single[t] − pair[t][u]``. The diagonal is 0 (it never counts)."""
        n = len(self.tasks)
        Z = np.zeros((n, n))
        for j, t in enumerate(self.tasks):
            for i, u in enumerate(self.tasks):
                if i != j:
                    gain = self.single[t] - self.pair[t][u]
                    Z[i, j] = gain / self.single[t] if relative else gain
        return Z

    def affinity(self, *, relative: bool = True) -> AffinityMatrix:
        """:meth:`scores` as an :class:`AffinityMatrix` (for plots and the TAG solvers)."""
        return AffinityMatrix(
            self.scores(relative=relative), self.tasks, source="pairs", relative=relative
        )

    def select(self, tasks: Sequence[str]) -> PairTable:
        """The table restricted to ``tasks`` (in that order)."""
        unknown = [t for t in tasks if t not in self.single]
        if unknown:
            raise ValueError(
                f"unknown task(s) {_names(unknown)}; the pair table has {', '.join(self.tasks)}"
            )
        names = list(tasks)
        return PairTable(
            names,
            {t: self.single[t] for t in names},
            {t: {u: self.pair[t][u] for u in names if u != t} for t in names},
            self.cost,
            self.metadata,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "convention": "single[t]: task t's loss trained alone; pair[t][u]: task t's loss "
            "trained with u; lower is better",
            "tasks": self.tasks,
            "single": self.single,
            "pair": self.pair,
            "cost": self.cost,
            "metadata": self.metadata,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON to ``path`` atomically (read back with :meth:`load`)."""
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "pair data") -> PairTable:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a taskgroup pair table (format != {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"{source}: unsupported version {data.get('version')!r}")
        check_json(data, PAIRS_SCHEMA, source)
        try:
            return cls(
                list(data["tasks"]),
                dict(data["single"]),
                {t: dict(row) for t, row in data["pair"].items()},
                dict(data.get("cost") or {}),
                dict(data.get("metadata") or {}),
            )
        except KeyError as e:
            raise ValueError(f"{source}: missing {e.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> PairTable:
        """Read a file written by :meth:`save`; ``ValueError`` naming the file if malformed."""
        return cls.from_dict(read_json(path), source=str(path))


def _loss(value: Any, name: str, *, positive: bool = True) -> float:
    if isinstance(value, bool):
        raise ValueError(f"{name} must be a number, got {value!r}")
    try:
        loss = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(loss) or loss < 0 or (positive and loss == 0):
        bound = "> 0" if positive else ">= 0"
        raise ValueError(f"{name} must be a finite loss {bound}, got {value!r}")
    return loss


def _names(names) -> str:
    return ", ".join(map(repr, sorted(names))) or "none"
