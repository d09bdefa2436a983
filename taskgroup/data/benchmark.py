"""The :class:`Benchmark` type: data splits, tasks, a model factory and training defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from taskgroup.data.user import DatasetRows, check_dataset_splits, check_tensor_splits
from taskgroup.tasks import Task, TaskSet

Batch = tuple[Any, dict[str, torch.Tensor]]


@runtime_checkable
class DataSplit(Protocol):
    """What training and evaluation need from a split; :class:`Split` holds tensors in memory,
    :class:`StreamingSplit` reads rows on demand (files, a torch Dataset).

    ``inputs`` of a batch is whatever the benchmark's model takes (a tensor, or e.g. a graph
    batch); ``targets`` maps every task name to a tensor whose first dimension is the batch.
    """

    def __len__(self) -> int: ...

    def select(self, names: list[str]) -> DataSplit: ...

    def batches(self, batch_size: int, *, seed: int, start: int = 0) -> Iterator[Batch]: ...

    def chunks(self, batch_size: int) -> Iterator[Batch]: ...


def resolve_device(device: torch.device | str | None) -> torch.device:
    """``device`` checked (``ValueError`` when malformed or absent here); ``None`` picks CUDA
    when available (the local rank's GPU under torchrun), else the CPU."""
    if device is None:
        if torch.cuda.is_available():
            import os

            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        return torch.device("cpu")
    try:
        device = torch.device(device)
    except (RuntimeError, TypeError):
        raise ValueError(f"device {device!r} is not a torch device (cpu, cuda, cuda:N)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r}: CUDA is not available on this machine")
    return device


def to_device(batch: Batch, device: torch.device | str | None) -> Batch:
    """``batch`` with its inputs (anything with ``.to``) and targets on ``device``."""
    if device is None:
        return batch
    inputs, targets = batch
    inputs = inputs.to(device) if hasattr(inputs, "to") else inputs
    return inputs, {k: v.to(device) for k, v in targets.items()}


def epoch_orders(n: int, seed: int, start_epoch: int = 0) -> Iterator[torch.Tensor]:
    """The shuffled row orders ``[n]`` of epochs ``start_epoch, start_epoch + 1, ...`` drawn
    from ``seed``; epoch ``e``'s order does not depend on ``start_epoch`` (resume-exact)."""
    generator = torch.Generator().manual_seed(seed)
    epoch = 0
    while True:
        order = torch.randperm(n, generator=generator)
        if epoch >= start_epoch:
            yield order
        epoch += 1


@dataclass(frozen=True)
class Split:
    """One data split: ``inputs`` ``[N, ...]`` and ``targets[name]`` ``[N, ...]`` per task."""

    inputs: torch.Tensor
    targets: Mapping[str, torch.Tensor]

    def __post_init__(self) -> None:
        n = len(self.inputs)
        for name, t in self.targets.items():
            if len(t) != n:
                raise ValueError(f"target {name!r} has {len(t)} rows, inputs have {n}")

    def __len__(self) -> int:
        return len(self.inputs)

    def select(self, names: list[str]) -> Split:
        return Split(self.inputs, {n: self.targets[n] for n in names})

    def batches(self, batch_size: int, *, seed: int, start: int = 0) -> Iterator[Batch]:
        """Endless mini-batches, reshuffled every epoch from ``seed``; each has ``batch_size`` rows
        (the last partial batch of an epoch is dropped unless the split is smaller than a batch).
        ``start`` skips the first ``start`` batches of the stream without drawing them, so a
        resumed run sees exactly the batches an uninterrupted one would."""
        for order in batch_orders(len(self), batch_size, seed=seed, start=start):
            yield self._rows(order)

    def chunks(self, batch_size: int) -> Iterator[Batch]:
        """One pass over the split in order, in batches of at most ``batch_size`` rows."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for begin in range(0, len(self), batch_size):
            yield self._rows(slice(begin, begin + batch_size))

    def full(self) -> Batch:
        """The whole split as one batch."""
        return self.inputs, dict(self.targets)

    def _rows(self, index) -> Batch:
        return self.inputs[index], {k: v[index] for k, v in self.targets.items()}


def batch_orders(n: int, batch_size: int, *, seed: int, start: int = 0) -> Iterator[torch.Tensor]:
    """The row indices of the endless shuffled batch stream of a split of ``n`` rows (see
    :meth:`Split.batches`), from batch number ``start`` on; for file-backed splits to share."""
    if n == 0:
        raise ValueError("cannot draw batches from an empty split")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if start < 0:
        raise ValueError(f"start must be >= 0, got {start}")
    size = min(batch_size, n)
    per_epoch = n // size
    epoch, skip = divmod(start, per_epoch)
    for order in epoch_orders(n, seed, epoch):
        for begin in range(skip * size, per_epoch * size, size):
            yield order[begin : begin + size]
        skip = 0


# read(rows, names) -> (inputs [B, ...], {name: target [B, ...]} for at least every name in names)
RowReader = Callable[[np.ndarray, tuple[str, ...]], Batch]


@dataclass(frozen=True)
class StreamingSplit:
    """A split of ``size`` rows read on demand, never held whole: ``read(rows, names)`` assembles
    the batch of ``rows`` (an int64 array ``[B]`` of row numbers in ``[0, size)``) with targets
    for at least the tasks ``names``; targets are restricted to ``names``, in that order. The
    file-backed benchmarks read images and arrays this way, :meth:`Benchmark.from_datasets` a
    torch Dataset (:class:`~taskgroup.data.user.DatasetRows`).

    Batches are drawn in :func:`batch_orders`' order, so the split shuffles and resumes exactly
    like an in-memory :class:`Split` of the same rows. Rows are read in the calling process,
    one batch at a time; ``read`` must pickle for the benchmark to reach other processes.
    """

    read: RowReader
    size: int
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")

    def __len__(self) -> int:
        return self.size

    def select(self, names: Sequence[str]) -> StreamingSplit:
        unknown = [n for n in names if n not in self.names]
        if unknown:
            raise ValueError(f"unknown task(s) {unknown}; this split has {list(self.names)}")
        return replace(self, names=tuple(names))

    def batches(self, batch_size: int, *, seed: int, start: int = 0) -> Iterator[Batch]:
        """Endless shuffled mini-batches, exactly as :meth:`Split.batches` draws them."""
        for order in batch_orders(self.size, batch_size, seed=seed, start=start):
            yield self.rows(order.numpy())

    def chunks(self, batch_size: int) -> Iterator[Batch]:
        """One pass over the split in order, in batches of at most ``batch_size`` rows."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        for begin in range(0, self.size, batch_size):
            yield self.rows(np.arange(begin, min(begin + batch_size, self.size)))

    def rows(self, index) -> Batch:
        """The batch of rows ``index`` (array-like of row numbers)."""
        inputs, targets = self.read(np.asarray(index, dtype=np.int64), self.names)
        return inputs, {name: targets[name] for name in self.names}


def target_names(split: DataSplit) -> list[str] | None:
    """The task names ``split`` holds targets for, where it says: the keys of its ``targets``
    mapping (:class:`Split`) or its ``names`` (a file-backed split); ``None`` otherwise."""
    targets = getattr(split, "targets", None)
    if isinstance(targets, Mapping):
        return list(targets)
    names = getattr(split, "names", None)
    if isinstance(names, (list, tuple)) and all(isinstance(n, str) for n in names):
        return list(names)
    return None


@dataclass(frozen=True)
class TrainingDefaults:
    """How a benchmark is trained unless a recipe says otherwise."""

    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    steps: int = 1000
    every: int = 10


OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "sgd": torch.optim.SGD,
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
}


def make_optimizer(
    params, name: str, lr: float, weight_decay: float = 0.0, momentum: float = 0.9
) -> torch.optim.Optimizer:
    """An optimizer by name (``sgd`` with momentum, ``adam``, ``adamw``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    extra = {"momentum": momentum} if name == "sgd" else {}
    return OPTIMIZERS[name](params, lr=lr, weight_decay=weight_decay, **extra)


@dataclass(frozen=True)
class Benchmark:
    """Data, tasks and model family of one multi-task problem.

    Args:
        name: registry name.
        tasks: all tasks, in canonical order.
        train, val, test: data splits; targets hold every task of ``tasks``.
        model_factory: ``model_factory(tasks) -> nn.Module`` returning a fresh multi-task model
            with one output per task of ``tasks`` (parameters drawn from torch's global RNG).
        defaults: training defaults (optimizer, lr, batch size, steps, affinity ``every``).
        info: free-form description kept in manifests (sizes, seed, generation options).
    """

    name: str
    tasks: TaskSet
    train: DataSplit
    val: DataSplit
    test: DataSplit
    model_factory: Callable[[TaskSet], nn.Module]
    defaults: TrainingDefaults = field(default_factory=TrainingDefaults)
    info: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for split in ("train", "val", "test"):
            held = target_names(getattr(self, split))
            missing = [] if held is None else [n for n in self.tasks.names if n not in held]
            if missing:
                raise ValueError(
                    f"benchmark {self.name!r}: the {split} split has no target for task(s) "
                    f"{missing}; its targets are {sorted(held)}"
                )

    def select(self, names: list[str] | None) -> Benchmark:
        """The same benchmark restricted to the tasks ``names`` (in that order)."""
        if names is None:
            return self
        tasks = self.tasks.select(names)
        return replace(
            self,
            tasks=tasks,
            train=self.train.select(tasks.names),
            val=self.val.select(tasks.names),
            test=self.test.select(tasks.names),
        )

    def make_model(self, *, seed: int | None = None) -> nn.Module:
        """A fresh model for this benchmark's tasks; ``seed`` fixes its initialisation without
        touching the caller's RNG stream."""
        if seed is None:
            return self.model_factory(self.tasks)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.model_factory(self.tasks)

    @classmethod
    def from_tensors(
        cls,
        *,
        train: tuple[Any, Mapping[str, Any]],
        val: tuple[Any, Mapping[str, Any]],
        test: tuple[Any, Mapping[str, Any]],
        tasks: TaskSet | Sequence[Task],
        model_factory: Callable[[TaskSet], nn.Module],
        defaults: TrainingDefaults | None = None,
        name: str = "user",
        info: Mapping[str, object] | None = None,
    ) -> Benchmark:
        """A benchmark of data held in memory::

            bench = Benchmark.from_tensors(
                train=(X_train, {"age": age_train, "gender": gender_train}),
                val=(X_val, {"age": age_val, "gender": gender_val}),
                test=(X_test, {"age": age_test, "gender": gender_test}),
                tasks=[age_task, gender_task],
                model_factory=make_model,
            )

        Args:
            train, val, test: ``(inputs [N, ...], {task name: targets [N, ...]})`` per split:
                tensors (or NumPy arrays / lists, made tensors), a target for every task and no
                other, ``N`` ≥ 1 rows shared by the inputs and every target of the split (``N``
                may differ between splits, the per-row shapes and dtypes may not). Kept as
                given, not copied.
            tasks: the tasks (a :class:`TaskSet` or a list of :class:`Task`), in canonical order.
            model_factory: ``model_factory(tasks) -> nn.Module``, a fresh model whose forward
                maps inputs ``[B, ...]`` to ``{task name: prediction [B, ...]}``.
            defaults: how it trains unless told otherwise (default: :class:`TrainingDefaults`).
            name: the benchmark's name in manifests and reports.
            info: free-form description kept in manifests (added to the sizes recorded here).

        Raises ``TypeError``/``ValueError`` naming the split, the task and what was expected
        when the data and tasks do not fit (see :mod:`taskgroup.data.user`): a task without
        targets or targets without a task, row counts that differ, an empty split, a target
        dtype that does not fit its task (class indices for ``"classification"``, floating
        point for ``"binary"``), inputs or targets whose per-row shape or dtype differs between
        splits, or a model (built once, on a forked RNG) that fails on train's first two rows
        or whose loss for a task does not fit its targets.
        """
        tasks = user_tasks(tasks, model_factory)
        checked = check_tensor_splits(
            {"train": train, "val": val, "test": test}, tasks, model_factory
        )
        splits = {split: Split(*pair) for split, pair in checked.items()}
        shape = list(checked["train"][0].shape[1:])
        return cls(
            name=name,
            tasks=tasks,
            model_factory=model_factory,
            defaults=TrainingDefaults() if defaults is None else defaults,
            info=user_info("tensors", splits, shape, info),
            **splits,
        )

    @classmethod
    def from_datasets(
        cls,
        *,
        train: Any,
        val: Any,
        test: Any,
        tasks: TaskSet | Sequence[Task],
        model_factory: Callable[[TaskSet], nn.Module],
        defaults: TrainingDefaults | None = None,
        name: str = "user",
        info: Mapping[str, object] | None = None,
    ) -> Benchmark:
        """A benchmark streamed from map-style ``torch.utils.data.Dataset`` s, never read whole::

            bench = Benchmark.from_datasets(
                train=train_ds, val=val_ds, test=test_ds,
                tasks=[age_task, gender_task], model_factory=make_model,
            )

        Each item ``dataset[i]`` is ``(input, {task name: target})``: ``input`` a tensor
        ``[...]`` (or anything ``default_collate`` batches), each ``target`` a tensor ``[...]``
        (0-d for one value per row), a NumPy array or a Python number. Training draws batches
        in the same shuffled, resumable order as an in-memory :class:`Split` of the same rows
        (so both give the same results), evaluation reads each split once in order; each batch
        is read when it is needed (:class:`StreamingSplit` with a
        :class:`~taskgroup.data.user.DatasetRows` reader). A dataset that defines torch's
        batched ``__getitems__(indices)`` is asked once per batch; it may return a list of items
        or the collated batch ``(inputs [B, ...], {task: targets [B, ...]})`` itself, which is
        much cheaper than one ``__getitem__`` per row.

        Args:
            train, val, test: the Datasets (``__len__`` and ``__getitem__``; an
                ``IterableDataset`` cannot be drawn in a shuffled order and is refused).
            tasks, model_factory, defaults, name, info: as in :meth:`from_tensors`.

        Checks as :meth:`from_tensors` does, on **the first item of each split** (and train's
        first two rows for the model): a later item that differs is not caught here.
        """
        tasks = user_tasks(tasks, model_factory)
        datasets = {"train": train, "val": val, "test": test}
        first_input = check_dataset_splits(datasets, tasks, model_factory)["train"][0]
        splits = {
            split: StreamingSplit(DatasetRows(ds), len(ds), tuple(tasks.names))
            for split, ds in datasets.items()
        }
        shape = list(first_input.shape[1:]) if isinstance(first_input, torch.Tensor) else None
        return cls(
            name=name,
            tasks=tasks,
            model_factory=model_factory,
            defaults=TrainingDefaults() if defaults is None else defaults,
            info=user_info("datasets", splits, shape, info),
            **splits,
        )


def user_tasks(tasks: TaskSet | Sequence[Task], model_factory: object) -> TaskSet:
    """``tasks`` as a :class:`TaskSet`; ``TypeError`` when an element is not a :class:`Task` or
    ``model_factory`` is not callable (the arguments of :meth:`Benchmark.from_tensors`)."""
    if not callable(model_factory):
        raise TypeError(
            f"model_factory must be callable as model_factory(tasks) -> nn.Module, got "
            f"{type(model_factory).__name__}"
        )
    if isinstance(tasks, TaskSet):
        return tasks
    if isinstance(tasks, (str, Mapping)) or not isinstance(tasks, Sequence):
        raise TypeError(f"tasks must be a TaskSet or a list of Task, got {type(tasks).__name__}")
    wrong = [type(t).__name__ for t in tasks if not isinstance(t, Task)]
    if wrong:
        raise TypeError(f"tasks must be Task objects (taskgroup.Task), got {wrong}")
    return TaskSet(tasks)


def user_info(
    source: str, splits: Mapping[str, DataSplit], input_shape: list[int] | None, info
) -> dict[str, object]:
    """The ``info`` of a benchmark built from users' data: where it came from, the split sizes
    and the per-row input shape, then the user's own ``info`` (which wins on a shared key)."""
    if info is not None and not isinstance(info, Mapping):
        raise TypeError(f"info must be a mapping, got {type(info).__name__}")
    return {
        "source": source,
        "sizes": {split: len(data) for split, data in splits.items()},
        "input_shape": input_shape,
        **(info or {}),
    }
