"""``mgda``: the multiple-gradient descent algorithm's common descent direction.

    w* = argmin_{w ∈ Δ_k} ‖Gᵀw‖² = argmin_{w ∈ Δ_k} wᵀKw,      d = Gᵀw*

the min-norm point of the convex hull of the task gradients (Désidéri 2012; Sener & Koltun,
"Multi-Task Learning as Multi-Objective Optimization", NeurIPS 2018). d is a descent direction for
every task (g_iᵀd ≥ ‖d‖² for all i) unless d = 0, which certifies a Pareto-stationary point. The
sub-problem is solved exactly by an active-set method on K (:mod:`simplex_qp`), warm-started from
the previous step, instead of the Frank-Wolfe iterations of the reference implementations: the KKT
conditions hold to solver precision. Cost: O(k²d) for K, then O(k³) per active-set iteration.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taskgroup.aggregators.base import EPS, GramianAggregator
from taskgroup.aggregators.simplex_qp import min_norm_weights

ZERO_ROW = "defined limit: a zero gradient row (d = 0, Pareto-stationary)"


class MGDA(GramianAggregator):
    """Min-norm point of the convex hull of the task gradients (weights on the simplex).

    Degenerate input: a zero gradient row takes all the weight (the first one if several; d = 0:
    Pareto-stationary); identical rows give the same direction as one copy (the min-norm point
    is unique; how the weight splits between the copies is not); k = 1 returns the gradient.

    ``info["solver_status"]``: ``"optimal"`` (the active-set solve met the KKT conditions) or
    the zero row's defined limit; a solve that does not converge raises ``RuntimeError``.
    """

    name = "mgda"
    summary = "min-norm point of the convex hull of the task gradients (MGDA)"
    reference = "Sener & Koltun, NeurIPS 2018; Désidéri, C. R. Math. 2012"

    def __init__(self, *, max_norm: float = 0.0) -> None:
        super().__init__(max_norm=max_norm)
        self._start: np.ndarray | None = None

    def reset(self) -> None:
        self._start = None

    def _weigh(self, K: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, dict[str, Any]]:
        zero = np.flatnonzero(np.diag(K) == 0)
        if len(zero):  # 0 is a vertex of the hull: exactly, without the solver's ridge
            w = np.zeros(len(K))
            w[zero[0]] = 1.0
            return w, {"min_norm_squared": 0.0, "solver_status": ZERO_ROW}
        start = self._start if self._start is not None and len(self._start) == len(K) else None
        w = min_norm_weights(K, start=start)
        self._start = w
        return w, {"min_norm_squared": float(w @ K @ w), "solver_status": "optimal"}
