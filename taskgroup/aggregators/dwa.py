"""``dwa``: dynamic weight average — weigh tasks by how slowly their loss is falling.

    w_i(t) = exp(r_i / T) / Σ_j exp(r_j / T),   r_i = L̄_i(recent window) / L̄_i(window before)

with temperature T (Liu, Johns & Davison, "End-to-End Multi-Task Learning with Attention", CVPR
2019). The paper averages losses over epochs; like the Nash-MTL benchmarks' implementation this
averages over windows of ``window`` steps (``window`` = steps per epoch recovers the paper). Until
two windows have been seen the weights are uniform. Weights sum to 1 (the paper's K-scaled weights
divided by K), so the objective Σ w_i L_i starts as the mean loss.
"""

from __future__ import annotations

from collections import deque

import torch

from taskgroup.aggregators.base import LossWeighting, check_count, check_option


class DynamicWeightAverage(LossWeighting):
    """Softmax of the recent loss ratios over a temperature.

    Args:
        temperature: T > 0 (2.0 in the paper); larger is closer to uniform.
        window: steps averaged per window (25, the Nash-MTL benchmarks' value).
    """

    name = "dwa"
    summary = "softmax of recent loss-decrease ratios over a temperature (DWA)"
    reference = "Liu et al., CVPR 2019"

    def __init__(self, *, temperature: float = 2.0, window: int = 25, max_norm: float = 0.0):
        super().__init__(max_norm=max_norm)
        self.temperature = check_option("temperature", temperature, low=0.0, strict=True)
        self.window = check_count("window", window)
        self._history: deque[torch.Tensor] = deque(maxlen=2 * self.window)

    def reset(self) -> None:
        super().reset()
        self._history.clear()

    def _weigh(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = losses.shape[0]
        if len(self._history) == self._history.maxlen:
            history = torch.stack(list(self._history))
            before = history[: self.window].mean(dim=0)
            recent = history[self.window :].mean(dim=0)
            ratio = torch.where(before.abs() > 0, recent / torch.where(before != 0, before, 1), 1)
            weights = torch.softmax(ratio / self.temperature, dim=0).to(losses.dtype)
        else:
            weights = torch.full((k,), 1.0 / k, dtype=losses.dtype, device=losses.device)
        self._history.append(losses.detach())
        return (weights * losses).sum(), weights
