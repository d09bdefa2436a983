"""``transference``: the IT-MTL update — keep, each step, the candidate with the best lookahead.

Fifty et al. ("Measuring and Harnessing Transference in Multi-Task Learning", 2020) score a set of
candidate update directions by the loss the network would have after taking each of them on the
current batch, and apply the best. Here the candidates are the outputs of other aggregators
(default: ``mean`` and ``pcgrad``, the paper's IT-PCGrad pair), optionally each task's own
gradient (``per_task=True``) and each task's PCGrad projection (``projections=True``). Each
candidate d becomes the shared-parameter update u(d) the training step would actually take
(``-lr d`` for plain SGD, or the live optimizer's step, momentum and Adam state included), and
all tasks' losses at θ_s + u(d) come from the affinity engine's
:func:`~taskgroup.affinity.lookahead.lookahead_losses` — one functional forward per candidate,
with the model, its buffers, the optimizer and the RNG stream left untouched and the same dropout
masks as the training forward. ``score="total"`` keeps the
candidate with the lowest Σ_j L_j(θ_s + u) (the paper's choice); ``"relative"`` the lowest mean of
L_j(θ_s + u) / L_j(θ_s), which weighs tasks of different loss scales equally.

Cost: the candidates' aggregations plus m forwards per step — this is the one aggregator whose
cost is dominated by forwards, not by the aggregation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from taskgroup.affinity.lookahead import LossFns, lookahead_losses, repeatable_randomness
from taskgroup.affinity.optimizer_step import stepped_parameters
from taskgroup.aggregators.backward import Params
from taskgroup.aggregators.base import Aggregation, Aggregator, gramian
from taskgroup.aggregators.pcgrad import PCGrad, pcgrad_coefficients
from taskgroup.aggregators.registry import get, register
from taskgroup.gradients import flatten
from taskgroup.models import SharedSpec, shared_parameter_names

SCORES = ("total", "relative")
TRANSFERENCE_STEPS = ("optimizer", "sgd")  # how a candidate direction becomes an update
CandidateSpec = str | Aggregator | tuple[str, Mapping[str, Any]]


@dataclass(frozen=True)
class TransferenceContext:
    """How candidate directions are scored on the current batch.

    ``evaluate(D)`` maps candidate directions ``D: [m, P]`` (in the layout of the shared
    parameters) to every task's loss ``[m, n]`` after the update each one implies; ``base_losses``
    ``[n]`` are the losses before it.
    """

    evaluate: Callable[[torch.Tensor], torch.Tensor]
    base_losses: torch.Tensor


def lookahead_context(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    *,
    shared: SharedSpec = None,
    optimizer: torch.optim.Optimizer | None = None,
    lr: float | None = None,
    base_losses: torch.Tensor | None = None,
    rng_state: torch.Tensor | None = None,
) -> TransferenceContext:
    """The :class:`TransferenceContext` of one training batch.

    Args:
        model, inputs, targets, losses, shared: as in :func:`taskgroup.lookahead_affinity`.
        optimizer: the live optimizer (SGD/Adam/AdamW): the update of a direction is the step it
            would take (read only). Without it, ``lr`` gives the plain SGD step ``-lr d``.
        base_losses: the ``[n]`` losses at the current parameters (computed when omitted).
        rng_state: the CPU RNG state of the training forward, so that the lookahead forwards
            replay its dropout masks (default: the state now; on CUDA the device's state now).
            The caller's RNG stream is left unchanged.
    """
    if optimizer is None and (lr is None or not lr > 0):
        raise ValueError("transference needs the optimizer (or lr > 0) that makes the update")
    names = shared_parameter_names(model, shared)
    buffers = {n: b.detach().clone() for n, b in model.named_buffers()}
    shared_params = [model.get_parameter(n) for n in names]
    theta = flatten([p.detach() for p in shared_params])
    state = torch.get_rng_state() if rng_state is None else rng_state

    def losses_at(moved: torch.Tensor) -> torch.Tensor:
        with repeatable_randomness(theta.device, state) as reset:
            return lookahead_losses(
                model,
                inputs,
                targets,
                losses,
                names,
                moved,
                buffers={n: b.clone() for n, b in buffers.items()},
                reset=reset,
            )

    def evaluate(directions: torch.Tensor) -> torch.Tensor:
        directions = directions.detach().to(theta.dtype)
        if optimizer is not None:
            return losses_at(stepped_parameters(optimizer, shared_params, directions))
        return losses_at(torch.add(theta, directions, alpha=-float(lr)))

    if base_losses is None:
        base_losses = losses_at(theta[None, :])[0]
    return TransferenceContext(evaluate, base_losses.detach())


def _resolve(spec: CandidateSpec) -> Aggregator:
    if isinstance(spec, Aggregator):
        aggregator = spec
    elif isinstance(spec, str):
        aggregator = get(spec)
    elif isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[0], str):
        aggregator = get(spec[0], **dict(spec[1]))
    else:
        raise ValueError(
            f"a candidate must be an aggregator name, (name, options) or an Aggregator, "
            f"got {spec!r}"
        )
    if not isinstance(aggregator, Aggregator) or isinstance(aggregator, Transference):
        raise ValueError(
            f"transference candidates must be gradient aggregators, got {aggregator!r}"
        )
    return aggregator


@register
class Transference(Aggregator):
    """Per step, the candidate direction whose lookahead lowers the loss most (IT-MTL).

    Args:
        candidates: aggregators whose directions compete: names, ``(name, options)`` pairs or
            instances (default ``("mean", "pcgrad")``).
        per_task: also try each task's own gradient g_i.
        projections: also try each task's PCGrad projection g_i^PC.
        score: ``"total"`` (lowest Σ_j L_j after the update) or ``"relative"`` (lowest mean
            L_j after / L_j before).
        lookahead: how ``MTLStep`` turns a direction into an update: ``"optimizer"`` (the step
            the live optimizer would take; SGD, Adam, AdamW) or ``"sgd"`` (``-lr d``).
        seed: seed of the visiting orders of ``projections``.

    Needs the batch: call it through :class:`~taskgroup.aggregators.step.MTLStep` or pass
    ``context=`` a :class:`TransferenceContext` (see :func:`lookahead_context`) to ``aggregate`` or
    ``backward``.
    ``info["chosen"]`` names the winner and ``info["scores"]`` lists every candidate's score.
    """

    name = "transference"
    summary = "per step, the candidate direction with the best lookahead loss (IT-MTL)"
    reference = "Fifty et al., 2020 (IT-MTL); Fifty et al., NeurIPS 2021 (TAG)"

    def __init__(
        self,
        *,
        candidates: Sequence[CandidateSpec] = ("mean", "pcgrad"),
        per_task: bool = False,
        projections: bool = False,
        score: str = "total",
        lookahead: str = "optimizer",
        seed: int = 0,
        max_norm: float = 0.0,
    ) -> None:
        super().__init__(max_norm=max_norm)
        if isinstance(candidates, str):
            candidates = [candidates]
        self.candidates = [_resolve(spec) for spec in candidates]
        if not self.candidates and not per_task and not projections:
            raise ValueError("transference needs at least one candidate")
        if score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {score!r}")
        self.per_task = bool(per_task)
        self.projections = bool(projections)
        self.score = score
        if lookahead not in TRANSFERENCE_STEPS:
            raise ValueError(
                f"lookahead must be one of {', '.join(TRANSFERENCE_STEPS)}, got {lookahead!r}"
            )
        self.lookahead = lookahead
        self.seed = seed
        self._pcgrad = PCGrad(seed=seed)

    def _options_repr(self) -> str:
        names = ", ".join(c.name for c in self.candidates)
        return (
            f"candidates=[{names}], per_task={self.per_task}, projections={self.projections}, "
            f"score={self.score!r}, max_norm={self.max_norm}"
        )

    def reset(self) -> None:
        for candidate in self.candidates:
            candidate.reset()
        self._pcgrad.reset()

    def _aggregate(self, G: torch.Tensor, context: Any) -> Aggregation:
        if not isinstance(context, TransferenceContext):
            raise ValueError(
                "transference scores candidates by their lookahead loss on the batch: use "
                "MTLStep, or pass context=taskgroup.aggregators.lookahead_context(...)"
            )
        k = G.shape[0]
        labels: list[str] = []
        directions: list[torch.Tensor] = []
        weights: list[torch.Tensor | None] = []
        for candidate in self.candidates:
            result = candidate.aggregate(G)
            labels.append(candidate.name)
            directions.append(result.direction)
            weights.append(result.weights)
        eye = torch.eye(k, dtype=G.dtype, device=G.device)
        if self.per_task:
            for i in range(k):
                labels.append(f"task {i}")
                directions.append(G[i])
                weights.append(eye[i])
        if self.projections:
            K = gramian(G)
            C = torch.as_tensor(pcgrad_coefficients(K, self._pcgrad.orders(k)), dtype=G.dtype)
            C = C.to(G.device)
            for i in range(k):
                labels.append(f"projection {i}")
                directions.append(C[i] @ G)
                weights.append(C[i])
        D = torch.stack(directions)
        after = context.evaluate(D).to(torch.float64)
        if after.shape != (len(D), k):
            raise ValueError(
                f"the lookahead returned losses of shape {tuple(after.shape)}, expected "
                f"{(len(D), k)} (candidates × tasks)"
            )
        if not bool(torch.isfinite(after).all()):
            raise ValueError("a candidate's lookahead loss is not finite (the step is too large?)")
        if self.score == "total":
            scores = after.sum(dim=1)
        else:
            base = context.base_losses.to(after)
            if bool((base == 0).any()):
                raise ValueError('score="relative" needs non-zero losses before the update')
            scores = (after / base).mean(dim=1)
        best = int(torch.argmin(scores))
        info = {
            "chosen": labels[best],
            "scores": dict(zip(labels, scores.tolist(), strict=True)),
        }
        return Aggregation(D[best], weights[best], info)

    def backward(self, losses: torch.Tensor, shared_params: Params, **options: Any) -> Aggregation:
        if options.get("features") is not None:
            raise ValueError(
                'transference scores updates of the shared parameters: on="features" does not '
                "apply to it"
            )
        return super().backward(losses, shared_params, **options)
