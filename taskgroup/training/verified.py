"""A selection that verifies: shortlist groupings from the affinity, train their groups briefly,
choose by validation.

1. **Shortlist.** The ``shortlist`` best distinct groupings of at most B groups by TAG's objective
   (:func:`~taskgroup.grouping.top_groupings`), or candidate groupings given by the caller (from
   HOA, other signals, other budgets).
2. **Short trainings with successive halving.** Every group of the shortlist trains with the full
   settings but ``fraction`` of their steps (``final`` steps, a multiple of ``eval_every``). With K
   candidates there are R = ⌈log2 K⌉ rungs at final/2^(R−1), ..., final/2, final steps: at each
   rung the groups of the surviving candidates are trained up to the rung (resuming, never
   retraining), every candidate is scored, and the better half (⌈m/2⌉ of m) survives; the last
   rung has two candidates. A group shared by several candidates trains once.
3. **Choice by validation.** A candidate's criterion is the validation Δm on the losses of the
   served tasks: each task served, as in :func:`~taskgroup.train_groups`, by the candidate's group
   with the lowest validation loss on it (at that group's best evaluation so far), and

       criterion = (100 / n) Σ_t (val_t / ref_t − 1)            (lower is better)

   with ref_t the **single-task reference**: by default task t trained alone with the same short
   schedule (n more networks, counted in the cost; a singleton of the shortlist is the same
   training); or the losses the caller passes (e.g. a :class:`~taskgroup.grouping.PairTable`'s
   ``single``, from full trainings). Only the ratios between the ref_t matter for the choice.
   Ties go to the candidate ranked higher by the affinity.

No test data is read. The result is a :class:`~taskgroup.Grouping` with ``method="verified"``:
``serves`` by validation, ``values[t] = 1 − val_t / ref_t`` and ``score`` their sum (so the
criterion is −100 · score / n), ``optimal=False``, ``bound=None``, and ``info`` recording the
candidates, the rungs, every network trained and the cost (networks, steps, seconds).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from taskgroup.data.benchmark import Benchmark
from taskgroup.grouping.objective import Grouping, score
from taskgroup.grouping.pairs import PairTable
from taskgroup.grouping.shortlist import top_groupings
from taskgroup.storage import read_json, write_json
from taskgroup.training.checkpoint import load_checkpoint
from taskgroup.training.groups import check_groups
from taskgroup.training.metrics import LOSS
from taskgroup.training.trainer import (
    CHECKPOINT,
    RESULT,
    TrainSettings,
    group_key,
    train_group,
)

VERIFY = "verify"

Groups = tuple[tuple[str, ...], ...]


class _Pause(Exception):
    """Raised from ``train_group``'s ``on_step`` to stop at a rung; the checkpoint of that step
    (a multiple of ``eval_every``) stays, and the next rung resumes from it."""


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
) -> Grouping:
    """Choose at most ``budget`` groups by training a shortlist briefly (see the module doc).

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

    Raises ``ValueError`` on bad input before any training.
    """
    started = time.perf_counter()
    tasks = list(benchmark.tasks.names)
    settings = _settings(benchmark, settings, seed)
    if isinstance(fraction, bool) or not isinstance(fraction, int | float):
        raise ValueError(f"fraction must be a number in (0, 1], got {fraction!r}")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    if isinstance(budget, bool) or not isinstance(budget, int) or not 1 <= budget <= len(tasks):
        raise ValueError(f"budget must be an integer in 1..{len(tasks)}, got {budget!r}")
    candidates, affinity_scores = _candidates(
        affinity, budget, shortlist, tasks, partition, singleton_score
    )
    refs = _references(references, tasks)
    every = settings.eval_every
    final = min(settings.steps, max(every, every * round(fraction * settings.steps / every)))
    short = dataclasses.replace(settings, steps=final)
    rungs = _rungs(final, every, len(candidates) if halving else min(len(candidates), 2))

    with contextlib.ExitStack() as stack:
        root = (
            Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="taskgroup-verify-")))
            if out is None
            else Path(out)
        )
        trainer = _ShortTrainer(
            benchmark, short, root / VERIFY / f"seed{seed}-{final}steps", device
        )
        reference_source = "given"
        if refs is None and rungs:
            reference_source = f"single-task trainings of {final} steps"
            refs = {t: trainer.reach((t,), final)[t][LOSS] for t in tasks}
        for t, loss in (refs or {}).items():
            if not (math.isfinite(loss) and loss > 0):
                raise ValueError(f"the single-task reference of {t!r} is {loss}; it must be > 0")
        alive = list(range(len(candidates)))
        record = []
        for r, steps in enumerate(rungs):
            scored = {}
            for c in alive:
                val = {g: trainer.reach(g, steps) for g in candidates[c]}
                scored[c] = _criterion(candidates[c], val, refs, tasks)
            alive = sorted(alive, key=lambda c: (scored[c][0], c))
            record.append(
                {
                    "steps": steps,
                    "criteria": {str(c): scored[c][0] for c in alive},
                }
            )
            if r < len(rungs) - 1:
                alive = alive[: math.ceil(len(alive) / 2)]
        winner = alive[0]
        if rungs:
            _, serves_by, values = scored[winner]
        else:  # one candidate: nothing to choose, nothing trained
            serves_by, values = None, None
        cost = trainer.cost()

    groups = list(candidates[winner])
    if serves_by is None:
        serving = {t: min(g for g, members in enumerate(groups) if t in members) for t in tasks}
        values = {t: 0.0 for t in tasks}
    else:
        used = sorted({serves_by[t] for t in tasks}, key=lambda g: groups.index(g))
        groups = [g for g in groups if g in used]  # a group that serves no task is not trained
        serving = {t: groups.index(serves_by[t]) for t in tasks}
    total = float(sum(values.values()))
    info = {
        "criterion": "validation delta_m on losses of the served tasks vs single-task "
        "references, lower is better",
        "delta_m_val_loss": -100.0 * total / len(tasks),
        "fraction": fraction,
        "steps_per_network": final,
        "full_steps": settings.steps,
        "references": refs,
        "reference_source": reference_source,
        "candidates": [
            {"groups": [list(g) for g in cand], "affinity_score": affinity_scores[c]}
            for c, cand in enumerate(candidates)
        ],
        "chosen_candidate": winner,
        "rungs": record,
        "trained": trainer.trained(),
        "cost": cost,
        "settings": short.to_dict(),
    }
    return Grouping(
        groups=groups,
        score=total,
        serves=serving,
        values=values,
        optimal=False,
        bound=None,
        method="verified",
        budget=budget,
        partition=bool(partition),
        singleton_score=singleton_score,
        tasks=tasks,
        seconds=time.perf_counter() - started,
        info=info,
    )


def _settings(benchmark: Benchmark, settings, seed: int) -> TrainSettings:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if settings is None:
        return TrainSettings.for_benchmark(benchmark, seed=seed)
    if isinstance(settings, Mapping):
        return TrainSettings.for_benchmark(benchmark, **(dict(settings) | {"seed": seed}))
    if isinstance(settings, TrainSettings):
        return dataclasses.replace(settings, seed=seed)
    raise TypeError(f"settings must be a TrainSettings or a dict of its fields, got {settings!r}")


def _canonical(groups, tasks: list[str]) -> Groups:
    order = {t: i for i, t in enumerate(tasks)}
    members = {tuple(sorted(g, key=order.__getitem__)) for g in groups}
    return tuple(sorted(members, key=lambda g: [order[t] for t in g]))


def _candidates(affinity, budget, shortlist, tasks, partition, singleton_score):
    """The candidate groupings (canonical, distinct, in shortlist order) and their TAG scores
    (``None`` without an affinity or where the score is not finite)."""
    if isinstance(shortlist, int) and not isinstance(shortlist, bool):
        if shortlist < 1:
            raise ValueError(f"shortlist must be a positive number or a list, got {shortlist}")
        if affinity is None:
            raise ValueError("shortlist=K needs an affinity matrix to rank groupings by")
        ranked = top_groupings(
            affinity,
            budget,
            shortlist,
            tasks=tasks,
            partition=partition,
            singleton_score=singleton_score,
        )
        return [_canonical(g.groups, tasks) for g in ranked], [g.score for g in ranked]
    if isinstance(shortlist, str) or not isinstance(shortlist, Sequence) or not shortlist:
        raise ValueError(
            f"shortlist must be a positive number or a non-empty list of groupings, got "
            f"{shortlist!r}"
        )
    out: list[Groups] = []
    for candidate in shortlist:
        groups = candidate.groups if isinstance(candidate, Grouping) else candidate
        if isinstance(groups, str) or not isinstance(groups, Sequence):
            raise ValueError(f"a candidate must be a list of groups of tasks, got {groups!r}")
        groups = _canonical(check_groups(groups, tasks), tasks)
        if len(groups) > budget:
            raise ValueError(
                f"candidate {[list(g) for g in groups]} has {len(groups)} groups, more than "
                f"the budget {budget}"
            )
        if partition and sum(len(g) for g in groups) != len(tasks):
            raise ValueError(
                f"partition=True needs disjoint groups; candidate {[list(g) for g in groups]} "
                f"puts a task in two groups"
            )
        if groups not in out:
            out.append(groups)
    scores: list[float | None] = []
    for groups in out:
        value = None
        if affinity is not None:
            value = score(
                affinity, groups, tasks=tasks, partition=partition, singleton_score=singleton_score
            )
        scores.append(value if value is not None and math.isfinite(value) else None)
    return out, scores


def _references(references, tasks: list[str]) -> dict[str, float] | None:
    if references is None:
        return None
    if isinstance(references, PairTable):
        references = references.single
    if not isinstance(references, Mapping):
        raise ValueError(
            f"references must be a mapping task -> loss or a PairTable, got {references!r}"
        )
    missing = [t for t in tasks if t not in references]
    if missing:
        raise ValueError(f"references miss task(s) {', '.join(map(repr, missing))}")
    return {t: float(references[t]) for t in tasks}


def _rungs(final: int, every: int, candidates: int) -> list[int]:
    """Steps of each rung: final/2^(R−1), ..., final, R = ⌈log2 K⌉ (none for one candidate),
    each rounded up to a multiple of ``every``."""
    if candidates <= 1:
        return []
    count = math.ceil(math.log2(candidates))
    steps = []
    for r in range(count):
        raw = final / 2 ** (count - 1 - r)
        steps.append(min(final, max(every, every * math.ceil(raw / every))))
    return steps


def _criterion(groups: Groups, val, refs: Mapping[str, float], tasks: list[str]):
    """(validation Δm on losses, task → serving group, task → 1 − val / ref)."""
    serves, values = {}, {}
    for t in tasks:
        holders = [g for g in groups if t in g]
        best = min(holders, key=lambda g: (val[g][t][LOSS], groups.index(g)))
        serves[t] = best
        values[t] = 1.0 - val[best][t][LOSS] / refs[t]
    return -100.0 * sum(values.values()) / len(tasks), serves, values


class _ShortTrainer:
    """Trains groups with one short schedule up to requested steps, resuming between rungs.

    ``reach(group, steps)`` returns the group's validation metrics at its best evaluation up to
    ``steps`` (early-stopping semantics) and records what was trained. Each rung's answer is
    kept in ``<group dir>/rung<steps>.json``, so a resumed selection reads it back exactly."""

    def __init__(self, benchmark: Benchmark, settings: TrainSettings, root: Path, device):
        self.benchmark, self.settings, self.root = benchmark, settings, root
        self.device = device
        self.reached: dict[tuple[str, ...], tuple[int, float]] = {}
        self.memo: dict[tuple[tuple[str, ...], int], dict] = {}

    def reach(self, group: tuple[str, ...], steps: int) -> dict[str, dict[str, float]]:
        if (group, steps) in self.memo:
            return self.memo[group, steps]
        directory = self.root / group_key(group, self.settings.aggregator)
        rung = directory / f"rung{steps}.json"
        if rung.exists():
            record = read_json(rung)
        else:
            record = self._train(group, steps, directory)
            write_json(rung, record)
        done, seconds = self.reached.get(group, (0, 0.0))
        self.reached[group] = (max(done, record["steps"]), max(seconds, record["seconds"]))
        self.memo[group, steps] = record["val"]
        return record["val"]

    def _train(self, group: tuple[str, ...], steps: int, directory: Path) -> dict[str, Any]:
        if not (directory / RESULT).exists() and (directory / CHECKPOINT).exists():
            state = load_checkpoint(directory / CHECKPOINT)["state"]
            if state["step"] >= steps:  # trained past this rung before an interruption
                return _record(state["best"]["val"], state["step"], state["seconds"])

        def pause(step: int) -> None:
            if step >= steps:
                raise _Pause

        try:
            result = train_group(
                self.benchmark,
                group,
                self.settings,
                directory=directory,
                on_step=pause,
                device=self.device,
            )
        except _Pause:
            state = load_checkpoint(directory / CHECKPOINT)["state"]
            return _record(state["best"]["val"], state["step"], state["seconds"])
        return _record(result.val, result.steps, result.seconds)

    def trained(self) -> list[dict[str, Any]]:
        return [
            {"tasks": list(g), "steps": steps, "seconds": round(seconds, 3)}
            for g, (steps, seconds) in self.reached.items()
        ]

    def cost(self) -> dict[str, float]:
        return {
            "networks": len(self.reached),
            "steps": sum(steps for steps, _ in self.reached.values()),
            "seconds": round(sum(seconds for _, seconds in self.reached.values()), 3),
        }


def _record(val, steps: int, seconds: float) -> dict[str, Any]:
    return {"val": val, "steps": int(steps), "seconds": float(seconds)}
