"""Group selection as a mixed-integer linear program: cvxpy, solved by HiGHS.

The model is the set-partitioning form of the served-set reduction
(:mod:`taskgroup.grouping.objective`): one binary z_P per candidate served set P — "one network
serves exactly the tasks P" — worth w(P), the value of P in its best group (P plus its best
helpers, in closed form). The assignment of tasks to groups is the covering constraint:

    maximise Σ_P w(P) z_P   s.t.  Σ_{P ∋ j} z_P = 1 for every task j   (each task served once)
                                  Σ_P z_P ≤ B                          (at most B networks)

Written with a subset variable y_S per group and an assignment x_{jS} ≤ y_S per task and group,
the model is a facility-location problem; this form is its Dantzig–Wolfe reformulation (the
assignment inside a group solved in closed form), whose LP relaxation is at least as tight: it
is the LP bound of :mod:`taskgroup.grouping.bounds`, equal to the optimum on most instances we
measured up to 20 tasks.

Columns: every served set up to ``FULL_TASKS`` = 12 tasks (4,095 binaries; HiGHS proves the
optimum, or reports its MIP dual bound at the time limit). Up to 22 tasks (``exact.MAX_TASKS``):
the columns of the LP bound's column generation and of the given groupings (price and branch);
when that model's optimum falls short of the LP bound, every served set whose reduced cost
w(P) − π(P) − λ could still beat it is listed from the table of w and the model is solved again
over them, which makes it exact (a set with a lower reduced cost cannot be in a better grouping).
Beyond 22 tasks: price and branch only, certified by the (looser) bound of
:func:`taskgroup.grouping.heuristics.upper_bound`.
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterable

import numpy as np
import scipy.sparse as sp

from taskgroup.grouping.bounds import (
    LPBound,
    cover_of,
    lp_bound_table,
    silence_highs_banner,
    subset_sums,
)
from taskgroup.grouping.exact import Solution

FULL_TASKS = 12
MAX_COLUMNS = 200_000


class NoSolution(RuntimeError):
    """HiGHS stopped at its time limit before finding any grouping."""


class SetPartitionModel:
    """The cvxpy model over fixed ``columns`` (bitmasks) with values ``weights``; the budget is
    a parameter, so a budget sweep compiles the model once."""

    def __init__(self, columns: list[int], weights: np.ndarray, n: int):
        import cvxpy as cp  # here: importing cvxpy takes most of a second

        self.cp = cp
        self.columns = columns
        self.n = n
        # HiGHS's tolerances are absolute: give it values of order 1 (affinities can be ~1e-3)
        self.scale = max(float(np.abs(weights).max()), 1e-300)
        incidence = sp.csr_array(cover_of(columns, n))
        self.z = cp.Variable(len(columns), boolean=True)
        self.budget = cp.Parameter(nonneg=True)
        self.problem = cp.Problem(
            cp.Maximize((weights / self.scale) @ self.z),
            [incidence @ self.z == 1, cp.sum(self.z) <= self.budget],
        )

    def solve(self, budget: int, time_limit: float | None) -> tuple[list[int], float, bool]:
        """(chosen columns, HiGHS's upper bound on this model's optimum, proven optimal)."""
        silence_highs_banner()
        self.budget.value = float(budget)
        options = {"mip_rel_gap": 1e-9, "mip_abs_gap": 1e-12, "output_flag": False}
        if time_limit is not None:
            options["time_limit"] = float(time_limit)
        cp = self.cp
        with warnings.catch_warnings():
            # stopped by the time limit, cvxpy warns of an inaccurate solution: checked below
            warnings.filterwarnings("ignore", "Solution may be inaccurate")
            self.problem.solve(solver=cp.HIGHS, **options)
        value = self.z.value
        chosen = [] if value is None else [self.columns[c] for c in np.flatnonzero(value > 0.5)]
        if (
            sum(chosen) != (1 << self.n) - 1
            or len(chosen) > budget
            or any(a & b for i, a in enumerate(chosen) for b in chosen[i + 1 :])
        ):
            if self.problem.status == cp.USER_LIMIT:
                raise NoSolution(f"HiGHS found no grouping within its {time_limit} s")
            raise RuntimeError(
                f"internal error: HiGHS returned no grouping ({self.problem.status}); "
                "try method='exact' or 'beam'"
            )
        stats = self.problem.solver_stats.extra_stats
        proven = self.problem.status == cp.OPTIMAL
        dual = getattr(stats, "mip_dual_bound", None)
        # cvxpy hands HiGHS the minimisation of the negated (scaled) objective
        bound = -float(dual) * self.scale if dual is not None and math.isfinite(dual) else math.inf
        return chosen, bound, proven


def solve(
    values: np.ndarray,
    budget: int,
    *,
    partition: bool,
    singleton_score: float | None,
    time_limit: float | None = 60.0,
    table: np.ndarray | None = None,
    incumbent: Iterable[int] = (),
    bound_of: Callable[[int, list[int]], LPBound] | None = None,
    model_cache: dict | None = None,
) -> Solution:
    """Solve the model (see the module docstring). ``table``: w over all served sets (needed up
    to ``exact.MAX_TASKS`` tasks); ``incumbent``: served sets of known groupings, added as
    columns; ``bound_of(budget, columns)`` → ``LPBound`` for n beyond the table;
    ``model_cache``: reuse one compiled full model across budgets."""
    started = time.perf_counter()
    n = len(values)
    incumbent = list(incumbent)
    if n <= FULL_TASKS:
        key = ("full", partition, singleton_score)
        return _solve_full(table, n, budget, time_limit, key, model_cache)
    lp, weight_of, columns = _lp_columns(table, n, budget, incumbent, bound_of)
    model = SetPartitionModel(columns, np.array([weight_of[c] for c in columns]), n)
    chosen, _, _ = model.solve(budget, _seconds_left(started, time_limit))
    value = float(sum(weight_of[c] for c in chosen))
    tol = 1e-9 * max(1.0, abs(lp.value))
    info = {
        "model": "columns from LP column generation",
        "columns": len(columns),
        "lp_bound": lp.value,
    }
    if lp.value - value <= tol:
        return Solution(chosen, value, value, True, info)
    if table is None:
        return Solution(chosen, value, lp.value, False, info)
    return _solve_admissible(
        table, lp, chosen, value, n, budget, tol, info, started=started, time_limit=time_limit
    )


def _seconds_left(started: float, time_limit: float | None) -> float | None:
    """What is left of ``time_limit`` since ``started`` (at least 1 s; ``None``: no limit)."""
    if time_limit is None:
        return None
    return max(1.0, time_limit - (time.perf_counter() - started))


def _solve_full(
    table: np.ndarray,
    n: int,
    budget: int,
    time_limit: float | None,
    key: tuple,
    model_cache: dict | None,
) -> Solution:
    """The model over every served set (n ≤ ``FULL_TASKS``), compiled once per ``key`` in
    ``model_cache``."""
    finite = np.flatnonzero(np.isfinite(table))
    columns = [int(c) for c in finite if c]
    model = (model_cache or {}).get(key)
    if model is None:
        model = SetPartitionModel(columns, table[columns], n)
        if model_cache is not None:
            model_cache[key] = model
    chosen, bound, proven = model.solve(budget, time_limit)
    value = float(table[chosen].sum())
    return Solution(
        chosen,
        value,
        value if proven else max(value, bound),
        proven,
        {"columns": len(columns), "model": "all served sets"},
    )


def _lp_columns(
    table: np.ndarray | None,
    n: int,
    budget: int,
    incumbent: list[int],
    bound_of: Callable[[int, list[int]], LPBound] | None,
) -> tuple[LPBound, dict[int, float], list[int]]:
    """``(LP bound, w of each column, columns)``: the served sets of the LP bound's column
    generation (over ``table``, else ``bound_of``) and of ``incumbent`` that can be served."""
    if table is not None:
        lp = lp_bound_table(table, n, budget, initial=incumbent)
        weight_of = {c: float(table[c]) for c in lp.columns}
    else:
        lp = bound_of(budget, incumbent)
        weight_of = dict(lp.weights)
    weight_of |= {
        c: float(table[c]) if table is not None else weight_of.get(c, -math.inf) for c in incumbent
    }
    columns = [
        c
        for c in dict.fromkeys([*lp.columns, *incumbent])
        if math.isfinite(weight_of.get(c, -math.inf))
    ]
    return lp, weight_of, columns


def _solve_admissible(
    table: np.ndarray,
    lp: LPBound,
    chosen: list[int],
    value: float,
    n: int,
    budget: int,
    tol: float,
    info: dict,
    *,
    started: float,
    time_limit: float | None,
) -> Solution:
    """Improve on ``chosen`` (worth ``value``) over every served set that could be in a better
    grouping, listed from the full ``table``: exact unless there are more than ``MAX_COLUMNS``
    of them. ``started``, ``time_limit``: of the whole solve."""
    # A grouping better than `value` can only use served sets P whose reduced cost
    # w(P) − π(P) − λ is at least value − LP bound: the LP prices make every other set too
    # expensive. With the full table all of them can be listed, and the model over them is exact.
    reduced = table - subset_sums(lp.pi) - lp.lam
    admissible = np.flatnonzero(np.isfinite(table) & (reduced >= value - lp.value - tol))
    admissible = admissible[admissible > 0]
    if len(admissible) > MAX_COLUMNS:
        return Solution(chosen, value, lp.value, False, info | {"too_many_columns": True})
    columns = [int(c) for c in dict.fromkeys([*admissible.tolist(), *chosen])]
    model = SetPartitionModel(columns, table[columns], n)
    better, bound, proven = model.solve(budget, _seconds_left(started, time_limit))
    better_value = float(table[better].sum())
    if better_value >= value:
        chosen, value = better, better_value
    info |= {
        "model": "columns with a reduced cost that could beat the incumbent",
        "columns": len(columns),
    }
    return Solution(
        chosen, value, value if proven else max(value, min(lp.value, bound)), proven, info
    )
