"""``select_groups`` and ``sweep``: one interface over every solver.

========== ====================================================== ======== ====================
method     what                                                   n        bound
========== ====================================================== ======== ====================
exact      exhaustive up to 20,000 partitions, else branch and    ≤ 22     proof (at the time
           bound on LP prices                                              limit: B&B bound)
milp       cvxpy set-partitioning model solved by HiGHS           any      proof up to 22 tasks
                                                                           (at the time limit:
                                                                           HiGHS's); LP beyond
beam       agglomerative beam search (width 8) + local search     any      LP bound
           + 30 kicks of iterated local search
greedy     the same with width 1                                  any      LP bound
spectral   spectral clustering (scikit-learn) + local search      any      LP bound
community  greedy modularity (networkx) + local search            any      LP bound
restarts   100 random starts + local search, 30 kicks             any      LP bound
auto       exact up to 22 tasks (60 s limit, then its bound);     any      as chosen;
           23–40, the best of beam, spectral, community,                   beyond 40:
           restarts and price and branch (the set-partitioning             subgradient size
           MILP over the LP bound's columns and the heuristics'            relaxation, then
           served sets); beyond 40 tasks, within the time limit            Lagrangian pricing
           (60 s): local search from spectral and community
           starts, kicks, then the bound in the time left
hoa        Standley's higher-order approximation from a           any      as auto
           ``PairTable`` (single and pair trainings), reduced
           exactly to this objective and solved by auto
========== ====================================================== ======== ====================

Beyond 40 tasks ``auto`` is a heuristic that keeps its time limit: its result says so
(``info["auto"]``, ``info["cut_by_time_limit"]``: the stages the limit stopped) and reports the
bound it proved and the gap (``Grouping.gap``). The LP bound is exact up to 20 tasks (pricing
over all 2^n served sets); beyond, it is made valid by a size relaxation and a time-limited
pricing search, and can be loose (see docs/grouping.md).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence

import numpy as np

from taskgroup.grouping.bounds import LPBound, mask_members
from taskgroup.grouping.exact import (
    MAX_TASKS,
    Solution,
    branch_and_bound,
    check_size,
    count_partitions,
    exhaustive,
    served_set_values,
)
from taskgroup.grouping.heuristics import (
    ServedSets,
    beam,
    community,
    community_starts,
    local_search,
    perturbed_search,
    repair,
    restarts,
    scalable_bound,
    spectral,
    spectral_starts,
    upper_bound,
)
from taskgroup.grouping.hoa import PairTable
from taskgroup.grouping.milp import NoSolution, SetPartitionModel
from taskgroup.grouping.milp import solve as solve_milp
from taskgroup.grouping.objective import (
    Grouping,
    affinity_problem,
    check_singleton_score,
    make_grouping,
    relative_gap,
    serve,
    served_masks,
    served_set_value,
)

METHODS = ("auto", "exact", "milp", "beam", "greedy", "spectral", "community", "restarts", "hoa")
AUTO_HEURISTICS = ("beam", "spectral", "community", "restarts")
AUTO_EXACT_TASKS = 22
AUTO_TIME_LIMIT = 60.0
AUTO_SCALABLE_TASKS = 40
# shares of auto's time limit beyond AUTO_SCALABLE_TASKS: local search from the starts ends at
# 40% of it, the kicks at 50%, the bound at 95% (the rest is slack for the last search round)
SCALABLE_SEARCH_END, SCALABLE_KICKS_END, SCALABLE_BOUND_END = 0.4, 0.5, 0.95
MILP_TIME_LIMIT = 60.0
BOUND_TIME_LIMIT = 3.0
PRICE_AND_BRANCH_SECONDS = 3.0
EXHAUSTIVE_PARTITIONS = 20_000


class _Problem:
    """One validated problem; caches what several budgets share (the table of w, the cvxpy
    model, the heuristics' evaluator)."""

    def __init__(
        self,
        values: np.ndarray,
        tasks: list[str],
        partition: bool,
        singleton_score: float | None,
        seed: int,
    ):
        self.values, self.tasks = values, tasks
        self.n = len(tasks)
        self.partition, self.singleton_score, self.seed = partition, singleton_score, seed
        self.sets = ServedSets(values, partition=partition, singleton_score=singleton_score)
        self._table: np.ndarray | None = None
        self.model_cache: dict = {}

    @property
    def table(self) -> np.ndarray:
        if self._table is None:
            self._table = served_set_values(
                self.values, partition=self.partition, singleton_score=self.singleton_score
            )
        return self._table

    def groups(self, blocks: Iterable[int]) -> list[tuple[int, ...]]:
        """The group around each served set: the set plus its best helpers."""
        return [
            served_set_value(
                self.values,
                mask_members(b),
                partition=self.partition,
                singleton_score=self.singleton_score,
            )[1]
            for b in blocks
        ]

    def is_optimal(self, value: float, bound: float | None) -> bool:
        return bound is not None and relative_gap(bound, value) <= 1e-9


def _check(budget, n: int, method: str, partition, time_limit, singleton_score) -> None:
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer):
        raise ValueError(f"budget must be an integer number of groups, got {budget!r}")
    if not 1 <= budget <= n:
        raise ValueError(f"budget must lie in 1..{n} (the number of tasks), got {budget}")
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if not isinstance(partition, bool | np.bool_):
        raise ValueError(f"partition must be True or False, got {partition!r}")
    if time_limit is not None and (
        isinstance(time_limit, bool)
        or not isinstance(time_limit, int | float)
        or not time_limit > 0
    ):
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    if n == 1 and singleton_score is None:
        raise ValueError(
            "a single task has no partner, and singleton_score=None lets no singleton serve a "
            "task; pass singleton_score=0.0 to train it alone"
        )


def _solve(
    problem: _Problem,
    budget: int,
    method: str,
    time_limit: float | None,
    warm: Sequence[int] | None = None,
) -> Grouping:
    """Solve ``problem`` at ``budget`` by ``method`` (``warm``: served sets of a grouping to
    start from, such as the previous budget's)."""
    started = time.perf_counter()
    info: dict = {}
    if method == "auto":
        if problem.n > AUTO_SCALABLE_TASKS:
            return _auto_scalable(problem, budget, time_limit, warm, started)
        if problem.n > AUTO_EXACT_TASKS:
            info["auto"] = f"best of {', '.join(AUTO_HEURISTICS)}, price-and-branch"
            return _heuristic(
                problem,
                budget,
                AUTO_HEURISTICS,
                time_limit,
                warm,
                started,
                info,
                price_and_branch=True,
            )
        info["auto"] = "exact"
        method = "exact"
        time_limit = AUTO_TIME_LIMIT if time_limit is None else time_limit
    if method == "exact":
        solution = _solve_exact(problem, budget, time_limit, warm)
    elif method == "milp":
        solution = _solve_milp(problem, budget, time_limit, warm)
    else:
        return _heuristic(problem, budget, (method,), time_limit, warm, started, info)
    info |= solution.info
    return make_grouping(
        problem.values,
        problem.tasks,
        problem.groups(solution.blocks),
        budget=budget,
        partition=problem.partition,
        singleton_score=problem.singleton_score,
        method=method,
        bound=solution.bound,
        optimal=solution.optimal,
        seconds=time.perf_counter() - started,
        info=info,
    )


def _solve_exact(
    problem: _Problem, budget: int, time_limit: float | None, warm: Sequence[int] | None
) -> Solution:
    """Exhaustive enumeration up to ``EXHAUSTIVE_PARTITIONS`` partitions, else branch and bound
    from the better of greedy merging and ``warm``."""
    n, sets = problem.n, problem.sets
    check_size(n, "exact")
    table = problem.table
    if count_partitions(n, budget) <= EXHAUSTIVE_PARTITIONS:
        return exhaustive(table, n, budget)
    incumbent = beam(sets, budget, width=1)
    if warm is not None and sets.total(warm) > sets.total(incumbent):
        incumbent = list(warm)
    return branch_and_bound(table, n, budget, incumbent=incumbent, time_limit=time_limit)


def _solve_milp(
    problem: _Problem, budget: int, time_limit: float | None, warm: Sequence[int] | None
) -> Solution:
    """The set-partitioning MILP: over the table of w up to ``exact.MAX_TASKS`` tasks, beyond
    over the LP bound's columns, ``warm`` and the beam search's served sets."""
    n, sets = problem.n, problem.sets
    warm_blocks = list(warm or [])
    if n > MAX_TASKS:
        warm_blocks += beam(sets, budget, width=8, kicks=30)
    return solve_milp(
        problem.values,
        budget,
        partition=problem.partition,
        singleton_score=problem.singleton_score,
        time_limit=MILP_TIME_LIMIT if time_limit is None else time_limit,
        table=problem.table if n <= MAX_TASKS else None,
        incumbent=warm_blocks,
        bound_of=lambda b, columns: upper_bound(sets, b, columns, time_limit=BOUND_TIME_LIMIT),
        model_cache=problem.model_cache,
    )


def _heuristic(
    problem: _Problem,
    budget: int,
    methods: Sequence[str],
    time_limit: float | None,
    warm: Sequence[int] | None,
    started: float,
    info: dict,
    price_and_branch: bool = False,
) -> Grouping:
    """Run the heuristics ``methods``, bound their best grouping (the LP bound) and return it.
    ``price_and_branch``: also solve the set-partitioning MILP over the bound's generated
    columns and every heuristic's served sets (``PRICE_AND_BRANCH_SECONDS``), polished by local
    search; it competes as one more method."""
    sets = problem.sets
    found: dict[str, list[int]] = {}
    for name in methods:
        if name == "beam":
            found[name] = beam(sets, budget, width=8, kicks=30)
        elif name == "greedy":
            found[name] = beam(sets, budget, width=1)
        elif name == "spectral":
            found[name] = spectral(sets, budget, seed=problem.seed)
        elif name == "restarts":
            found[name] = restarts(sets, budget, seed=problem.seed)
        else:
            found[name] = community(sets, budget)
    if warm is not None:
        polished = local_search(sets, list(warm), budget)
        if all(sets.total(polished) > sets.total(blocks) for blocks in found.values()):
            found["local search"] = polished  # of the warm start
    bound = upper_bound(
        sets,
        budget,
        [b for found_blocks in found.values() for b in found_blocks],
        time_limit=BOUND_TIME_LIMIT if time_limit is None else time_limit,
    )
    if price_and_branch:
        found["price-and-branch"] = _price_and_branch(problem, budget, bound, found.values())
    scores = {name: sets.total(blocks) for name, blocks in found.items()}
    winner = max(scores, key=lambda name: scores[name])
    blocks = found[winner]
    value = scores[winner]
    info |= {
        "scores": scores if len(scores) > 1 else None,
        "warm_start": True if winner == "local search" else None,
        "lp_columns": len(bound.columns),
        "lp_estimate": bound.lp_value,
    }
    return make_grouping(
        problem.values,
        problem.tasks,
        problem.groups(blocks),
        budget=budget,
        partition=problem.partition,
        singleton_score=problem.singleton_score,
        method=winner,
        bound=max(bound.value, value),
        optimal=problem.is_optimal(value, bound.value),
        seconds=time.perf_counter() - started,
        info={k: v for k, v in info.items() if v is not None},
    )


def _auto_scalable(
    problem: _Problem,
    budget: int,
    time_limit: float | None,
    warm: Sequence[int] | None,
    started: float,
) -> Grouping:
    """``auto`` beyond ``AUTO_SCALABLE_TASKS`` tasks, within ``time_limit`` (default
    ``AUTO_TIME_LIMIT``): local search (swaps only when no move gains) from the spectral and
    community starts and ``warm``, best start first, then kicks of iterated local search, then
    :func:`~taskgroup.grouping.heuristics.scalable_bound` in the time left. A heuristic result:
    ``optimal`` only when the bound meets it; ``info`` says which stages the deadline cut."""
    limit = AUTO_TIME_LIMIT if time_limit is None else float(time_limit)
    sets = problem.sets
    found, cut = _polished_starts(problem, budget, warm, started + SCALABLE_SEARCH_END * limit)
    scores = {name: sets.total(blocks) for name, blocks in found.items()}
    winner = max(scores, key=lambda name: scores[name])
    kicked = perturbed_search(
        sets,
        found[winner],
        budget,
        kicks=30,
        seed=problem.seed,
        deadline=started + SCALABLE_KICKS_END * limit,
        lazy_swaps=True,
    )
    if time.perf_counter() > started + SCALABLE_KICKS_END * limit:
        cut.append("kicks")
    groups = problem.groups(kicked)
    served, _ = serve(problem.values, groups, problem.singleton_score)
    value = float(served.sum())
    bound, facts = scalable_bound(
        sets, budget, served, deadline=started + SCALABLE_BOUND_END * limit
    )
    if not facts["pricing_complete"]:
        cut.append("pricing")
    info = {
        "auto": f"heuristics beyond {AUTO_SCALABLE_TASKS} tasks: local search from spectral "
        "and community starts, kicks; bound: size relaxation (subgradient prices), then "
        "Lagrangian pricing",
        "time_limit": limit,
        "scores": scores,
        "kicks_gain": value - scores[winner],
        "bound_from": facts,
        "cut_by_time_limit": cut,
    }
    return make_grouping(
        problem.values,
        problem.tasks,
        groups,
        budget=budget,
        partition=problem.partition,
        singleton_score=problem.singleton_score,
        method=winner,
        bound=max(bound, value),
        optimal=problem.is_optimal(value, bound),
        seconds=time.perf_counter() - started,
        info=info,
    )


def _polished_starts(
    problem: _Problem, budget: int, warm: Sequence[int] | None, deadline: float
) -> tuple[dict[str, list[int]], list[str]]:
    """``({start kind: its best polished partition}, stages cut by the deadline)``: the spectral
    and community starts and ``warm``, repaired, each improved by lazy-swap local search in
    order of their value (the deadline cuts the worst), duplicates once."""
    sets = problem.sets
    starts = [("spectral", c) for c in spectral_starts(sets, budget, seed=problem.seed)]
    cut = []
    if time.perf_counter() < deadline:
        starts += [("community", c) for c in community_starts(sets, budget)]
    else:
        cut.append("community starts")
    if warm is not None:
        starts.append(("warm start", list(warm)))
    unique = {tuple(sorted(repair(sets, c, budget))): name for name, c in reversed(starts)}
    ranked = sorted(unique, key=lambda blocks: -sets.total(blocks))
    found: dict[str, list[int]] = {}
    for k, blocks in enumerate(ranked):
        if k and time.perf_counter() > deadline:
            cut.append(f"local search ({len(ranked) - k} of {len(ranked)} starts)")
            break
        polished = local_search(sets, list(blocks), budget, lazy_swaps=True, deadline=deadline)
        name = unique[blocks]
        if name not in found or sets.total(polished) > sets.total(found[name]):
            found[name] = polished
    return found, cut


def _price_and_branch(
    problem: _Problem, budget: int, bound: LPBound, groupings: Iterable[list[int]]
) -> list[int]:
    """The best grouping whose served sets are all columns of the LP bound's column generation
    or of ``groupings``: the set-partitioning MILP over them (HiGHS, at most
    ``PRICE_AND_BRANCH_SECONDS``), then local search. Falls back to the best of ``groupings``
    when HiGHS finds nothing in time."""
    sets = problem.sets
    groupings = list(groupings)
    weights = dict(bound.weights or {})
    columns = [
        c
        for c in dict.fromkeys([*bound.columns, *(b for g in groupings for b in g)])
        if math.isfinite(weights.setdefault(c, sets.of(c)))
    ]
    model = SetPartitionModel(columns, np.array([weights[c] for c in columns]), problem.n)
    try:
        chosen, _, _ = model.solve(budget, PRICE_AND_BRANCH_SECONDS)
    except NoSolution:
        chosen = max(groupings, key=sets.total)
    return local_search(sets, chosen, budget)


def _inputs(Z_or_A, tasks, method: str, singleton_score):
    """``(values, names, singleton_score, solver method, hoa facts or None)``: a
    :class:`~taskgroup.grouping.hoa.PairTable` with ``method="hoa"`` becomes its exact TAG
    score matrix with singletons worth 0 (see :mod:`taskgroup.grouping.hoa`)."""
    if method != "hoa" and not isinstance(Z_or_A, PairTable):
        values, names = affinity_problem(Z_or_A, tasks)
        return values, names, check_singleton_score(singleton_score), method, None
    if not isinstance(Z_or_A, PairTable):
        raise ValueError(
            "method='hoa' needs a PairTable of single-task and pair losses "
            f"(tg.pair_results or tg.grouping.PairTable), got {type(Z_or_A).__name__}"
        )
    if method != "hoa":
        raise ValueError(f"a PairTable is selected from with method='hoa', got method={method!r}")
    if singleton_score is not None:
        raise ValueError(
            "method='hoa' values a task trained alone by its single-task loss; "
            "leave singleton_score=None"
        )
    table = Z_or_A if tasks is None else Z_or_A.select(_task_list(tasks))
    return table.scores(), list(table.tasks), 0.0, "auto", {"cost": dict(table.cost)}


def _task_list(tasks) -> list[str]:
    if isinstance(tasks, str) or not isinstance(tasks, Sequence):
        raise ValueError(f"tasks must be a list of task names, got {tasks!r}")
    return [str(t) for t in tasks]


def _as_hoa(grouping: Grouping, facts: dict) -> Grouping:
    """Relabel a grouping solved on a pair table's score matrix as ``method="hoa"``; its score
    is Σ_t (1 − est_t / single_t), so the estimated Δm on the losses is −100 · score / n."""
    grouping.info = grouping.info | {
        "solver": grouping.method,
        "cost": facts["cost"],
        "estimated_delta_m_loss": -100.0 * grouping.score / len(grouping.tasks),
    }
    grouping.method = "hoa"
    return grouping


def select_groups(
    Z_or_A,
    budget: int,
    *,
    tasks: Sequence[str] | None = None,
    method: str = "auto",
    partition: bool = False,
    singleton_score: float | None = None,
    time_limit: float | None = None,
    seed: int = 0,
) -> Grouping:
    """Choose at most ``budget`` groups of tasks maximising TAG's network-selection score.

    Args:
        Z_or_A: an :class:`~taskgroup.AffinityMatrix` or a square array ``[n, n]`` (row i =
            source task, column j = target task).
        budget: the most groups (networks to train), 1 ≤ budget ≤ n.
        tasks: names of the rows of an array (default ``"0"…"n-1"``), or a subset of an
            AffinityMatrix's tasks to group.
        method: ``"auto"``, ``"exact"``, ``"milp"``, ``"beam"``, ``"greedy"``, ``"spectral"``
            or ``"community"`` (see :mod:`taskgroup.grouping.select`); ``"hoa"`` when
            ``Z_or_A`` is a :class:`~taskgroup.grouping.PairTable` (Standley's higher-order
            approximation, :mod:`taskgroup.grouping.hoa`; its score is Σ_t (1 − est_t /
            single_t), ``info["cost"]`` what the table cost).
        partition: only disjoint groups.
        singleton_score: ``None`` (TAG: a task alone serves nothing) or the value of a task
            trained alone (``0.0``: no transfer).
        time_limit: seconds for ``exact``/``milp`` (defaults: none / 60 s; ``auto``: 60 s, the
            whole search and bound beyond 40 tasks) or for a heuristic's bound (default 3 s).
            When it stops a solver the result carries ``optimal=False`` and a valid ``bound``.
        seed: seed of spectral clustering.

    Returns:
        A :class:`~taskgroup.grouping.Grouping`. Raises ``ValueError`` on bad input before any
        work.
    """
    values, names, singleton_score, method, hoa = _inputs(Z_or_A, tasks, method, singleton_score)
    _check(budget, len(names), method, partition, time_limit, singleton_score)
    if method == "exact":
        check_size(len(names), "exact")
    problem = _Problem(values, names, bool(partition), singleton_score, int(seed))
    grouping = _solve(problem, int(budget), method, time_limit)
    return grouping if hoa is None else _as_hoa(grouping, hoa)


def sweep(
    Z_or_A,
    budgets: Iterable[int] | None = None,
    *,
    tasks: Sequence[str] | None = None,
    method: str = "auto",
    partition: bool = False,
    singleton_score: float | None = None,
    time_limit: float | None = None,
    seed: int = 0,
) -> list[Grouping]:
    """:func:`select_groups` for every budget in ``budgets`` (default 1…n), in increasing order:
    the score-vs-budget curve. The work that budgets share (the table of served-set values, the
    compiled MILP) is done once, and each budget's search starts from the previous budget's
    grouping (admissible for a larger budget), so the scores never decrease."""
    values, names, singleton_score, method, hoa = _inputs(Z_or_A, tasks, method, singleton_score)
    n = len(names)
    chosen = list(range(1, n + 1)) if budgets is None else sorted(set(budgets))
    if not chosen:
        raise ValueError("budgets is empty")
    for b in chosen:
        _check(b, n, method, partition, time_limit, singleton_score)
    if method == "exact":
        check_size(n, "exact")
    problem = _Problem(values, names, bool(partition), singleton_score, int(seed))
    out: list[Grouping] = []
    for b in chosen:
        warm = served_masks(out[-1]) if out else None
        grouping = _solve(problem, int(b), method, time_limit, warm)
        if out and grouping.score < out[-1].score:
            # a time-limited solver can end below the smaller budget's grouping, which is
            # admissible here too
            index = {t: j for j, t in enumerate(names)}
            grouping = make_grouping(
                values,
                names,
                [[index[t] for t in g] for g in out[-1].groups],
                budget=int(b),
                partition=problem.partition,
                singleton_score=singleton_score,
                method=grouping.method,
                bound=grouping.bound,
                optimal=False,
                seconds=grouping.seconds,
                info=grouping.info | {"kept_smaller_budget": True},
            )
        out.append(grouping)
    return out if hoa is None else [_as_hoa(g, hoa) for g in out]
