"""Tasks: what a multi-task model predicts, how each prediction is scored and trained.

A :class:`Task` names one output of a multi-task model, the mean-reduced loss that trains it and
the metrics that evaluate it. A :class:`TaskSet` is an ordered collection of tasks; its order is
the row/column order of every affinity matrix built from it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import torch

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class StreamingMetric:
    """A metric that does not decompose into a mean over batches (e.g. mIoU).

    Evaluation calls :meth:`reset`, then :meth:`update` on every batch of the split, then
    :meth:`compute`. Plain metric functions ``fn(prediction, target) -> float`` are instead
    batch means, averaged over the split weighted by batch size. Subclasses must pickle.
    """

    def reset(self) -> None:
        raise NotImplementedError

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        raise NotImplementedError

    def compute(self) -> float:
        raise NotImplementedError


MetricFn = Callable[[torch.Tensor, torch.Tensor], float] | StreamingMetric


@dataclass(frozen=True)
class Task:
    """One task of a multi-task model.

    Args:
        name: the key of this task in the model's output dict and in the targets dict.
        loss: ``loss(prediction, target) -> scalar tensor``, mean-reduced over the batch.
        metrics: ``{metric_name: fn(prediction, target) -> float}`` (a batch mean) or a
            :class:`StreamingMetric`, used for evaluation.
        higher_is_better: ``{metric_name: bool}`` for every metric (needed for Δm).
        kind: a free-form label of the output type ("classification", "binary", "regression").
    """

    name: str
    loss: LossFn
    metrics: Mapping[str, MetricFn] = field(default_factory=dict)
    higher_is_better: Mapping[str, bool] = field(default_factory=dict)
    kind: str = "regression"

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise ValueError(f"task name must be a non-empty string, got {self.name!r}")
        if not callable(self.loss):
            raise TypeError(f"task {self.name!r}: loss must be callable, got {type(self.loss)}")
        missing = set(self.metrics) - set(self.higher_is_better)
        if missing:
            raise ValueError(
                f"task {self.name!r}: higher_is_better is missing metrics {sorted(missing)}"
            )


class TaskSet(Sequence[Task]):
    """An ordered, name-indexed collection of distinct tasks."""

    def __init__(self, tasks: Iterable[Task]):
        self._tasks = tuple(tasks)
        names = [t.name for t in self._tasks]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate task names: {duplicates}")
        if not self._tasks:
            raise ValueError("a TaskSet needs at least one task")
        self._index = {n: i for i, n in enumerate(names)}

    @property
    def names(self) -> list[str]:
        return [t.name for t in self._tasks]

    def __len__(self) -> int:
        return len(self._tasks)

    def __getitem__(self, key):  # type: ignore[override]
        if isinstance(key, str):
            return self._tasks[self.index(key)]
        return self._tasks[key]

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks)

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._index
        return item in self._tasks

    def index(self, name: str) -> int:  # type: ignore[override]
        """Position of the task called ``name``; a clear error when there is none."""
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(
                f"unknown task {name!r}; known tasks: {', '.join(self.names)}"
            ) from None

    def select(self, names: Iterable[str]) -> TaskSet:
        """The sub-set of tasks called ``names``, in the given order."""
        names = list(names)
        unknown = [n for n in names if n not in self._index]
        if unknown:
            raise ValueError(
                f"unknown task(s) {', '.join(map(repr, unknown))}; known tasks: "
                f"{', '.join(self.names)}"
            )
        return TaskSet(self._tasks[self._index[n]] for n in names)

    def losses(self) -> dict[str, LossFn]:
        """``{name: loss_fn}`` in task order, the form :func:`lookahead_affinity` takes."""
        return {t.name: t.loss for t in self._tasks}

    def __repr__(self) -> str:
        return f"TaskSet({self.names})"
