"""Users' own data for :meth:`Benchmark.from_tensors` and :meth:`Benchmark.from_datasets`: the
checks made when such a benchmark is built, and the reader that streams rows of a torch Dataset.

Every mismatch between the data, the tasks and the model is found at construction and named
(split, task, what was expected), not at the first training step:

- each split's targets are exactly the tasks: no task without a target, no target without a task;
- a split has rows, and every target has as many rows as the inputs;
- a ``"classification"`` task's targets are class indices (integers), a ``"binary"`` task's are
  floating point (binary cross-entropy on a logit);
- the inputs and each task's targets have the same per-row shape and dtype in every split;
- a fresh model (``model_factory(tasks)``, its initialisation drawn on a forked RNG) is a
  :class:`~taskgroup.models.MultiTaskModel` (its trunk holds the shared parameters that training
  and the affinity act on), runs on the first two rows of ``train`` and predicts every task, and
  each task's loss on those rows is a floating scalar, computed without broadcasting a target of
  another shape, at the prediction's floating dtype.

A split here is ``(inputs, {task: targets})`` in memory, or a map-style Dataset whose items are
``(input, {task: target})``; a Dataset is checked on its first item (and train's first two rows
for the model), never read whole.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import IterableDataset, default_collate

from taskgroup.models import MultiTaskModel
from taskgroup.tasks import TaskSet

SPLITS = ("train", "val", "test")
PROBE_ROWS = 2

Rows = tuple[Any, dict[str, torch.Tensor]]


def describe(value: object) -> str:
    """``value`` in an error message: ``[2, 10] float32`` for a tensor, else its type."""
    if isinstance(value, torch.Tensor):
        return f"{list(value.shape)} {str(value.dtype).removeprefix('torch.')}"
    return type(value).__name__


def split_pair(what: str, data: object) -> tuple[object, Mapping]:
    """``data`` as ``(inputs, targets mapping)``; ``TypeError`` naming ``what`` (``split 'val'``,
    ``item 0 of split 'val'``) otherwise."""
    if (
        isinstance(data, Sequence)
        and not isinstance(data, str)
        and len(data) == 2
        and isinstance(data[1], Mapping)
    ):
        return data[0], data[1]
    form = "(inputs, {task name: targets})"
    if not what.startswith("split"):
        form = "(input, {task name: target})"
    got = f"a tensor {describe(data)}" if isinstance(data, torch.Tensor) else describe(data)
    raise TypeError(f"{what} must be {form}, got {got}")


def check_names(split: str, names: object, tasks: TaskSet) -> None:
    """``ValueError`` unless the target ``names`` of ``split`` are exactly the tasks'."""
    names = list(names)
    missing = [n for n in tasks.names if n not in names]
    if missing:
        raise ValueError(
            f"split {split!r} has no target for task(s) {missing}; every split needs a target "
            f"for each task of {tasks.names}, and has {names}"
        )
    unknown = [n for n in names if n not in tasks]
    if unknown:
        raise ValueError(
            f"split {split!r} has target(s) {unknown} for no task; the tasks are {tasks.names} "
            "(add a Task for each, or leave these targets out)"
        )


def as_tensor(split: str, what: str, value: object) -> torch.Tensor:
    """``value`` (a tensor, NumPy array or nested list) as a tensor of at least one dimension
    (rows); ``TypeError``/``ValueError`` naming ``split`` and ``what`` otherwise."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as e:
        raise TypeError(
            f"split {split!r}: {what} must be a tensor or array, got {describe(value)} ({e})"
        ) from None
    if tensor.ndim == 0:
        raise ValueError(f"split {split!r}: {what} is a scalar; the first dimension is the rows")
    return tensor


def tensor_split(split: str, data: object, tasks: TaskSet) -> tuple[torch.Tensor, dict]:
    """``data`` = ``(inputs [N, ...], {task: targets [N, ...]})`` of ``split`` checked (names,
    rows, kinds) and returned as tensors, targets in task order (not copied)."""
    raw_inputs, raw_targets = split_pair(f"split {split!r}", data)
    check_names(split, raw_targets, tasks)
    inputs = as_tensor(split, "inputs", raw_inputs)
    targets = {n: as_tensor(split, f"target {n!r}", raw_targets[n]) for n in tasks.names}
    if len(inputs) == 0:
        raise ValueError(f"split {split!r} is empty: its inputs have 0 rows")
    for name, target in targets.items():
        if len(target) != len(inputs):
            raise ValueError(
                f"split {split!r}: target {name!r} has {len(target)} rows, the inputs have "
                f"{len(inputs)}"
            )
    check_kinds(split, targets, tasks)
    return inputs, targets


def check_kinds(split: str, targets: Mapping[str, torch.Tensor], tasks: TaskSet) -> None:
    """``ValueError`` when a ``"classification"`` task's targets ``[N]`` are not integer class
    indices (floating targets ``[N, C]`` are class probabilities and pass), or a ``"binary"``
    task's are not floating point. Other kinds are left to the loss check of :func:`check_model`.
    """
    for task in tasks:
        target = targets[task.name]
        floating = target.is_floating_point() or target.is_complex()
        if task.kind == "classification" and (
            target.dtype == torch.bool or (floating and target.ndim == 1)
        ):
            raise ValueError(
                f"split {split!r}: task {task.name!r} is a classification task, so its targets "
                f"are class indices of an integer dtype (e.g. torch.int64); got {describe(target)}"
            )
        if task.kind == "binary" and not target.is_floating_point():
            raise ValueError(
                f"split {split!r}: task {task.name!r} is a binary task (binary cross-entropy on "
                f"a logit), so its targets are 0/1 of a floating dtype (e.g. torch.float32); "
                f"got {describe(target)}"
            )


def check_agreement(rows: Mapping[str, Rows]) -> None:
    """``ValueError`` unless the inputs and every target have the same per-row shape and dtype
    in every split of ``rows`` (``{split: (inputs, targets)}``, compared with the first)."""
    first, *others = rows
    expected = row_spec(*rows[first])
    for split in others:
        for what, spec in row_spec(*rows[split]).items():
            if spec != expected[what]:
                raise ValueError(
                    f"split {split!r}: {what} has rows of shape {list(spec[0])} and dtype "
                    f"{spec[1]}, but {first!r} has {list(expected[what][0])} and "
                    f"{expected[what][1]}; a split's rows must look alike in every split"
                )


def row_spec(inputs: object, targets: Mapping[str, torch.Tensor]) -> dict[str, tuple]:
    """``{"inputs" | "target 'name'": (shape of one row, dtype)}`` (inputs: tensors only)."""
    spec = {f"target {n!r}": (tuple(t.shape[1:]), t.dtype) for n, t in targets.items()}
    if isinstance(inputs, torch.Tensor):
        spec["inputs"] = (tuple(inputs.shape[1:]), inputs.dtype)
    return spec


def check_model(
    model_factory: Callable[[TaskSet], nn.Module], tasks: TaskSet, inputs: object, targets: dict
) -> None:
    """``TypeError``/``ValueError`` unless a fresh model predicts every task on ``inputs`` (a few
    rows of train) and each task's loss fits its ``targets`` (see the module doc). The caller's
    RNG stream is left as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = model_factory(tasks)
    if not isinstance(model, MultiTaskModel):
        raise TypeError(
            f"model_factory(tasks) must return a taskgroup.MultiTaskModel(trunk, heads), got "
            f"{describe(model)}: training and the affinity take the trunk's parameters as the "
            "shared ones"
        )
    device = next((p.device for p in model.parameters()), None)
    if device is not None and hasattr(inputs, "to"):
        inputs = inputs.to(device)
        targets = {n: t.to(device) for n, t in targets.items()}
    model.eval()
    with torch.no_grad():
        try:
            outputs = model(inputs)
        except (RuntimeError, ValueError, TypeError, IndexError, KeyError) as e:
            raise ValueError(
                f"the model of model_factory fails on the first rows of 'train' (inputs "
                f"{describe(inputs)}): {type(e).__name__}: {e}"
            ) from e
        if not isinstance(outputs, Mapping):
            raise TypeError(
                f"the model of model_factory must return {{task name: prediction}}, got "
                f"{describe(outputs)}"
            )
        missing = [n for n in tasks.names if n not in outputs]
        if missing:
            raise ValueError(
                f"the model of model_factory predicts no task(s) {missing}; it returns "
                f"{list(outputs)}"
            )
        for task in tasks:
            check_loss(task.name, task.loss, outputs[task.name], targets[task.name])


def check_loss(name: str, loss_fn: Callable, prediction: object, target: torch.Tensor) -> None:
    """``ValueError`` unless ``loss_fn(prediction, target)`` is a floating scalar computed without
    a broadcast target, and a floating ``target`` has the prediction's dtype."""
    where = f"task {name!r}: prediction {describe(prediction)} and target {describe(target)}"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            loss = loss_fn(prediction, target)
        except (RuntimeError, ValueError, TypeError, IndexError) as e:
            raise ValueError(
                f"{where} (first rows of 'train') do not fit the task's loss: {e}"
            ) from e
    broadcast = [str(w.message) for w in caught if "target size" in str(w.message)]
    if broadcast:
        raise ValueError(
            f"{where} differ in shape, so the loss broadcasts them ({broadcast[0]}); give "
            "targets of the prediction's shape"
        )
    if not (isinstance(loss, torch.Tensor) and loss.ndim == 0 and loss.is_floating_point()):
        raise ValueError(f"{where}: the loss must be a mean-reduced scalar, got {describe(loss)}")
    if (
        isinstance(prediction, torch.Tensor)
        and target.is_floating_point()
        and target.dtype != prediction.dtype
    ):
        raise ValueError(
            f"{where}: floating targets must have the prediction's dtype "
            f"({str(prediction.dtype).removeprefix('torch.')}), or the loss is computed in "
            f"{str(loss.dtype).removeprefix('torch.')}"
        )


def check_tensor_splits(
    splits: Mapping[str, object], tasks: TaskSet, model_factory: Callable
) -> dict[str, tuple[torch.Tensor, dict]]:
    """Every split of ``splits`` (``{split: (inputs, targets)}``) checked alone, against the
    others and against a fresh model; returns ``{split: (inputs, targets)}`` as tensors."""
    checked = {split: tensor_split(split, data, tasks) for split, data in splits.items()}
    check_agreement(checked)
    inputs, targets = checked[SPLITS[0]]
    check_model(
        model_factory, tasks, inputs[:PROBE_ROWS], {n: t[:PROBE_ROWS] for n, t in targets.items()}
    )
    return checked


def check_dataset(split: str, dataset: object, tasks: TaskSet) -> Rows:
    """``dataset`` checked for ``split`` on its first item (map-style, non-empty, items
    ``(input, {task: target})`` with a target for exactly the tasks); returns that item read
    through :class:`DatasetRows` as a batch of one row."""
    if isinstance(dataset, IterableDataset) or not (
        hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")
    ):
        raise TypeError(
            f"split {split!r} must be a map-style Dataset (__len__ and __getitem__, so rows can "
            f"be drawn in a shuffled order), got {describe(dataset)}"
        )
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} is an empty Dataset")
    _, first_targets = split_pair(f"item 0 of split {split!r}", dataset[0])
    check_names(split, first_targets, tasks)
    try:
        inputs, targets = DatasetRows(dataset)(np.zeros(1, dtype=np.int64), tuple(tasks.names))
    except ValueError as e:
        raise ValueError(f"split {split!r}: {e}") from None
    check_kinds(split, targets, tasks)
    return inputs, targets


def check_dataset_splits(
    datasets: Mapping[str, object], tasks: TaskSet, model_factory: Callable
) -> dict[str, Rows]:
    """Every Dataset of ``datasets`` (``{split: dataset}``) checked on its first item, against
    the others and against a fresh model on the first rows of train; returns ``{split: its
    first row as a batch}``."""
    first = {split: check_dataset(split, ds, tasks) for split, ds in datasets.items()}
    check_agreement(first)
    train = datasets[SPLITS[0]]
    rows = np.arange(min(PROBE_ROWS, len(train)), dtype=np.int64)
    check_model(model_factory, tasks, *DatasetRows(train)(rows, tuple(tasks.names)))
    return first


def stack_values(values: Sequence) -> torch.Tensor:
    """One row per value, as a tensor ``[len(values), ...]``: tensors are stacked, NumPy arrays
    stacked then wrapped, Python numbers made a tensor (torch's default dtypes)."""
    first = values[0]
    if isinstance(first, torch.Tensor):
        return torch.stack(values)
    if isinstance(first, np.ndarray):
        return torch.from_numpy(np.stack(values))
    return torch.as_tensor(values)


class DatasetRows:
    """Reads rows of a map-style Dataset whose items are ``(input, {task: target})``: a row
    reader of :class:`~taskgroup.data.benchmark.StreamingSplit`.

    ``reader(rows, names)`` with ``rows`` an int64 array ``[B]`` returns ``(inputs [B, ...],
    {name: targets [B, ...]})`` for the tasks ``names``. It asks the dataset once per batch when
    it defines torch's batched ``__getitems__(indices)`` (returning a list of items, or the
    batch ``(inputs, {task: targets})`` already collated), else item by item. Items are collated
    once per batch: tensor inputs stacked (others through ``default_collate``), each selected
    task's targets stacked; targets of other tasks are never collated.
    """

    def __init__(self, dataset):
        self.dataset = dataset

    def __call__(self, rows: np.ndarray, names: tuple[str, ...]) -> Rows:
        index = rows.tolist()
        getitems = getattr(self.dataset, "__getitems__", None)
        items = getitems(index) if getitems is not None else [self.dataset[i] for i in index]
        if isinstance(items, tuple):
            inputs, targets = items
            missing = [n for n in names if n not in targets]
            if missing:
                raise ValueError(
                    f"the batch that {type(self.dataset).__name__}.__getitems__ returns has no "
                    f"target for task(s) {missing}; it has {list(targets)}"
                )
            return inputs, {n: targets[n] for n in names}
        inputs, targets = zip(*items, strict=True)
        if isinstance(inputs[0], torch.Tensor):
            inputs = torch.stack(inputs)
        else:
            inputs = default_collate(list(inputs))
        return inputs, {n: stack_values([t[n] for t in targets]) for n in names}
