"""``rlw``: random loss weighting — fresh random weights every step.

    w = softmax(z),  z ~ N(0, I_k)  drawn each step

(Lin et al., "Reasonable Effectiveness of Random Weighting: A Litmus Test for Multi-Task
Learning", TMLR 2022). A baseline that any method should beat. Weights sum to 1.
"""

from __future__ import annotations

import torch

from taskgroup.aggregators.base import LossWeighting


class RandomLossWeighting(LossWeighting):
    """Weights softmax(z), z ~ N(0, I) per step, from a seeded ``torch.Generator``."""

    name = "rlw"
    summary = "random weights softmax(z), z ~ N(0, I) each step (RLW)"
    reference = "Lin et al., TMLR 2022"

    def __init__(self, *, seed: int = 0, max_norm: float = 0.0) -> None:
        super().__init__(max_norm=max_norm)
        self.seed = seed
        self._generator = torch.Generator().manual_seed(seed)

    def reset(self) -> None:
        super().reset()
        self._generator = torch.Generator().manual_seed(self.seed)

    def _weigh(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        z = torch.randn(losses.shape[0], generator=self._generator, dtype=torch.float64)
        weights = torch.softmax(z, dim=0).to(losses.dtype).to(losses.device)
        return (weights * losses).sum(), weights
