"""Opt-in certificate for large problems: the LP bound priced by semidefinite relaxations.

Beyond 20 tasks the default bound (:func:`taskgroup.grouping.heuristics.upper_bound`) prices the
set-partitioning LP with relaxations in which every task picks its own best partners, and it can
be loose (docs/grouping.md, *Why it is loose*). :func:`certify` spends minutes instead of seconds
and bounds the pricing problem for each group size k by a semidefinite relaxation. With
x_i = [i ∈ S], y_j = [j ∈ S is served] and the moment matrix P of (1, x, y) (blocks X, W = x yᵀ,
Y), the relaxation is

    max  Σ_{i ≠ j} Z[i, j] W_ij / (k − 1) − Σ_j π_j y_j
    s.t. P ⪰ 0,  P_00 = 1,  diag X = x,  diag Y = y,  W_jj = y_j,  Σ_i x_i = k,
         Σ_i X_ij = k x_j,  Σ_i W_ij = k y_j,  y ≤ x,
         max(0, x_i + y_j − 1) ≤ W_ij ≤ min(x_i, y_j),  X ≥ 0,  0 ≤ Y_ij ≤ W_ij  (i ≠ j)
         (and y = x with ``partition=True``),

which SCS solves in 0.2–3 s at 40 tasks (its factorisation is built once per size, and later
solves are warm-started, under 0.1 s when the prices move little). Its reported value is not
trusted. The bound
used is the Lagrangian value of the solver's multipliers (μ, ν ≥ 0): every admissible P has
trace ≤ 1 + 2k, so

    max over groups of size k ≤ μ·b + (1 + 2k) · max(0, λ_max(C − A*(μ, ν))),

whatever the multipliers are. For any prices π, Σ π + B · max_k (that bound) then bounds every
grouping, as in :mod:`taskgroup.grouping.bounds`.

The prices come from a proximal bundle method on the bound as a function of π,
f(π) = Σ π + B · max(0, max_k (bound of size k at π)), which is convex. Its cutting-plane model
is the master LP over the served sets that column generation found plus one fractional column
(y, value) per solved relaxation (that LP relaxes the set-partitioning LP, so its duals are
admissible prices). The first round prices at the master's duals by interior point without
crossover (the master is massively degenerate and a vertex's duals are arbitrary); every later
round minimises the model plus ‖π − center‖² / (2t) (Clarabel through cvxpy), and moves the
center there only when f fell by at least ``SERIOUS_STEP`` of what the model predicted (doubling
t; halving it otherwise). Every round's f is a valid bound; the lowest is kept. Plain cutting
planes, or Wentges smoothing at a fixed weight, oscillate: on ``planted-2B`` at 40 tasks they
stalled at 9.4% where the bundle reaches 0.00075% (docs/grouping.md).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp

from taskgroup.grouping.bounds import (
    central_master,
    cover_of,
    greedy_column_generation,
    size_relaxation,
)
from taskgroup.grouping.heuristics import ServedSets, upper_bound
from taskgroup.grouping.objective import (
    Grouping,
    affinity_problem,
    relative_gap,
    score,
    served_masks,
)

SERIOUS_STEP = 0.1  # the share of the model's predicted decrease a round must realise
FIRST_STEP = 1.0  # the first proximal step t (prices of a matrix scaled to max |Z| = 1)
SCS_EPS = 1e-6
CLOSE_ENOUGH = 1e-6  # relative gap at which rounds stop: SCS's accuracy, more is noise
COLUMN_SECONDS = 60.0  # the most the greedy column generation may take first


class SizeRelaxation:
    """The semidefinite relaxation above for groups of ``k`` of ``n`` tasks, handed to SCS once
    (its factorisation is kept); the prices change only the objective, and each solve is
    warm-started from the last."""

    def __init__(self, n: int, k: int, partition: bool):
        import scs

        self.n, self.k = n, k
        self.size = size = 2 * n + 1
        self.trace_bound = 1.0 + 2.0 * k
        self.a_eq, self.b_eq, self.a_in, self.b_in = _constraints(n, k, partition)
        self.unpack = _unpack_svec(size)
        m = self.unpack.shape[1]
        # SCS: min c·x s.t. A x + s = b, s ∈ {0}^eq × R+^in × PSD (x = svec P, s = svec P)
        a = sp.vstack([self.a_eq @ self.unpack, self.a_in @ self.unpack, -sp.identity(m)])
        self.solver = scs.SCS(
            {"A": a.tocsc(), "b": np.r_[self.b_eq, self.b_in, np.zeros(m)], "c": np.zeros(m)},
            {"z": len(self.b_eq), "l": len(self.b_in), "s": [size]},
            eps_abs=SCS_EPS,
            eps_rel=SCS_EPS,
            max_iters=50_000,
            verbose=False,
        )
        self.solved = False

    def objective_of(self, values: np.ndarray, pi: np.ndarray) -> np.ndarray:
        n = self.n
        c = np.zeros((self.size, self.size))
        c[1 : n + 1, n + 1 :] = (values - np.diag(np.diag(values))) / (self.k - 1)
        c[0, n + 1 :] = -pi
        return c.reshape(-1)

    def solve(self, values: np.ndarray, pi: np.ndarray) -> tuple[float, np.ndarray, float]:
        """``(upper, y [n], value)``: a valid bound on max f(S) over |S| = k at prices ``pi``,
        and the relaxation's solution as a fractional served set y worth ``value`` before
        prices (Σ Z W / (k − 1))."""
        c = self.objective_of(values, pi)
        self.solver.update(c=-(self.unpack.T @ c))
        solution = self.solver.solve(warm_start=self.solved)
        self.solved = True
        x, duals = solution["x"], solution["y"]
        if not (np.isfinite(x).all() and np.isfinite(duals).all()):
            return math.inf, np.zeros(self.n), -math.inf
        moment = (self.unpack @ x).reshape(self.size, self.size)
        n = self.n
        y = np.clip(moment[0, n + 1 :], 0.0, 1.0)
        w = moment[1 : n + 1, n + 1 :]
        value = float(((values - np.diag(np.diag(values))) * w).sum() / (self.k - 1))
        eq = len(self.b_eq)
        return self._lagrangian(c, duals[:eq], duals[eq : eq + len(self.b_in)]), y, value

    def _lagrangian(self, c: np.ndarray, mu: np.ndarray, nu: np.ndarray) -> float:
        """μ·b_eq + ν·b_in + trace bound · max(0, λ_max(C − A_eq*μ − A_in*ν)) for the solver's
        multipliers (ν clipped at 0): valid for any, since every admissible P has P ⪰ 0 and
        trace ≤ 1 + 2k."""
        nu = np.maximum(nu, 0.0)
        slack = (c - self.a_eq.T @ mu - self.a_in.T @ nu).reshape(self.size, -1)
        top = float(np.linalg.eigvalsh((slack + slack.T) / 2)[-1])
        constant = float(self.b_eq @ mu) + float(self.b_in @ nu)
        return constant + self.trace_bound * max(0.0, top)


def _unpack_svec(size: int) -> sp.csr_array:
    """The map from SCS's vectorisation of a symmetric matrix (lower triangle column by column,
    off-diagonal entries times √2) to its row-major flattening: ``flat = T @ svec``."""
    rows, cols, entries = [], [], []
    index = 0
    for b in range(size):
        for a in range(b, size):
            scale = 1.0 if a == b else 1.0 / math.sqrt(2.0)
            for flat in {a * size + b, b * size + a}:
                rows.append(flat)
                cols.append(index)
                entries.append(scale)
            index += 1
    return sp.csr_array((entries, (rows, cols)), shape=(size * size, index))


def _constraints(n: int, k: int, partition: bool):
    """The linear constraints of the relaxation over the row-major flattening of P."""
    size = 2 * n + 1

    def x(i: int) -> int:
        return 1 + i

    def y(j: int) -> int:
        return 1 + n + j

    rows: dict[str, list] = {"eq": [[], [], [], []], "in": [[], [], [], []]}

    def add(kind: str, terms: list[tuple[int, int, float]], rhs: float) -> None:
        r, c, v, b = rows[kind]
        row = len(b)
        for a, bb, coefficient in terms:
            r.append(row)
            c.append(a * size + bb)
            v.append(coefficient)
        b.append(rhs)

    add("eq", [(0, 0, 1.0)], 1.0)
    for i in range(n):
        add("eq", [(x(i), x(i), 1.0), (0, x(i), -1.0)], 0.0)
        add("eq", [(y(i), y(i), 1.0), (0, y(i), -1.0)], 0.0)
        add("eq", [(x(i), y(i), 1.0), (0, y(i), -1.0)], 0.0)
        if partition:
            add("eq", [(0, y(i), 1.0), (0, x(i), -1.0)], 0.0)
    add("eq", [(0, x(i), 1.0) for i in range(n)], float(k))
    for j in range(n):
        add("eq", [*((x(i), x(j), 1.0) for i in range(n)), (0, x(j), -float(k))], 0.0)
        add("eq", [*((x(i), y(j), 1.0) for i in range(n)), (0, y(j), -float(k))], 0.0)
    for j in range(n):
        add("in", [(0, y(j), 1.0), (0, x(j), -1.0)], 0.0)
        for i in range(n):
            if i == j:
                continue
            add("in", [(x(i), y(j), -1.0)], 0.0)
            add("in", [(x(i), y(j), 1.0), (0, y(j), -1.0)], 0.0)
            add("in", [(x(i), y(j), 1.0), (0, x(i), -1.0)], 0.0)
            add("in", [(x(i), y(j), -1.0), (0, x(i), 1.0), (0, y(j), 1.0)], 1.0)
            add("in", [(x(i), x(j), -1.0)], 0.0)
            add("in", [(y(i), y(j), -1.0)], 0.0)
            add("in", [(y(i), y(j), 1.0), (x(i), y(j), -1.0)], 0.0)

    def matrix(kind: str):
        r, c, v, b = rows[kind]
        return sp.csr_array((v, (r, c)), shape=(len(b), size * size)), np.array(b)

    return (*matrix("eq"), *matrix("in"))


def proximal_master(
    cover: np.ndarray, weights: np.ndarray, budget: int, center: np.ndarray, step: float
) -> tuple[np.ndarray, float]:
    """The bundle step: ``(π [n], model(π))`` minimising model(π) + ‖π − center‖² / (2·step),
    where model(π) = Σ π + B · max(0, max_c (w_c − cover[:, c]·π)) is the master LP's dual
    function (``cover`` [n, m] as in :func:`~taskgroup.grouping.bounds.central_master`), a lower
    model of the bound."""
    import cvxpy as cp

    pi, lam = cp.Variable(len(center)), cp.Variable(nonneg=True)
    problem = cp.Problem(
        cp.Minimize(cp.sum(pi) + budget * lam + cp.sum_squares(pi - center) / (2 * step)),
        [cover.T @ pi + lam >= weights],
    )
    problem.solve(solver=cp.CLARABEL)
    if pi.value is None:
        raise RuntimeError(f"internal error: the proximal master failed ({problem.status})")
    prices = np.asarray(pi.value, dtype=np.float64)
    cut = float(np.max(weights - cover.T @ prices))
    return prices, float(prices.sum() + budget * max(0.0, cut))


def certify(
    Z_or_A,
    grouping: Grouping,
    *,
    time_limit: float = 600.0,
    on_round: Callable[[int, float, float], None] | None = None,
) -> Grouping:
    """Spend up to ``time_limit`` seconds proving how far ``grouping`` can be from the optimum,
    and return it with the lower of its own bound and the certificate's (``optimal`` set when
    they meet; ``info["certificate"]`` records rounds, seconds and both bounds).

    Opt-in because it is slow: at 40 tasks the first round comes after 2–4 minutes (greedy
    columns, then a first solve of one semidefinite program per group size), the next few take a
    minute or two, later ones seconds (warm-started). On structured matrices the bound is within
    2% after about 7 minutes (analysis/bench_certify.py). It stops at ``time_limit``, at a relative
    gap of ``CLOSE_ENOUGH``, or when the bundle's model predicts no decrease. See the module
    docstring for the method and docs/grouping.md for what it proved on the benchmark.

    Args:
        Z_or_A: the matrix the grouping was selected from (an ``AffinityMatrix`` or a square
            array; the grouping's task names pick and order its rows).
        grouping: what ``tg.select_groups`` returned (its budget, ``partition`` and
            ``singleton_score`` define the problem).
        time_limit: seconds of wall clock, checked between semidefinite programs.
        on_round: called after each round with (round, bound of the round, best bound).

    Raises:
        ValueError: a non-positive ``time_limit``, or a matrix on which the grouping does not
            score what it says (not the matrix it was selected from).
    """
    started = time.perf_counter()
    if isinstance(time_limit, bool) or not isinstance(time_limit, int | float) or time_limit <= 0:
        raise ValueError(f"time_limit must be a positive number of seconds, got {time_limit!r}")
    values = _matrix_of(Z_or_A, grouping)
    if grouping.optimal:
        return grouping
    scale = max(float(np.abs(values).max()), 1e-300)  # SCS's tolerances are absolute
    bundle = _Bundle(values / scale, grouping, scale)
    bundle.start(deadline=started + min(COLUMN_SECONDS, time_limit / 4))
    rounds, last_round = 0, 0.0
    while time.perf_counter() - started + last_round < time_limit:
        round_started = time.perf_counter()
        rounds += 1
        round_bound = bundle.round(deadline=started + time_limit)
        if on_round is not None:
            on_round(rounds, round_bound * scale, bundle.best * scale)
        last_round = time.perf_counter() - round_started
        if bundle.converged():
            break
    bound = bundle.best * scale
    facts = {
        "bound": bound,
        "default_bound": grouping.bound,
        "rounds": rounds,
        "seconds": time.perf_counter() - started,
        "relaxations_solved": len(bundle.relaxations),
    }
    return dataclasses.replace(
        grouping,
        bound=max(bound, grouping.score),
        optimal=relative_gap(bound, grouping.score) <= 1e-9,
        info={**grouping.info, "certificate": facts},
    )


def _matrix_of(Z_or_A, grouping: Grouping) -> np.ndarray:
    """The values [n, n] of ``Z_or_A`` in the grouping's task order, checked to be the matrix the
    grouping was selected from (it scores what the grouping says)."""
    values, tasks = affinity_problem(Z_or_A, grouping.tasks)
    rescored = score(
        values,
        [[tasks.index(t) for t in group] for group in grouping.groups],
        partition=grouping.partition,
        singleton_score=grouping.singleton_score,
    )
    if not math.isclose(rescored, grouping.score, rel_tol=1e-9, abs_tol=1e-12):
        raise ValueError(
            f"the grouping scores {rescored:.6g} on this matrix, not its {grouping.score:.6g}: "
            "certify it against the matrix it was selected from"
        )
    return values


class _Bundle:
    """The proximal bundle method of the module docstring on ``z`` = Z / ``scale``: the cutting
    planes (the master LP's columns, ``covers`` [n] each worth ``worth``; ``weights``: w of the
    integer ones), the semidefinite relaxation of each group size met, the center, the step and
    ``best``, the lowest bound so far (on ``z``). :meth:`start` first, then :meth:`round`."""

    def __init__(self, z: np.ndarray, grouping: Grouping, scale: float):
        self.z, self.n, self.budget = z, len(z), grouping.budget
        self.grouping, self.scale = grouping, scale
        self.sets = ServedSets(
            z,
            partition=grouping.partition,
            singleton_score=None
            if grouping.singleton_score is None
            else grouping.singleton_score / scale,
        )
        self.target = grouping.score / scale
        self.relaxations: dict[int, SizeRelaxation] = {}
        self.center: np.ndarray | None = None
        self.weights: dict[int, float] = {}
        self.covers: list[np.ndarray] = []
        self.worth: list[float] = []
        self.best = math.inf
        self.at_center, self.model, self.step = math.inf, -math.inf, FIRST_STEP

    def start(self, deadline: float) -> None:
        """The first cutting planes: the default bound's columns, then greedy column generation
        from them until ``deadline`` (good integer columns make good first prices)."""
        sets = self.sets
        lp = upper_bound(sets, self.budget, served_masks(self.grouping), time_limit=3.0)
        self.weights.update(lp.weights or {})
        columns = [c for c in lp.columns if math.isfinite(self.weights.setdefault(c, sets.of(c)))]
        columns, *_ = greedy_column_generation(
            self.z, self.budget, sets.rows, columns, self.weights, tol=sets.tol, deadline=deadline
        )
        self.covers.extend(cover_of(columns, self.n).T)
        self.worth.extend(self.weights[c] for c in columns)
        bound = self.grouping.bound
        self.best = lp.value if bound is None else min(lp.value, bound / self.scale)

    def round(self, deadline: float) -> float:
        """One round: prices from the model (the master's central duals first, then the proximal
        step), the bound f at them, and the move of the center; returns f."""
        cover, values_of = np.array(self.covers).T, np.array(self.worth)
        if self.center is None:
            _, pi, _ = central_master(cover, values_of, self.budget)
            self.model = -math.inf
        else:
            pi, self.model = proximal_master(cover, values_of, self.budget, self.center, self.step)
        upper = self.size_bounds(pi, deadline)
        round_bound = float(pi.sum() + self.budget * max(0.0, float(upper.max())))
        self.best = min(self.best, round_bound)
        at_center, model = self.at_center, self.model
        if self.center is None or round_bound <= at_center - SERIOUS_STEP * (at_center - model):
            if self.center is not None:
                self.step *= 2.0
            self.center, self.at_center = pi, round_bound
        else:
            self.step /= 2.0
        return round_bound

    def size_bounds(self, pi: np.ndarray, deadline: float) -> np.ndarray:
        """``upper [n + 1]``: for each group size k, a bound on max f(S) over |S| = k at prices
        ``pi`` (the semidefinite relaxation's for the sizes that can still set the bound, highest
        first, until ``deadline``; the size relaxation's for the others), adding each relaxation's
        solution and its rounding to the cutting planes."""
        sets, n = self.sets, self.n
        upper = size_relaxation(self.z, pi, partition=self.grouping.partition)
        if sets.singleton_score is not None:
            upper[1] = float(np.max(sets.singleton_score - pi))
        largest = float(upper[1])
        for k in np.argsort(-upper):  # the sizes that bound highest first
            if upper[k] <= largest or time.perf_counter() >= deadline:
                break  # only sizes that can still set the bound
            relaxation = self.relaxations.setdefault(
                int(k), SizeRelaxation(n, int(k), self.grouping.partition)
            )
            bound_k, y, value = relaxation.solve(self.z, pi)
            upper[k] = min(upper[k], bound_k)
            largest = max(largest, float(upper[k]))
            self.covers.append(y)  # a cut of the model at these prices
            self.worth.append(value)
            served = sum(1 << int(j) for j in np.flatnonzero(y > 0.5))
            if served and served not in self.weights and math.isfinite(sets.of(served)):
                self.weights[served] = sets.of(served)  # its rounding, an integer column
                self.covers.append(cover_of([served], n)[:, 0])
                self.worth.append(self.weights[served])
        # sizes not solved (out of time) keep the size relaxation's bound
        return upper

    def converged(self) -> bool:
        """As tight as SCS can prove, or the model cannot improve on the center."""
        close = relative_gap(self.best, self.target) <= CLOSE_ENOUGH
        return close or self.at_center - self.model <= 1e-9 * abs(self.at_center)
