"""The backward plumbing of a training step: per-task gradients, distributed averaging, ``.grad``.

The update rules of :mod:`taskgroup.aggregators.base` decide the direction; these functions
compute what they read (the per-task gradients ``G: [k, d]`` of the shared parameters, or of a
shared representation), average it over the ranks of a distributed run, back-propagate a
direction or a weighted objective, and add the result into ``.grad`` the way ``Tensor.backward``
does. They know nothing about any method.

Shapes: ``k`` tasks; ``shared`` parameters θ_s with ``P = sum(p.numel())`` entries in their
order (the flat layout of :func:`taskgroup.gradients.flatten`); ``others`` the task-specific
parameters, each of which receives its own task's gradient.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from taskgroup.affinity.lookahead import NonFiniteError, nonfinite_gradient_tasks
from taskgroup.distributed import average, average_grads
from taskgroup.gradients import flatten, scale_to_norm, task_gradients, unflatten

Params = Sequence[torch.Tensor] | nn.Module
LOW_PRECISION = (torch.float16, torch.bfloat16)


def parameter_list(params: Params | Iterable[torch.Tensor], what: str) -> list[torch.Tensor]:
    """``params`` (a module or tensors) as a list; ``ValueError`` naming ``what`` when it is
    empty or holds a tensor that does not require grad."""
    out = list(params.parameters()) if isinstance(params, nn.Module) else list(params)
    if not out:
        raise ValueError(f"{what} is empty; pass the parameters (or a module) to update")
    for p in out:
        if not isinstance(p, torch.Tensor) or not p.requires_grad:
            raise ValueError(f"{what} must hold tensors that require grad")
    return out


def leaf_tensors(output: torch.Tensor) -> list[torch.Tensor]:
    """Every leaf tensor that requires grad and that ``output`` depends on (its autograd graph)."""
    leaves: dict[int, torch.Tensor] = {}
    seen: set[int] = set()
    stack = [output.grad_fn]
    while stack:
        node = stack.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        variable = getattr(node, "variable", None)
        if variable is not None:
            leaves[id(variable)] = variable
        stack.extend(next_node for next_node, _ in node.next_functions)
    return list(leaves.values())


def task_specific_parameters(
    losses: torch.Tensor, shared: Sequence[torch.Tensor], task_params: Params | None
) -> list[torch.Tensor]:
    """``task_params`` as a list, or (``None``) every leaf of the losses' graph outside
    ``shared``."""
    if task_params is not None:
        return parameter_list(task_params, "task_params") if task_params else []
    shared_ids = {id(p) for p in shared}
    return [t for t in leaf_tensors(losses) if id(t) not in shared_ids]


def accumulate_grads(params: Sequence[torch.Tensor], grads: Sequence[torch.Tensor]) -> None:
    """Add ``grads`` into ``p.grad`` the way ``Tensor.backward`` does."""
    for p, g in zip(params, grads, strict=True):
        g = g.detach().to(p.dtype).view_as(p)
        p.grad = g.clone() if p.grad is None else p.grad + g


def per_task_gradients(
    per_task: torch.Tensor | Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    batched: bool,
    chunk_size: int | None,
    distributed: bool = False,
) -> torch.Tensor:
    """``G: [k, P]`` of the task losses ``per_task`` with respect to ``params``
    (:func:`~taskgroup.gradients.task_gradients`), averaged over the ranks when
    ``distributed``. Gradients in float16/bfloat16 (of half-precision parameters, or of a
    representation computed under autocast) are returned in float32, so the aggregator never
    solves in half precision."""
    G = task_gradients(per_task, params, batched=batched, chunk_size=chunk_size)
    if G.dtype in LOW_PRECISION:  # e.g. features under autocast: aggregate in float32
        G = G.float()
    return average(G) if distributed else G


def through_features(
    features: torch.Tensor, shared: Sequence[torch.Tensor], direction: torch.Tensor
) -> list[torch.Tensor]:
    """The gradient of the shared parameters when ``direction`` (flat, in the layout of
    ``features``) is back-propagated from the representation ``features`` through the trunk
    (in ``features``' dtype: a float32 direction enters a bfloat16 representation as bfloat16)."""
    return list(
        torch.autograd.grad(
            features,
            shared,
            grad_outputs=direction.view_as(features).to(features.dtype),
            retain_graph=True,
            allow_unused=True,
            materialize_grads=True,
        )
    )


def bound_grads(grads: Sequence[torch.Tensor], max_norm: float) -> list[torch.Tensor]:
    """``grads`` scaled down jointly to norm ``max_norm`` when longer (0 = unchanged)."""
    if max_norm <= 0:
        return list(grads)
    norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
    scale = scale_to_norm(norm, max_norm)
    return [g * scale for g in grads]


def weighted_gradients(
    losses: torch.Tensor,
    weights: torch.Tensor,
    shared: Sequence[torch.Tensor],
    *,
    distributed: bool,
) -> list[torch.Tensor]:
    """The gradient of ``Σ_i weights_i losses_i`` for each of ``shared`` (one backward pass, no
    per-task gradients), averaged over the ranks when ``distributed``."""
    grads = torch.autograd.grad(
        (losses * weights).sum(),
        shared,
        retain_graph=True,
        allow_unused=True,
        materialize_grads=True,
    )
    if distributed:
        return unflatten(average(flatten(grads)), shared)
    return list(grads)


def require_finite(
    per_task: torch.Tensor | Sequence[torch.Tensor],
    grads: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    what: str = "the gradient",
    rows: torch.Tensor | None = None,
) -> None:
    """Raise :class:`~taskgroup.affinity.lookahead.NonFiniteError` naming the tasks (by row
    index) when an entry of ``grads`` (what a step is about to write into ``.grad``) is NaN/inf.

    The culprits are the tasks whose own loss of ``per_task`` (on a retained graph) has a
    non-finite gradient for ``params``; failing that, the non-finite rows of the per-task
    gradients ``rows`` (``[k, P]``; e.g. a NaN on another rank), else every task. One device
    synchronisation when everything is finite.
    """
    if all_finite(grads):
        return
    bad = nonfinite_gradient_tasks(per_task, params)
    if not bad and rows is not None:
        bad = torch.nonzero(~torch.isfinite(rows).all(dim=1)).flatten().tolist()
    raise NonFiniteError(what, bad or list(range(len(per_task))))


def write_grads(
    per_task: torch.Tensor | Sequence[torch.Tensor],
    losses: torch.Tensor,
    shared: Sequence[torch.Tensor],
    shared_grads: Sequence[torch.Tensor],
    others: Sequence[torch.Tensor],
    *,
    distributed: bool,
    rows: torch.Tensor | None = None,
) -> None:
    """Fill ``.grad``: each task-specific parameter of ``others`` gets its own task's gradient
    (that of ``losses.sum()``, averaged over the ranks when ``distributed``), the shared
    parameters get ``shared_grads``. Nothing is written when any of them is NaN/inf:
    :func:`require_finite` raises instead, naming the tasks (``rows``: the step's per-task
    gradients, if any)."""
    own = own_task_gradients(losses, others, distributed=distributed)
    require_finite(per_task, [*shared_grads, *own], [*shared, *others], rows=rows)
    accumulate_grads(others, own)
    accumulate_grads(shared, shared_grads)


def own_task_gradients(
    losses: torch.Tensor, others: Sequence[torch.Tensor], *, distributed: bool
) -> list[torch.Tensor]:
    """The gradient of ``losses.sum()`` for each task-specific parameter of ``others`` (each
    receives its own task's gradient), averaged over the ranks when ``distributed``; what
    :func:`write_grads` adds into ``.grad``, returned instead (a step under a loss scaler checks
    it for overflow before writing anything)."""
    if not others:
        return []
    grads = torch.autograd.grad(
        losses.sum(), others, retain_graph=True, allow_unused=True, materialize_grads=True
    )
    if distributed:
        return unflatten(average(flatten(grads)), others)
    return list(grads)


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """Whether every entry of every tensor is finite (one device synchronisation)."""
    checks = [torch.isfinite(t).all() for t in tensors]
    return bool(torch.stack(checks).all()) if checks else True


def global_values(losses: torch.Tensor) -> torch.Tensor:
    """``losses`` with the values averaged over the ranks but this rank's autograd graph (so a
    loss weighting reads the global batch's losses and back-propagates its own shard)."""
    return losses + (average(losses.detach()) - losses.detach())


def backpropagate_finite(
    objective: torch.Tensor,
    losses: torch.Tensor | Sequence[torch.Tensor],
    *,
    distributed: bool,
) -> list[torch.Tensor]:
    """``objective.backward()`` (averaged over the ranks when ``distributed``) that writes
    nothing when a gradient is NaN/inf: :func:`require_finite` raises instead, naming the tasks
    of ``losses`` (the objective's inputs, ``[k]`` or k scalars). Returns the leaves it
    filled."""
    leaves = leaf_tensors(objective)
    grads = torch.autograd.grad(
        objective, leaves, retain_graph=True, allow_unused=True, materialize_grads=True
    )
    if distributed:
        grads = unflatten(average(flatten(grads)), leaves)
    require_finite(losses, grads, leaves)
    accumulate_grads(leaves, grads)
    return leaves


def backpropagate(objective: torch.Tensor, *, distributed: bool) -> None:
    """``objective.backward()``; when ``distributed``, every gradient it filled is then averaged
    over the ranks."""
    leaves = leaf_tensors(objective) if distributed else []
    objective.backward()
    average_grads(leaves)


def clipped_direction(shared: Sequence[torch.Tensor], max_norm: float) -> torch.Tensor:
    """Clip the ``.grad`` of ``shared`` to norm ``max_norm`` (``clip_grad_norm_``; 0 = off) and
    return it flat ``[P]`` (zeros for a parameter without a gradient)."""
    if max_norm > 0:
        torch.nn.utils.clip_grad_norm_(shared, max_norm)
    return torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in shared]
    )
