"""Output kinds shared by the benchmarks: the loss, metric, target dtype and head of each kind.

A task's ``kind`` decides everything about its output:

- ``"classification"``: prediction ``[N, classes]`` logits, target int64 ``[N]``, cross-entropy,
  metric ``accuracy`` (argmax).
- ``"binary"``: prediction ``[N]`` (one logit, squeezed), target float32 ``[N]`` in {0, 1},
  binary cross-entropy with logits, metric ``accuracy`` (logit > 0).
- ``"regression"``: prediction ``[N]`` (squeezed), target float32 ``[N]``, mean squared error,
  metric ``mae``.

Losses and metrics are module-level functions, so tasks and models pickle.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from taskgroup.tasks import LossFn, MetricFn, Task, TaskSet


def accuracy(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of rows whose argmax over ``prediction [N, C]`` equals ``target [N]``."""
    return float((prediction.detach().argmax(dim=-1) == target).float().mean())


def binary_accuracy(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Fraction of rows where ``prediction [N] > 0`` (logits) agrees with ``target [N]`` (0/1)."""
    return float(((prediction.detach() > 0).to(target.dtype) == target).float().mean())


def mean_absolute_error(prediction: torch.Tensor, target: torch.Tensor) -> float:
    """Mean of ``|prediction - target|`` over ``[N]``."""
    return float((prediction.detach() - target).abs().mean())


@dataclass(frozen=True)
class OutputKind:
    """How tasks of one kind are trained and scored."""

    loss: LossFn
    metric: str
    metric_fn: MetricFn
    higher_is_better: bool
    dtype: torch.dtype


KINDS: dict[str, OutputKind] = {
    "classification": OutputKind(F.cross_entropy, "accuracy", accuracy, True, torch.int64),
    "binary": OutputKind(
        F.binary_cross_entropy_with_logits, "accuracy", binary_accuracy, True, torch.float32
    ),
    "regression": OutputKind(F.mse_loss, "mae", mean_absolute_error, False, torch.float32),
}


def _kind(kind: str) -> OutputKind:
    if kind not in KINDS:
        raise ValueError(f"unknown task kind {kind!r}; choose one of {', '.join(KINDS)}")
    return KINDS[kind]


def make_task(name: str, kind: str) -> Task:
    """A :class:`Task` called ``name`` with the loss and metric of ``kind`` (see :data:`KINDS`)."""
    spec = _kind(kind)
    return Task(
        name=name,
        loss=spec.loss,
        metrics={spec.metric: spec.metric_fn},
        higher_is_better={spec.metric: spec.higher_is_better},
        kind=kind,
    )


def make_target(values, kind: str) -> torch.Tensor:
    """``values`` (array-like ``[N]``) as a target tensor of ``kind``'s dtype."""
    return torch.as_tensor(values, dtype=_kind(kind).dtype)


class LinearHead(nn.Linear):
    """A linear head ``[N, in_features] -> [N, out_features]``, squeezed to ``[N]`` when
    ``out_features == 1``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = super().forward(x)
        return y.squeeze(-1) if self.out_features == 1 else y


def make_heads(
    tasks: TaskSet, in_features: int, *, classes: int | None = None
) -> dict[str, LinearHead]:
    """One :class:`LinearHead` per task of ``tasks`` (in order) on features ``[N, in_features]``:
    ``classes`` outputs for a classification task, one (squeezed) otherwise."""
    heads = {}
    for task in tasks:
        _kind(task.kind)
        if task.kind == "classification":
            if classes is None:
                raise ValueError(f"task {task.name!r} is a classification task: pass classes=")
            heads[task.name] = LinearHead(in_features, classes)
        else:
            heads[task.name] = LinearHead(in_features, 1)
    return heads
