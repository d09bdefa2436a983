"""``pcgrad``: projecting conflicting gradients (gradient surgery).

For each task i, start from g_i^PC = g_i and visit the other tasks j in a random order: whenever
g_i^PC · g_j < 0, remove the conflicting component, g_i^PC ← g_i^PC − (g_i^PC · g_j / ‖g_j‖²) g_j.
The update is d = Σ_i g_i^PC (``reduction="sum"``, the paper's; ``"mean"`` divides by k).
(Yu et al., "Gradient Surgery for Multi-Task Learning", NeurIPS 2020, Algorithm 1.)

Every g_i^PC is a combination Σ_j C[i, j] g_j of the original gradients and every inner product
above is a function of K = GGᵀ, so the projections run on the k×k coefficients C (torchjd's
formulation), vectorised over i: k − 1 rounds of O(k²) work after the Gramian, instead of k²
projections of length-d vectors. The weights are w = Σ_i C[i, :].
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taskgroup.aggregators.base import EPS, GramianAggregator

REDUCTIONS = ("sum", "mean")


def pcgrad_coefficients(K: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Coefficients ``C: [k, k]`` with g_i^PC = Σ_j C[i, j] g_j.

    Args:
        K: the Gramian ``[k, k]`` of the task gradients.
        orders: ``[k, k]``; row i is the order (a permutation of ``0..k-1``) in which task i
            visits the others (its own index is skipped).

    A task j with a zero gradient is never projected on (nothing conflicts with it).
    """
    k = len(K)
    C = np.eye(k)
    rows = np.arange(k)
    diag = np.diag(K)
    safe = np.where(diag > 0, diag, np.inf)  # zero gradients: nothing to project on
    for t in range(orders.shape[1]):
        j = orders[:, t]
        inner = (C * K[j]).sum(axis=1)  # g_i^PC · g_{j_i}
        inner[j == rows] = 0.0
        C[rows, j] -= np.minimum(inner, 0.0) / safe[j]
    return C


class PCGrad(GramianAggregator):
    """Gradient surgery: each task gradient loses its components that conflict with others.

    Args:
        reduction: ``"sum"`` (the paper) or ``"mean"`` of the projected gradients.
        seed: seed of the random visiting orders (a ``numpy.random.Generator`` stream).

    Degenerate input: zero rows are left alone and never projected on; identical rows never
    conflict; k = 1 returns the gradient.
    """

    name = "pcgrad"
    summary = "project away pairwise conflicting components, then sum (PCGrad)"
    reference = "Yu et al., NeurIPS 2020"

    def __init__(self, *, reduction: str = "sum", seed: int = 0, max_norm: float = 0.0) -> None:
        super().__init__(max_norm=max_norm)
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
        self.reduction = reduction
        self.seed = seed
        self._rng = np.random.default_rng(seed)

    def _options_repr(self) -> str:
        return f"reduction={self.reduction!r}, seed={self.seed}, max_norm={self.max_norm}"

    def reset(self) -> None:
        self._rng = np.random.default_rng(self.seed)

    def orders(self, k: int) -> np.ndarray:
        """The next ``[k, k]`` visiting orders (row i: a random permutation of ``0..k-1``)."""
        return np.argsort(self._rng.random((k, k)), axis=1)

    def _weigh(self, K: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, dict[str, Any]]:
        C = pcgrad_coefficients(K, self.orders(len(K)))
        w = C.sum(axis=0)
        if self.reduction == "mean":
            w = w / len(K)
        return w, {}
