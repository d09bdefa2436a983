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

from taskgroup.aggregators.base import GramianAggregator


class IMTLG(GramianAggregator):
    """Equal projection of the update onto every task's unit gradient (weights sum to 1).

    Degenerate input: a zero gradient row gets weight 0; identical rows share equally; when
    ``1ᵀK⁺n`` vanishes (e.g. all-zero G, or gradients that cancel exactly) the weights are 0.
    """

    name = "imtl_g"
    summary = "equal projection onto every task's unit gradient (IMTL-G)"
    reference = "Liu et al., ICLR 2021"

    def _weigh(self, K: np.ndarray) -> tuple[np.ndarray, dict[str, Any]]:
        norms = np.sqrt(np.clip(np.diag(K), 0.0, None))
        v = np.linalg.pinv(K, hermitian=True) @ norms
        total = float(v.sum())
        scale = float(np.max(norms)) if len(norms) else 0.0
        if scale == 0.0 or abs(total) * scale <= 1e-12:
            return np.zeros(len(K)), {"degenerate": True}
        return v / total, {}
