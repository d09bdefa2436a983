"""A data split whose rows are read from files on demand (for datasets too large for memory).

:class:`FileSplit` satisfies :class:`~taskgroup.data.benchmark.DataSplit`: it holds only a row
count, the selected task names and a picklable ``read`` function that assembles a batch from row
indices. Its batch stream is :func:`~taskgroup.data.benchmark.batch_orders`', so it shuffles and
resumes exactly like an in-memory :class:`~taskgroup.data.benchmark.Split`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from taskgroup.data.benchmark import Batch, batch_orders

# read(rows, names) -> (inputs [B, ...], {name: target [B, ...]} for at least every name in names)
RowReader = Callable[[np.ndarray, tuple[str, ...]], Batch]


@dataclass(frozen=True)
class FileSplit:
    """``size`` rows read by ``read(rows, names)``, where ``rows`` is an int64 array ``[B]`` of row
    numbers in ``[0, size)``; targets are restricted to the task ``names``, in that order."""

    read: RowReader
    size: int
    names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")

    def __len__(self) -> int:
        return self.size

    def select(self, names: Sequence[str]) -> FileSplit:
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
