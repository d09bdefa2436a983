"""``cagrad``: conflict-averse gradient descent.

CAGrad looks for the direction d within a ball around the average gradient g_0 = (1/k) Σ g_i that
maximises the worst task's improvement:

    max_d min_i g_iᵀd   s.t.  ‖d − g_0‖ ≤ c ‖g_0‖.

Its dual over the simplex is min_{w ∈ Δ_k} F(w) = g_wᵀg_0 + ρ ‖g_w‖ with g_w = Gᵀw and
ρ = c ‖g_0‖, and then d = g_0 + (ρ / ‖g_w‖) g_w, divided by 1 + c² (``rescale=1``, the reference
default; ``rescale=2`` divides by 1 + c, ``0`` not at all). c = 0 is the mean; c → ∞ approaches
MGDA. (Liu et al., "Conflict-Averse Gradient Descent for Multi-task Learning", NeurIPS 2021.)

Solver. With b = K·1/k, ρ‖g_w‖ = min_{t>0} (ρ/2)(‖g_w‖²/t + t), so F's minimiser is the solution
w(τ) of the simplex QP min ½ wᵀKw + τ bᵀw at the τ where ‖g_{w(τ)}‖² = ρ²τ². On a fixed support S
the QP's solution is affine in τ, w_S = a + τe (a: the affine min-norm weights on S, aᵀK_SS e = 0),
so that condition has the closed form τ² = 1 / (1ᵀK_SS⁻¹1 · (ρ² − eᵀK_SS e)): one Cholesky solve
with two right-hand sides per support. The solver guesses S (the previous step's support) and
accepts the closed form when the KKT conditions hold; otherwise it drops every index whose weight
is negative (or, when no τ exists on S, those negative at the previous step's τ) or adds every
index whose multiplier is negative, and tries again (a primal-dual active-set iteration). Failing
that, it brackets τ (h(τ) = ‖g_{w(τ)}‖²/τ² decreases monotonically) and bisects, solving the QP
exactly (:mod:`simplex_qp`), until the support settles. Typical cost: one to four k×k solves per
step (2.9 on average on the 9-task MLP benchmark), all of them exact.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.linalg.lapack import dposv

from taskgroup.aggregators.base import EPS, GramianAggregator, check_count, check_option
from taskgroup.aggregators.simplex_qp import regularized, simplex_qp

RESCALES = (0, 1, 2)
STATIONARY = 1e-12  # ‖g_w‖² below this fraction of max ‖g_i‖²: the gradients are Pareto-stationary


def _closed_form(
    Q: np.ndarray,
    rhs: np.ndarray,
    support: np.ndarray,
    rho2: float,
    tol: float,
    guess: float | None = None,
):
    """``(τ, w, fix)`` of the CAGrad condition on ``support``. τ is ``None`` when the condition
    has no solution there; w is the optimum when the KKT conditions hold, else ``None`` and
    ``fix`` is ``(drop, add)``: the indices to leave the support (negative weights, or the first
    weight that reaches 0 as τ grows when τ does not exist) or to enter it (negative
    multipliers, below ``-tol (1 + τ)``). ``rhs`` is ``[1, b]`` stacked as columns ``[k, 2]``.

    With M = Q_SS, u = M⁻¹1, v = M⁻¹b_S, a = u/1ᵀu and e = (1ᵀv/1ᵀu) u − v, the face's solution
    is w_S = a + τe with 1ᵀe = 0 and Me = (1ᵀv/1ᵀu) 1 − b_S, so eᵀMe = −b_Sᵀe (no second solve).
    """
    everyone = len(support) == len(Q)
    if everyone:
        M, r = Q, rhs
    else:
        M, r = Q[support[:, None], support], rhs[support]
    _, solved, info = dposv(M, r)
    if info != 0:
        return None, None, None
    su, sv = (float(x) for x in solved.sum(axis=0))
    if not su > 0:
        return None, None, None
    u, v = solved[:, 0], solved[:, 1]
    e = (sv / su) * u - v
    eMe = -float(r[:, 1] @ e)
    if not rho2 > eMe:  # h(τ) > ρ² for every τ on this face: the support must shrink
        growing = e < 0
        if not growing.any():
            return None, None, None
        if guess is not None:  # the weights that are negative at the guessed τ, if any
            negative = u * (1.0 / su) + guess * e < 0
            if negative.any():
                return None, None, (support[negative], None)
        return None, None, (support[growing][np.argmin(u[growing] / -e[growing])], None)
    tau = 1.0 / math.sqrt(su * (rho2 - eMe))
    w_s = u * (1.0 / su) + tau * e  # sums to 1
    smallest = float(w_s.min())
    if smallest < -1e-12:
        return tau, None, (support[w_s < -1e-12], None)
    if smallest < 0.0:  # rounding: a weight that is 0 at the optimum
        np.clip(w_s, 0.0, None, out=w_s)
        w_s /= w_s.sum()
    multipliers = (Q if everyone else Q[:, support]) @ w_s + tau * rhs[:, 1]
    multipliers -= (1.0 + tau * sv) / su
    multipliers[support] = 0.0
    if multipliers.min() < -tol * (1.0 + tau):
        return tau, None, (None, np.flatnonzero(multipliers < -tol * (1.0 + tau)))
    if everyone:
        return tau, w_s, None
    w = np.zeros(len(Q))
    w[support] = w_s
    return tau, w, None


def _repair(
    Q: np.ndarray,
    rhs: np.ndarray,
    support: np.ndarray,
    rho2: float,
    tol: float,
    guess: float | None,
):
    """Closed forms on the support, dropping the indices whose weights turn negative and adding
    those whose multipliers are negative while the KKT conditions fail (a primal-dual active-set
    iteration: usually one to three k×k solves). ``(τ, w)``; w is ``None`` when it gives up."""
    mask = np.zeros(len(Q), dtype=bool)
    mask[support] = True
    tau = None
    for _ in range(2 * len(Q)):
        candidate, w, fix = _closed_form(Q, rhs, np.flatnonzero(mask), rho2, tol, guess)
        tau = candidate if candidate is not None else tau
        if w is not None or fix is None:
            return tau, w
        drop, add = fix
        if drop is not None:
            mask[drop] = False
        else:
            mask[add] = True
        if not mask.any():
            break
    return tau, None


def cagrad_weights(
    K: np.ndarray,
    c: float,
    *,
    start: np.ndarray | None = None,
    tau: float | None = None,
    max_iter: int = 200,
    fast: bool = True,
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """``(weights, w, info)``: d = Gᵀ weights is CAGrad's direction before rescaling, w the dual
    weights on the simplex and ``info["tau"]`` the matching τ; ``start`` and ``tau`` (the previous
    step's w and τ) warm-start the solve. ``fast=False`` skips the active-set repair and solves by
    the safeguarded search over τ alone (the reference path of the tests).

    At a Pareto-stationary point (the convex hull of the gradients holds 0, so g_w = 0) the
    correction term vanishes and d = g_0, as in the reference implementation.
    """
    k = len(K)
    rhs = np.ones((k, 2))
    b = rhs[:, 1] = K.sum(axis=1) / k
    rho2 = c * c * max(float(b.sum()) / k, 0.0)
    mean = np.full(k, 1.0 / k)
    if rho2 <= 0:
        return mean, mean, {"tau": 0.0, "iterations": 0}
    Q = regularized(K)
    tol = 1e-11 * float(np.max(np.diag(Q)))
    w = start if start is not None and len(start) == k else mean
    previous_tau = tau
    found = None
    if fast:
        tau, found = _repair(Q, rhs, np.flatnonzero(w > 0), rho2, tol, tau)
    iterations = 0
    if found is None:
        # safeguarded search over τ: h(τ) = ‖g_w(τ)‖² / τ² decreases, the answer is h = ρ²
        lo, hi = 0.0, math.inf
        tau = tau or previous_tau or 1.0 / c  # the repair's last τ, else the last step's
        while found is None:
            iterations += 1
            if iterations > max_iter:
                raise RuntimeError(
                    f"the CAGrad solve did not converge in {max_iter} iterations; please report "
                    f"the Gramian that caused it"
                )
            w = simplex_qp(Q, tau * b, start=w)
            candidate, found, _ = _closed_form(Q, rhs, np.flatnonzero(w > 0), rho2, tol)
            if found is not None:
                tau = candidate
                break
            if float(w @ K @ w) > rho2 * tau * tau:
                lo = tau
            else:
                hi = tau
            if candidate is not None and lo < candidate < hi:
                tau = candidate
            elif hi == math.inf:
                tau *= 4.0
            elif lo == 0.0:
                tau /= 4.0
            else:
                tau = math.sqrt(lo * hi)
            if hi < math.inf and hi - lo <= 1e-14 * hi:  # (inf − lo <= inf would stop here)
                found = w
    w = found
    q = float(w @ K @ w)
    info = {"tau": tau, "iterations": iterations}
    if q <= STATIONARY * float(np.max(np.diag(K))):
        return mean, w, {**info, "stationary": True}
    return mean + (math.sqrt(rho2) / math.sqrt(q)) * w, w, info


class CAGrad(GramianAggregator):
    """Conflict-averse direction in the ball of radius ``c ‖g_0‖`` around the mean gradient.

    Args:
        c: radius of the ball relative to ‖g_0‖ (default 0.4, the Nash-MTL benchmarks' value;
            the CAGrad toy uses 0.5). ``c = 0`` is the mean.
        rescale: divide the direction by ``1 + c²`` (1, the reference default), ``1 + c`` (2) or
            not at all (0).

    Degenerate input: all-zero G gives 0; at a Pareto-stationary point the direction is the
    (rescaled) mean gradient; k = 1 gives (1 + c) g / (1 + c²).
    """

    name = "cagrad"
    summary = "best worst-task improvement within a ball around the mean gradient (CAGrad, c)"
    reference = "Liu et al., NeurIPS 2021"

    def __init__(self, *, c: float = 0.4, rescale: int = 1, max_norm: float = 0.0) -> None:
        super().__init__(max_norm=max_norm)
        self.c = check_option("c", c, low=0.0)
        if rescale not in RESCALES:
            raise ValueError(f"rescale must be 0, 1 or 2, got {rescale!r}")
        self.rescale = check_count("rescale", rescale, low=0)
        self.reset()

    def _options_repr(self) -> str:
        return f"c={self.c}, rescale={self.rescale}, max_norm={self.max_norm}"

    def reset(self) -> None:
        self._start = None
        self._tau: float | None = None

    def _weigh(self, K: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, dict[str, Any]]:
        weights, w, info = cagrad_weights(K, self.c, start=self._start, tau=self._tau)
        self._start, self._tau = w, info["tau"]
        divisor = {0: 1.0, 1: 1.0 + self.c**2, 2: 1.0 + self.c}[self.rescale]
        return weights / divisor, info
