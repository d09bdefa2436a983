"""Train every task alone and every pair of tasks: the input of Standley's HOA selection.

``pair_results`` trains the n + n(n−1)/2 networks with :func:`~taskgroup.train_group` (each
early-stopped on validation as usual) and returns a :class:`~taskgroup.grouping.PairTable` of
their **validation** losses, so a selection made from it never sees the test split. Each training
has its own folder ``OUT/train/<group_key>`` (the layout of :func:`~taskgroup.train_groups`), so a
second call resumes and reuses any training of the same tasks and settings already there.
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from taskgroup.data.benchmark import Benchmark
from taskgroup.grouping.hoa import PairTable
from taskgroup.rundir import PAIRS
from taskgroup.settings import TrainSettings
from taskgroup.training.groups import train_networks
from taskgroup.training.metrics import LOSS
from taskgroup.training.trainer import group_key

logger = logging.getLogger(__name__)


def pair_results(
    benchmark: Benchmark,
    settings: TrainSettings | Mapping[str, Any] | None = None,
    *,
    out: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool | None = None,
    device: torch.device | str | None = None,
) -> PairTable:
    """Train each task alone and each pair of tasks; their validation losses as a
    :class:`~taskgroup.grouping.PairTable` (``single[t]``, ``pair[t][u]``).

    Args:
        benchmark: its tasks are the table's tasks (``benchmark.select`` a subset first).
        settings: a :class:`TrainSettings`, or keywords of ``TrainSettings.for_benchmark``
            (e.g. ``{"steps": 2000, "patience": 10}``; default: the benchmark's defaults). Every
            network, the single-task ones included, trains with them.
        out: run directory; trainings go to ``out/train/<group_key>`` and the table to
            ``out/pairs.json``. A second call resumes: finished trainings are read back.
        workers: trainings run in this many processes (``spawn``); the benchmark must pickle.
        progress: show progress bars: ``None`` (default) when stderr is a terminal, ``True``
            always, ``False`` never.
        device: where the networks train (default: CUDA when available, else the CPU).

    ``table.cost`` holds ``networks``, ``steps`` (trained, summed) and ``seconds`` (training
    wall time, summed; a resumed call reports the first call's time of finished trainings).
    """
    settings = TrainSettings.for_benchmark(benchmark, settings)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    tasks = list(benchmark.tasks.names)
    if len(tasks) < 2:
        raise ValueError(f"pair_results needs at least 2 tasks, got {len(tasks)}")
    groups = [(t,) for t in tasks] + list(itertools.combinations(tasks, 2))
    jobs = {group_key(g, settings.aggregator): (g, settings) for g in groups}
    run_dir = None if out is None else Path(out)
    done = train_networks(benchmark, jobs, run_dir, workers, progress, device)
    trained = {g: done[group_key(g, settings.aggregator)] for g in groups}
    single = {t: trained[(t,)].val[t][LOSS] for t in tasks}
    pair: dict[str, dict[str, float]] = {t: {} for t in tasks}
    for a, b in itertools.combinations(tasks, 2):
        result = trained[(a, b)]
        pair[a][b] = result.val[a][LOSS]
        pair[b][a] = result.val[b][LOSS]
    results = list(trained.values())
    table = PairTable(
        tasks,
        single,
        pair,
        cost={
            "networks": len(results),
            "steps": sum(r.steps for r in results),
            "seconds": round(sum(r.seconds for r in results), 3),
        },
        metadata={
            "split": "val",
            "benchmark": benchmark.name,
            "settings": settings.network(),
        },
    )
    logger.info(
        "pair table of %d tasks: %d networks, %d steps, %.1f s of training",
        len(tasks),
        table.cost["networks"],
        table.cost["steps"],
        table.cost["seconds"],
    )
    if run_dir is not None:
        table.save(run_dir / PAIRS)
    return table
