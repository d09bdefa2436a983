"""``uw``: uncertainty weighting with a learnable log-variance per task.

    L = Σ_i ½ (exp(−s_i) L_i + s_i),     s_i = log σ_i²  (learned with the model)

(Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh Losses for Scene Geometry
and Semantics", CVPR 2018, in the form of the Nash-MTL benchmarks' implementation). The effective
weights are ½ exp(−s_i); s starts at ``init``. The s_i are parameters: :class:`MTLStep` adds them to
its optimizer (learning rate ``lr``, or the optimizer's default); with ``backward`` alone pass
``weighting.parameters()`` to an optimizer yourself.
"""

from __future__ import annotations

import torch

from taskgroup.aggregators.base import LossWeighting, check_count, check_option


class UncertaintyWeighting(LossWeighting):
    """Homoscedastic-uncertainty weights ½ exp(−s_i), with s = log σ² learned.

    Args:
        n_tasks: create the parameters now (otherwise on the first call or in ``MTLStep``).
        init: initial s_i (0: weights ½).
        lr: learning rate of s when ``MTLStep`` adds it to the optimizer (None: its default).
    """

    name = "uw"
    summary = "learned homoscedastic-uncertainty weights ½exp(-s_i) (UW)"
    reference = "Kendall et al., CVPR 2018"

    def __init__(
        self,
        *,
        n_tasks: int | None = None,
        init: float = 0.0,
        lr: float | None = None,
        max_norm: float = 0.0,
    ) -> None:
        super().__init__(max_norm=max_norm)
        self.init = check_option("init", init, low=-1e6)
        self.lr = None if lr is None else check_option("lr", lr, low=0.0, strict=True)
        self.log_variances: torch.Tensor | None = None
        if n_tasks is not None:
            self.prepare(check_count("n_tasks", n_tasks))

    def prepare(self, k: int, *, device=None, dtype=None) -> None:
        super().prepare(k)
        if self.log_variances is None:
            self.log_variances = torch.full(
                (k,), self.init, device=device, dtype=dtype or torch.float32, requires_grad=True
            )

    def parameters(self) -> list[torch.Tensor]:
        if self.log_variances is None:
            raise ValueError("uw has no parameters yet: pass n_tasks= or call prepare(k) first")
        return [self.log_variances]

    def reset(self) -> None:
        super().reset()
        self.log_variances = None

    def _weigh(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = self.log_variances.to(losses.dtype)
        precision = torch.exp(-s)
        objective = 0.5 * (precision * losses + s).sum()
        return objective, 0.5 * precision.detach()
