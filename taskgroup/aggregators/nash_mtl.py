"""``nash_mtl``: the Nash bargaining solution of the tasks' update (and the α-fair solver).

Nash-MTL takes the direction d = Gᵀw that maximises Σ_i log(g_iᵀd) over a ball; its weights solve

    (GGᵀ) w = 1/w,  w > 0,

i.e. w is the unique minimiser of the strictly convex ½ wᵀKw − Σ_i log w_i with K = GGᵀ (Navon et
al., "Multi-Task Learning as a Bargaining Game", ICML 2022). FairGrad's α-fair weights solve
K w = w^(−1/α), the minimiser of ½ wᵀKw − Σ_i φ(w_i) with φ' = w^(−1/α) (Ban & Ji, "Fair Resource
Allocation in Multi-Task Learning", ICML 2024); α = 1 is Nash-MTL.

Solver (:func:`solve_alpha_fair`). Damped Newton on that objective: the Hessian
K + diag(w^(−1/α−1)/α) is positive definite, so every step is one k×k Cholesky solve, with an
Armijo line search that keeps w > 0 far from the solution and full (quadratically convergent)
steps near it. The problem is solved in the coordinates u_i ∝ ‖g_i‖ w_i, where it reads
C u = a ⊙ u^(−1/α) with C the cosine matrix of the gradients (unit diagonal) and a = 1 for α = 1:
Nash-MTL's solution then does not depend on the gradients' scales and makes a good warm start
for the next step; each coordinate of the start is first rescaled to solve its own equation with
the others fixed (exact for orthogonal gradients), which saves about one Newton iteration. The
solve stops at a relative residual ``‖Kw − w^(−1/α)‖ / ‖w^(−1/α)‖`` of
``tol`` (1e-12 by default) — or, on nearly singular Gramians, when the residual stops shrinking at
the rounding floor of evaluating it (never above 1e-6) — and reports the residual it reached.
The reference implementation instead runs up to 20 ECOS solves of a sequential convex programme
per step (and, through a bare ``except``, silently keeps the previous weights whenever one fails).
Two cvxpy paths are kept, for tests and for users, never as fallbacks: ``solver="cvxpy"`` solves
the same convex problem in one cvxpy/Clarabel call, ``solver="ccp"`` is the reference procedure
(:func:`solve_nash_ccp`) with failures raised.

Degenerate input (defined, never NaN):
- a zero gradient row takes no part in the bargaining: weight 0 (its optimal weight is unbounded
  and it adds nothing to d);
- all rows zero: all weights 0, d = 0 (status ``"zero_gradients"``);
- when 0 lies in the convex hull of the non-zero gradients (a Pareto-stationary point, e.g.
  g_2 = −g_1, common when k > d) no direction improves every task, the objective is unbounded and
  no solution exists: the weights are 0 and d = 0 (status ``"pareto_stationary"``, detected by the
  min-norm point of the unit-norm gradients, squared norm ≤ 1e-10 — or ten times the rounding
  that a negative eigenvalue of a float32 Gramian reveals);
- identical or linearly dependent rows are fine (the equation still has a unique solution);
- k = 1: w = 1/‖g‖, d = g/‖g‖.
Any other failure to converge raises ``RuntimeError`` with the residual reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.linalg.lapack import dposv

from taskgroup.aggregators.base import EPS, GramianAggregator, check_count, check_option
from taskgroup.aggregators.simplex_qp import min_norm_weights

SOLVERS = ("newton", "cvxpy", "ccp")
STATIONARY = 1e-10  # squared min-norm of the unit-scaled gradients below which 0 ∈ conv hull
DIVERGED = 1e12  # normalised weights beyond this: the objective is unbounded below
ROUNDING = 1e-7  # a residual that stops shrinking below this is at the rounding floor
ACCEPTABLE = 1e-6  # never accept a stalled solve above this relative residual


@dataclass(frozen=True)
class AlphaFairSolution:
    """Weights ``[k]`` (float64), the relative ``residual`` they reach, Newton ``iterations``
    and a ``status``: ``"solved"``, ``"zero_gradients"`` or ``"pareto_stationary"``.
    ``scaled`` holds the normalised solution (the warm start of the next solve)."""

    weights: np.ndarray
    residual: float
    iterations: int
    status: str
    scaled: np.ndarray


def residual(K: np.ndarray, w: np.ndarray, alpha: float = 1.0) -> float:
    """``‖Kw − w^(−1/α)‖ / ‖w^(−1/α)‖`` over the rows with positive weight (0 when none)."""
    active = w > 0
    if not active.any():
        return 0.0
    if not active.all():
        K, w = K[np.ix_(active, active)], w[active]
    target = 1.0 / w if alpha == 1.0 else w ** (-1.0 / alpha)
    return float(np.linalg.norm(K @ w - target) / np.linalg.norm(target))


class _Problem:
    """The normalised problem on the non-zero rows, and the map back to w.

    With s the mean of diag K, D = diag(‖g_i‖/√s) and C = K / (s D D) (the cosine matrix),
    K w = w^(−p) becomes C u = a ⊙ u^(−p) for w = s^(−1/(1+p)) D⁻¹ u and a = D^(p−1): a unit-
    diagonal problem whatever the gradients' scales (for p = 1, a = 1: scale-free Nash-MTL).
    """

    def __init__(self, K: np.ndarray, alpha: float):
        K = (K + K.T) * 0.5
        diag = np.diag(K)
        self.active = diag > 0
        self.everyone = bool(self.active.all())
        self.p = 1.0 / alpha
        Ka = K if self.everyone else K[np.ix_(self.active, self.active)]
        da = diag if self.everyone else diag[self.active]
        s = float(da.mean()) if len(da) else 1.0
        self.norms = np.sqrt(da / s)
        self.C = Ka / s / self.norms / self.norms[:, None]
        self.a = None if self.p == 1.0 else self.norms ** (self.p - 1.0)
        self.unscale = s ** (-1.0 / (1.0 + self.p)) / self.norms

    def target(self, u: np.ndarray) -> np.ndarray:
        """a ⊙ u^(−p)."""
        return 1.0 / u if self.a is None else self.a * u**-self.p

    def objective(self, u: np.ndarray) -> float:
        if self.a is None:
            barrier = np.log(u).sum()
        else:
            barrier = self.a @ (u ** (1.0 - self.p)) / (1.0 - self.p)
        return 0.5 * float(u @ (self.C @ u)) - float(barrier)

    def initial(self) -> np.ndarray:
        row = self.C.sum() / len(self.C)
        t = row ** (-1.0 / (1.0 + self.p)) if row > 0 else 1.0
        if self.a is None:
            return np.full(len(self.C), t)
        return t * self.a ** (1.0 / (1.0 + self.p))

    def rescaled(self, u: np.ndarray) -> np.ndarray:
        """``u`` with each coordinate scaled to solve its own equation of C u = a ⊙ u^(−p) with
        the others fixed at first order, s_i = ((Cu)_i / (a ⊙ u^(−p))_i)^(−1/(1+p)) (exact for a
        diagonal C): a cheap correction of a warm start that saves Newton iterations. Coordinates
        with (Cu)_i <= 0 (conflicting gradients) keep their value."""
        ratio = (self.C @ u) / self.target(u)
        positive = ratio > 0
        if not positive.all():
            ratio = np.where(positive, ratio, 1.0)
        return u * (ratio ** (-0.5) if self.p == 1.0 else ratio ** (-1.0 / (1.0 + self.p)))

    def stationary(self, eps: float = EPS) -> bool:
        """Whether 0 is (numerically) in the convex hull of the gradients — a property of their
        directions only, tested on the unit-norm gradients (the cosine matrix C), at the
        rounding ``eps`` of the gradients' dtype."""
        # a float32 Gramian is PSD only up to its rounding, which a negative eigenvalue reveals
        # (or not: opposite float32 gradients have cosines −1 + O(eps)): a min-norm point
        # within ten times that rounding of 0 is 0
        noise = max(-float(np.linalg.eigvalsh(self.C)[0]), eps)
        w = min_norm_weights(self.C)
        return float(w @ self.C @ w) <= max(STATIONARY, 10.0 * noise)

    def residual(self, gradient: np.ndarray, target: np.ndarray) -> float:
        """``‖Kw − w^(−p)‖ / ‖w^(−p)‖`` from the normalised gradient C u − a ⊙ u^(−p): the
        numerator is ∝ D (C u − a ⊙ u^(−p)) and the denominator ∝ D a ⊙ u^(−p)."""
        x, y = self.norms * gradient, self.norms * target
        return float(np.sqrt((x @ x) / (y @ y)))

    def full(self, values: np.ndarray, k: int) -> np.ndarray:
        if self.everyone:
            return values
        out = np.zeros(k)
        out[self.active] = values
        return out


def _newton(problem: _Problem, u: np.ndarray, tol: float, max_iter: int, limit: float = DIVERGED):
    """Damped Newton from ``u``: ``(u, gradient, target, iterations, converged)`` with
    gradient = C u − u^(−p) and target = u^(−p) at the returned u."""
    C, p = problem.C, problem.p
    diagonal = slice(None, None, len(C) + 1)
    tol2 = tol * tol
    previous = np.inf
    for iteration in range(max_iter + 1):
        target = problem.target(u)
        gradient = C @ u - target
        res2 = float(gradient @ gradient) / float(target @ target)
        if res2 <= tol2:
            return u, gradient, target, iteration, True
        if res2 > 0.25 * previous:  # stalled: converged if at the rounding floor of C u − u^(−p)
            floor = np.abs(C) @ u + target
            floor2 = max(ROUNDING**2, (64 * EPS) ** 2 * (floor @ floor) / (target @ target))
            if res2 <= min(floor2, ACCEPTABLE**2):
                return u, gradient, target, iteration, True
        previous = res2
        if iteration == max_iter or u.max() > limit:
            break
        hessian = C.copy()
        hessian.flat[diagonal] += target * target if p == 1.0 else p * target / u
        _, step, info = dposv(hessian, gradient)  # Cholesky solve of H s = ∇f; u ← u − t s
        if info != 0:  # the barrier term underflowed: u is running away
            break
        worst = float((step / u).max())  # fraction to the boundary: keep u − t s > 0
        t = 0.99 / worst if worst > 0.99 else 1.0
        decrement = float(gradient @ step)  # Newton decrement², > 0
        if decrement > 0.1:  # damped phase: backtracking line search (Armijo)
            f0 = problem.objective(u)
            while t > 1e-20 and problem.objective(u - t * step) > f0 - 1e-4 * t * decrement:
                t *= 0.5
        u = u - step if t == 1.0 else u - t * step
    return u, gradient, target, iteration, False


def solve_alpha_fair(
    K: np.ndarray,
    alpha: float = 1.0,
    *,
    start: np.ndarray | None = None,
    tol: float = 1e-12,
    max_iter: int = 500,
    eps: float = EPS,
) -> AlphaFairSolution:
    """Solve ``K w = w^(−1/α)``, ``w > 0`` by damped Newton (α = 1: Nash-MTL).

    Args:
        K: the Gramian ``[k, k]`` (float64, symmetric PSD).
        alpha: fairness α > 0.
        start: a previous :attr:`AlphaFairSolution.scaled` (warm start).
        tol: target relative residual (in the normalised coordinates); on nearly singular
            Gramians Newton also stops when the residual stops shrinking at the rounding floor
            of evaluating C u − u^(−p) (1e-7, or 64 ε ‖|C| u + u^(−p)‖ / ‖u^(−p)‖ when that is
            larger, but never above 1e-6; the residual reached is reported).
        max_iter: Newton iteration cap; not converging raises ``RuntimeError``.
        eps: the relative precision of the gradients behind K (their dtype's): the threshold
            of the Pareto-stationary test.
    """
    k = len(K)
    problem = _Problem(K, alpha)
    if not problem.active.any():
        return AlphaFairSolution(np.zeros(k), 0.0, 0, "zero_gradients", np.zeros(k))
    u0 = problem.initial()
    if start is not None and len(start) == k:
        warm = start if problem.everyone else start[problem.active]
        u0 = np.where(warm > 0, warm, u0)
    u0 = problem.rescaled(u0)
    # weights this large mean a (nearly) Pareto-stationary G: check before iterating on
    u, gradient, target, iterations, converged = _newton(problem, u0, tol, min(max_iter, 50), 1e5)
    # a converged u beyond (10 eps)^(-1/2) balances cosines within the gradients' rounding of
    # -1: (nearly) opposite low-precision gradients, stationary as far as their dtype can tell
    if not converged or float(u.max()) ** -2 <= 10.0 * eps:
        if problem.stationary(eps):
            return AlphaFairSolution(np.zeros(k), 0.0, iterations, "pareto_stationary", np.zeros(k))
        u, gradient, target, more, converged = _newton(problem, u, tol, max_iter)
        iterations += more
        if not converged:
            res = problem.residual(gradient, target)
            raise RuntimeError(
                f"the α-fair (Nash-MTL) solve did not converge in {iterations} Newton iterations "
                f"(relative residual {res:.3g}); try solver='cvxpy' or report the Gramian"
            )
    weights = problem.full(u * problem.unscale, k)
    return AlphaFairSolution(
        weights, problem.residual(gradient, target), iterations, "solved", problem.full(u, k)
    )


class _CvxpyAlphaFair:
    """The same convex problem, min ½‖Au‖² − Σ a_i φ(u_i) with AᵀA = C, as a cached cvxpy
    problem (A and a are parameters, so cvxpy compiles it once)."""

    def __init__(self, m: int, alpha: float):
        import cvxpy as cp

        self.cp = cp
        self.u = cp.Variable(m, pos=True)
        self.A = cp.Parameter((m, m))
        self.a = cp.Parameter(m, nonneg=True)
        p = 1.0 / alpha
        if p == 1.0:
            barrier = -cp.sum(cp.log(self.u))
        elif p < 1.0:
            barrier = -(self.a @ cp.power(self.u, 1.0 - p)) / (1.0 - p)
        else:
            barrier = (self.a @ cp.power(self.u, 1.0 - p)) / (p - 1.0)
        self.problem = cp.Problem(cp.Minimize(0.5 * cp.sum_squares(self.A @ self.u) + barrier))

    def solve(self, problem: _Problem) -> tuple[np.ndarray | None, str]:
        eigenvalues, vectors = np.linalg.eigh(problem.C)
        self.A.value = np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * vectors.T
        self.a.value = np.ones(len(problem.C)) if problem.a is None else problem.a
        try:
            self.problem.solve(solver=self.cp.CLARABEL)
        except self.cp.error.SolverError as e:
            return None, f"solver error: {e}"
        return self.u.value, self.problem.status


def solve_alpha_fair_cvxpy(
    K: np.ndarray, alpha: float = 1.0, *, cache: dict | None = None, eps: float = EPS
) -> AlphaFairSolution:
    """The reference path: the same problem as :func:`solve_alpha_fair` solved by cvxpy with
    Clarabel. A solver failure raises ``RuntimeError``; it never falls back to other weights."""
    k = len(K)
    problem = _Problem(K, alpha)
    m = int(problem.active.sum())
    if m == 0:
        return AlphaFairSolution(np.zeros(k), 0.0, 0, "zero_gradients", np.zeros(k))
    if problem.stationary(eps):
        return AlphaFairSolution(np.zeros(k), 0.0, 0, "pareto_stationary", np.zeros(k))
    cache = {} if cache is None else cache
    key = (m, alpha)
    if key not in cache:
        cache[key] = _CvxpyAlphaFair(m, alpha)
    u, status = cache[key].solve(problem)
    if status != "optimal" or u is None:
        raise RuntimeError(f"the cvxpy α-fair (Nash-MTL) solve failed with status {status!r}")
    weights = problem.full(np.asarray(u, dtype=np.float64) * problem.unscale, k)
    return AlphaFairSolution(
        weights, residual(K, weights, alpha), 0, "solved", problem.full(np.asarray(u), k)
    )


def solve_nash_ccp(
    K: np.ndarray, *, start: np.ndarray | None = None, iterations: int = 20
) -> AlphaFairSolution:
    """Nash-MTL's own procedure (the reference implementation's ``solve_optimization``), for
    users who want its exact behaviour: up to ``iterations`` convex programmes solved by cvxpy with
    ECOS, each minimising Σ_i (K'α)_i plus the linearisation at the previous α of
    Σ_i log α_i + Σ_i log (K'α)_i (divided by ‖K‖_F), subject to α_i (Kα)_i ≥ 1, with
    K' = K / ‖K‖_F; warm-started from ``start`` (the previous step's weights; ones at first) and
    stopped when α moves less than 1e-6. Unlike the reference, a solver failure raises
    ``RuntimeError`` instead of silently keeping the previous weights, and zero rows and
    Pareto-stationary inputs get the defined results of :func:`solve_alpha_fair`. Its residual is
    typically 1e-3 to 1e-6: the procedure stops before the equation holds exactly.
    """
    try:
        import cvxpy as cp
        import ecos  # noqa: F401  (cvxpy's ECOS interface needs it)
    except ImportError as e:
        raise RuntimeError(f"solver='ccp' needs cvxpy with ECOS ({e}); pip install ecos") from e
    k = len(K)
    problem = _Problem(K, 1.0)
    if not problem.active.any():
        return AlphaFairSolution(np.zeros(k), 0.0, 0, "zero_gradients", np.zeros(k))
    if problem.stationary():
        return AlphaFairSolution(np.zeros(k), 0.0, 0, "pareto_stationary", np.zeros(k))
    Ka = K if problem.everyone else K[np.ix_(problem.active, problem.active)]
    scale = float(np.linalg.norm(Ka))
    Kn = Ka / scale
    m = len(Kn)
    previous = np.ones(m)
    if start is not None and len(start) == k:
        warm = start if problem.everyone else start[problem.active]
        previous = np.where(warm > 0, warm, 1.0)
    alpha = cp.Variable(m, nonneg=True)
    done = 0
    while done < iterations:
        done += 1
        slope = 1.0 / previous + (1.0 / (Kn @ previous)) @ Kn
        objective = cp.sum(Kn @ alpha) + slope @ (alpha - previous) / scale
        feasible = [cp.log(alpha * scale) + cp.log(Kn @ alpha) >= 0]
        program = cp.Problem(cp.Minimize(objective), feasible)
        try:
            program.solve(solver=cp.ECOS, warm_start=True, max_iters=100)
        except cp.error.SolverError as e:
            raise RuntimeError(f"the Nash-MTL ECOS solve failed ({e}); use solver='newton'") from e
        if program.status not in ("optimal", "optimal_inaccurate") or alpha.value is None:
            raise RuntimeError(
                f"the Nash-MTL ECOS solve ended with status {program.status!r}; use solver='newton'"
            )
        current = np.asarray(alpha.value, dtype=np.float64)
        moved = float(np.linalg.norm(current - previous))
        previous = current
        if moved < 1e-6:
            break
    weights = problem.full(previous, k)
    return AlphaFairSolution(weights, residual(K, weights), done, "solved", weights)


def solver_status(status: str) -> str:
    """``info["solver_status"]`` of a solve: ``"optimal"`` (the equation holds to the residual
    reported), or ``"defined limit: zero_gradients"`` / ``"defined limit: pareto_stationary"``
    (no solution exists; the weights are the documented limit, 0). A solve that fails raises;
    there is no fallback to other weights."""
    return "optimal" if status == "solved" else f"defined limit: {status}"


class NashMTL(GramianAggregator):
    """Nash bargaining weights, (GGᵀ) w = 1/w, solved exactly and warm-started.

    Args:
        max_norm: the direction's norm is capped at this value (1.0, the reference; 0 = off).
            The unclipped direction has norm √m (m = non-zero rows): wᵀKw = Σ w_i (Kw)_i = m.
        update_weights_every: solve every this many steps and reuse the weights in between
            (the reference option; ``backward`` then skips the per-task gradients).
        solver: ``"newton"`` (damped Newton, default), ``"cvxpy"`` (the same convex problem in
            one cvxpy/Clarabel solve: the reference path of the tests) or ``"ccp"`` (the
            reference implementation's sequence of ECOS solves, :func:`solve_nash_ccp`; α = 1
            only).
        tol, max_iter: Newton's target relative residual and iteration cap.

    ``info`` of each step holds the solve's ``residual``, ``iterations``, ``status`` and
    ``solver_status`` (:func:`solver_status`: ``"optimal"``, ``"defined limit: ..."`` for the
    degenerate cases of the module docstring, ``"reused"``); a failed solve raises
    ``RuntimeError``, never falls back.
    """

    name = "nash_mtl"
    summary = "Nash bargaining weights (GGᵀ)w = 1/w, damped Newton (Nash-MTL)"
    reference = "Navon et al., ICML 2022"
    alpha = 1.0

    def __init__(
        self,
        *,
        max_norm: float = 1.0,
        update_weights_every: int = 1,
        solver: str = "newton",
        tol: float = 1e-12,
        max_iter: int = 500,
    ) -> None:
        super().__init__(max_norm=max_norm)
        self.update_weights_every = check_count("update_weights_every", update_weights_every)
        if solver not in SOLVERS:
            raise ValueError(f"solver must be one of {', '.join(SOLVERS)}, got {solver!r}")
        if solver == "ccp" and self.alpha != 1.0:
            raise ValueError("solver='ccp' is Nash-MTL's own procedure: it needs alpha = 1")
        self.solver = solver
        self.tol = check_option("tol", tol, low=0.0, strict=True)
        self.max_iter = check_count("max_iter", max_iter)
        self.reset()

    def _options_repr(self) -> str:
        return (
            f"max_norm={self.max_norm}, update_weights_every={self.update_weights_every}, "
            f"solver={self.solver!r}"
        )

    def reset(self) -> None:
        self._step = 0
        self._k: int | None = None
        self._weights: np.ndarray | None = None
        self._scaled: np.ndarray | None = None
        self._info: dict[str, Any] = {}
        self._cvxpy_cache: dict = {}

    def _check_k(self, k: int) -> None:
        if self._k is not None and k != self._k:
            raise ValueError(
                f"{self.name} was used with {self._k} tasks and now gets {k}; call reset() "
                f"before switching task sets"
            )
        self._k = k

    def _reuses(self) -> bool:
        return self._weights is not None and self._step % self.update_weights_every != 0

    def _reused_weights(self, k: int):
        self._check_k(k)
        if not self._reuses():
            return None
        import torch

        self._step += 1
        return torch.as_tensor(self._weights)

    def solve(self, K: np.ndarray, eps: float = EPS) -> AlphaFairSolution:
        """One solve on the Gramian of gradients of relative precision ``eps`` (no state
        change besides the warm start)."""
        if self.solver == "cvxpy":
            solution = solve_alpha_fair_cvxpy(K, self.alpha, cache=self._cvxpy_cache, eps=eps)
        elif self.solver == "ccp":
            solution = solve_nash_ccp(K, start=self._weights)
        else:
            solution = solve_alpha_fair(
                K, self.alpha, start=self._scaled, tol=self.tol, max_iter=self.max_iter, eps=eps
            )
        if solution.status == "solved":
            self._scaled = solution.scaled
        return solution

    def _weigh(self, K: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, dict[str, Any]]:
        self._check_k(len(K))
        if self._reuses():
            self._step += 1
            return self._weights, {**self._info, "status": "reused", "solver_status": "reused"}
        solution = self.solve(K, eps)
        self._step += 1
        self._weights = solution.weights
        self._info = {
            "residual": solution.residual,
            "iterations": solution.iterations,
            "status": solution.status,
            "solver_status": solver_status(solution.status),
        }
        return solution.weights, dict(self._info)
