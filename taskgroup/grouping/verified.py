"""A selection that verifies: shortlist groupings, train their groups briefly, choose by validation.

1. **Shortlist** (:func:`candidate_groupings`). The ``shortlist`` best distinct groupings of at
   most B groups by TAG's objective (:func:`~taskgroup.grouping.top_groupings`), or candidate
   groupings given by the caller (from HOA, other signals, other budgets).
2. **Short trainings with successive halving** (:func:`verify`). Every group of the shortlist
   trains with the full settings but a fraction of their steps (``final`` steps, a multiple of
   ``every``). With K candidates there are R = ⌈log2 K⌉ rungs at final/2^(R−1), ..., final/2,
   final steps: at each rung the groups of the surviving candidates are trained up to the rung
   (resuming, never retraining), every candidate is scored, and the better half (⌈m/2⌉ of m)
   survives; the last rung has two candidates. A group shared by several candidates trains once.
3. **Choice by validation.** A candidate's criterion is the validation Δm on the losses of the
   served tasks: each task served, as in :func:`~taskgroup.train_groups`, by the candidate's group
   with the lowest validation loss on it (at that group's best evaluation so far), and

       criterion = (100 / n) Σ_t (val_t / ref_t − 1)            (lower is better)

   with ref_t the **single-task reference**: by default task t trained alone with the same short
   schedule (n more networks, counted in the cost; a singleton of the shortlist is the same
   training); or the losses the caller passes (e.g. a :class:`~taskgroup.grouping.PairTable`'s
   ``single``, from full trainings). Only the ratios between the ref_t matter for the choice.
   Ties go to the candidate ranked higher by the affinity.

The training is the caller's: :func:`verify` receives it as ``train(group, steps)`` (a
:data:`Train`), so this module knows nothing of networks; :func:`taskgroup.verified_selection`
supplies :func:`~taskgroup.train_group` with a short schedule. No test data is read. The result is
a :class:`~taskgroup.Grouping` with ``method="verified"``: ``serves`` by validation,
``values[t] = 1 − val_t / ref_t`` and ``score`` their sum (so the criterion is −100 · score / n),
``optimal=False``, ``bound=None``, and ``info`` recording the candidates, the rungs, every network
trained and the cost (networks, steps, seconds). Besides the trainings, time O(K · R · B · n).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from taskgroup.grouping.hoa import PairTable
from taskgroup.grouping.objective import Grouping, check_groups, score
from taskgroup.grouping.shortlist import top_groupings

Groups = tuple[tuple[str, ...], ...]

CRITERION = (
    "validation delta_m on losses of the served tasks vs single-task references, lower is better"
)


@dataclass(frozen=True)
class ShortTraining:
    """A group trained up to some step: what the verified selection reads from it.

    Attributes:
        val_loss: task → validation loss at the group's best evaluation so far.
        steps: the steps trained so far; seconds: the training wall time so far.
    """

    val_loss: Mapping[str, float]
    steps: int
    seconds: float


Train = Callable[[tuple[str, ...], int], ShortTraining]
"""``train(group, steps)`` trains ``group`` up to ``steps`` (a multiple of ``every``, or
``final``), resuming where an earlier call for the group stopped; a group already trained that far
(or stopped early) answers with what it has. The answer must not depend on how the calls were
split over processes, so that a resumed selection chooses what an uninterrupted one does."""


def candidate_groupings(
    affinity,
    budget: int,
    shortlist: int | Sequence[Sequence[Sequence[str]]],
    tasks: Sequence[str],
    *,
    partition: bool = False,
    singleton_score: float | None = None,
) -> tuple[list[Groups], list[float | None]]:
    """The candidate groupings (canonical: task order; distinct; in shortlist order) and their
    TAG scores (``None`` without an ``affinity`` or where the score is not finite).

    ``shortlist`` is K, the number of groupings to rank by ``affinity`` with
    :func:`~taskgroup.grouping.top_groupings`, or the candidates: groupings whose groups name only
    ``tasks`` and cover them, each of at most ``budget`` groups (disjoint with ``partition``)."""
    tasks = list(tasks)
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
        return [canonical(g.groups, tasks) for g in ranked], [g.score for g in ranked]
    if isinstance(shortlist, str) or not isinstance(shortlist, Sequence) or not shortlist:
        raise ValueError(
            f"shortlist must be a positive number or a non-empty list of groupings, got "
            f"{shortlist!r}"
        )
    out: list[Groups] = []
    for candidate in shortlist:
        given = candidate.groups if isinstance(candidate, Grouping) else candidate
        if isinstance(given, str) or not isinstance(given, Sequence):
            raise ValueError(f"a candidate must be a list of groups of tasks, got {given!r}")
        groups = canonical(check_groups(given, tasks), tasks)
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


def canonical(groups: Sequence[Sequence[str]], tasks: Sequence[str]) -> Groups:
    """``groups`` with each group's tasks in task order, repeats merged, ordered by their tasks."""
    order = {t: i for i, t in enumerate(tasks)}
    members = {tuple(sorted(g, key=order.__getitem__)) for g in groups}
    return tuple(sorted(members, key=lambda g: [order[t] for t in g]))


def check_references(
    references: Mapping[str, float] | PairTable | None, tasks: Sequence[str]
) -> dict[str, float] | None:
    """Per-task single-task losses as floats (from a mapping or a :class:`PairTable`'s
    ``single``), checked to name every task; ``None`` stays ``None``."""
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


def rungs(final: int, every: int, candidates: int) -> list[int]:
    """Steps of each rung: final/2^(R−1), ..., final, R = ⌈log2 K⌉ (none for one candidate),
    each rounded up to a multiple of ``every`` (at most ``final``)."""
    if candidates <= 1:
        return []
    count = math.ceil(math.log2(candidates))
    steps = []
    for r in range(count):
        raw = final / 2 ** (count - 1 - r)
        steps.append(min(final, max(every, every * math.ceil(raw / every))))
    return steps


def criterion(
    groups: Groups,
    val_loss: Mapping[tuple[str, ...], Mapping[str, float]],
    references: Mapping[str, float],
    tasks: Sequence[str],
) -> tuple[float, dict[str, tuple[str, ...]], dict[str, float]]:
    """(validation Δm on losses, task → serving group, task → 1 − val / ref) of the candidate
    ``groups``, where ``val_loss[group][task]`` is the group's validation loss on the task."""
    serves, values = {}, {}
    for t in tasks:
        holders = [g for g in groups if t in g]
        best = min(holders, key=lambda g: (val_loss[g][t], groups.index(g)))
        serves[t] = best
        values[t] = 1.0 - val_loss[best][t] / references[t]
    return -100.0 * sum(values.values()) / len(tasks), serves, values


def verify(
    candidates: Sequence[Groups],
    train: Train,
    *,
    tasks: Sequence[str],
    budget: int,
    final: int,
    every: int,
    halving: bool = True,
    references: Mapping[str, float] | None = None,
    affinity_scores: Sequence[float | None] | None = None,
    partition: bool = False,
    singleton_score: float | None = None,
    schedule: Mapping[str, Any] | None = None,
) -> Grouping:
    """Choose among ``candidates`` (from :func:`candidate_groupings`) by training their groups
    with ``train`` up to ``final`` steps, with successive halving (see the module doc).

    ``references`` (from :func:`check_references`; ``None``: each task trained alone for
    ``final`` steps); ``affinity_scores`` are recorded with the candidates; ``schedule`` holds the
    caller's facts about the trainings, recorded in ``info`` after the criterion. ``ValueError``
    when a single-task reference is not a positive number."""
    started = time.perf_counter()
    tasks = list(tasks)
    trainings = _Trainings(train)
    steps = rungs(final, every, len(candidates) if halving else min(len(candidates), 2))
    references, reference_source = _references(references, trainings, tasks, final, steps)
    winner, chosen, record = _successive_halving(candidates, steps, trainings, references, tasks)
    groups, serving, values = _served(list(candidates[winner]), chosen, tasks)
    total = float(sum(values.values()))
    scores = affinity_scores or [None] * len(candidates)
    info = {
        "criterion": CRITERION,
        "delta_m_val_loss": -100.0 * total / len(tasks),
        **(schedule or {}),
        "references": references,
        "reference_source": reference_source,
        "candidates": [
            {"groups": [list(g) for g in cand], "affinity_score": scores[c]}
            for c, cand in enumerate(candidates)
        ],
        "chosen_candidate": winner,
        "rungs": record,
        "trained": trainings.trained(),
        "cost": trainings.cost(),
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


def _references(references, trainings: _Trainings, tasks: list[str], final: int, steps):
    """(the single-task references, where they come from): as given, or each task trained alone
    for ``final`` steps where there is a choice to make (``steps``: the rungs)."""
    source = "given"
    if references is None and steps:
        source = f"single-task trainings of {final} steps"
        references = {t: trainings.reach((t,), final).val_loss[t] for t in tasks}
    for t, loss in (references or {}).items():
        if not (math.isfinite(loss) and loss > 0):
            raise ValueError(f"the single-task reference of {t!r} is {loss}; it must be > 0")
    return references, source


def _successive_halving(candidates, steps, trainings, references, tasks):
    """(the winner's index, its criterion triple or ``None`` when nothing was trained, the record
    of each rung). Each rung keeps the better half of the survivors; ties go to the lower index."""
    alive = list(range(len(candidates)))
    record: list[dict[str, Any]] = []
    scored: dict[int, tuple] = {}
    for r, rung in enumerate(steps):
        scored = {}
        for c in alive:
            val_loss = {g: trainings.reach(g, rung).val_loss for g in candidates[c]}
            scored[c] = criterion(candidates[c], val_loss, references, tasks)
        alive = sorted(alive, key=lambda c: (scored[c][0], c))
        record.append({"steps": rung, "criteria": {str(c): scored[c][0] for c in alive}})
        if r < len(steps) - 1:
            alive = alive[: math.ceil(len(alive) / 2)]
    winner = alive[0]
    return winner, scored.get(winner), record


def _served(groups: list[tuple[str, ...]], chosen, tasks: list[str]):
    """(the groups that serve a task, task → index of its serving group, task → value). Without
    trainings (one candidate) each task is served by its first group, with value 0."""
    if chosen is None:
        serving = {t: min(g for g, members in enumerate(groups) if t in members) for t in tasks}
        return groups, serving, {t: 0.0 for t in tasks}
    _, serves_by, values = chosen
    used = sorted({serves_by[t] for t in tasks}, key=lambda g: groups.index(g))
    groups = [g for g in groups if g in used]  # a group that serves no task is not trained
    return groups, {t: groups.index(serves_by[t]) for t in tasks}, values


class _Trainings:
    """``train`` asked once per (group, steps), with what each group cost: its most steps and
    seconds reached."""

    def __init__(self, train: Train):
        self.train = train
        self.reached: dict[tuple[str, ...], tuple[int, float]] = {}
        self.memo: dict[tuple[tuple[str, ...], int], ShortTraining] = {}

    def reach(self, group: tuple[str, ...], steps: int) -> ShortTraining:
        if (group, steps) not in self.memo:
            trained = self.train(group, steps)
            done, seconds = self.reached.get(group, (0, 0.0))
            self.reached[group] = (max(done, trained.steps), max(seconds, trained.seconds))
            self.memo[group, steps] = trained
        return self.memo[group, steps]

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
