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
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from taskgroup.data.benchmark import Benchmark
from taskgroup.grouping.hoa import PairTable
from taskgroup.grouping.networks import NetworkTable
from taskgroup.rundir import PAIRS
from taskgroup.settings import TrainSettings
from taskgroup.training.groups import train_networks
from taskgroup.training.metrics import LOSS, higher_is_better
from taskgroup.training.trainer import GroupResult, group_key

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
    run_dir = None if out is None else Path(out)
    trained = _trained_pairs(benchmark, settings, run_dir, workers, progress, device)
    tasks = list(benchmark.tasks.names)
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


def _trained_pairs(
    benchmark: Benchmark,
    settings: TrainSettings,
    run_dir: Path | None,
    workers: int,
    progress: bool | None,
    device: torch.device | str | None,
) -> dict[tuple[str, ...], GroupResult]:
    """Train (or read back from ``run_dir``) each task alone and each pair of tasks."""
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be a positive integer, got {workers!r}")
    tasks = list(benchmark.tasks.names)
    if len(tasks) < 2:
        raise ValueError(f"pair_results needs at least 2 tasks, got {len(tasks)}")
    groups = [(t,) for t in tasks] + list(itertools.combinations(tasks, 2))
    jobs = {group_key(g, settings.aggregator): (g, settings) for g in groups}
    done = train_networks(benchmark, jobs, run_dir, workers, progress, device)
    return {g: done[group_key(g, settings.aggregator)] for g in groups}


def pair_networks(
    benchmark: Benchmark,
    settings: TrainSettings | Mapping[str, Any] | None = None,
    *,
    metric: str = LOSS,
    out: str | os.PathLike | None = None,
    workers: int = 1,
    progress: bool | None = None,
    device: torch.device | str | None = None,
) -> NetworkTable:
    """The trainings of :func:`pair_results` (each task alone, each pair; resumed from ``out``
    like there) as a :class:`~taskgroup.grouping.NetworkTable` of their **validation**
    ``metric``, for :func:`~taskgroup.select_networks` (add the groups of three or more tasks,
    estimated from the pairs, with ``table.with_hoa_groups()``).

    ``metric`` is ``"loss"`` (default) or a metric every task defines; a metric where higher is
    better is negated (see :func:`network_table`). Every network costs 1.
    """
    settings = TrainSettings.for_benchmark(benchmark, settings)
    run_dir = None if out is None else Path(out)
    trained = _trained_pairs(benchmark, settings, run_dir, workers, progress, device)
    table = network_table(trained.values(), higher_is_better(benchmark.tasks), metric=metric)
    results = list(trained.values())
    metadata = {
        "benchmark": benchmark.name,
        "settings": settings.network(),
        "cost": {
            "networks": len(results),
            "steps": sum(r.steps for r in results),
            "seconds": round(sum(r.seconds for r in results), 3),
        },
    }
    return NetworkTable(
        table.tasks, table.networks, table.losses, table.costs, table.metadata | metadata
    )


def network_table(
    results: Iterable[GroupResult],
    directions: Mapping[str, Mapping[str, bool]],
    *,
    metric: str = LOSS,
    split: str = "val",
    costs: float | Sequence[float] = 1.0,
) -> NetworkTable:
    """Trained networks (e.g. ``train_groups(...).groups``, or trainings read back from a run
    directory) as a :class:`~taskgroup.grouping.NetworkTable` for
    :func:`~taskgroup.select_networks`: network k holds ``results[k].tasks`` and its loss on
    task t is ``results[k].<split>[t][metric]``, in lower-is-better form.

    **Signs.** Selection minimises the summed value, so a metric where higher is better
    (``directions[t][metric]`` is True, e.g. accuracy) enters negated: ``−accuracy``. Each task
    is served by exactly one network in every selection, so any per-task shift (``1 − accuracy``,
    the error rate) changes every selection's score by the same constant and selects the same
    networks; negation needs no bound on the metric and keeps its scale, so the reported score
    is minus the summed metric. The sum adds raw values across tasks, as Standley does; put
    tasks on a common scale first when their metrics are not comparable.

    Args:
        results: the trained networks (:class:`~taskgroup.GroupResult`).
        directions: ``{task: {metric: higher_is_better}}``, the loss included
            (``taskgroup.training.metrics.higher_is_better(benchmark.tasks)``, or
            ``GroupResults.directions``); its tasks, in order, are the table's tasks.
        metric: ``"loss"`` (default: validation loss, lower is better) or a metric name.
        split: ``"val"`` (default: select without seeing the test split) or ``"test"``.
        costs: every network's cost (one number), or one per network.
    """
    if split not in ("val", "test"):
        raise ValueError(f"split must be 'val' or 'test', got {split!r}")
    results = list(results)
    tasks = list(directions)
    losses = []
    for r in results:
        values = getattr(r, split)
        row = {}
        for t in r.tasks:
            if t not in directions:
                raise ValueError(f"network {list(r.tasks)} holds task {t!r}, not in directions")
            if metric not in values.get(t, {}) or metric not in directions[t]:
                known = sorted(set(values.get(t, {})) & set(directions[t]))
                raise ValueError(
                    f"task {t!r} of network {list(r.tasks)} has no {split} metric {metric!r} "
                    f"with a direction; it has {known}"
                )
            value = float(values[t][metric])
            row[t] = -value if directions[t][metric] else value
        losses.append(row)
    cost = [costs] * len(results) if isinstance(costs, int | float) else list(costs)
    metadata = {"split": split, "metric": metric, "negated": _negated(directions, metric)}
    return NetworkTable(tasks, [r.tasks for r in results], losses, cost, metadata)


def _negated(directions: Mapping[str, Mapping[str, bool]], metric: str) -> list[str]:
    return [t for t, d in directions.items() if d.get(metric, False)]
