"""``imtl_g``: impartial multi-task learning, gradient part.

IMTL-G finds the combination d = Gᵀw, Σ w = 1, whose projections onto every task's unit gradient
are equal, u_iᵀd = const with u_i = g_i / ‖g_i‖ (Liu et al., "Towards Impartial Multi-task
Learning", ICLR 2021). From K = GGᵀ this is K w ∝ n with n_i = ‖g_i‖ = √K_ii, so

    w = K⁺ n / 1ᵀK⁺ n

(the pseudo-inverse form of torchjd, Quinton & Rey, "Jacobian Descent for Multi-Objective
Optimization", 2024, which also covers linearly dependent gradients). Cost after K: O(k³).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taskgroup.aggregators.base import EPS, GramianAggregator


class IMTLG(GramianAggregator):
    """Equal projection of the update onto every task's unit gradient (weights sum to 1).

    Degenerate input: a zero gradient row gets weight 0; identical rows share equally; when
    ``1ᵀK⁺n`` vanishes (e.g. all-zero G, or gradients that cancel exactly) the weights are 0;
    when no combination has equal non-zero projections (n outside the range of K, e.g.
    opposite gradients) the projections are all 0: d = 0, w in K's null space with Σ w = 1.
    Ranks are decided at the rounding of G's dtype.
    """

    name = "imtl_g"
    summary = "equal projection onto every task's unit gradient (IMTL-G)"
    reference = "Liu et al., ICLR 2021"

    def _weigh(self, K: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, dict[str, Any]]:
        norms = np.sqrt(np.clip(np.diag(K), 0.0, None))
        # directions below the rounding of the gradients' dtype are not there (rank deficiency)
        rtol = max(1e-15, len(K) * eps)
        v = np.linalg.pinv(K, rtol=rtol, hermitian=True) @ norms
        total = float(v.sum())
        scale = float(np.max(norms)) if len(norms) else 0.0
        if scale == 0.0 or abs(total) * scale <= 1e-12:
            return np.zeros(len(K)), {"degenerate": True}
        if np.linalg.norm(K @ v - norms) > np.sqrt(rtol) * np.linalg.norm(norms):
            return _stationary_weights(K, rtol)
        return v / total, {}


def _stationary_weights(K: np.ndarray, rtol: float) -> tuple[np.ndarray, dict[str, Any]]:
    """Weights when n (the gradients' norms) is outside the range of K: equal projections
    u_iᵀd = λ then force λ = 0 and d = 0 (e.g. opposite gradients), so w is the null-space
    vector of K with Σ w = 1 closest to 0 (weights 0 when the null space has none)."""
    eigenvalues, vectors = np.linalg.eigh(K)
    null = vectors[:, eigenvalues <= rtol * max(float(eigenvalues[-1]), 0.0)]
    ones = null.T @ np.ones(len(K))
    if float(ones @ ones) <= 1e-12:
        return np.zeros(len(K)), {"degenerate": True}
    return null @ ones / float(ones @ ones), {"degenerate": "stationary"}
