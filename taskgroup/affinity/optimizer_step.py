"""The step a live optimizer would take from its current state, for many gradients at once.

``stepped_parameters(optimizer, params, G)`` returns, for every row g_i of ``G``, the parameters
θ' = θ + u_i that ``optimizer.step()`` would produce if ``g_i`` were the gradient —
including momentum, Adam's moment estimates and bias correction, weight decay (coupled or
decoupled), AMSGrad and ``maximize`` — without touching the optimizer or the parameters.

The flat parameter vector is cut into runs of consecutive parameters that share a param group and
an optimizer-state signature (usually a single run); each run is updated for all n rows at once
with scalar hyper-parameters and fused arithmetic (``lerp``, ``addcmul``, ``addcdiv``: five passes
over ``[n, P]`` for Adam), with no loop over parameters and no per-element hyper-parameters. With
``overwrite=True`` the result is written into ``grads`` itself (one ``[n, P]`` temporary for
Adam instead of three, none for SGD): the lookahead, which does not reuse the gradients, keeps
its working set in cache that way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import groupby

import torch

from taskgroup.gradients import flatten

SUPPORTED = (torch.optim.SGD, torch.optim.Adam)  # AdamW subclasses Adam


def _signature(optimizer: torch.optim.Optimizer, param: torch.Tensor) -> tuple:
    """What makes a parameter's update differ: the state it has, and its step count."""
    state = optimizer.state.get(param, {})
    present = tuple(sorted(k for k, v in state.items() if isinstance(v, torch.Tensor)))
    step = float(state["step"]) if "step" in state else 0.0
    return present, step


def _runs(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]):
    """Yield ``(group, state_keys, step, params_of_run, start, stop)`` for maximal runs of
    consecutive params with the same group and state signature; [start, stop) are flat columns."""
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    missing = [i for i, p in enumerate(params) if id(p) not in group_of]
    if missing:
        raise ValueError(
            f"the optimizer does not update {len(missing)} of the shared parameters (e.g. shared "
            f"parameter #{missing[0]}); pass the optimizer that trains the model"
        )
    start = 0
    keyed = ((id(group_of[id(p)]), _signature(optimizer, p), p) for p in params)
    for (_, (keys, step)), run in groupby(keyed, key=lambda item: item[:2]):
        run_params = [p for _, _, p in run]
        stop = start + sum(p.numel() for p in run_params)
        yield group_of[id(run_params[0])], keys, step, run_params, start, stop
        start = stop


def _state(optimizer, params: Sequence[torch.Tensor], key: str) -> torch.Tensor:
    return flatten([optimizer.state[p][key].detach() for p in params])


# Per-parameter vectors [P] enter [n, P] arithmetic expanded (``expand_as``): as the first
# operand, a broadcast [P] makes torch.add/lerp several times slower than an expanded view.


def _sgd(g, theta, group, keys, params, optimizer, out) -> torch.Tensor:
    """SGD's step for every row of ``g``; ``out`` (``g`` itself or ``None``) receives it."""
    lr, momentum = float(group["lr"]), group["momentum"]
    theta = theta.expand_as(g)
    if group["weight_decay"]:
        g = torch.add(g, theta, alpha=group["weight_decay"], out=out)
    if momentum and "momentum_buffer" in keys:
        buf = _state(optimizer, params, "momentum_buffer").mul(momentum).expand_as(g)
        buf = torch.add(buf, g, alpha=1 - group["dampening"])
    else:  # the first momentum step copies the gradient into the buffer
        buf = g
    if group["nesterov"]:
        return torch.add(theta, torch.add(g, buf, alpha=momentum, out=out), alpha=-lr, out=out)
    return torch.add(theta, buf, alpha=-lr, out=out)


def _adam(g, theta, group, keys, step, params, optimizer, out) -> torch.Tensor:
    """Adam's step for every row of ``g``; ``out`` (``g`` itself or ``None``) receives it."""
    beta1, beta2 = (float(b) for b in group["betas"])
    lr, weight_decay = float(group["lr"]), group["weight_decay"]
    decoupled = group.get("decoupled_weight_decay", isinstance(optimizer, torch.optim.AdamW))
    start = theta
    if weight_decay and decoupled:
        start = theta.mul(1 - lr * weight_decay)
    elif weight_decay:
        g = torch.add(g, theta, alpha=weight_decay, out=out)
    start = start.expand_as(g)
    # v may overwrite g (elementwise, exact overlap) once m has read it
    if "exp_avg" in keys:
        m = torch.lerp(_state(optimizer, params, "exp_avg").expand_as(g), g, 1 - beta1)
        v = torch.addcmul(
            _state(optimizer, params, "exp_avg_sq").mul(beta2).expand_as(g),
            g,
            g,
            value=1 - beta2,
            out=out,
        )
    else:
        m = g.mul(1 - beta1)
        v = torch.mul(g, g, out=out).mul_(1 - beta2)
    if group["amsgrad"] and "max_exp_avg_sq" in keys:
        torch.maximum(v, _state(optimizer, params, "max_exp_avg_sq"), out=v)
    # m / (sqrt(v) / sqrt(bc2) + eps) == sqrt(bc2) · m / (sqrt(v) + eps · sqrt(bc2))
    t = step + 1
    root_bc2 = math.sqrt(1 - beta2**t)
    denominator = v.sqrt_().add_(group["eps"] * root_bc2)
    return torch.addcdiv(start, m, denominator, value=-lr * root_bc2 / (1 - beta1**t), out=out)


def stepped_parameters(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    grads: torch.Tensor,
    *,
    overwrite: bool = False,
) -> torch.Tensor:
    """Parameters ``Θ: [n, P]`` after the step the optimizer would take on each gradient row.

    Args:
        optimizer: a ``torch.optim.SGD``, ``Adam`` or ``AdamW`` that trains ``params``.
        params: the parameters whose update is wanted (their flat layout defines ``P``).
        grads: ``[n, P]`` candidate gradients, one per row (not modified unless ``overwrite``).
        overwrite: write ``Θ`` into ``grads`` (same values, fewer ``[n, P]`` temporaries) and
            return it; for callers that do not need the gradients afterwards.

    Returns ``Θ`` with ``Θ[i]`` equal to the flat parameters after ``optimizer.step()`` with
    gradient ``grads[i]`` (to float rounding). The optimizer and the parameters are not modified.
    """
    if not isinstance(optimizer, SUPPORTED):
        raise ValueError(
            f'lookahead="optimizer" supports SGD, Adam and AdamW, not {type(optimizer).__name__}; '
            f'use lookahead="sgd" with lr= for other optimizers'
        )
    pieces = []
    for group, keys, step, run, start, stop in _runs(optimizer, params):
        g = grads[:, start:stop]
        out = g if overwrite else None
        if group["maximize"]:
            g = torch.neg(g, out=out)
        theta = flatten([p.detach() for p in run])
        if isinstance(optimizer, torch.optim.SGD):
            pieces.append(_sgd(g, theta, group, keys, run, optimizer, out))
        else:
            pieces.append(_adam(g, theta, group, keys, step, run, optimizer, out))
    if overwrite:
        return grads
    return pieces[0] if len(pieces) == 1 else torch.cat(pieces, dim=1)
