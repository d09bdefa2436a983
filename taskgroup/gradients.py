"""Per-task gradients of the shared parameters, all from one forward graph, and the flat layout
(``flatten`` / ``unflatten``) and norm bound (``scale_to_norm``) the update rules share."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def flatten(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """Concatenate ``tensors`` into one vector ``[P]`` (the flat layout used throughout)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten(vector: torch.Tensor, like: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Split a flat ``vector`` ``[P]`` back into views shaped like ``like`` (the inverse of
    :func:`flatten`; ``P = sum(t.numel())`` in ``like`` order)."""
    return [
        piece.view_as(t)
        for piece, t in zip(torch.split(vector, [t.numel() for t in like]), like, strict=True)
    ]


def scale_to_norm(norm: torch.Tensor, max_norm: float) -> torch.Tensor:
    """The factor ``min(1, max_norm / norm)`` (a tensor like ``norm``) that scales a vector of
    norm ``norm`` down to norm ``max_norm`` when it is longer and leaves it unchanged otherwise
    (a zero vector included). For ``max_norm > 0``; callers skip the scaling when it is 0."""
    return torch.clamp(max_norm / torch.clamp(norm, min=1e-300), max=1.0)


def task_gradients(
    task_losses: torch.Tensor | Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    batched: bool = False,
    chunk_size: int | None = None,
) -> torch.Tensor:
    """Gradient of every task loss with respect to ``params``, one row per task.

    Args:
        task_losses: ``n`` scalar losses that share one autograd graph, as a sequence of
            scalars (fastest: each backward pass only reaches its own task's head) or a stacked
            ``[n]`` tensor (each row's backward then also runs through every head with zeros).
        params: the parameters to differentiate (e.g. the shared parameters θ_s).
        batched: ``True`` computes all rows in one vmapped backward
            (``is_grads_batched``); ``False`` runs ``n`` backward passes over the retained graph.
        chunk_size: with ``batched``, at most this many rows per backward (bounds memory).

    Returns ``G``: ``[n, P]`` with ``P = sum(p.numel())`` in ``params`` order; a parameter that a
    task does not reach gets zeros. The graph is kept (callers may backward through it again).
    """
    n = len(task_losses)
    if batched:
        if not isinstance(task_losses, torch.Tensor):
            task_losses = torch.stack(list(task_losses))
        rows = []
        eye = torch.eye(n, dtype=task_losses.dtype, device=task_losses.device)
        step = chunk_size or n
        for start in range(0, n, step):
            grads = torch.autograd.grad(
                task_losses,
                params,
                grad_outputs=eye[start : start + step],
                is_grads_batched=True,
                retain_graph=True,
                allow_unused=True,
                materialize_grads=True,
            )
            rows.append(torch.cat([g.reshape(g.shape[0], -1) for g in grads], dim=1))
        return torch.cat(rows) if len(rows) > 1 else rows[0]
    flat = []
    for i in range(n):
        grads = torch.autograd.grad(
            task_losses[i], params, retain_graph=True, allow_unused=True, materialize_grads=True
        )
        flat.extend(g.reshape(-1) for g in grads)
    if not flat:
        return params[0].new_empty(0, sum(p.numel() for p in params))
    # one cat of the n·len(params) pieces in row-major order is the [n, P] matrix (fewer calls
    # than n row-wise cats)
    return torch.cat(flat).view(n, -1)
