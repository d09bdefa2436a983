"""``tg.verified_selection``: the verified selection of :mod:`taskgroup.grouping.verified`, its
groups trained briefly by :func:`~taskgroup.train_group`.

Each group trains with the full settings cut to ``final`` steps, paused at each rung with
``train_group(..., until=steps)`` and continued at the next. What a rung gave is kept in
``<group dir>/rung<steps>.json``, so a resumed selection reads finished rungs back without
training and chooses exactly what an uninterrupted one does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from taskgroup.data.benchmark import Benchmark
from taskgroup.grouping.hoa import PairTable
from taskgroup.grouping.objective import Grouping
from taskgroup.grouping.verified import (
    ShortTraining,
    candidate_groupings,
    check_references,
    verify,
)
from taskgroup.settings import TrainSettings
from taskgroup.storage import read_json, write_json
from taskgroup.training.metrics import LOSS
from taskgroup.training.trainer import group_key, train_group

VERIFY = "verify"

logger = logging.getLogger(__name__)


def verified_selection(
    benchmark: Benchmark,
    affinity,
    budget: int,
    *,
    shortlist: int | Sequence = 8,
    fraction: float = 0.25,
    settings: TrainSettings | Mapping[str, Any] | None = None,
    seed: int = 0,
    halving: bool = True,
    references: Mapping[str, float] | PairTable | None = None,
    partition: bool = False,
    singleton_score: float | None = None,
    out: str | os.PathLike | None = None,
    device: torch.device | str | None = None,
    progress: bool | None = None,
) -> Grouping:
    """Choose at most ``budget`` groups by training a shortlist briefly (see
    :mod:`taskgroup.grouping.verified`).

    Args:
        benchmark: the tasks to group and their data; the choice reads its validation split.
        affinity: an :class:`~taskgroup.AffinityMatrix` (or an ``[n, n]`` array in the
            benchmark's task order) to shortlist from; ``None`` with an explicit ``shortlist``.
        budget: the most groups.
        shortlist: how many groupings to shortlist by the affinity (the best first), or the
            candidates themselves (:class:`Grouping` objects or lists of groups of task names),
            each of at most ``budget`` groups covering every task.
        fraction: the share of the full schedule (``settings.steps``) the groups train, in (0, 1].
        settings: the full training settings (a :class:`TrainSettings` or keywords of
            ``TrainSettings.for_benchmark``); ``steps`` is cut to ``fraction`` of it.
        seed: the seed of every short training.
        halving: successive halving over the candidates; ``False`` trains every candidate's
            groups for the whole short schedule and chooses once.
        references: per-task single-task losses (a mapping or a :class:`PairTable`); ``None``
            trains each task alone with the short schedule.
        partition, singleton_score: as in :func:`~taskgroup.select_groups` (for the shortlist).
        out: folder for the short trainings (``out/verify/seed<S>-<steps>steps/<group_key>``,
            resumable: a second call reads finished rungs back); ``None``: a temporary folder.
        device: where the networks train (default: CUDA when available, else the CPU).
        progress: show progress bars (the short trainings): ``None`` (default) when stderr is a
            terminal, ``True`` always, ``False`` never.

    Raises ``ValueError`` on bad input before any training.
    """
    started = time.perf_counter()
    tasks = list(benchmark.tasks.names)
    settings = TrainSettings.for_benchmark(benchmark, settings, seed=seed)
    short = _short_settings(settings, fraction)
    final = short.steps
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= len(tasks):
        raise ValueError(f"budget must be an integer in 1..{len(tasks)}, got {budget!r}")
    candidates, affinity_scores = candidate_groupings(
        affinity,
        budget,
        shortlist,
        tasks,
        partition=partition,
        singleton_score=singleton_score,
    )
    refs = check_references(references, tasks)
    with (
        _folder(out) as root,
        _ShortTrainings(
            benchmark, short, root / VERIFY / f"seed{seed}-{final}steps", device, progress
        ) as trainings,
    ):
        chosen = verify(
            candidates,
            trainings,
            tasks=tasks,
            budget=budget,
            final=final,
            every=settings.eval_every,
            halving=halving,
            references=refs,
            affinity_scores=affinity_scores,
            partition=partition,
            singleton_score=singleton_score,
            schedule={
                "fraction": fraction,
                "steps_per_network": final,
                "full_steps": settings.steps,
            },
        )
    seconds = time.perf_counter() - started
    logger.info(
        "verified selection of %d candidates chose %s (%.1f s)",
        len(candidates),
        ", ".join("+".join(g) for g in chosen.groups),
        seconds,
    )
    return dataclasses.replace(
        chosen, seconds=seconds, info=chosen.info | {"settings": short.network()}
    )


def _short_settings(settings: TrainSettings, fraction: float) -> TrainSettings:
    """``settings`` with ``fraction`` of their steps, rounded to a multiple of ``eval_every`` (at
    least one)."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    every = settings.eval_every
    final = min(settings.steps, max(every, every * round(fraction * settings.steps / every)))
    return dataclasses.replace(settings, steps=final)


@contextlib.contextmanager
def _folder(out: str | os.PathLike | None) -> Iterator[Path]:
    """``out``, or a temporary folder removed afterwards."""
    if out is not None:
        yield Path(out)
        return
    with tempfile.TemporaryDirectory(prefix="taskgroup-verify-") as temporary:
        yield Path(temporary)


class _ShortTrainings:
    """The :data:`~taskgroup.grouping.verified.Train` of a verified selection: each group trained
    by :func:`train_group` in ``root/<group_key>`` up to the step asked for, resuming there.

    What each (group, steps) gave is kept in ``<group dir>/rung<steps>.json`` and read back by a
    resumed selection. A context manager: its progress bar counts the short trainings."""

    def __init__(self, benchmark: Benchmark, settings: TrainSettings, root: Path, device, progress):
        self.benchmark, self.settings, self.root = benchmark, settings, root
        self.device, self.progress = device, progress
        disable = None if progress is None else not progress  # None: on when stderr is a terminal
        self.bar = tqdm(desc="verifying groups", unit="training", disable=disable)

    def __enter__(self) -> _ShortTrainings:
        return self

    def __exit__(self, *exc_info) -> None:
        self.bar.close()

    def __call__(self, group: tuple[str, ...], steps: int) -> ShortTraining:
        directory = self.root / group_key(group, self.settings.aggregator)
        rung = directory / f"rung{steps}.json"
        if rung.exists():
            record = read_json(rung)
        else:
            result = train_group(
                self.benchmark,
                group,
                self.settings,
                directory=directory,
                until=steps,
                device=self.device,
                progress=self.progress,
            )
            record = {"val": result.val, "steps": result.steps, "seconds": result.seconds}
            write_json(rung, record)
        self.bar.update()
        val_loss = {t: record["val"][t][LOSS] for t in group}
        return ShortTraining(val_loss, int(record["steps"]), float(record["seconds"]))
