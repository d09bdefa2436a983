"""``famo``: fast adaptive multitask optimisation — balance the tasks' log-loss decrease in O(1).

FAMO keeps task logits ξ (weights z = softmax(ξ)) and minimises, per step,

    Σ_i z_i log(L_i − m_i + ε) / c,   c = Σ_i z_i / (L_i − m_i + ε)   (c held constant)

whose gradient is Σ_i w_i ∇L_i with w_i = z_i / (c (L_i − m_i + ε)), Σ w = 1: an update that aims
to decrease every log-loss at the same rate, without per-task gradients. After the step, with
δ_i = log(L_i − m_i + ε) − log(L'_i − m_i + ε) the achieved decrease, the logits take one Adam step
(learning rate ``w_lr``, weight decay ``gamma``) on Jᵀδ, J the softmax Jacobian, so tasks that
improved less gain weight (Liu et al., "FAMO: Fast Adaptive Multitask Optimization", NeurIPS 2023).

The decrease is measured on the losses after the step: :class:`MTLStep` evaluates the same batch
again without gradients (FAMO's own trainers); with ``backward`` alone call :meth:`observe` with
them, or let the next call use its incoming losses instead (FAMO's toy protocol). ``m_i`` is a
lower bound of loss i (``min_losses``, default 0). ``max_norm`` (1.0, the reference) clips the
shared parameters' gradient.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from taskgroup.aggregators.base import LossWeighting, check_losses, check_option


class FAMO(LossWeighting):
    """Logit-parametrised weights adapted so all log-losses decrease at the same rate.

    Args:
        gamma: weight decay of the logits' Adam (0.01; the toy problems use 0).
        w_lr: learning rate of the logits' Adam (0.025).
        min_losses: lower bound m of each loss (a number or one per task).
        eps: ε inside the logarithm (1e-8).
        max_norm: clip the shared parameters' gradient to this norm (1.0; 0 = off).
    """

    name = "famo"
    summary = "weights adapted so all log-losses decrease equally, O(1) per step (FAMO)"
    reference = "Liu et al., NeurIPS 2023"
    wants_losses_after = True

    def __init__(
        self,
        *,
        gamma: float = 0.01,
        w_lr: float = 0.025,
        min_losses: float | Sequence[float] = 0.0,
        eps: float = 1e-8,
        max_norm: float = 1.0,
    ) -> None:
        super().__init__(max_norm=max_norm)
        self.gamma = check_option("gamma", gamma, low=0.0)
        self.w_lr = check_option("w_lr", w_lr, low=0.0, strict=True)
        self.eps = check_option("eps", eps, low=0.0)
        self.min_losses = min_losses
        self.logits: torch.Tensor | None = None
        self._previous: torch.Tensor | None = None

    def prepare(self, k: int, *, device=None, dtype=None) -> None:
        super().prepare(k)
        if self.logits is None:
            self.logits = torch.zeros(k, dtype=torch.float64)
            self._moments = (torch.zeros_like(self.logits), torch.zeros_like(self.logits))
            self._steps = 0

    def reset(self) -> None:
        super().reset()
        self.logits = None
        self._previous = None

    def _shifted(self, losses: torch.Tensor) -> torch.Tensor:
        bound = torch.as_tensor(self.min_losses, dtype=losses.dtype).to(losses.device)
        if bound.ndim == 1 and len(bound) != len(losses):
            raise ValueError(f"min_losses has {len(bound)} entries for {len(losses)} tasks")
        shifted = losses - bound + self.eps
        if not bool((shifted.detach() > 0).all()):
            bad = torch.nonzero(shifted.detach() <= 0).flatten().tolist()
            raise ValueError(
                f"famo needs every loss above its min_losses; task(s) {bad} are not "
                f"(set min_losses= to a lower bound of the losses)"
            )
        return shifted

    def _weigh(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._previous is not None:  # observe() was not called: learn from these losses
            self._update(losses.detach())
        shifted = self._shifted(losses)
        z = torch.softmax(self.logits, dim=0).to(losses.dtype).to(losses.device)
        c = (z / shifted.detach()).sum()
        objective = (z * torch.log(shifted)).sum() / c
        weights = z / (c * shifted.detach())
        self._previous = losses.detach()
        return objective, weights

    def observe(self, losses_after: torch.Tensor) -> None:
        """Adapt the logits from the losses after the step (same batch, updated parameters)."""
        check_losses(losses_after, "losses_after")
        if self._previous is None:
            raise ValueError("famo.observe() follows a step: call the weighting on losses first")
        self._update(losses_after.detach())

    def _update(self, after: torch.Tensor) -> None:
        before = self._previous
        self._previous = None
        if len(after) != len(before):
            raise ValueError(f"famo expected {len(before)} losses, got {len(after)}")
        decrease = (torch.log(self._shifted(before)) - torch.log(self._shifted(after))).double()
        decrease = decrease.cpu()
        z = torch.softmax(self.logits, dim=0)
        # one Adam step (β = 0.9, 0.999; L2 weight decay γ) on Jᵀδ, J the softmax Jacobian
        gradient = z * (decrease - (z * decrease).sum()) + self.gamma * self.logits
        m, v = self._moments
        m.mul_(0.9).add_(gradient, alpha=0.1)
        v.mul_(0.999).addcmul_(gradient, gradient, value=0.001)
        self._steps += 1
        m_hat = m / (1 - 0.9**self._steps)
        v_hat = v / (1 - 0.999**self._steps)
        self.logits = self.logits - self.w_lr * m_hat / (v_hat.sqrt() + 1e-8)
