"""AffinityMatrix: a directed task-affinity matrix with its tasks, metadata and per-step traces."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import networkx as nx
import numpy as np

from taskgroup.storage import check_json, read_json, write_json

FORMAT = "taskgroup.affinity"
VERSION = 1
AFFINITY_SCHEMA = {  # AffinityMatrix.to_dict(); the shapes are checked by the constructor
    "tasks": [str],
    "values": [[float]],
    "?metadata": {str: object},
    "?trace": (None, {"?steps": [int], "?lr": [(float, None)], "?values": [[[float]]]}),
}


def _as_matrix(values, n: int | None, what: str) -> np.ndarray:
    try:
        given = np.asarray(values)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a numeric n×n matrix") from None
    if given.dtype.kind not in "iuf":  # numpy would turn "0.3" into 0.3 without a word
        raise ValueError(f"{what} must be numeric, got entries of type {given.dtype}")
    array = given.astype(np.float64)
    if array.ndim != 2 or array.shape[0] != array.shape[1]:
        raise ValueError(f"{what} must be square (n×n), got shape {array.shape}")
    if n is not None and array.shape[0] != n:
        raise ValueError(f"{what} is {array.shape[0]}×{array.shape[0]} but there are {n} tasks")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} has NaN or infinite entries")
    return array


class AffinityMatrix:
    """Directed task affinity ``values[i, j]``: the effect of source task i on target task j.

    Positive means task i's update lowers task j's loss (the TAG convention); the diagonal is
    self-improvement. Built by :func:`taskgroup.measure_affinity` (the mean of per-step lookahead
    matrices) or directly from any ``n×n`` array.

    Args:
        values: ``[n, n]`` finite matrix, row = source, column = target.
        tasks: the n distinct task names, in row/column order.
        trace: optional per-step matrices ``[T, n, n]``; ``trace_steps`` (length T) the training
            step of each and ``trace_lr`` (length T) the learning rate at that step.
        **metadata: JSON-serialisable facts about how it was measured.
    """

    def __init__(
        self,
        values,
        tasks: Sequence[str],
        *,
        trace=None,
        trace_steps: Sequence[int] | None = None,
        trace_lr: Sequence[float] | None = None,
        **metadata: Any,
    ):
        tasks = [str(t) for t in tasks]
        if len(set(tasks)) != len(tasks):
            raise ValueError(f"task names must be distinct, got {tasks}")
        self.values = _as_matrix(values, len(tasks), "affinity values")
        self.tasks = tasks
        self.metadata: dict[str, Any] = dict(metadata)
        if trace is None:
            self.trace, self.trace_steps, self.trace_lr = None, [], []
            return
        trace = np.asarray(trace, dtype=np.float64)
        n = len(tasks)
        if trace.ndim != 3 or trace.shape[1:] != (n, n):
            raise ValueError(f"trace must have shape [T, {n}, {n}], got {trace.shape}")
        if not np.isfinite(trace).all():
            raise ValueError("trace has NaN or infinite entries")
        steps = list(range(len(trace))) if trace_steps is None else [int(s) for s in trace_steps]
        lr = [] if trace_lr is None else [float(v) for v in trace_lr]
        if len(steps) != len(trace) or (lr and len(lr) != len(trace)):
            raise ValueError("trace, trace_steps and trace_lr need one entry per measured step")
        self.trace, self.trace_steps, self.trace_lr = trace, steps, lr

    def __len__(self) -> int:
        return len(self.tasks)

    def __repr__(self) -> str:
        measured = f", {len(self.trace_steps)} measured steps" if self.trace is not None else ""
        return f"AffinityMatrix(tasks={self.tasks}{measured})"

    def value(self, source: str, target: str) -> float:
        """``Z[source, target]``."""
        return float(self.values[self._index(source), self._index(target)])

    def _index(self, task: str) -> int:
        try:
            return self.tasks.index(task)
        except ValueError:
            raise ValueError(f"unknown task {task!r}; tasks are {', '.join(self.tasks)}") from None

    def select(self, tasks: Sequence[str]) -> AffinityMatrix:
        """The sub-matrix of ``tasks`` (in that order), traces included."""
        idx = [self._index(t) for t in tasks]
        trace = None if self.trace is None else self.trace[:, idx][:, :, idx]
        return AffinityMatrix(
            self.values[np.ix_(idx, idx)],
            tasks,
            trace=trace,
            trace_steps=self.trace_steps or None,
            trace_lr=self.trace_lr or None,
            **self.metadata,
        )

    def relative(self) -> AffinityMatrix:
        """Each source's row divided by its self-improvement: ``R[i, j] = Z[i, j] / Z[i, i]``,
        the fraction of task i's own loss decrease that its step brings to task j.

        It removes the size of the source's step from the signal, so a task whose gradients or
        loss are large (an MSE task next to classification tasks) no longer dominates every
        column of the TAG objective. The diagonal becomes 1 (the objective ignores it); the
        per-step trace is not carried over. ``ValueError`` naming the task when a source's
        own step does not lower its loss on average (``Z[i, i] <= 0``).
        """
        diagonal = np.diag(self.values)
        bad = [t for t, d in zip(self.tasks, diagonal, strict=True) if not d > 0]
        if bad:
            raise ValueError(
                f"the relative affinity needs every task's step to lower its own loss; "
                f"Z[i, i] <= 0 for {', '.join(bad)}"
            )
        return AffinityMatrix(
            self.values / diagonal[:, None], self.tasks, **self.metadata, normalized="source"
        )

    def pairs(self) -> list[tuple[str, str, float]]:
        """All off-diagonal ``(source, target, value)``, strongest help first."""
        n = len(self.tasks)
        out = [
            (self.tasks[i], self.tasks[j], float(self.values[i, j]))
            for i in range(n)
            for j in range(n)
            if i != j
        ]
        return sorted(out, key=lambda p: -p[2])

    def to_networkx(self) -> nx.DiGraph:
        """Directed graph: a node per task (attribute ``self_affinity``), an edge ``i → j`` with
        attribute ``weight = Z[i, j]`` for every ordered pair of distinct tasks."""
        graph = nx.DiGraph()
        for i, task in enumerate(self.tasks):
            graph.add_node(task, self_affinity=float(self.values[i, i]))
        graph.add_weighted_edges_from(self.pairs())
        return graph

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "format": FORMAT,
            "version": VERSION,
            "convention": "values[i][j]: effect of source task i's update on target task j's "
            "loss, 1 - L_j(after step of i) / L_j(before); positive = helps",
            "tasks": self.tasks,
            "values": self.values.tolist(),
            "metadata": self.metadata,
        }
        if self.trace is not None:
            out["trace"] = {
                "steps": self.trace_steps,
                "lr": self.trace_lr,
                "values": self.trace.tolist(),
            }
        return out

    def save(self, path: str | os.PathLike) -> None:
        """Write JSON to ``path`` atomically."""
        write_json(path, self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "affinity data") -> AffinityMatrix:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise ValueError(f"{source}: not a taskgroup affinity file (format != {FORMAT!r})")
        if data.get("version") != VERSION:
            raise ValueError(f"{source}: unsupported version {data.get('version')!r}")
        check_json(data, AFFINITY_SCHEMA, source)
        trace = data.get("trace") or {}
        metadata = data.get("metadata", {})
        if not isinstance(metadata, Mapping) or not isinstance(trace, Mapping):
            raise ValueError(f"{source}: 'metadata' and 'trace' must be objects")
        try:
            return cls(
                data["values"],
                data["tasks"],
                trace=trace.get("values"),
                trace_steps=trace.get("steps"),
                trace_lr=trace.get("lr"),
                **metadata,
            )
        except (TypeError, ValueError) as e:
            raise ValueError(f"{source}: {e}") from None

    @classmethod
    def load(cls, path: str | os.PathLike) -> AffinityMatrix:
        """Read a file written by :meth:`save`; ``ValueError`` naming the file if malformed."""
        return cls.from_dict(read_json(path), source=str(path))
