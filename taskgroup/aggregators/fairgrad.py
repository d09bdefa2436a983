"""``fairgrad``: α-fair task weights, (GGᵀ) w = w^(−1/α), from the Nash-MTL solver.

FairGrad chooses the direction d = Gᵀw that maximises the α-fair utility Σ_i (g_iᵀd)^(1−α)/(1−α) of
the tasks' improvements; its weights solve K w = w^(−1/α) (Ban & Ji, "Fair Resource Allocation in
Multi-Task Learning", ICML 2024). α → 0 approaches the mean (utilitarian), α = 1 is Nash-MTL
(proportional fairness), α → ∞ approaches max-min fairness. The solve is
:func:`~taskgroup.aggregators.nash_mtl.solve_alpha_fair` (damped Newton on ½ wᵀKw − Σ φ(w_i),
φ' = w^(−1/α)), with the same options, residual report and degenerate cases as ``nash_mtl``.
Unlike α = 1, α ≠ 1 is not invariant to the scale of each gradient: d(cG) = c^((1−α)/(1+α)) d(G).
"""

from __future__ import annotations

from typing import Any

from taskgroup.aggregators.base import check_option
from taskgroup.aggregators.nash_mtl import NashMTL


class FairGrad(NashMTL):
    """α-fair weights (GGᵀ) w = w^(−1/α); α = 1 is Nash-MTL.

    Args:
        alpha: fairness α > 0 (default 1.0, the reference default).
        **solver_options: Nash-MTL's options (``max_norm``, ``update_weights_every``, ``solver``,
            ``tol``, ``max_iter``), defined once, by :class:`NashMTL`.
    """

    name = "fairgrad"
    summary = "α-fair weights (GGᵀ)w = w^(-1/α) from the Nash-MTL solver (FairGrad, alpha)"
    reference = "Ban & Ji, ICML 2024"

    def __init__(self, *, alpha: float = 1.0, **solver_options: Any) -> None:
        self.alpha = check_option("alpha", alpha, low=0.0, strict=True)
        super().__init__(**solver_options)

    def _options_repr(self) -> str:
        return f"alpha={self.alpha}, " + super()._options_repr()
