"""``mean``: linear scalarisation with equal weights, the baseline every method is compared to."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from taskgroup.aggregators.base import (
    EPS,
    Aggregation,
    Aggregator,
    GramianAggregator,
    bound_direction,
)


class Mean(GramianAggregator):
    """The average gradient ``d = (1/k) Σ_i g_i`` (weights ``1/k``): the gradient of the mean
    task loss. It needs no Gramian; :meth:`weights_from_gramian` is uniform."""

    name = "mean"
    summary = "average of the task gradients (linear scalarisation, weights 1/k)"
    reference = "equal-weight linear scalarisation"

    def _weigh(self, K: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, dict[str, Any]]:
        return np.full(len(K), 1.0 / len(K)), {}

    aggregate = Aggregator.aggregate  # no Gramian to check the entries through: check G

    def _aggregate_within(self, G: torch.Tensor, context: Any, max_norm: float) -> Aggregation:
        return bound_direction(self._aggregate(G, context), max_norm)  # no Gramian needed

    def _reused_weights(self, k: int) -> torch.Tensor:
        # The weights never depend on G, so a training step needs no per-task gradients: one
        # backward pass of the mean loss (k times cheaper than building G).
        return torch.full((k,), 1.0 / k)

    def _aggregate(self, G: torch.Tensor, context: Any) -> Aggregation:
        k = G.shape[0]
        return Aggregation(G.mean(dim=0), torch.full((k,), 1.0 / k, dtype=G.dtype, device=G.device))
