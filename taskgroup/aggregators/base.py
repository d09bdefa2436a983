"""The two kinds of multi-task update rules: gradient aggregators and loss weightings.

A **gradient aggregator** maps the matrix ``G: [k, d]`` of per-task gradients (row i = task i)
to one update direction ``d: [d]``; where the method defines them it also returns task weights
``w: [k]`` with ``d = Gᵀw``. Following torchjd, the methods that only look at the Gramian
``K = GGᵀ`` (``[k, k]``) are :class:`GramianAggregator`\\ s: they split into "how to weight"
(:meth:`GramianAggregator.weights_from_gramian`, a function of K alone, solved in float64) and
"how to combine" (``Gᵀw`` in G's dtype), so their cost beyond the Gramian does not grow with d.

A **loss weighting** acts on the ``[k]`` task losses, not on gradients: it returns the scalar to
back-propagate (and the effective task weights), so it needs no per-task gradients.

Both kinds fill ``.grad`` in a training step with ``backward(losses, shared_params)`` (the
autograd and distributed plumbing it uses is :mod:`taskgroup.aggregators.backward`), or are driven
by :class:`~taskgroup.aggregators.step.MTLStep`. Each call of a stateful method is one training
step: ``agg(G)``, ``agg.weights(G)`` and ``agg.aggregate(G)`` each advance its state once; use
:meth:`Aggregator.aggregate` to get the direction and the weights of one step together.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from taskgroup.affinity.lookahead import NonFiniteError, nonfinite_gradient_tasks
from taskgroup.aggregators.backward import (
    Params,
    backpropagate_finite,
    bound_grads,
    clipped_direction,
    global_values,
    parameter_list,
    per_task_gradients,
    task_specific_parameters,
    through_features,
    weighted_gradients,
    write_grads,
)
from taskgroup.gradients import flatten, scale_to_norm, unflatten

EPS = float(np.finfo(np.float64).eps)


@dataclass(frozen=True)
class Aggregation:
    """One step's result: ``direction`` ``[d]``, ``weights`` ``[k]`` with ``direction = Gᵀ
    weights`` (``None`` where the method defines no weights) and method-specific ``info``
    (e.g. Nash-MTL's solver ``residual``)."""

    direction: torch.Tensor
    weights: torch.Tensor | None
    info: Mapping[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------
# validation at the public boundary


def check_option(name: str, value: float, *, low: float, strict: bool = False) -> float:
    """``value`` as a float, or a ``ValueError`` naming the option when it is out of range."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < low or (strict and value == low):
        bound = f"> {low:g}" if strict else f">= {low:g}"
        raise ValueError(f"{name} must be finite and {bound}, got {value!r}")
    return value


def check_count(name: str, value: int, *, low: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def check_matrix(G: torch.Tensor, what: str = "G", *, finite: bool = True) -> None:
    """Raise a clear error unless ``G`` is a finite floating-point matrix ``[k >= 1, d >= 1]``
    (``finite=False``: leave the entries to the caller, e.g. :func:`gramian`, which checks them
    through K at no extra pass over G). Non-finite entries raise
    :class:`~taskgroup.affinity.lookahead.NonFiniteError` (a ``ValueError``) naming the rows."""
    if not isinstance(G, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor [k, d], got {type(G).__name__}")
    if G.ndim != 2:
        raise ValueError(
            f"{what} must be a matrix [k, d] with one row per task, got shape {tuple(G.shape)}"
        )
    if G.shape[0] == 0 or G.shape[1] == 0:
        raise ValueError(f"{what} must have at least one task and one column, got {tuple(G.shape)}")
    if not G.is_floating_point():
        raise ValueError(f"{what} must be a floating-point tensor, got {G.dtype}")
    if not finite:
        return
    # a NaN or inf anywhere makes the sum non-finite (a finite sum that overflows is re-checked)
    if not bool(torch.isfinite(G.sum())) and not bool(torch.isfinite(G).all()):
        rows = torch.nonzero(~torch.isfinite(G).all(dim=1)).flatten().tolist()
        raise NonFiniteError(what, rows, detail=" (row i = task i)")


def check_losses(losses: torch.Tensor, what: str = "losses") -> None:
    """Raise a clear error unless ``losses`` is a finite vector ``[k >= 1]`` (NaN/inf:
    :class:`~taskgroup.affinity.lookahead.NonFiniteError` naming the entries)."""
    if not isinstance(losses, torch.Tensor):
        raise TypeError(f"{what} must be a torch.Tensor [k], got {type(losses).__name__}")
    if losses.ndim != 1 or losses.shape[0] == 0:
        raise ValueError(
            f"{what} must be a vector [k] with one loss per task, got shape {tuple(losses.shape)}"
        )
    if not bool(torch.isfinite(losses.detach()).all()):
        bad = torch.nonzero(~torch.isfinite(losses.detach())).flatten().tolist()
        raise NonFiniteError(what, bad, detail=" (entry i = task i)")


def _stacked(losses) -> tuple[torch.Tensor, torch.Tensor | list[torch.Tensor]]:
    """``(stacked [k] losses, what to differentiate per task)`` from a tensor or scalars."""
    if isinstance(losses, torch.Tensor):
        check_losses(losses)
        return losses, losses
    items = list(losses)
    if not items or not all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in items):
        raise ValueError("losses must be a [k] tensor or a non-empty sequence of scalar tensors")
    stacked = torch.stack(items)
    check_losses(stacked)
    return stacked, items


def gramian(G: torch.Tensor) -> np.ndarray:
    """``K = GGᵀ`` ``[k, k]`` as a symmetric float64 array (computed in G's dtype).

    When G's dtype cannot hold the products (overflow, or a non-zero row whose squared norm
    underflows to 0, e.g. float32 entries below 1e-23), K is recomputed from G / max|G| and scaled
    back in float64; a Gramian that float64 cannot hold raises ``ValueError``. Non-finite
    entries of G raise :func:`check_matrix`'s ``ValueError`` (they make K non-finite: K_ii sums
    the squares of row i).
    """
    G = G.detach()
    K = (G @ G.T).to("cpu", torch.float64).numpy()
    zero = K.diagonal() == 0
    if not np.isfinite(K).all() or (zero.any() and (zero & G.any(dim=1).cpu().numpy()).any()):
        check_matrix(G)
        scale = G.abs().max()
        K = (G / scale) @ (G / scale).T
        K = K.to("cpu", torch.float64).numpy() * float(scale) ** 2
        if not np.isfinite(K).all():
            raise ValueError("the gradients are too large for their Gramian GGᵀ (overflow)")
    return (K + K.T) * 0.5


def bound_direction(result: Aggregation, max_norm: float) -> Aggregation:
    """``result`` with its direction (and its weights with it) scaled down to norm ``max_norm``
    when longer (0 = unbounded)."""
    if max_norm <= 0:
        return result
    scale = scale_to_norm(torch.linalg.vector_norm(result.direction), max_norm)
    weights = None if result.weights is None else result.weights * scale
    return Aggregation(result.direction * scale, weights, result.info)


# ------------------------------------------------------------------------------------------
# gradient aggregators


class Aggregator(ABC):
    """A gradient aggregator: per-task gradients ``G: [k, d]`` → one direction ``[d]``.

    Args:
        max_norm: when > 0, the direction (and the weights with it) is scaled down so that its
            norm is at most ``max_norm`` (Nash-MTL's and FAMO's reference clipping; 0 = off).

    ``agg(G)`` returns the direction, ``agg.weights(G)`` the task weights (where defined) and
    ``agg.aggregate(G)`` both as an :class:`Aggregation`. Input is validated once: a clear
    ``ValueError`` for a non-matrix, an empty one or non-finite entries.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    kind: ClassVar[str] = "gradient"
    has_weights: ClassVar[bool] = True

    def __init__(self, *, max_norm: float = 0.0) -> None:
        self.max_norm = check_option("max_norm", max_norm, low=0.0)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._options_repr()})"

    def _options_repr(self) -> str:
        return f"max_norm={self.max_norm}"

    def aggregate(self, G: torch.Tensor, *, context: Any = None) -> Aggregation:
        """The direction, weights and info of one step on ``G: [k, d]``."""
        check_matrix(G)
        return self._aggregate_within(G, context, self.max_norm)

    def __call__(self, G: torch.Tensor) -> torch.Tensor:
        """The update direction ``[d]`` for ``G: [k, d]``."""
        return self.aggregate(G).direction

    def weights(self, G: torch.Tensor) -> torch.Tensor:
        """The task weights ``[k]`` (``agg(G) = Gᵀ w``)."""
        if not self.has_weights:
            raise ValueError(
                f"{self.name} defines no task weights; use {self.name}(G) for its direction"
            )
        result = self.aggregate(G)
        if result.weights is None:
            raise ValueError(f"{self.name} defined no task weights on this input")
        return result.weights

    def reset(self) -> None:  # noqa: B027  (stateless methods have nothing to forget)
        """Forget any state carried between steps (warm starts, counters, random streams)."""

    @abstractmethod
    def _aggregate(self, G: torch.Tensor, context: Any) -> Aggregation:
        """Direction, weights and info for a validated ``G`` (before ``max_norm``)."""

    def _aggregate_within(self, G: torch.Tensor, context: Any, max_norm: float) -> Aggregation:
        """The hook :meth:`aggregate` calls on a validated ``G``: the step's result with its
        direction bounded to ``max_norm`` (0 = unbounded). By default :meth:`_aggregate`, then
        :func:`bound_direction`; :class:`GramianAggregator` overrides it to bound the weights
        through K before forming the direction."""
        return bound_direction(self._aggregate(G, context), max_norm)

    # -- the training step ---------------------------------------------------------------

    def backward(
        self,
        losses: torch.Tensor | Sequence[torch.Tensor],
        shared_params: Params,
        *,
        task_params: Params | None = None,
        features: torch.Tensor | None = None,
        batched: bool = True,
        chunk_size: int | None = None,
        context: Any = None,
        distributed: bool = False,
    ) -> Aggregation:
        """Fill ``.grad`` for one training step, in place of ``losses.sum().backward()``.

        Args:
            losses: the k task losses sharing one autograd graph (row order = task order): a
                ``[k]`` tensor or a sequence of scalars (faster: each task's backward pass then
                only reaches its own head).
            shared_params: the shared parameters θ_s (a module or a list of tensors); their
                ``.grad`` receives the aggregated direction.
            task_params: the task-specific parameters; each receives its own task's gradient
                (the gradient of ``losses.sum()``). ``None`` finds them in the graph.
            features: the shared representation z the task heads read (``on="features"``, the
                MGDA-UB trick): G holds the per-task gradients of z (cheap: back-propagated
                through the heads only), the direction is aggregated there and back-propagated
                once through the trunk. ``max_norm`` then bounds the shared parameters' gradient.
            batched: per-task gradients in one vmapped backward (``False``: k backward passes).
            chunk_size: with ``batched``, at most this many tasks per backward (bounds memory).
            context: extra input of methods that need more than G (``transference``).
            distributed: average G (and every gradient the step fills) over the ranks of the
                initialised process group before aggregating, so every rank takes the step of
                the global batch (each rank's losses must be its shard's means).

        Gradients accumulate into ``.grad`` like ``Tensor.backward``. A NaN/inf loss or gradient
        raises :class:`~taskgroup.affinity.lookahead.NonFiniteError` (a ``ValueError``) naming
        the tasks by row, before anything is written into ``.grad`` and (a NaN in G) before the
        method's state moves. Returns the step's
        :class:`Aggregation` (the direction is in the space of ``features`` when given).
        """
        losses, per_task = _stacked(losses)
        shared = parameter_list(shared_params, "shared_params")
        others = task_specific_parameters(losses, shared, task_params)
        reused = self._reused_weights(losses.shape[0])
        if reused is not None:
            return self._backward_weighted(per_task, losses, shared, others, reused, distributed)
        if features is None:
            G = per_task_gradients(
                per_task, shared, batched=batched, chunk_size=chunk_size, distributed=distributed
            )
            result = self._aggregate_gradients(G, context, per_task, shared)
            shared_grads = unflatten(result.direction, shared)
        else:
            if not isinstance(features, torch.Tensor) or not features.requires_grad:
                raise ValueError("features must be the representation tensor the losses read")
            G = per_task_gradients(per_task, [features], batched=batched, chunk_size=chunk_size)
            check_matrix(G, "the gradient")
            result = self._aggregate_within(G, context, 0.0)  # bounded below, in parameter space
            shared_grads = through_features(features, shared, result.direction)
            shared_grads = bound_grads(shared_grads, self.max_norm)
        write_grads(per_task, losses, shared, shared_grads, others, distributed=distributed, rows=G)
        return result

    def _aggregate_gradients(self, G: torch.Tensor, context: Any, per_task, params) -> Aggregation:
        """:meth:`aggregate` in a training step: NaN/inf rows of G raise, naming the tasks by
        row, before the method's state moves. The culprits are found by one backward pass per
        task (a vmapped backward spreads a NaN into every row: 0 · ∞ for the other tasks)."""
        try:
            return self.aggregate(G, context=context)
        except NonFiniteError as e:  # raised by the validation of G, before any solve
            culprits = nonfinite_gradient_tasks(per_task, params) or e.tasks
            raise NonFiniteError("the gradient", culprits) from None

    def _reused_weights(self, k: int) -> torch.Tensor | None:
        """Weights this step reuses without looking at G (Nash-MTL's ``update_weights_every``);
        ``None`` when the step needs G."""
        return None

    def _backward_weighted(
        self, per_task, losses, shared, others, weights, distributed
    ) -> Aggregation:
        """The step with the reused ``weights``: one backward pass of the weighted losses."""
        weights = weights.to(losses.dtype)
        grads = weighted_gradients(losses, weights, shared, distributed=distributed)
        if self.max_norm > 0:
            scale = scale_to_norm(torch.linalg.vector_norm(flatten(grads)), self.max_norm)
            grads = [g * scale for g in grads]
            weights = weights * scale
        write_grads(per_task, losses, shared, grads, others, distributed=distributed)
        return Aggregation(flatten(grads), weights, {"status": "reused"})


class GramianAggregator(Aggregator):
    """An aggregator whose weights depend on G only through its Gramian ``K = GGᵀ``.

    Subclasses implement :meth:`_weigh` (``K`` float64 ``[k, k]`` → weights ``[k]``, info); the
    direction is ``Gᵀw``. :meth:`weights_from_gramian` exposes "how to weight" on its own.
    """

    def weights_from_gramian(self, K: torch.Tensor) -> torch.Tensor:
        """Task weights ``[k]`` from a Gramian ``K: [k, k]`` (symmetric positive semi-definite);
        one step of a stateful method."""
        check_matrix(K, "K")
        if K.shape[0] != K.shape[1]:
            raise ValueError(f"K must be square [k, k], got {tuple(K.shape)}")
        array = K.detach().to("cpu", torch.float64).numpy()
        weights, _ = self._weigh((array + array.T) * 0.5, torch.finfo(K.dtype).eps)
        return torch.as_tensor(weights, dtype=K.dtype, device=K.device)

    @abstractmethod
    def _weigh(self, K: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, dict[str, Any]]:
        """Weights (float64 ``[k]``) and info from the float64 Gramian, computed from gradients
        of relative precision ``eps`` (that of G's dtype: a float32 Gramian's rank and
        stationarity are decided at float32's rounding, not float64's)."""

    def aggregate(self, G: torch.Tensor, *, context: Any = None) -> Aggregation:
        check_matrix(G, finite=False)  # the entries are checked through K, in :func:`gramian`
        return self._aggregate_within(G, context, self.max_norm)

    def _aggregate(self, G: torch.Tensor, context: Any) -> Aggregation:
        return self._aggregate_within(G, context, 0.0)

    def _aggregate_within(self, G: torch.Tensor, context: Any, max_norm: float) -> Aggregation:
        """K = GGᵀ once, the weights from :meth:`_weigh`, then ``Gᵀw``. ``max_norm`` bounds the
        weights through ``‖Gᵀw‖² = wᵀKw`` in float64, before the direction is formed (the bound
        of :func:`bound_direction`, computed in weight space)."""
        K = gramian(G)
        weights, info = self._weigh(K, torch.finfo(G.dtype).eps)
        if max_norm > 0:  # ‖Gᵀw‖² = wᵀKw: bound the direction before forming it
            norm = math.sqrt(max(float(weights @ K @ weights), 0.0))
            if norm > max_norm:
                weights = weights * (max_norm / norm)
        if float(np.abs(weights).max()) < torch.finfo(G.dtype).max / G.shape[0]:
            w = torch.as_tensor(weights, dtype=G.dtype, device=G.device)
            return Aggregation(w @ G, w, info)
        # scale-free weights (Nash-MTL) of tiny gradients can exceed G's dtype: combine in float64
        w = torch.as_tensor(weights, dtype=torch.float64).to(G.device)
        return Aggregation((w @ G.double()).to(G.dtype), w, info)


# ------------------------------------------------------------------------------------------
# loss weightings


class LossWeighting(ABC):
    """A loss weighting: task losses ``[k]`` → the scalar objective to back-propagate.

    ``weighting(losses)`` returns the objective of one step; ``weighting.weigh(losses)`` returns
    it with the effective task weights ``w`` (``∇ objective = Σ w_i ∇L_i``). Learnable weightings
    (``uw``) expose :meth:`parameters` for the optimizer.
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    reference: ClassVar[str] = ""
    kind: ClassVar[str] = "loss"
    wants_losses_after: ClassVar[bool] = False

    def __init__(self, *, max_norm: float = 0.0) -> None:
        self.max_norm = check_option("max_norm", max_norm, low=0.0)
        self._k: int | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(max_norm={self.max_norm})"

    def prepare(self, k: int, *, device=None, dtype=None) -> None:
        """Fix the number of tasks ``k`` (creates learnable parameters where there are any)."""
        if self._k is not None and self._k != k:
            raise ValueError(
                f"{self.name} was set up for {self._k} tasks, got {k} losses; call reset() "
                f"to start over with a different task set"
            )
        self._k = k

    def parameters(self) -> list[torch.Tensor]:
        """Learnable parameters of the weighting (to add to the optimizer); none by default."""
        return []

    def reset(self) -> None:
        """Forget the state carried between steps."""
        self._k = None

    def weigh(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step: ``(objective, weights)`` for the ``[k]`` losses."""
        check_losses(losses)
        self.prepare(losses.shape[0], device=losses.device, dtype=losses.dtype)
        return self._weigh(losses)

    def __call__(self, losses: torch.Tensor) -> torch.Tensor:
        if isinstance(losses, torch.Tensor) and losses.ndim == 2:
            raise ValueError(
                f"{self.name} is a loss weighting: call it on the [k] task losses, not on a "
                f"[k, d] gradient matrix"
            )
        return self.weigh(losses)[0]

    def weights(self, losses: torch.Tensor) -> torch.Tensor:
        """The effective task weights ``[k]`` of one step (detached)."""
        return self.weigh(losses)[1]

    def observe(self, losses_after: torch.Tensor) -> None:  # noqa: B027  (most ignore it)
        """Feedback after the optimizer step: the losses at the updated parameters (FAMO)."""

    @abstractmethod
    def _weigh(self, losses: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(objective, detached weights)`` for validated losses."""

    def backward(
        self,
        losses: torch.Tensor | Sequence[torch.Tensor],
        shared_params: Params | None = None,
        *,
        distributed: bool = False,
        **_: Any,
    ) -> Aggregation:
        """Back-propagate the weighted objective (fills ``.grad`` of every parameter the losses
        depend on, and of the weighting's own parameters); with ``max_norm`` > 0 and
        ``shared_params`` given, clip the shared parameters' gradient to that norm. ``losses``:
        a ``[k]`` tensor or a sequence of scalar losses (then a NaN gradient is traced to its
        task exactly; through a stacked tensor, a NaN can show in every task's gradient).

        ``distributed``: the weights are computed from the losses averaged over the ranks and
        every gradient is averaged over them, so every rank takes the step of the global batch.
        A NaN/inf loss or gradient raises :class:`~taskgroup.affinity.lookahead.NonFiniteError`
        naming the tasks by row, with nothing written into ``.grad`` (the weighting's state has
        moved by this step; ``MTLStep`` keeps the step from the optimizer).
        """
        losses, per_task = _stacked(losses)
        if distributed:  # global values for the weights, this rank's graph for the gradients
            losses = global_values(losses)
        objective, weights = self.weigh(losses)
        backpropagate_finite(objective, per_task, distributed=distributed)
        if shared_params is not None:
            shared = parameter_list(shared_params, "shared_params")
            direction = clipped_direction(shared, self.max_norm)
        else:
            direction = torch.zeros(0)
        return Aggregation(direction, weights, {"objective": float(objective.detach())})
