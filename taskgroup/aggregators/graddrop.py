"""``graddrop``: gradient sign dropout.

For every coordinate, the positive sign purity P = ½ (1 + Σ_i g_i / Σ_i |g_i|) ∈ [0, 1] measures
how much the tasks agree on the sign. With U ~ Uniform(0, 1) drawn per coordinate, GradDrop keeps
the positive entries where f(P) > U and the negative ones where f(P) < U:

    d = Σ_i (ℓ_i + (1 − ℓ_i) M_i) ⊙ g_i,   M_i = 1[f(P) > U] 1[g_i > 0] + 1[f(P) < U] 1[g_i < 0]

with leak ℓ_i (0 = full dropout) and f the identity (Chen et al., "Just Pick a Sign: Optimizing Deep
Multitask Models with Gradient Sign Dropout", NeurIPS 2020, Algorithm 1). The mask depends on the
coordinates, not only on GGᵀ: GradDrop defines no task weights. Cost: O(kd).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from taskgroup.aggregators.base import Aggregation, Aggregator


class GradDrop(Aggregator):
    """Keep, per coordinate, the gradients of one randomly chosen sign (biased by sign purity).

    Args:
        leak: ``[k]`` fraction of each task's gradient that always passes (default 0), or a
            scalar for all tasks.
        seed: seed of the ``torch.Generator`` that draws U.

    Degenerate input: a coordinate where every gradient is 0 contributes 0; k = 1 returns the
    gradient (its own sign is always kept).
    """

    name = "graddrop"
    summary = "randomly keep one sign per coordinate, biased by sign purity (GradDrop)"
    reference = "Chen et al., NeurIPS 2020"
    has_weights = False

    def __init__(
        self, *, leak: float | Sequence[float] = 0.0, seed: int = 0, max_norm: float = 0.0
    ) -> None:
        super().__init__(max_norm=max_norm)
        values = [leak] if isinstance(leak, int | float) else list(leak)
        if not values or any(not 0.0 <= float(v) <= 1.0 for v in values):
            raise ValueError(f"leak must be in [0, 1] (a number or one per task), got {leak!r}")
        self.leak = leak
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def _options_repr(self) -> str:
        return f"leak={self.leak!r}, seed={self.seed}, max_norm={self.max_norm}"

    def reset(self) -> None:
        self._generator = torch.Generator().manual_seed(self.seed)

    def _aggregate(self, G: torch.Tensor, context: Any) -> Aggregation:
        k = G.shape[0]
        leak = torch.as_tensor(self.leak, dtype=G.dtype).to(G.device)
        if leak.ndim == 1 and len(leak) != k:
            raise ValueError(f"leak has {len(leak)} entries but G has {k} tasks")
        # Per coordinate all kept entries share one sign, so with P⁺ = Σ_i max(g_i, 0) and
        # S = Σ_i g_i the masked sum is P⁺ or S − P⁺, and Σ_i |g_i| = 2P⁺ − S: four passes over G.
        total = G.sum(dim=0)
        positive = G.clamp(min=0)
        positive_total = positive.sum(dim=0)
        magnitude = 2.0 * positive_total - total
        purity = positive_total / torch.where(magnitude > 0, magnitude, 1.0)
        U = torch.rand(G.shape[1], generator=self._generator, dtype=G.dtype).to(G.device)
        if leak.ndim == 0 and float(leak) == 0.0:
            kept_positive, kept_total, leaked = positive_total, total, None
        else:
            keep = (1.0 - leak).expand(k)
            kept_positive, kept_total = keep @ positive, keep @ G
            leaked = (leak.expand(k)) @ G
        direction = torch.where(
            purity > U, kept_positive, torch.where(purity < U, kept_total - kept_positive, 0.0)
        )
        if leaked is not None:
            direction = direction + leaked
        return Aggregation(direction, None)
