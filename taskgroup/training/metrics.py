"""Evaluation of a multi-task model on a split, and Δm, the multi-task gain over a baseline.

Δm = (100 / K) Σ_k (−1)^{s_k} (M_k − B_k) / B_k over all K metrics, s_k = 1 when higher is
better and B the single-task baseline: the mean relative change, in percent, signed so that
**lower is better** (the Nash-MTL convention; Δm = −5 means 5% better than training alone).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from taskgroup.affinity.lookahead import task_loss_list
from taskgroup.data.benchmark import DataSplit, to_device
from taskgroup.tasks import StreamingMetric, TaskSet

LOSS = "loss"
Metrics = Mapping[str, Mapping[str, float]]  # task -> metric -> value


def evaluate(
    model: nn.Module, split: DataSplit, tasks: TaskSet, *, batch_size: int = 1024
) -> dict[str, dict[str, float]]:
    """Every task's mean loss (key ``"loss"``) and metrics over ``split``, in eval mode.

    Batch-mean metrics are averaged weighted by batch rows; :class:`StreamingMetric` metrics are
    accumulated over the batches, on the model's device. The model's train/eval mode is
    restored afterwards.

    Returns ``{task_name: {"loss": float, metric_name: float, ...}}`` in task order.
    """
    if len(split) == 0:
        raise ValueError("cannot evaluate on an empty split")
    losses = tasks.losses()
    streaming = {
        (t.name, m): copy.deepcopy(fn)
        for t in tasks
        for m, fn in t.metrics.items()
        if isinstance(fn, StreamingMetric)
    }
    for metric in streaming.values():
        metric.reset()
    sums = {t.name: dict.fromkeys([LOSS, *t.metrics], 0.0) for t in tasks}
    rows = 0
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            device = next(model.parameters()).device
            for batch in split.chunks(batch_size):
                inputs, targets = to_device(batch, device)
                outputs = model(inputs)
                size = len(targets[tasks[0].name])
                rows += size
                for task, loss in zip(tasks, task_loss_list(outputs, targets, losses), strict=True):
                    prediction, target = outputs[task.name], targets[task.name]
                    sums[task.name][LOSS] += float(loss) * size
                    for name, fn in task.metrics.items():
                        if isinstance(fn, StreamingMetric):
                            streaming[task.name, name].update(prediction, target)
                        else:
                            sums[task.name][name] += float(fn(prediction, target)) * size
    finally:
        model.train(was_training)
    result = {}
    for task in tasks:
        values = {LOSS: sums[task.name][LOSS] / rows}
        for name in task.metrics:
            key = (task.name, name)
            values[name] = (
                streaming[key].compute() if key in streaming else sums[task.name][name] / rows
            )
        result[task.name] = values
    return result


def higher_is_better(tasks: TaskSet) -> dict[str, dict[str, bool]]:
    """``{task: {metric: higher_is_better}}`` including the loss (lower is better)."""
    return {t.name: {LOSS: False, **t.higher_is_better} for t in tasks}


def delta_m(
    metrics: Metrics,
    baseline: Metrics,
    directions: Mapping[str, Mapping[str, bool]],
    *,
    only: Iterable[str] | None = None,
) -> float:
    """Δm in percent of ``metrics`` against ``baseline`` (lower is better, see module doc).

    Args:
        metrics, baseline: ``{task: {metric: value}}``; every task of ``metrics`` must be in
            ``baseline`` with the same metrics.
        directions: ``{task: {metric: higher_is_better}}`` (see :func:`higher_is_better`).
        only: the metric names to include (e.g. ``["loss"]``); default every metric but the loss.

    Raises ``ValueError`` naming the task and metric when a baseline is 0 or a value is missing
    or not finite.
    """
    chosen = None if only is None else set(only)
    terms = []
    for task, values in metrics.items():
        if task not in baseline:
            raise ValueError(f"the baseline has no task {task!r}")
        for name, value in values.items():
            if (name == LOSS) if chosen is None else (name not in chosen):
                continue
            if name not in baseline[task]:
                raise ValueError(f"the baseline of task {task!r} has no metric {name!r}")
            base = baseline[task][name]
            if not (math.isfinite(value) and math.isfinite(base)):
                raise ValueError(f"{task}/{name}: values must be finite, got {value} vs {base}")
            if base == 0:
                raise ValueError(
                    f"{task}/{name}: the baseline is 0, so the relative change is undefined"
                )
            sign = -1.0 if directions[task][name] else 1.0
            terms.append(sign * (value - base) / abs(base))
    if not terms:
        raise ValueError(f"no metric to compare (only={sorted(chosen) if chosen else None})")
    return 100.0 * sum(terms) / len(terms)
