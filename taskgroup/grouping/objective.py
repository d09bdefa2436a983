"""The TAG network-selection objective and the ``Grouping`` result.

A group S serves its member j with the affinity a(j, S) = mean over i ∈ S, i ≠ j of Z[i, j]
(row i = source task, column j = target task; the diagonal never counts). A grouping is at most
B groups covering every task; each task is served by the group where it scores best, and

    score = Σ_j max over S ∋ j of a(j, S).

A singleton {j} has no partner: with ``singleton_score=None`` (TAG's convention) it serves no task,
with a number (``0.0``: "training alone transfers nothing") it serves j with that value.
``partition=True`` admits only disjoint groups.

**The served-set reduction** used by every solver: call P the set of tasks a group serves. All of
P share the group's denominator |S| − 1, so the best group around a served set P is P plus the m
tasks X outside P that help P most (largest Σ_{j∈P} Z[i, j]), for the best m:

    w(P) = max over m of (Σ_{i≠j ∈ P} Z[i, j] + top-m helper sums) / (|P| + m − 1),

computable in O(n log n). A grouping's served sets partition the tasks, so the optimum over all
groupings of at most B groups equals the optimum of Σ_k w(P_k) over partitions of the tasks into
at most B blocks (with ``partition=True``: no helpers, w(P) = Σ_j a(j, P)).
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

FORMAT = "taskgroup.groups"
VERSION = 1


def affinity_problem(Z_or_A, tasks: Sequence[str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Validate the input of the public functions: ``(values [n, n] float64, task names)``.

    ``Z_or_A`` is an :class:`AffinityMatrix` (then ``tasks`` optionally selects and orders a
    subset of its tasks) or a square array-like (then ``tasks`` names its rows, default
    ``"0", "1", ...``).
    """
    if isinstance(Z_or_A, AffinityMatrix):
        if tasks is None:
            return Z_or_A.values.copy(), list(Z_or_A.tasks)
        names = _task_names(tasks)
        unknown = [t for t in names if t not in Z_or_A.tasks]
        if unknown:
            raise ValueError(
                f"unknown task(s) {', '.join(map(repr, unknown))}; "
                f"the affinity matrix has {', '.join(Z_or_A.tasks)}"
            )
        sub = Z_or_A.select(names)
        return sub.values.copy(), names
    if hasattr(Z_or_A, "detach"):  # a torch tensor
        Z_or_A = Z_or_A.detach().cpu().numpy()
    try:
        values = np.array(Z_or_A, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError("Z_or_A must be an AffinityMatrix or a numeric n×n matrix") from None
    if values.ndim != 2 or values.shape[0] != values.shape[1]:
        raise ValueError(f"Z_or_A must be a square n×n matrix, got shape {values.shape}")
    if values.shape[0] == 0:
        raise ValueError("Z_or_A has no tasks")
    if not np.isfinite(values).all():
        raise ValueError("Z_or_A has NaN or infinite entries")
    n = values.shape[0]
    if tasks is None:
        return values, [str(i) for i in range(n)]
    names = _task_names(tasks)
    if len(names) != n:
        raise ValueError(f"tasks names {len(names)} tasks but the matrix is {n}×{n}")
    return values, names


def _task_names(tasks) -> list[str]:
    if isinstance(tasks, str) or not isinstance(tasks, Sequence):
        raise ValueError(f"tasks must be a list of task names, got {tasks!r}")
    names = [str(t) for t in tasks]
    if not names:
        raise ValueError("tasks is empty")
    duplicates = sorted({t for t in names if names.count(t) > 1})
    if duplicates:
        raise ValueError(f"task names must be distinct; repeated: {', '.join(duplicates)}")
    return names


def check_singleton_score(singleton_score) -> float | None:
    """``None`` or a finite float; anything else is a ``ValueError``."""
    if singleton_score is None:
        return None
    if isinstance(singleton_score, bool):
        raise ValueError(f"singleton_score must be None or a number, got {singleton_score!r}")
    try:
        value = float(singleton_score)
    except (TypeError, ValueError):
        raise ValueError(
            f"singleton_score must be None or a number, got {singleton_score!r}"
        ) from None
    if not math.isfinite(value):
        raise ValueError(f"singleton_score must be finite, got {singleton_score!r}")
    return value


def onto(values: np.ndarray, members: Sequence[int]) -> np.ndarray:
    """a(j, S) for each j of ``members`` (in that order); needs at least two members."""
    idx = np.asarray(members, dtype=np.intp)
    sub = values[np.ix_(idx, idx)]
    return (sub.sum(axis=0) - np.diag(sub)) / (len(idx) - 1)


def served_set_value(
    values: np.ndarray,
    served: Sequence[int],
    *,
    partition: bool,
    singleton_score: float | None,
    pool: Sequence[int] | None = None,
) -> tuple[float, tuple[int, ...]]:
    """w(P) and the best group around the served set P (sorted indices), in O(n log n).

    ``pool``: the tasks that may join as helpers (default every task outside P); ignored with
    ``partition=True`` (no helpers). ``-inf`` when P cannot be served (a singleton under the
    ``None`` convention with no admissible helper).
    """
    p = sorted(served)
    k = len(p)
    idx = np.asarray(p, dtype=np.intp)
    base = float(values[np.ix_(idx, idx)].sum() - np.trace(values[np.ix_(idx, idx)]))
    alone = -math.inf if singleton_score is None else singleton_score
    if partition:
        return (alone if k == 1 else base / (k - 1)), tuple(p)
    members = set(p)
    others = [i for i in (range(len(values)) if pool is None else pool) if i not in members]
    best, best_m = (alone if k == 1 else base / (k - 1)), 0
    if others:
        help_sums = values[np.asarray(others, dtype=np.intp)][:, idx].sum(axis=1)
        order = np.argsort(-help_sums, kind="stable")
        totals = base + np.cumsum(help_sums[order])
        candidates = totals / (k + np.arange(len(others)))  # m = 1..len(others) helpers
        m = int(np.argmax(candidates))
        if candidates[m] > best:
            best, best_m = float(candidates[m]), m + 1
        helpers = [others[i] for i in order[:best_m]]
    else:
        helpers = []
    return best, tuple(sorted(p + helpers))


def served_sets_values(
    values: np.ndarray, member: np.ndarray, *, partition: bool, singleton_score: float | None
) -> np.ndarray:
    """w(P) for many served sets at once: ``member [m, n]`` bool rows → ``[m]`` (0 for an empty
    set, ``-inf`` where a set cannot be served). Vectorised :func:`served_set_value`."""
    n = len(values)
    member = np.asarray(member, dtype=bool)
    off = values - np.diag(np.diag(values))
    size = member.sum(axis=1)
    helps = member.astype(np.float64) @ off.T  # [sets, i]: Σ_{j ∈ P} Z[i, j]
    base = np.where(member, helps, 0.0).sum(axis=1)
    alone = -np.inf if singleton_score is None else float(singleton_score)
    w = np.where(size >= 2, base / np.maximum(size - 1, 1), alone)
    if not partition and n > 1:
        outside = np.where(member, -np.inf, helps)
        outside = -np.sort(-outside, axis=1)[:, : n - 1]  # best helpers first
        totals = base[:, None] + np.cumsum(outside, axis=1)
        with np.errstate(invalid="ignore"):
            grown = totals / (size[:, None] + np.arange(n - 1)[None, :])
        grown = np.where(np.isfinite(grown), grown, -np.inf)
        w = np.maximum(w, grown.max(axis=1))
    return np.where(size == 0, 0.0, w)


def group_indices(groups, tasks: Sequence[str]) -> list[tuple[int, ...]]:
    """Groups of task names (or integer indices) → sorted index tuples, validated."""
    if isinstance(groups, str | bytes) or not isinstance(groups, Sequence | set | frozenset):
        raise ValueError(f"groups must be a list of groups of tasks, got {groups!r}")
    index = {t: i for i, t in enumerate(tasks)}
    out = []
    for group in groups:
        if isinstance(group, str | bytes) or not isinstance(group, Sequence | set | frozenset):
            raise ValueError(f"each group must be a list of tasks, got {group!r}")
        members = []
        for t in group:
            if isinstance(t, int | np.integer) and not isinstance(t, bool):
                if not 0 <= int(t) < len(tasks):
                    raise ValueError(f"task index {t} out of range for {len(tasks)} tasks")
                members.append(int(t))
            elif isinstance(t, str) and t in index:
                members.append(index[t])
            else:
                raise ValueError(f"unknown task {t!r} in group {list(group)!r}")
        if not members:
            raise ValueError("a group is empty")
        if len(set(members)) != len(members):
            raise ValueError(f"group {list(group)!r} names a task twice")
        out.append(tuple(sorted(members)))
    if not out:
        raise ValueError("groups is empty")
    return out


def serve(
    values: np.ndarray, groups: Sequence[Sequence[int]], singleton_score: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """For each task: its best value over the groups containing it and the first group reaching
    it (``-1`` and ``-inf`` when no group serves it)."""
    n = len(values)
    best = np.full(n, -math.inf)
    by = np.full(n, -1)
    for g, members in enumerate(groups):
        if len(members) == 1:
            if singleton_score is None:
                continue
            gains = np.array([singleton_score])
        else:
            gains = onto(values, members)
        for j, gain in zip(members, gains, strict=True):
            if gain > best[j]:
                best[j], by[j] = gain, g
    return best, by


def score(
    Z_or_A,
    groups,
    *,
    tasks: Sequence[str] | None = None,
    partition: bool = False,
    singleton_score: float | None = None,
) -> float:
    """TAG's network-selection score of ``groups`` (lists of task names or indices).

    Every task must be in some group (a ``ValueError`` names the missing ones); with
    ``partition=True`` the groups must be disjoint. A task that only singletons cover scores
    ``-inf`` under ``singleton_score=None`` (TAG scores it −1e6), so such a grouping never wins.
    """
    values, names = affinity_problem(Z_or_A, tasks)
    singleton_score = check_singleton_score(singleton_score)
    idx = group_indices(groups, names)
    covered = {j for g in idx for j in g}
    missing = [names[j] for j in range(len(names)) if j not in covered]
    if missing:
        raise ValueError(f"the groups do not cover task(s) {', '.join(missing)}")
    if partition and sum(len(g) for g in idx) != len(covered):
        raise ValueError("partition=True needs disjoint groups; a task is in two groups")
    best, _ = serve(values, idx, singleton_score)
    return float(best.sum())


@dataclass(eq=False)
class Grouping:
    """The chosen groups and how good they are.

    Attributes:
        groups: the groups, task names in task order, groups ordered by their first task.
        score: the objective (see :func:`score`).
        serves: task → index in ``groups`` of the group that serves it.
        values: task → a(task, serving group) (``singleton_score`` for a task trained alone).
        optimal: the score is proven optimal (within 1e-9 relative).
        bound: an upper bound on the optimal score (``== score`` when optimal), or ``None``.
        method: the solver that produced it (``"exact"``, ``"milp"``, ``"beam"``, ...).
        budget, partition, singleton_score, tasks: the problem solved.
        seconds: wall time of the solve.
        info: solver facts (nodes, columns, which heuristic won under ``auto``, ...).
    """

    groups: list[tuple[str, ...]]
    score: float
    serves: dict[str, int]
    values: dict[str, float]
    optimal: bool
    bound: float | None
    method: str
    budget: int
    partition: bool
    singleton_score: float | None
    tasks: list[str]
    seconds: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def gap(self) -> float | None:
        """Relative optimality gap ``(bound − score) / |bound|`` (0 when optimal)."""
        if self.optimal:
            return 0.0
        if self.bound is None:
            return None
        return relative_gap(self.bound, self.score)

    def __repr__(self) -> str:
        bound = "None" if self.bound is None else f"{self.bound:.6g}"
        return (
            f"Grouping(groups={self.groups}, score={self.score:.6g}, optimal={self.optimal}, "
            f"bound={bound}, method={self.method!r})"
        )

    def describe(self) -> str:
        """A plain-text table: each group, the tasks it serves with their values, the total."""
        width = max(len(t) for t in self.tasks)
        lines = [
            f"{len(self.groups)} group(s) for {len(self.tasks)} tasks, budget {self.budget}"
            f"{', disjoint' if self.partition else ''}; method {self.method}",
        ]
        for g, members in enumerate(self.groups):
            lines.append(f"  group {g + 1}: {', '.join(members)}")
        lines.append("")
        lines.append(f"  {'task':<{width}}  served by  affinity onto it")
        for t in self.tasks:
            g = self.serves[t]
            alone = len(self.groups[g]) == 1
            lines.append(
                f"  {t:<{width}}  group {g + 1:<3}  {self.values[t]:+.4g}"
                + ("  (trained alone)" if alone else "")
            )
        status = (
            "optimal"
            if self.optimal
            else (
                f"bound {self.bound:.6g}, gap ≤ {100 * self.gap:.2f}%"
                if self.bound is not None
                else "no bound"
            )
        )
        lines.append("")
        lines.append(f"  score {self.score:.6g} ({status}) in {self.seconds:.2f} s")
        estimate = self.info.get("lp_estimate")
        if (
            not self.optimal
            and self.bound is not None
            and estimate is not None
            and self.score <= estimate < self.bound - 1e-9 * abs(self.bound)
        ):
            lines.append(
                f"  (not a proof: the LP over the {self.info.get('lp_columns', 'generated')} "
                f"served sets that column generation found is {estimate:.6g}, "
                f"{100 * relative_gap(estimate, self.score):.2f}% above the score)"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "convention": "a group serves member j with the mean of Z[i][j] over its other "
            "members i; each task is served by its best group; score = sum over tasks",
            "tasks": self.tasks,
            "budget": self.budget,
            "partition": self.partition,
            "singleton_score": self.singleton_score,
            "method": self.method,
            "groups": [list(g) for g in self.groups],
            "serves": self.serves,
            "values": self.values,
            "score": self.score,
            "bound": self.bound,
            "optimal": self.optimal,
            "gap": self.gap,
            "seconds": round(self.seconds, 6),
            "info": self.info,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON to ``path`` atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "grouping data") -> Grouping:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a taskgroup groups file (format != {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"{source}: unsupported version {data.get('version')!r}")
        check_json(data, GROUPS_SCHEMA, source)
        try:
            tasks = _task_names(data["tasks"])
            groups = [tuple(tasks[j] for j in g) for g in group_indices(data["groups"], tasks)]
            serves = {str(t): int(g) for t, g in data["serves"].items()}
            values = {str(t): float(v) for t, v in data["values"].items()}
            if set(serves) != set(tasks) or set(values) != set(tasks):
                raise ValueError("'serves' and 'values' need one entry per task")
            if any(not 0 <= g < len(groups) or t not in groups[g] for t, g in serves.items()):
                raise ValueError("'serves' names a group that does not hold the task")
            bound = data.get("bound")
            return cls(
                groups=groups,
                score=float(data["score"]),
                serves=serves,
                values=values,
                optimal=bool(data["optimal"]),
                bound=None if bound is None else float(bound),
                method=str(data["method"]),
                budget=int(data["budget"]),
                partition=bool(data["partition"]),
                singleton_score=check_singleton_score(data.get("singleton_score")),
                tasks=tasks,
                seconds=float(data.get("seconds", 0.0)),
                info=dict(data.get("info") or {}),
            )
        except KeyError as e:
            raise ValueError(f"{source}: missing {e.args[0]!r}") from None
        except (TypeError, ValueError, AttributeError, IndexError) as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> Grouping:
        """Read a file written by :meth:`save`; ``ValueError`` naming the file if malformed."""
        return cls.from_dict(read_json(path), source=str(path))


SWEEP_SCHEMA = {  # one budget of groups.json's "sweep" (taskgroup group --sweep)
    "budget": int,
    "score": float,
    "?bound": (float, None),
    "optimal": bool,
    "?method": str,
    "?seconds": float,
    "?groups": [[str]],
}
GROUPS_SCHEMA = {  # Grouping.to_dict(), and what `taskgroup group` adds to groups.json
    "tasks": [str],
    "groups": [[(str, int)]],
    "serves": {str: int},
    "values": {str: float},
    "score": float,
    "?bound": (float, None),
    "optimal": bool,
    "method": str,
    "budget": int,
    "partition": bool,
    "?singleton_score": (float, None),
    "?seconds": float,
    "?info": {str: object},
    "?sweep": [SWEEP_SCHEMA],
}


def relative_gap(bound: float, value: float) -> float:
    """``(bound − value) / max(|bound|, |value|, 1e-12)``, clipped at 0."""
    return max(0.0, (bound - value) / max(abs(bound), abs(value), 1e-12))


def served_masks(grouping: Grouping) -> list[int]:
    """The served sets of ``grouping`` as bitmasks over its task order (bit j = ``tasks[j]``),
    one per group that serves a task: the blocks the solvers work with."""
    index = {t: j for j, t in enumerate(grouping.tasks)}
    blocks: dict[int, int] = {}
    for t, g in grouping.serves.items():
        blocks[g] = blocks.get(g, 0) | (1 << index[t])
    return list(blocks.values())


def make_grouping(
    values: np.ndarray,
    tasks: Sequence[str],
    groups: Sequence[Sequence[int]],
    *,
    budget: int,
    partition: bool,
    singleton_score: float | None,
    method: str,
    bound: float | None,
    optimal: bool,
    seconds: float = 0.0,
    info: Mapping[str, Any] | None = None,
) -> Grouping:
    """Canonical :class:`Grouping` from index groups: duplicates and groups that serve no task
    dropped, members in task order, groups ordered by their first task; the score recomputed
    from the objective."""
    distinct = sorted({tuple(sorted(g)) for g in groups})
    best, by = serve(values, distinct, singleton_score)
    kept = sorted({int(g) for g in by if g >= 0})
    distinct = [distinct[g] for g in kept]
    best, by = serve(values, distinct, singleton_score)
    if (by < 0).any():
        raise RuntimeError("internal error: a solver returned a grouping that serves no task")
    total = float(best.sum())
    if bound is not None and not math.isfinite(bound):
        bound = None  # no usable bound (a solver stopped before it had one)
    if bound is not None:
        bound = float(bound)
        if total - 1e-9 * max(1.0, abs(total)) <= bound < total:
            bound = total  # rounding in the bound's arithmetic, not a weaker bound
    if optimal:
        bound = total
    return Grouping(
        groups=[tuple(tasks[j] for j in g) for g in distinct],
        score=total,
        serves={tasks[j]: int(by[j]) for j in range(len(tasks))},
        values={tasks[j]: float(best[j]) for j in range(len(tasks))},
        optimal=optimal,
        bound=bound,
        method=method,
        budget=budget,
        partition=partition,
        singleton_score=singleton_score,
        tasks=list(tasks),
        seconds=seconds,
        info=dict(info or {}),
    )


def check_groups(groups: Sequence[Sequence[str]], tasks: Sequence[str]) -> list[tuple[str, ...]]:
    """``groups`` as tuples after checking they name only ``tasks``, cover all of them, repeat no
    task within a group and no group (in any order); ``ValueError`` naming the offending task
    or group otherwise."""
    if not groups:
        raise ValueError("the grouping has no groups")
    known = set(tasks)
    checked = []
    for g in groups:
        members = tuple(g)
        unknown = [t for t in members if t not in known]
        if unknown:
            raise ValueError(
                f"the grouping names unknown task(s) {', '.join(map(repr, unknown))}; "
                f"the benchmark's tasks are {', '.join(tasks)}"
            )
        if not members or len(set(members)) != len(members):
            raise ValueError(f"group {list(members)} is empty or repeats a task")
        if any(set(members) == set(other) for other in checked):
            raise ValueError(f"group {list(members)} appears twice in the grouping")
        checked.append(members)
    covered = {t for g in checked for t in g}
    missing = [t for t in tasks if t not in covered]
    if missing:
        raise ValueError(
            f"the grouping misses task(s) {', '.join(map(repr, missing))}: every task of the "
            f"benchmark must be in a group (or select fewer tasks)"
        )
    return checked
