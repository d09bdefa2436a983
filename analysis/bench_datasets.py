"""Benchmark: what streaming a benchmark from a torch ``Dataset`` costs per training step,
against the same data held in memory.

``multidigits`` (its six default tasks, the default ``TrainSettings``: aggregator ``mean``,
Adam, batch 128, a validation pass over 1,500 rows every 50 steps) trained by ``train_group``
for ``--steps`` steps from four sources of the same rows:

- **memory**: the benchmark's own in-memory ``Split`` s (the baseline);
- **items**: ``Benchmark.from_datasets`` on a ``Dataset`` whose ``__getitem__(i)`` returns
  ``(inputs[i], {task: targets[task][i]})`` — what a user writes first; one call per row;
- **list of items**: the same plus torch's batched ``__getitems__(indices)`` returning the
  list of items (one call per batch, still one item and dict per row);
- **batched**: ``__getitems__(indices)`` returning the collated batch ``(inputs[indices],
  {task: targets[task][indices]})`` (one indexing per tensor per batch).

Every source must train to the same validation losses (every evaluation) and test metrics as
memory, bit for bit (checked before timing, so no timing is of a wrong answer). The sources are
timed interleaved, in a fresh random order in every repetition, with one torch thread, after a
``gc.collect()``. Two tables: the CPU time to draw one training batch of 128 rows (and, for
``items``, how much of it is the Dataset's own ``__getitem__`` calls); and ``train_group``'s
time per step, this process's CPU time and wall-clock, as medians and as the median over
repetitions of time / memory's time in the same repetition. CPU time is the measure that other
jobs on a shared machine disturb least.

Run from the repository root (about 4 minutes on 2 busy CPU cores)::

    python analysis/bench_datasets.py [--steps 200] [--repetitions 15]

Measured with the defaults on the 2-core development machine while other jobs ran (load average
6.4; output in ``analysis/results/bench_datasets.txt``)::

    drawing one training batch of 128 rows, CPU microseconds (medians)
      memory                           76
      items                          2182
      list of items                  2232
      batched                         108
      items: __getitem__ only        1609

    train_group per step, medians
      source         CPU ms  CPU vs memory  wall ms  wall vs memory
      memory           3.59          1.000     8.24           1.000
      items            6.89          1.933    16.60           1.913
      list of items    7.06          2.032    17.78           2.099
      batched          3.74          0.984     9.41           1.033

A Dataset with a batched ``__getitems__`` streams within the 10% budget; one ``__getitem__``
per row nearly doubles a step, most of it in the Dataset's own calls (see docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import random
import statistics
import sys
import time
from itertools import islice
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from measurement import median_ratio, print_table

from taskgroup.data import get, multidigits
from taskgroup.data.benchmark import Benchmark, Split, batch_orders
from taskgroup.settings import TrainSettings
from taskgroup.training.trainer import train_group


class ItemDataset(torch.utils.data.Dataset):
    """The rows of an in-memory split, one ``(input, {task: target})`` item per ``__getitem__``."""

    def __init__(self, split: Split):
        self.inputs = split.inputs
        self.targets = dict(split.targets)

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i: int):
        return self.inputs[i], {name: t[i] for name, t in self.targets.items()}


class ItemListDataset(ItemDataset):
    """:class:`ItemDataset` with torch's batched ``__getitems__`` returning a list of items."""

    def __getitems__(self, indices: list[int]):
        return [self[i] for i in indices]


class BatchedDataset(ItemDataset):
    """:class:`ItemDataset` whose ``__getitems__`` returns the collated batch."""

    def __getitems__(self, indices: list[int]):
        # through NumPy: torch.as_tensor of a list of 128 ints alone costs 2% of a step
        index = torch.from_numpy(np.asarray(indices, dtype=np.int64))
        return self.inputs[index], {name: t[index] for name, t in self.targets.items()}


def sources(bench: Benchmark) -> dict[str, Benchmark]:
    """The benchmark of every timed source (see the module doc)."""

    def streamed(dataset: type) -> Benchmark:
        return Benchmark.from_datasets(
            train=dataset(bench.train),
            val=dataset(bench.val),
            test=dataset(bench.test),
            tasks=bench.tasks,
            model_factory=bench.model_factory,
            defaults=bench.defaults,
        )

    return {
        "memory": bench,
        "items": streamed(ItemDataset),
        "list of items": streamed(ItemListDataset),
        "batched": streamed(BatchedDataset),
    }


def train(bench: Benchmark, steps: int):
    settings = TrainSettings(steps=steps, seed=0)
    return train_group(bench, tuple(bench.tasks.names), settings)


def check_equal(benches: dict[str, Benchmark], steps: int) -> None:
    """Every source trains to memory's result: the same validation losses at every evaluation,
    best step and test metrics, bit for bit."""
    fields = ("history", "best_step", "criterion", "val", "test")
    reference = train(benches["memory"], steps)
    for name, bench in benches.items():
        result = train(bench, steps)
        if any(getattr(result, f) != getattr(reference, f) for f in fields):
            raise AssertionError(f"{name!r} trains to another result than memory")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repetitions", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    bench = get("multidigits").select(list(multidigits.DEFAULT_TASKS))
    benches = sources(bench)
    check_equal(benches, steps=100)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} thread, python "
        f"{platform.python_version()}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.2f}; multidigits, {len(bench.tasks)} tasks, "
        f"{args.steps} steps x {args.repetitions} repetitions; every source checked to train "
        "to memory's losses and metrics bit for bit"
    )
    time_reads(benches, batches=200, repetitions=args.repetitions)
    wall, cpu = time_sources(benches, args.steps, args.repetitions)
    load = os.getloadavg()[0]
    rows = [
        [
            name,
            f"{statistics.median(cpu[name]) * 1e3:.2f}",
            f"{median_ratio(cpu, name, 'memory'):.3f}",
            f"{statistics.median(wall[name]) * 1e3:.2f}",
            f"{median_ratio(wall, name, 'memory'):.3f}",
        ]
        for name in benches
    ]
    print_table(
        f"train_group per step, medians (load average at the end {load:.2f})",
        ["source", "CPU ms", "CPU vs memory", "wall ms", "wall vs memory"],
        rows,
    )


def time_reads(benches: dict[str, Benchmark], batches: int, repetitions: int) -> None:
    """Print the median microseconds to draw one training batch of 128 rows from each source,
    and for ``items`` how much of it is the Dataset's own ``__getitem__`` calls."""
    dataset = benches["items"].train.read.dataset
    rows = [order.numpy() for order in islice(batch_orders(len(dataset), 128, seed=0), batches)]
    timings: dict[str, list[float]] = {name: [] for name in [*benches, "items: __getitem__ only"]}
    for _ in range(repetitions):
        for name, bench in benches.items():
            stream = bench.train.batches(128, seed=0)
            started = time.process_time()
            for _ in range(batches):
                next(stream)
            timings[name].append((time.process_time() - started) / batches)
        started = time.process_time()
        for index in rows:
            [dataset[i] for i in index.tolist()]
        timings["items: __getitem__ only"].append((time.process_time() - started) / batches)
    print_table(
        "drawing one training batch of 128 rows, CPU microseconds (medians)",
        ["source", "us / batch"],
        [[name, f"{statistics.median(t) * 1e6:.0f}"] for name, t in timings.items()],
    )


def time_sources(
    benches: dict[str, Benchmark], steps: int, repetitions: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Seconds per step ``{source: [one per repetition]}``, wall-clock and this process's CPU
    time, the sources interleaved in a fresh random order in every repetition."""
    rng = random.Random(0)
    wall: dict[str, list[float]] = {name: [] for name in benches}
    cpu: dict[str, list[float]] = {name: [] for name in benches}
    for _ in range(repetitions):
        order = list(benches)
        rng.shuffle(order)
        for name in order:
            gc.collect()  # the per-row sources leave garbage that would be collected mid-run
            started, started_cpu = time.perf_counter(), time.process_time()
            train(benches[name], steps)
            wall[name].append((time.perf_counter() - started) / steps)
            cpu[name].append((time.process_time() - started_cpu) / steps)
    return wall, cpu


if __name__ == "__main__":
    main()
