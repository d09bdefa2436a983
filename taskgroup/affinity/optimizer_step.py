"""The step a live optimizer would take from its current state, for many gradients at once.

``stepped_parameters(optimizer, params, G)`` returns, for every row g_i of ``G``, the parameters
θ' = θ + u_i that ``optimizer.step()`` would produce if ``g_i`` were the gradient —
including momentum, Adam's moment estimates and bias correction, weight decay (coupled or
decoupled), AMSGrad and ``maximize`` — without touching the optimizer or the parameters.

The flat parameter vector is cut into runs of consecutive parameters that share a param group and
an optimizer-state signature (usually a single run); each run is updated for all n rows at once
with scalar hyper-parameters and fused arithmetic (``lerp``, ``addcmul``, ``addcdiv``: five passes
over ``[n, P]`` for Adam), with no loop over parameters and no per-element hyper-parameters.
The result is written into ``grads`` itself with ``overwrite=True`` (else into a copy), one block
of :data:`BLOCK_COLUMNS` columns at a time, so that the block's temporaries stay in a core's
cache: one ``[n, BLOCK_COLUMNS]`` temporary for Adam, none for SGD (Adam at n = 9,
P = 99k: 2.4 ms instead of 3.5 ms for the whole-width passes on the development machine).

``compiled=True`` replaces Adam's five passes by one kernel fused by ``torch.compile`` (one read
of the gradients and the state, one write): on the width-256 MLP of
``analysis/bench_lookahead.py`` (n = 9, P = 99k) the whole lookahead takes 15.8 ms instead of
17.0 ms. It needs a working ``torch.compile`` (a C++ compiler on CPU), compiles once per
process (a few seconds, shapes dynamic) and agrees with the eager arithmetic to float rounding,
not bit for bit.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from itertools import groupby

import torch

from taskgroup.gradients import flatten

SUPPORTED = (torch.optim.SGD, torch.optim.Adam)  # AdamW subclasses Adam
# columns per block of the fused arithmetic: 9 rows × 16k float32 = 576 KiB, within a 1 MiB L2
BLOCK_COLUMNS = 16384
ELEMENTWISE_STATE = ("exp_avg", "exp_avg_sq", "max_exp_avg_sq", "momentum_buffer")


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


def _state(optimizer, params: Sequence[torch.Tensor], keys: tuple[str, ...]) -> dict:
    """The run's optimizer state tensors, each flattened to ``[P_run]``."""
    return {k: flatten([optimizer.state[p][k].detach() for p in params]) for k in keys}


# Per-parameter vectors [P] enter [n, P] arithmetic expanded (``expand_as``): as the first
# operand, a broadcast [P] makes torch.add/lerp several times slower than an expanded view.


def _sgd(g, theta, state, group, step, decoupled) -> None:
    """SGD's step for every row of ``g``, written into ``g``."""
    lr, momentum = float(group["lr"]), group["momentum"]
    theta = theta.expand_as(g)
    if group["weight_decay"]:
        g.add_(theta, alpha=group["weight_decay"])
    if momentum and "momentum_buffer" in state:
        buf = state["momentum_buffer"].mul(momentum).expand_as(g)
        buf = torch.add(buf, g, alpha=1 - group["dampening"])
    else:  # the first momentum step copies the gradient into the buffer
        buf = g
    if group["nesterov"]:
        torch.add(theta, g.add_(buf, alpha=momentum), alpha=-lr, out=g)
    else:
        torch.add(theta, buf, alpha=-lr, out=g)


def _adam_start(g, theta, group, decoupled) -> torch.Tensor:
    """Where Adam's step for every row of ``g`` starts: θ, decayed by decoupled weight decay,
    expanded to ``g``'s shape; coupled weight decay is added to ``g`` instead."""
    lr, weight_decay = float(group["lr"]), group["weight_decay"]
    start = theta
    if weight_decay and decoupled:
        start = theta.mul(1 - lr * weight_decay)
    elif weight_decay:
        g.add_(theta.expand_as(g), alpha=weight_decay)
    return start.expand_as(g)


def _adam_scalars(group, step) -> tuple[float, float, float, float]:
    """(β1, β2, eps', step size) of Adam's next step, with the bias corrections folded in:
    m / (sqrt(v) / sqrt(bc2) + eps) == sqrt(bc2) · m / (sqrt(v) + eps · sqrt(bc2))."""
    beta1, beta2 = (float(b) for b in group["betas"])
    t = step + 1
    root_bc2 = math.sqrt(1 - beta2**t)
    return beta1, beta2, group["eps"] * root_bc2, -float(group["lr"]) * root_bc2 / (1 - beta1**t)


def _adam(g, theta, state, group, step, decoupled) -> None:
    """Adam's step for every row of ``g``, written into ``g``."""
    start = _adam_start(g, theta, group, decoupled)
    beta1, beta2, eps, step_size = _adam_scalars(group, step)
    # v overwrites g (elementwise, exact overlap) once m has read it
    if "exp_avg" in state:
        m = torch.lerp(state["exp_avg"].expand_as(g), g, 1 - beta1)
        previous = state["exp_avg_sq"].mul(beta2).expand_as(g)
        v = torch.addcmul(previous, g, g, value=1 - beta2, out=g)
    else:
        m = g.mul(1 - beta1)
        v = g.mul_(g).mul_(1 - beta2)
    if group["amsgrad"] and "max_exp_avg_sq" in state:
        torch.maximum(v, state["max_exp_avg_sq"], out=v)
    denominator = v.sqrt_().add_(eps)
    torch.addcdiv(start, m, denominator, value=step_size, out=g)


def stepped_parameters(
    optimizer: torch.optim.Optimizer,
    params: Sequence[torch.Tensor],
    grads: torch.Tensor,
    *,
    overwrite: bool = False,
    compiled: bool = False,
) -> torch.Tensor:
    """Parameters ``Θ: [n, P]`` after the step the optimizer would take on each gradient row.

    Args:
        optimizer: a ``torch.optim.SGD``, ``Adam`` or ``AdamW`` that trains ``params``.
        params: the parameters whose update is wanted (their flat layout defines ``P``).
        grads: ``[n, P]`` candidate gradients, one per row (not modified unless ``overwrite``).
        overwrite: write ``Θ`` into ``grads`` (same values, fewer ``[n, P]`` temporaries) and
            return it; for callers that do not need the gradients afterwards.
        compiled: Adam's step as one ``torch.compile``-fused kernel (see the module notes) where
            the state holds its moment estimates and AMSGrad is off; SGD, Adam's first step and
            AMSGrad keep the eager arithmetic. ``RuntimeError`` naming the cause when
            ``torch.compile`` cannot build it.

    Returns ``Θ`` with ``Θ[i]`` equal to the flat parameters after ``optimizer.step()`` with
    gradient ``grads[i]`` (to float rounding). The optimizer and the parameters are not modified.
    """
    if not isinstance(optimizer, SUPPORTED):
        raise ValueError(
            f'lookahead="optimizer" supports SGD, Adam and AdamW, not {type(optimizer).__name__}; '
            f'use lookahead="sgd" with lr= for other optimizers'
        )
    result = grads if overwrite else grads.clone()
    update = _sgd if isinstance(optimizer, torch.optim.SGD) else _adam
    adamw = isinstance(optimizer, torch.optim.AdamW)
    for group, keys, step, run, start, stop in _runs(optimizer, params):
        theta = flatten([p.detach() for p in run])
        state = _state(optimizer, run, tuple(k for k in keys if k in ELEMENTWISE_STATE))
        decoupled = group.get("decoupled_weight_decay", adamw)
        if compiled and update is _adam and "exp_avg" in state and not group["amsgrad"]:
            g = result[:, start:stop]
            if group["maximize"]:
                g.neg_()
            _adam_fused(g, theta, state, group, step, decoupled)
            continue
        for first in range(start, stop, BLOCK_COLUMNS):
            last = min(first + BLOCK_COLUMNS, stop)
            g = result[:, first:last]
            if group["maximize"]:
                g.neg_()
            local = slice(first - start, last - start)
            state_block = {k: v[local] for k, v in state.items()}
            update(g, theta[local], state_block, group, step, decoupled)
    return result


def _adam_rows(
    g: torch.Tensor,
    exp_avg: torch.Tensor,
    exp_avg_sq: torch.Tensor,
    start: torch.Tensor,
    scalars: torch.Tensor,
) -> None:
    """Adam's step for every row of ``g`` ``[n, P]``, written into ``g``: ``start`` (θ, ``[P]``
    expanded to ``[n, P]``) + step · m / (sqrt(v) + eps'), with the moments ``exp_avg``,
    ``exp_avg_sq`` ``[P]`` and ``scalars`` = (1 − β1, β2, 1 − β2, eps', step) as in
    :func:`_adam` (a tensor, so that a new step count compiles nothing)."""
    m = torch.lerp(exp_avg, g, scalars[0])
    v = exp_avg_sq * scalars[1] + g * g * scalars[2]
    g.copy_(start + scalars[4] * m / (v.sqrt() + scalars[3]))


@functools.cache
def _fused_adam_kernel():
    """:func:`_adam_rows` compiled once per process (shapes dynamic: no recompiling per run)."""
    return torch.compile(_adam_rows, fullgraph=True, dynamic=True)


def _adam_fused(g, theta, state, group, step, decoupled) -> None:
    """:func:`_adam` for an Adam with moment estimates and no AMSGrad, the arithmetic in one
    fused kernel."""
    start = _adam_start(g, theta, group, decoupled)
    beta1, beta2, eps, step_size = _adam_scalars(group, step)
    values = [1 - beta1, beta2, 1 - beta2, eps, step_size]
    scalars = torch.tensor(values, dtype=g.dtype, device=g.device)
    try:
        _fused_adam_kernel()(g, state["exp_avg"], state["exp_avg_sq"], start, scalars)
    except Exception as e:  # torch.compile's failures come in many types; name the cause
        raise RuntimeError(
            f"the compiled Adam step (compile_step=True) failed: {type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}; torch.compile needs a C++ compiler "
            f"on CPU (triton on GPU); drop compile_step to use the eager arithmetic"
        ) from e
