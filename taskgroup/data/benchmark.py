"""The :class:`Benchmark` type: data splits, tasks, a model factory and training defaults."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from taskgroup.tasks import TaskSet

Batch = tuple[Any, dict[str, torch.Tensor]]


@runtime_checkable
class DataSplit(Protocol):
    """What training and evaluation need from a split; :class:`Split` holds tensors in memory,
    file-backed benchmarks provide their own type with the same methods.

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
