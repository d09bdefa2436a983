"""Convex quadratics over the probability simplex, solved exactly (MGDA and CAGrad use it).

``simplex_qp(Q, p)`` minimises ``½ wᵀQw + pᵀw`` subject to ``w >= 0, Σ w = 1`` with a primal
active-set method (Nocedal & Wright, *Numerical Optimization*, Algorithm 16.3): each iteration
solves the equality-constrained problem on the current support — one Cholesky solve with
Q's ``m×m`` block — then either steps to it, stopping at the first weight that would turn negative
(and drops it), or adds the index whose KKT multiplier is most negative. It terminates in a
finite number of iterations for positive definite Q; callers pass :func:`regularized` Gramians,
``K + δI`` with a ridge δ of order 1e-12 of K's scale, which makes rank-deficient Gramians
(identical or dependent gradients, k > d) well posed while moving the answer by about δ. A warm
start from the previous solution typically finishes in one or two iterations. Cost per
iteration: O(m³) with m ≤ k.
"""

from __future__ import annotations

import numpy as np
from scipy.linalg.lapack import dposv, dpotrf

RIDGE = 1e-12


def regularized(K: np.ndarray) -> np.ndarray:
    """``K + δI``, positive definite: δ = 1e-12 max K_ii, or more when rounding left K with a
    negative eigenvalue (a float32 Gramian is PSD only to ~1e-7 of its scale): then
    δ = 1e-12 max K_ii − 2 λ_min(K)."""
    Q = (K + K.T) * 0.5
    diagonal = slice(None, None, len(Q) + 1)  # Q.flat[diagonal]: the ridge is added in place
    scale = float(Q.flat[diagonal].max()) if len(Q) else 0.0
    delta = RIDGE * scale if scale > 0 else 1e-300
    Q.flat[diagonal] += delta
    if dpotrf(Q)[1] != 0:  # not numerically positive definite: λ_min(K) = λ_min(Q) − δ
        Q.flat[diagonal] -= 2.0 * min(float(np.linalg.eigvalsh(Q)[0]) - delta, 0.0)
    return Q


def block(Q: np.ndarray, support: np.ndarray) -> np.ndarray:
    """``Q[S, S]`` for the indices ``S = support``."""
    return Q if len(support) == len(Q) else Q[support][:, support]


def face_solve(Q: np.ndarray, support: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """``Q[S, S]⁻¹ rhs`` for the indices ``S = support`` by Cholesky (Q positive definite)."""
    _, solution, info = dposv(block(Q, support), rhs)
    if info != 0:
        raise RuntimeError("the simplex QP's matrix is not positive definite (see regularized)")
    return solution


def simplex_qp(
    Q: np.ndarray,
    p: np.ndarray | None = None,
    *,
    start: np.ndarray | None = None,
    max_iter: int | None = None,
) -> np.ndarray:
    """``argmin_w ½ wᵀQw + pᵀw`` over the probability simplex, as a float64 array ``[k]``.

    Args:
        Q: ``[k, k]`` symmetric positive definite (a Gramian through :func:`regularized`).
        p: ``[k]`` linear term (zeros when omitted).
        start: a feasible warm start (``w >= 0``, ``Σ w = 1``); uniform weights when omitted.
        max_iter: iteration cap (default ``10 k + 50``); reaching it raises ``RuntimeError``.
    """
    k = len(Q)
    p = np.zeros(k) if p is None else p
    if k == 1:
        return np.ones(1)
    w = np.full(k, 1.0 / k) if start is None else np.clip(start, 0.0, None)
    total = w.sum()
    w = np.full(k, 1.0 / k) if not total > 0 else w / total
    free = w > 0
    scale = float(np.max(np.abs(np.diag(Q)))) + float(np.max(np.abs(p)))
    tol = 1e-13 * (scale if scale > 0 else 1.0)
    rhs = np.empty((k, 2))
    rhs[:, 0] = 1.0
    rhs[:, 1] = -p
    limit = max_iter or 10 * k + 50
    for _ in range(limit):
        support = np.flatnonzero(free)
        # the minimiser on the face: Q_SS x + p_S = λ 1, Σ x = 1  →  x = b + λ a
        solved = face_solve(Q, support, rhs[support])
        a, b = solved[:, 0], solved[:, 1]
        lam = (1.0 - b.sum()) / a.sum()
        target = b + lam * a
        current = w[support]
        if target.min() >= 0.0:
            w = np.zeros(k)
            w[support] = target
            multipliers = Q @ w + p - lam  # KKT multipliers of the bounds w_j >= 0
            multipliers[support] = 0.0
            j = int(np.argmin(multipliers))
            if multipliers[j] >= -tol:
                return w
            free[j] = True
            continue
        step = target - current
        shrinking = step < 0
        ratios = current[shrinking] / -step[shrinking]
        blocking = int(np.argmin(ratios))
        t = min(float(ratios[blocking]), 1.0)
        w[support] = current + t * step
        w[support[np.flatnonzero(shrinking)[blocking]]] = 0.0
        w[w < 0] = 0.0
        free = w > 0
    raise RuntimeError(f"the simplex QP did not converge in {limit} iterations")


def min_norm_weights(K: np.ndarray, *, start: np.ndarray | None = None) -> np.ndarray:
    """Weights ``w`` on the simplex of the min-norm point ``Gᵀw`` of the convex hull of the
    rows of G, from ``K = GGᵀ`` (MGDA's sub-problem)."""
    return simplex_qp(regularized(K), start=start)
