"""Multi-task models: a shared trunk with one head per task, and how shared parameters are named.

Any ``nn.Module`` that maps an input batch to ``dict[task_name, prediction]`` is a multi-task model
for taskgroup. Its parameters split into shared parameters θ_s (updated by every task) and
task-specific ones. :class:`MultiTaskModel` is the standard form, whose shared parameters are its
trunk's; for other modules the caller names them with :func:`shared_parameter_names`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import torch
from torch import nn

SharedSpec = nn.Module | Iterable[str] | Callable[[str], bool] | None


class MultiTaskModel(nn.Module):
    """``trunk`` computes a shared representation; ``heads[name]`` maps it to task ``name``.

    ``forward(x) -> {name: heads[name](trunk(x))}`` in the order of ``heads``.
    """

    def __init__(self, trunk: nn.Module, heads: Mapping[str, nn.Module]):
        super().__init__()
        if not heads:
            raise ValueError("MultiTaskModel needs at least one head")
        self.trunk = trunk
        self.heads = nn.ModuleDict(dict(heads))

    @property
    def tasks(self) -> list[str]:
        return list(self.heads.keys())

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        features = self.trunk(x)
        return {name: head(features) for name, head in self.heads.items()}


def shared_parameters(model: nn.Module, shared: SharedSpec = None) -> dict[str, nn.Parameter]:
    """``{name: parameter}`` of the shared parameters θ_s in ``model.named_parameters()`` order:
    :func:`shared_parameter_names` (same arguments and errors) with the tensors, from one walk."""
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    if shared is None:
        if not isinstance(model, MultiTaskModel):
            raise ValueError(
                f"shared=None only works for a MultiTaskModel; name the shared parameters of "
                f"{type(model).__name__} with shared= (a submodule, a list of names or a predicate)"
            )
        shared = model.trunk
    if isinstance(shared, nn.Module):
        ids = {id(p) for p in shared.parameters()}
        if not ids:
            raise ValueError("shared= module has no parameters")
        names = [n for n, p in params.items() if id(p) in ids]
        if not names:
            raise ValueError("shared= module is not part of the model (or has no trainable params)")
    elif callable(shared):
        names = [n for n in params if shared(n)]
        if not names:
            raise ValueError(
                f"shared= predicate matches no trainable parameter; parameters are: "
                f"{', '.join(params)}"
            )
    elif isinstance(shared, str):
        raise TypeError("shared= takes a list of parameter names, not a single string")
    else:
        wanted = list(shared)
        unknown = [n for n in wanted if n not in params]
        if unknown:
            raise ValueError(
                f"shared= names unknown or frozen parameters {unknown}; trainable parameters are: "
                f"{', '.join(params)}"
            )
        if not wanted:
            raise ValueError("shared= is an empty list; name at least one shared parameter")
        chosen = set(wanted)
        names = [n for n in params if n in chosen]
    return {n: params[n] for n in names}


def shared_parameter_names(model: nn.Module, shared: SharedSpec = None) -> list[str]:
    """Names (as in ``model.named_parameters()``) of the shared parameters θ_s.

    Args:
        model: the multi-task model.
        shared: a submodule of ``model`` (all its parameters are shared), an iterable of parameter
            names, a predicate ``name -> bool``, or ``None`` for a :class:`MultiTaskModel`'s trunk.

    Returns the names in ``model.named_parameters()`` order, restricted to parameters that require
    grad. Raises ``ValueError`` when the spec matches nothing or names unknown parameters.
    """
    return list(shared_parameters(model, shared))
