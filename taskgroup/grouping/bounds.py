"""Upper bounds on the optimal score: the LP relaxation of the served-set partition problem.

With w(P) the value of served set P (see :mod:`taskgroup.grouping.objective`), the optimum is

    max Σ_P w(P) z_P   s.t.  Σ_{P ∋ j} z_P = 1 for every task j,  Σ_P z_P ≤ B,  z ∈ {0, 1}.

Its LP dual gives a price π_j per task and λ ≥ 0 for the budget; any (π, λ) with
π(P) + λ ≥ w(P) for every P bounds every grouping: Σ_k w(P_k) ≤ Σ_j π_j + B λ. We solve the LP by
column generation (HiGHS: interior point with the full table, simplex without), then make the
bound valid whatever the LP returned by setting λ = max(0, max_P w(P) − π(P)) over every served
set.

Two ways to price: the full table of w over all 2^n sets (:func:`lp_bound_table`, exact, n ≤ 22),
or without it (:func:`lp_bound_search`, any n) columns grown greedily, with the final prices made
valid by the lowest of three certificates: :func:`size_bound` (a relaxation that only knows group
sizes), :func:`price` (a best-first search for the most valuable set, within a time limit) at the
column generation's prices, and :func:`lagrangian_bound` (the same search, node-limited) at the
size relaxation's prices.
Without the table the bound can be loose when the matrix has no group structure that fits the
budget.
"""

from __future__ import annotations

import heapq
import math
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp
from scipy.optimize import linprog

SIZE_PRICES_NODES = 20_000  # search nodes of the pricing at the size relaxation's prices
IPM_TOLERANCE = 1e-10  # of the central master, on weights scaled to max |w| = 1
_banner_silenced = False


def silence_highs_banner() -> None:
    """highspy prints a copyright banner to the process's stdout (from C++) when its first
    solver object is made; make that first object with stdout pointed at /dev/null, so the CLI's
    output stays the user's. Call it before making a ``highspy.Highs`` (directly or through
    cvxpy); only the first call does anything."""
    global _banner_silenced
    if _banner_silenced:
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _banner_silenced = True


@dataclass
class LPBound:
    """``value`` = Σ π + B λ (a valid upper bound); ``columns`` the served sets generated
    (bitmasks, Python ints); ``lp_value`` the LP optimum over those columns."""

    value: float
    pi: np.ndarray
    lam: float
    columns: list[int]
    lp_value: float
    rounds: int
    weights: dict[int, float] | None = None


def subset_sums(x: np.ndarray) -> np.ndarray:
    """``s[mask] = Σ_{j ∈ mask} x[j]`` for every mask of ``len(x)`` bits (bit j = task j)."""
    s = np.zeros(1)
    for v in x:
        s = np.concatenate([s, s + v])
    return s


def mask_members(mask: int) -> list[int]:
    """The tasks of a bitmask (bit j = task j), in increasing order."""
    return [j for j in range(mask.bit_length()) if mask >> j & 1]


def master_lp(
    cover: np.ndarray, weights: np.ndarray, budget: int
) -> tuple[float, np.ndarray, float, np.ndarray]:
    """The master LP of :func:`central_master` by simplex: ``(value, π [n], λ, z [m])`` at an
    optimal vertex."""
    n, m = cover.shape
    res = linprog(
        -weights,
        A_ub=np.ones((1, m)),
        b_ub=[float(budget)],
        A_eq=cover,
        b_eq=np.ones(n),
        bounds=(0, None),
        method="highs",
    )
    if res.status != 0:
        raise RuntimeError(f"internal error: the master LP failed ({res.message})")
    pi = -np.asarray(res.eqlin.marginals, dtype=np.float64)
    lam = max(0.0, -float(res.ineqlin.marginals[0]))
    return -float(res.fun), pi, lam, np.asarray(res.x)


def central_master(
    cover: np.ndarray, weights: np.ndarray, budget: int
) -> tuple[float, np.ndarray, float]:
    """The master LP max Σ w z s.t. cover z = 1, Σ z ≤ budget, z ≥ 0 (``cover`` [n, m], entries
    in [0, 1]) by interior point without crossover: ``(value, π [n], λ ≥ 0)`` with central
    optimal duals. The master is massively degenerate, so a vertex's duals (:func:`master_lp`)
    are arbitrary, and column generation at them takes up to ten times more rounds. The
    weights are scaled to max |w| = 1 and the tolerances tightened to 1e-10 so that the duals
    are optimal to about 1e-14 relative, not the interior point's default 1e-8. Should the
    interior point stop short of that, its duals are returned all the same: every caller makes
    any prices a valid bound."""
    silence_highs_banner()
    n, m = cover.shape
    scale = max(float(np.abs(weights).max()), 1e-300)
    matrix = sp.csc_array(np.vstack([cover, np.ones((1, m))]))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = m, n + 1
    lp.col_cost_ = -np.asarray(weights, dtype=np.float64) / scale
    lp.col_lower_ = np.zeros(m)
    lp.col_upper_ = np.full(m, highspy.kHighsInf)
    lp.row_lower_ = np.r_[np.ones(n), -highspy.kHighsInf]
    lp.row_upper_ = np.r_[np.ones(n), float(budget)]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = matrix.indptr
    lp.a_matrix_.index_ = matrix.indices
    lp.a_matrix_.value_ = matrix.data
    solver = highspy.Highs()
    solver.setOptionValue("output_flag", False)
    solver.setOptionValue("solver", "ipm")
    solver.setOptionValue("run_crossover", "off")
    solver.setOptionValue("ipm_optimality_tolerance", IPM_TOLERANCE)
    solver.setOptionValue("primal_feasibility_tolerance", 10 * IPM_TOLERANCE)
    solver.setOptionValue("dual_feasibility_tolerance", 10 * IPM_TOLERANCE)
    solver.passModel(lp)
    solver.run()
    solution = solver.getSolution()
    duals = scale * np.asarray(solution.row_dual, dtype=np.float64)
    if not solution.dual_valid or not np.isfinite(duals).all():
        status = solver.modelStatusToString(solver.getModelStatus())
        raise RuntimeError(f"internal error: the master LP failed ({status})")
    value = -scale * float(solver.getInfo().objective_function_value)
    return value, -duals[:n], max(0.0, -float(duals[n]))


def cover_of(columns: Sequence[int], n: int) -> np.ndarray:
    """The 0/1 incidence ``[n, len(columns)]`` of served sets given as bitmasks (Python ints, any
    n)."""
    masks = np.array([int(c) for c in columns], dtype=object)
    return (masks[None, :] >> np.arange(n)[:, None] & 1).astype(np.float64)


def lp_bound_table(
    w: np.ndarray, n: int, budget: int, initial: Iterable[int] = (), max_rounds: int = 500
) -> LPBound:
    """The LP bound with exact pricing over the full table ``w`` (length 2^n, -inf where a set
    cannot be served). O(rounds · 2^n). Prices at central duals (:func:`central_master`): on
    degenerate masters column generation at a vertex's duals takes up to ten times more rounds.
    """
    finite = np.isfinite(w)
    finite[0] = False
    full = (1 << n) - 1
    columns = list(dict.fromkeys([full, *[int(c) for c in initial if finite[int(c)]]]))
    scale = max(1.0, float(np.abs(w[finite]).max()))
    tol = 1e-9 * scale
    per_round = max(2 * n, 8)
    lp_value, pi, rounds = -math.inf, np.zeros(n), 0
    for rounds in range(1, max_rounds + 1):  # noqa: B007 (rounds is reported)
        lp_value, pi, lam = central_master(cover_of(columns, n), w[columns], budget)
        reduced = np.where(finite, w - subset_sums(pi), -np.inf)
        k = min(per_round, len(reduced) - 1)
        top = np.argpartition(-reduced, k)[:k]
        top = top[reduced[top] > lam + tol]
        known = set(columns)
        new = [int(c) for c in top[np.argsort(-reduced[top])] if int(c) not in known]
        if not new:
            break
        columns.extend(new)

    # the interior point's duals are optimal to about 1e-14 of max |w|; a vertex's are exact
    # (a bound of exactly 0 stays 0) but may let sets outside the columns price out
    def made_valid(prices: np.ndarray) -> tuple[np.ndarray, float]:
        return prices, max(0.0, float(np.where(finite, w - subset_sums(prices), -np.inf).max()))

    vertex = master_lp(cover_of(columns, n), w[columns], budget)[1]
    pi, lam_valid = min(
        (made_valid(pi), made_valid(vertex)), key=lambda pl: float(pl[0].sum()) + budget * pl[1]
    )
    return LPBound(
        value=float(pi.sum() + budget * lam_valid),
        pi=pi,
        lam=lam_valid,
        columns=columns,
        lp_value=lp_value,
        rounds=rounds,
    )


@dataclass
class Pricing:
    """Result of :func:`price`: served sets found with w(P) − π(P) > ``floor`` (bitmasks, best
    first), the best value seen, and ``upper`` ≥ max_P w(P) − π(P) (exact when ``complete``)."""

    columns: list[int]
    best: float
    upper: float
    complete: bool
    nodes: int


def price(
    values: np.ndarray,
    pi: np.ndarray,
    *,
    partition: bool,
    singleton_score: float | None,
    floor: float,
    enough: int | None = None,
    node_limit: int = 100_000,
    time_limit: float | None = None,
) -> Pricing:
    """max over served sets P of w(P) − π(P) (at least ``floor``), by best-first branch and bound
    over the group S around P.

    w(P) − π(P) = max over S ⊇ P of Σ_{j ∈ P} (a(j, S) − π_j), so the value is the max over
    groups S of f(S) = Σ_{j ∈ S} g(a(j, S) − π_j) with g(t) = max(t, 0) (a task of S with a
    negative term is a helper, not served) or g(t) = t with ``partition=True`` (S = P). A node
    fixes tasks F in S and leaves U undecided; for each group size k its bound is
    Σ_{j ∈ F} g(u_j(k)) + (the k − |F| largest g(u_j(k)), j ∈ U), where u_j(k) is a(j, S) with the
    sources of j outside F replaced by its best sources in U: O(n² log n) per node. It branches on
    the undecided task of largest term. Stops after ``enough`` sets above ``floor`` (column
    generation needs a few, not the best), ``node_limit`` nodes or ``time_limit`` seconds;
    ``upper`` is then the largest bound of an unexplored node.
    """
    started = time.perf_counter()
    search = _PricingSearch(values, pi, partition=partition, floor=floor)
    if singleton_score is not None:
        search.add_singletons(singleton_score)
    n = len(values)
    root = (np.zeros(n, dtype=bool), np.ones(n, dtype=bool))
    bound, choice = search.node_bound(*root)
    heap = [(-bound, 0, choice, *root)]
    nodes, pushed, upper_open = 0, 1, -math.inf
    while heap:
        if -heap[0][0] <= search.best + search.tol:
            heap = []
            break
        if (
            nodes >= node_limit
            or (enough is not None and len(search.found) >= enough)
            or (time_limit is not None and time.perf_counter() - started > time_limit)
        ):
            upper_open = -heap[0][0]
            break
        _, _, choice, fixed, free = heapq.heappop(heap)
        nodes += 1
        without = free.copy()
        without[choice] = False
        with_fixed = fixed.copy()
        with_fixed[choice] = True
        if with_fixed.sum() >= 2:
            search.evaluate(with_fixed)
        for child in ((with_fixed, without), (fixed, without)):
            bound, choice = search.node_bound(*child)
            if bound > search.best + search.tol and choice >= 0:
                heapq.heappush(heap, (-bound, pushed, choice, *child))
                pushed += 1
    found = search.found
    columns = sorted(found, key=lambda m: -found[m])
    return Pricing(columns, search.best, max(search.best, upper_open), not heap, nodes)


class _PricingSearch:
    """What :func:`price`'s search knows: the terms of f, the sets found above ``floor``
    (bitmask → value) and the best value seen; bounds and evaluates its nodes (``fixed``,
    ``free``: [n] bool)."""

    def __init__(self, values: np.ndarray, pi: np.ndarray, *, partition: bool, floor: float):
        n = len(values)
        self.n, self.pi, self.partition, self.floor = n, pi, partition, floor
        self.off = values - np.diag(np.diag(values))
        self.tol = 1e-12 * max(1.0, float(np.abs(values).max()) * n)
        self.sizes = np.arange(n + 1)
        self.found: dict[int, float] = {}
        self.best = floor

    def g(self, t):
        return t if self.partition else np.maximum(t, 0.0)

    def add_singletons(self, singleton_score: float) -> None:
        """Every singleton {j} is worth ``singleton_score`` − π_j."""
        alone = singleton_score - self.pi
        for j in np.flatnonzero(alone > self.floor + self.tol):
            self.found[1 << int(j)] = float(alone[j])
        self.best = max(self.best, float(alone.max()))

    def evaluate(self, fixed: np.ndarray) -> None:
        """Record f of the group ``fixed`` (at least two tasks) and the set it serves."""
        idx = np.flatnonzero(fixed)
        terms = self.off[np.ix_(idx, idx)].sum(axis=0) / (len(idx) - 1) - self.pi[idx]
        value = float(self.g(terms).sum())
        if value > self.floor + self.tol and (self.partition or (terms > 0).any()):
            served = idx if self.partition else idx[terms > 0]
            self.found[sum(1 << int(j) for j in served)] = value
        self.best = max(self.best, value)

    def node_bound(self, fixed: np.ndarray, free: np.ndarray) -> tuple[float, int]:
        """(max over k of the bound, the free task with the largest term at the best k)."""
        off, g = self.off, self.g
        f, u = int(fixed.sum()), int(free.sum())
        k_lo, k_hi = max(f + 1, 2), f + u
        if k_hi < k_lo:
            return -math.inf, -1
        from_fixed = off[fixed].sum(axis=0)
        rows = np.flatnonzero(free)
        cand = off[rows]
        cand[np.arange(len(rows)), rows] = -np.inf  # j is not its own source
        prefix = np.vstack([np.zeros(self.n), np.cumsum(-np.sort(-cand, axis=0), axis=0)])
        ks = self.sizes[k_lo : k_hi + 1]
        taken = np.clip(np.where(fixed[None, :], ks[:, None] - f, ks[:, None] - f - 1), 0, u)
        with np.errstate(invalid="ignore"):
            terms = g(
                (from_fixed + np.take_along_axis(prefix, taken, axis=0)) / (ks[:, None] - 1)
                - self.pi
            )
        terms = np.where(np.isfinite(terms), terms, -np.inf)
        fixed_part = np.where(fixed, terms, 0.0).sum(axis=1)
        free_terms = np.where(free, terms, -np.inf)
        ordered = np.hstack([np.zeros((len(ks), 1)), np.cumsum(-np.sort(-free_terms), axis=1)])
        bounds = fixed_part + ordered[np.arange(len(ks)), ks - f]
        bounds = np.where(np.isfinite(bounds), bounds, -np.inf)
        k = int(np.argmax(bounds))
        return float(bounds[k]), int(np.argmax(free_terms[k]))


def size_bound(
    values: np.ndarray, budget: int, *, partition: bool, singleton_score: float | None
) -> float:
    """The bound of :func:`size_bound_prices`."""
    bound, _ = size_bound_prices(
        values, budget, partition=partition, singleton_score=singleton_score
    )
    return bound


def size_bound_prices(
    values: np.ndarray, budget: int, *, partition: bool, singleton_score: float | None
) -> tuple[float, np.ndarray]:
    """``(bound, π [n])``: a bound from group sizes alone (any n, one LP): in a group of k
    tasks, a(j, S) is at most m_j(k), the mean of the k − 1 largest Z[i, j]. So f(S) ≤ the sum
    of the k largest g(m_j(k) − π_j) for every S of size k, and the best (π, λ) under that
    relaxation solves

        min Σ π + B λ  s.t.  k θ_k + Σ_j s_kj ≤ λ,  s_kj ≥ m_j(k) − π_j − θ_k,  s_kj ≥ 0
                             (and s_kj ≥ −θ_k without ``partition``),  λ ≥ 0,

    the LP form of "the k largest terms sum to at most λ". Loose when tasks' best sources differ
    (each task gets its own best partners), tight when groups are clear-cut. Its π are well
    balanced prices at which :func:`price` often completes: :func:`lagrangian_bound` at them is
    never above this bound (its root bound is this relaxation) and usually below it."""
    n = len(values)
    if n == 1:
        return float(singleton_score), np.array([float(singleton_score)])  # the only grouping
    cost, a_ub, b_ub, bounds = _size_bound_lp(values, budget, partition, singleton_score)
    res = linprog(cost, A_ub=a_ub, b_ub=b_ub, bounds=bounds, method="highs")
    if res.status != 0:
        raise RuntimeError(f"internal error: the size-bound LP failed ({res.message})")
    # re-derive a valid bound from the returned π, so solver tolerances cannot undercut it
    pi = res.x[:n]
    lam = float(size_relaxation(values, pi, partition=partition).max())
    if singleton_score is not None:
        lam = max(lam, float(np.max(singleton_score - pi)))
    return float(pi.sum() + budget * max(lam, 0.0)), pi


def _size_bound_lp(
    values: np.ndarray, budget: int, partition: bool, singleton_score: float | None
) -> tuple[np.ndarray, sp.csr_array, list[float], list[tuple[float | None, float | None]]]:
    """The LP of :func:`size_bound_prices` for ``linprog``: ``(cost, A_ub, b_ub, bounds)`` over
    the variables π [n], λ, θ [n − 1], s [n − 1, n] (n ≥ 2)."""
    n = len(values)
    off = values.copy()
    np.fill_diagonal(off, -np.inf)
    best_mean = np.cumsum(-np.sort(-off, axis=0)[: n - 1], axis=0) / np.arange(1, n)[:, None]
    sizes = n - 1  # k = 2..n
    pi_, lam_, theta_, s_ = 0, n, n + 1, n + 1 + sizes
    count = s_ + sizes * n
    rows, cols, data, rhs = [], [], [], []
    r = 0
    for q in range(sizes):
        k = q + 2
        s_row = s_ + q * n + np.arange(n)
        rows += [r] * (n + 2)
        cols += [theta_ + q, lam_, *s_row]
        data += [k, -1.0, *([1.0] * n)]
        rhs.append(0.0)
        r += 1
        for j in range(n):
            rows += [r, r, r]
            cols += [pi_ + j, theta_ + q, s_row[j]]
            data += [-1.0, -1.0, -1.0]
            rhs.append(-best_mean[q, j])
            r += 1
            if not partition:
                rows += [r, r]
                cols += [theta_ + q, s_row[j]]
                data += [-1.0, -1.0]
                rhs.append(0.0)
                r += 1
    if singleton_score is not None:
        for j in range(n):
            rows += [r, r]
            cols += [pi_ + j, lam_]
            data += [-1.0, -1.0]
            rhs.append(-singleton_score)
            r += 1
    cost = np.zeros(count)
    cost[:n] = 1.0
    cost[lam_] = budget
    bounds = [(None, None)] * n + [(0, None)] + [(None, None)] * sizes + [(0, None)] * (sizes * n)
    return cost, sp.csr_array((data, (rows, cols)), shape=(r, count)), rhs, bounds


def size_relaxation(values: np.ndarray, pi: np.ndarray, *, partition: bool) -> np.ndarray:
    """``upper [n + 1]``: upper[k] ≥ max over groups S of k tasks of f(S) = Σ_{j ∈ S}
    g(a(j, S) − π_j) (k ≥ 2; −inf below): the sum of the k largest g(m_j(k) − π_j), m_j(k) the
    mean of the k − 1 largest Z[i, j] (each task with its own best partners)."""
    n = len(values)
    off = values.astype(np.float64, copy=True)
    np.fill_diagonal(off, -np.inf)
    upper = np.full(n + 1, -np.inf)
    if n < 2:
        return upper
    best_mean = np.cumsum(-np.sort(-off, axis=0)[: n - 1], axis=0) / np.arange(1, n)[:, None]
    terms = best_mean - pi  # row q: groups of q + 2 tasks
    if not partition:
        terms = np.maximum(terms, 0.0)
    ordered = np.cumsum(-np.sort(-terms, axis=1), axis=1)
    upper[2:] = ordered[np.arange(n - 1), np.arange(1, n)]
    return upper


def _size_relaxation_subgradient(
    best_mean: np.ndarray,
    pi: np.ndarray,
    budget: int,
    partition: bool,
    singleton_score: float | None,
) -> tuple[float, np.ndarray]:
    """``(F(π), a subgradient of F at π)`` for F(π) = Σ π + B · max(0, max_k upper_k(π),
    max_j singleton_score − π_j), the bound of :func:`size_relaxation` at any π."""
    n = len(pi)
    terms = best_mean - pi  # row q: groups of q + 2 tasks
    if not partition:
        terms = np.maximum(terms, 0.0)
    order = np.argsort(-terms, axis=1)
    ordered = np.cumsum(np.take_along_axis(terms, order, axis=1), axis=1)
    upper = ordered[np.arange(n - 1), np.arange(1, n)]
    q = int(np.argmax(upper))
    lam, chosen = float(upper[q]), order[q, : q + 2]
    if not partition:
        chosen = chosen[terms[q, chosen] > 0]
    if singleton_score is not None and float(np.max(singleton_score - pi)) > lam:
        lam, chosen = float(np.max(singleton_score - pi)), np.array([int(np.argmin(pi))])
    step = np.ones(n)
    if lam > 0:
        step[chosen] -= budget
    return float(pi.sum() + budget * max(lam, 0.0)), step


def subgradient_prices(
    values: np.ndarray,
    budget: int,
    pi: np.ndarray,
    *,
    partition: bool,
    singleton_score: float | None,
    target: float,
    deadline: float,
    iterations: int = 2000,
) -> tuple[float, np.ndarray]:
    """``(bound, π)``: the size relaxation's bound (:func:`size_relaxation`) minimised over the
    prices by Polyak's subgradient method from ``pi``, with ``target`` (a grouping's score, a
    lower estimate of the minimum) as the step's aim; at most ``iterations`` steps or until
    ``time.perf_counter()`` passes ``deadline``. The best π met and its bound; any π gives a
    valid bound, so the LP of :func:`size_bound_prices` (minutes beyond 100 tasks) is not
    needed for a valid one, only for the tightest. O(n² log n) a step."""
    n = len(values)
    if n == 1:
        return float(singleton_score), np.array([float(singleton_score)])
    off = values.astype(np.float64, copy=True)
    np.fill_diagonal(off, -np.inf)
    best_mean = np.cumsum(-np.sort(-off, axis=0)[: n - 1], axis=0) / np.arange(1, n)[:, None]
    pi = np.asarray(pi, dtype=np.float64).copy()
    best, best_pi = math.inf, pi
    for _ in range(iterations):
        value, step = _size_relaxation_subgradient(
            best_mean, pi, budget, partition, singleton_score
        )
        if value < best:
            best, best_pi = value, pi.copy()
        norm = float(step @ step)
        if norm == 0.0 or time.perf_counter() > deadline:
            break
        # half of Polyak's step to the target: the target is below the minimum, not at it
        pi = pi - 0.5 * max(value - target, 1e-9 * max(1.0, abs(target))) / norm * step
    return best, best_pi


def lagrangian_bound(
    values: np.ndarray,
    pi: np.ndarray,
    budget: int,
    *,
    partition: bool,
    singleton_score: float | None,
    node_limit: int = 20_000,
    time_limit: float | None = None,
) -> tuple[float, Pricing]:
    """Σ π + B · max(0, max_P w(P) − π(P)) for any prices ``π`` — the LP dual objective at
    (π, the smallest valid λ), so an upper bound on every grouping whatever π is — with the max
    bounded by :func:`price` (exact when it completes within ``node_limit`` nodes /
    ``time_limit`` seconds, else the largest bound of an unexplored node)."""
    pricing = price(
        values,
        pi,
        partition=partition,
        singleton_score=singleton_score,
        floor=-math.inf,
        node_limit=node_limit,
        time_limit=time_limit,
    )
    return float(pi.sum() + budget * max(0.0, pricing.upper)), pricing


def lp_bound_search(
    values: np.ndarray,
    budget: int,
    rows: Callable[[np.ndarray], np.ndarray],
    initial: Iterable[int],
    *,
    partition: bool,
    singleton_score: float | None,
    time_limit: float = 5.0,
) -> LPBound:
    """The LP bound for any n without the 2^n table: column generation priced by growing sets
    greedily (every task a seed, adding the task that raises w(P) − π(P) most), then made valid
    with the best of :func:`size_bound`, Σ π + B·(an upper bound on the pricing problem from
    :func:`price` within the remaining time) and :func:`lagrangian_bound` at the size
    relaxation's prices (``SIZE_PRICES_NODES`` search nodes). ``rows(member [m, n] bool) → w
    [m]``."""
    started = time.perf_counter()
    n = len(values)
    weights: dict[int, float] = {}
    columns = evaluate([(1 << n) - 1, *initial], weights, rows, n)
    tol = 1e-12 * max(1.0, float(np.abs(values).max()) * n)
    columns, lp_value, pi, lam, rounds = greedy_column_generation(
        values, budget, rows, columns, weights, tol=tol, deadline=started + time_limit / 2
    )
    left = max(0.1, time_limit - (time.perf_counter() - started))
    pricing = price(
        values,
        pi,
        partition=partition,
        singleton_score=singleton_score,
        floor=lam,
        time_limit=left,
    )
    certified = float(pi.sum() + budget * max(0.0, lam, pricing.upper))
    by_size, size_pi = size_bound_prices(
        values, budget, partition=partition, singleton_score=singleton_score
    )
    # The column generation's prices are extreme points of a restricted dual, at which the
    # pricing search rarely completes; the size relaxation's are balanced, and there it often
    # does (or gets close), which is worth 6-14 points of certified gap at 40 tasks.
    at_size_prices, _ = lagrangian_bound(
        values,
        size_pi,
        budget,
        partition=partition,
        singleton_score=singleton_score,
        node_limit=SIZE_PRICES_NODES,
    )
    return LPBound(
        value=min(certified, by_size, at_size_prices),
        pi=pi,
        lam=max(0.0, lam, pricing.upper),
        columns=columns,
        lp_value=lp_value,
        rounds=rounds,
        weights=weights,
    )


def evaluate(
    masks: Iterable[int],
    weights: dict[int, float],
    rows: Callable[[np.ndarray], np.ndarray],
    n: int,
) -> list[int]:
    """Record w of every new set of ``masks`` in ``weights`` (one ``rows`` call) and return
    those that can be served (finite w), in order."""
    masks = [m for m in dict.fromkeys(masks) if m not in weights]
    if masks:
        for m, w in zip(masks, rows(cover_of(masks, n).T.astype(bool)), strict=True):
            weights[m] = float(w)
    return [m for m in masks if math.isfinite(weights[m])]


def greedy_column_generation(
    values: np.ndarray,
    budget: int,
    rows: Callable[[np.ndarray], np.ndarray],
    columns: list[int],
    weights: dict[int, float],
    *,
    tol: float,
    deadline: float,
) -> tuple[list[int], float, np.ndarray, float, int]:
    """Column generation priced by :func:`grow_columns` (the ``4 n`` best sets with
    w(P) − π(P) > λ + ``tol``) from ``columns``, until no set prices out or
    ``time.perf_counter()`` passes ``deadline`` (after one round at least). ``weights`` holds w
    of every set met and is extended in place. Returns (columns, LP value over them, π [n], λ,
    rounds) from the last master solved."""
    n = len(values)
    columns = list(columns)
    rounds = 0
    while True:
        rounds += 1
        lp_value, pi, lam, _ = master_lp(
            cover_of(columns, n), np.array([weights[c] for c in columns]), budget
        )
        new = evaluate(grow_columns(values, pi, lam + tol, rows, keep=4 * n), weights, rows, n)
        if not new:
            break
        columns += new
        if time.perf_counter() >= deadline:
            break
    return columns, lp_value, pi, lam, rounds


def grow_columns(
    values: np.ndarray,
    pi: np.ndarray,
    floor: float,
    rows: Callable[[np.ndarray], np.ndarray],
    keep: int,
) -> list[int]:
    """Greedy pricing: the ``keep`` best served sets (bitmasks, best first) with
    w(P) − π(P) > ``floor`` met while growing a set from every task, all seeds at once, each
    step adding the task that raises w(P) − π(P) most. ``rows(member [m, n] bool) → w [m]``;
    n − 1 calls of ``rows`` on n² sets each."""
    n = len(values)
    member = np.eye(n, dtype=bool)
    found: dict[int, float] = {}
    cells = np.arange(n * n)
    for _ in range(n - 1):
        grow = np.repeat(member, n, axis=0)
        grow[cells, np.tile(np.arange(n), n)] = True
        gains = (rows(grow) - grow @ pi).reshape(n, n)
        gains[member] = -np.inf
        add = np.argmax(gains, axis=1)
        member = member.copy()
        member[np.arange(n), add] = True
        reduced = gains[np.arange(n), add]
        for r in np.flatnonzero(reduced > floor):
            found[sum(1 << int(j) for j in np.flatnonzero(member[r]))] = float(reduced[r])
    return sorted(found, key=lambda m: -found[m])[:keep]
