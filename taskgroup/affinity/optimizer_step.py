"""The step a live optimizer would take from its current state, for many gradients at once.

``optimizer_updates(optimizer, params, G)`` returns, for every row g_i of ``G``, the parameter
change ``u_i = θ' − θ`` that ``optimizer.step()`` would make if ``g_i`` were the gradient —
including momentum, Adam's moment estimates and bias correction, weight decay (coupled or
decoupled), AMSGrad and ``maximize`` — without touching the optimizer or the parameters. All rows
are computed together on the flat parameter vector: hyper-parameters and state are laid out per
element once, so there is no loop over parameters in the arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from taskgroup.gradients import flatten

SUPPORTED = (torch.optim.SGD, torch.optim.Adam)  # AdamW subclasses Adam


def _per_element(values: Sequence[float], sizes: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``[P]`` vector holding ``values[k]`` for every element of parameter ``k``."""
    return torch.repeat_interleave(
        torch.tensor(values, dtype=like.dtype, device=like.device), sizes.to(like.device)
    )


def _groups_of(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> list[dict]:
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    missing = [i for i, p in enumerate(params) if id(p) not in group_of]
    if missing:
        raise ValueError(
            f"the optimizer does not update {len(missing)} of the shared parameters (e.g. shared "
            f"parameter #{missing[0]}); pass the optimizer that trains the model"
        )
    return [group_of[id(p)] for p in params]


def _state(optimizer, params, key: str) -> tuple[torch.Tensor, list[bool]]:
    """Flat ``[P]`` state tensor ``key`` (zeros where absent) and which params had it."""
    tensors, present = [], []
    for p in params:
        value = optimizer.state.get(p, {}).get(key)
        present.append(value is not None)
        tensors.append(value.detach() if value is not None else torch.zeros_like(p))
    return flatten(tensors), present


def optimizer_updates(
    optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor], grads: torch.Tensor
) -> torch.Tensor:
    """Updates ``U: [n, P]`` the optimizer would apply to ``params`` for each gradient row.

    Args:
        optimizer: a ``torch.optim.SGD``, ``Adam`` or ``AdamW`` that trains ``params``.
        params: the parameters whose update is wanted (their flat layout defines ``P``).
        grads: ``[n, P]`` candidate gradients, one per row.

    Returns ``U`` with ``θ + U[i]`` equal to the parameters after ``optimizer.step()`` with
    gradient ``grads[i]``. The optimizer and the parameters are not modified.
    """
    if not isinstance(optimizer, SUPPORTED):
        raise ValueError(
            f'lookahead="optimizer" supports SGD, Adam and AdamW, not {type(optimizer).__name__}; '
            f'use lookahead="sgd" with lr= for other optimizers'
        )
    groups = _groups_of(optimizer, params)
    theta = flatten([p.detach() for p in params])
    sizes = torch.tensor([p.numel() for p in params])

    def hyper(key: str, default=0.0) -> torch.Tensor:
        return _per_element([float(g.get(key, default)) for g in groups], sizes, theta)

    sign = 1.0 - 2.0 * hyper("maximize")
    g = grads * sign
    lr = hyper("lr")
    if isinstance(optimizer, torch.optim.SGD):
        g = g + hyper("weight_decay") * theta
        momentum = hyper("momentum")
        buf, present = _state(optimizer, params, "momentum_buffer")
        has_buf = _per_element(present, sizes, theta)
        new_buf = has_buf * (momentum * buf + (1 - hyper("dampening")) * g) + (1 - has_buf) * g
        nesterov = hyper("nesterov")
        # momentum == 0 never creates a buffer, so new_buf == g and the step is plain SGD
        return -lr * (nesterov * (g + momentum * new_buf) + (1 - nesterov) * new_buf)

    # torch >= 2.6 records AdamW as Adam with decoupled_weight_decay=True
    decoupled = hyper("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW))
    weight_decay = hyper("weight_decay")
    g = g + (1 - decoupled) * weight_decay * theta
    beta1 = _per_element([float(gr["betas"][0]) for gr in groups], sizes, theta)
    beta2 = _per_element([float(gr["betas"][1]) for gr in groups], sizes, theta)
    exp_avg, _ = _state(optimizer, params, "exp_avg")
    exp_avg_sq, _ = _state(optimizer, params, "exp_avg_sq")
    steps = [float(optimizer.state.get(p, {}).get("step", 0.0)) for p in params]
    t = _per_element(steps, sizes, theta) + 1
    m = beta1 * exp_avg + (1 - beta1) * g
    v = beta2 * exp_avg_sq + (1 - beta2) * g * g
    amsgrad = hyper("amsgrad")
    if bool(amsgrad.any()):
        v_max, _ = _state(optimizer, params, "max_exp_avg_sq")
        v = amsgrad * torch.maximum(v_max, v) + (1 - amsgrad) * v
    denom = v.sqrt() / (1 - beta2**t).sqrt() + hyper("eps")
    return -(lr / (1 - beta1**t)) * m / denom - decoupled * lr * weight_decay * theta
