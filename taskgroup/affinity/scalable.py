"""Affinity signals that scale to many tasks and wide trunks (issue 20).

The exact lookahead (:func:`~taskgroup.affinity.lookahead_affinity`) needs n backward passes
through the trunk and n lookahead forwards per measurement, so its cost grows with n × the trunk.
The signals here trade exactness for cost; each is compared with the exact every-step matrix in
``analysis/bench_scale.py``.

- ``"representation"`` / ``"representation_cosine"``: per-task gradients with respect to the
  shared *representation* ``h = trunk(x)`` ``[B, D]`` instead of the trunk's parameters, from one
  trunk forward and the heads' backward only (cost independent of the trunk's size). Row i is
  ``r_i = ∂L_i/∂h`` flattened to ``[B·D]``; the Gramian ``K = R Rᵀ`` (summed over the batch) gives
  the Taylor form ``lr K[i, j] / L_j`` or the cosine ``K[i, j] / √(K[i, i] K[j, j])``.
  Needs a :class:`~taskgroup.models.MultiTaskModel` (whose trunk output is the representation).
- ``"sketch"`` / ``"sketch_cosine"``: a fixed random projection ``S`` ``[P, d]`` (seeded;
  Gaussian, Rademacher or orthogonal, scaled so ``E[S Sᵀ] = I``) of the shared-parameter
  gradients, ``ĝ_i = Sᵀ g_i``; ``ĝ_i·ĝ_j`` is unbiased for ``g_i·g_j``. ``ĝ`` is formed with
  ``d`` forward-mode products ``J s_k`` (``J`` the Jacobian of the outputs with respect to θ_s)
  and the output gradients ``∂L_i/∂f_i``, so the cost grows with ``d``, not with ``n``, and no
  ``[n, P]`` matrix is formed.
- ``"linearised"``: the SGD lookahead on a model linearised in its shared parameters, in the
  spirit of Grad-TAG (Li et al., KDD 2024): the outputs after source i's step are
  ``f_j − lr Φ_j ĝ_i`` with ``Φ_j = J_j S`` (the same ``d`` products), and
  ``Z[i, j] = 1 − L_j(f_j − lr Φ_j ĝ_i) / L_j(f_j)`` with the task's own loss function — exact in
  the loss (no Taylor expansion of ``L_j``), approximate in the model.
- ``"sampled"``: the exact lookahead (the ``"optimizer"`` step when an optimizer is given, else
  ``"sgd"``) for ``m`` of the ``n`` source tasks per measurement, drawn by :class:`SourceSampler`
  (consecutive windows of a stream of seeded random permutations) and weighted ``n / m``
  (Horvitz–Thompson), so the mean over measurements is unbiased for the full matrix and equals it
  over whole cycles of a fixed batch. Unmeasured rows are 0 in that step's matrix.

:class:`SignalMeasurer` is the stateful shell :class:`~taskgroup.affinity.AffinityTracker` calls
every measured step; it dispatches the classic signals to
:func:`~taskgroup.affinity.measure_lookahead`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.autograd.forward_ad as fwAD
from torch import nn
from torch.func import functional_call, jvp, vmap

from taskgroup.affinity.lookahead import (
    AUTO_GRADIENT_BYTES,
    LOOKAHEADS,
    LookaheadMeasurement,
    LossFns,
    check_finite,
    has_tied_tensors,
    lookahead_losses,
    measure_lookahead,
    repeatable_randomness,
    resolve_lookahead,
    task_loss_list,
)
from taskgroup.affinity.optimizer_step import stepped_parameters
from taskgroup.data.heads import LinearHead
from taskgroup.gradients import flatten, task_gradients
from taskgroup.models import MultiTaskModel, SharedSpec, shared_parameters

SCALABLE = (
    "representation",
    "representation_cosine",
    "sketch",
    "sketch_cosine",
    "linearised",
    "sampled",
)
SIGNALS = (*LOOKAHEADS, *SCALABLE)
SKETCHES = ("gaussian", "rademacher", "orthogonal")
SKETCH_DIM = 64  # d of a sketch when not given
SOURCES_FRACTION = 4  # "sampled" measures ⌈n / 4⌉ sources per step when sources= is not given


def resolve_signal(lookahead: str | None, optimizer: torch.optim.Optimizer | None) -> str:
    """:func:`~taskgroup.affinity.resolve_lookahead` extended to :data:`SCALABLE`; ``ValueError``
    naming every accepted signal for an unknown name."""
    if lookahead in SCALABLE:
        return lookahead
    if lookahead is not None and lookahead not in LOOKAHEADS:
        raise ValueError(f"lookahead must be one of {', '.join(SIGNALS)}, got {lookahead!r}")
    return resolve_lookahead(lookahead, optimizer)


def gramian_signal(
    gram: torch.Tensor, base: torch.Tensor, lr: float, *, cosine: bool
) -> torch.Tensor:
    """``[n, n]`` float64 from a Gramian ``K`` ``[n, n]``: ``K[i, j] / √(K[i, i] K[j, j])``
    (``cosine``; a zero row has cosine 0) or the Taylor form ``lr K[i, j] / L_j`` (``base`` =
    the losses ``L`` ``[n]``)."""
    gram = gram.double()
    if cosine:
        norms = gram.diagonal().clamp(min=0).sqrt()
        norms = torch.where(norms > 0, norms, torch.inf)
        return gram / norms[:, None] / norms[None, :]
    return lr * gram / base.double()[None, :]


def _buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    # clones absorb batch-norm running-statistic updates; the model's own stay untouched
    return {n: b.clone() for n, b in model.named_buffers()}


def _under(tensors: Mapping[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of ``tensors`` under ``prefix``, named relative to it."""
    return {n.removeprefix(prefix): t for n, t in tensors.items() if n.startswith(prefix)}


def _losses(outputs, targets, losses: LossFns) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The task losses on their graph and the detached ``[n]`` base losses, checked finite and
    non-zero (the relative change is undefined at 0)."""
    names = list(losses)
    values = task_loss_list(outputs, targets, losses)
    base = torch.stack([v.detach() for v in values])
    check_finite(base, names, "the loss")
    if bool((base == 0).any()):
        zero = [names[j] for j in range(len(names)) if float(base[j]) == 0.0]
        raise ValueError(f"the loss of task(s) {', '.join(zero)} is exactly 0 on this batch")
    return values, base


def _require_multitask(model: nn.Module) -> None:
    if not isinstance(model, MultiTaskModel):
        raise ValueError(
            f"the representation signals need a MultiTaskModel (its trunk's output is the shared "
            f"representation), got {type(model).__name__}"
        )


def _representation(model: MultiTaskModel, inputs, buffers=None) -> torch.Tensor:
    """``h = trunk(inputs)`` without autograd, on clones of the trunk's buffers (batch-norm
    running statistics of the model stay untouched)."""
    buffers = _buffers(model) if buffers is None else buffers
    with torch.no_grad():
        return functional_call(model.trunk, _under(buffers, "trunk."), (inputs,))


def representation_gradients(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    *,
    out: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``R`` ``[n, B·D]``: the gradient of each task's loss with respect to the trunk's output
    ``h`` (flattened; row i = task i in ``losses`` order), and the base losses ``[n]``.

    One trunk forward without autograd, then each head on its own detached copy of ``h`` and one
    backward through the heads: the trunk is never differentiated. ``model`` must be a
    :class:`~taskgroup.models.MultiTaskModel`; its parameters, buffers and the caller's RNG
    stream are left unchanged. ``out``: a buffer that receives ``R`` when its shape, dtype and
    device fit (then ``R`` is a view of it), else ignored: a buffer kept between measurements
    saves the page faults of a fresh ``[n, B·D]`` allocation (4× the copy's own time for
    100 tasks × 128 × 1024 floats)."""
    _require_multitask(model)
    buffers = _buffers(model)
    names = list(losses)
    device = next(model.parameters()).device
    with repeatable_randomness(device) as reset:
        reset()
        h = _representation(model, inputs, buffers)
        copies = [h.detach().requires_grad_() for _ in names]
        outputs = {
            name: functional_call(model.heads[name], _under(buffers, f"heads.{name}."), (copy,))
            for name, copy in zip(names, copies, strict=True)
        }
        values, base = _losses(outputs, targets, losses)
        grads = torch.autograd.grad(torch.stack(values).sum(), copies, allow_unused=True)
    grads = [torch.zeros_like(h) if g is None else g for g in grads]
    shape = (len(names), h.numel())
    fits = out is not None and out.shape == shape and (out.dtype, out.device) == (h.dtype, h.device)
    if fits:
        rows = torch.stack(grads, out=out.view(len(names), *h.shape)).view(shape)
    else:
        rows = torch.stack(grads).reshape(shape)
    check_finite(rows.T, names, "the gradient with respect to the representation")
    return rows, base


def sketch_directions(
    numel: int,
    dim: int,
    *,
    kind: str = "gaussian",
    seed: int = 0,
    rows: range | None = None,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Columns ``rows`` (default all ``dim``) of the sketch ``S`` ``[numel, dim]``, transposed:
    ``[len(rows), numel]``, row k = direction ``s_k``. Fixed by ``(kind, seed, dim, numel)``.

    ``"gaussian"``: entries N(0, 1/d); ``"rademacher"``: ±1/√d; both give ``E[S Sᵀ] = I``, so
    ``(Sᵀa)·(Sᵀb)`` is unbiased for ``a·b`` with variance ``O(|a|² |b|² / d)``. Column k is
    drawn from its own generator, so any chunking of ``rows`` gives the same ``S``.
    ``"orthogonal"`` (forms ``S`` whole: small problems): orthonormal columns scaled by
    ``√(numel/d)`` when ``d ≤ numel`` (``E[S Sᵀ] = I``), orthonormal rows when ``d ≥ numel``
    (``S Sᵀ = I`` exactly, so the sketched Gramian is the exact one)."""
    if kind not in SKETCHES:
        raise ValueError(f"sketch must be one of {', '.join(SKETCHES)}, got {kind!r}")
    if not isinstance(dim, int) or isinstance(dim, bool) or dim < 1:
        raise ValueError(f"sketch_dim must be a positive integer, got {dim!r}")
    rows = range(dim) if rows is None else rows
    if kind == "orthogonal":
        g = torch.Generator().manual_seed(seed)
        if dim <= numel:
            q, _ = torch.linalg.qr(torch.randn(numel, dim, generator=g, dtype=torch.float64))
            s = q * math.sqrt(numel / dim)
        else:
            q, _ = torch.linalg.qr(torch.randn(dim, numel, generator=g, dtype=torch.float64))
            s = q.T
        return s.T[rows.start : rows.stop].to(dtype=dtype, device=device)
    out = torch.empty(len(rows), numel, dtype=dtype)
    for r, k in enumerate(rows):
        g = torch.Generator().manual_seed(seed * 1_000_003 + k)
        if kind == "gaussian":
            torch.randn(numel, generator=g, out=out[r], dtype=dtype)
        else:
            out[r] = torch.randint(0, 2, (numel,), generator=g, dtype=dtype) * 2 - 1
    return out.div_(math.sqrt(dim)).to(device)


def _split_directions(
    block: torch.Tensor, names: Sequence[str], shapes: Sequence[torch.Size]
) -> dict[str, torch.Tensor]:
    """``[c, P]`` directions as ``{name: [c, *shape]}`` (the flat layout of ``flatten``)."""
    pieces = torch.split(block, [math.prod(s) for s in shapes], dim=1)
    return {n: p.reshape(len(block), *s) for n, p, s in zip(names, pieces, shapes, strict=True)}


def sketched_jacobian(
    model: nn.Module,
    inputs,
    shared: Mapping[str, torch.Tensor],
    directions: Callable[[range], torch.Tensor],
    dim: int,
    *,
    chunk_size: int | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The outputs ``f`` and ``Φ = J S``: ``{task: [d, *output shape]}``, ``Φ[k]`` the
    forward-mode derivative of the outputs along direction ``s_k`` of the shared parameters
    ``shared`` (``{name: tensor}``); ``directions(range)`` gives ``[c, P]`` rows of ``Sᵀ``.

    ``d`` Jacobian-vector products, ``chunk_size`` (default all) at a time in one vmapped
    ``jvp``; a model with buffers (batch-norm) runs one forward-mode pass per direction
    instead (its running statistics cannot be updated under vmap), on cloned buffers. The
    model, its buffers and the caller's RNG stream are left unchanged; every pass sees the
    same dropout masks."""
    buffers = _buffers(model)
    tied = has_tied_tensors(model)
    names, primals = list(shared), {n: t.detach() for n, t in shared.items()}
    shapes = [t.shape for t in primals.values()]
    device = next(iter(primals.values())).device
    step = chunk_size or dim
    tangents: list[dict[str, torch.Tensor]] = []

    def outputs_at(values: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return functional_call(model, {**values, **buffers}, (inputs,), tie_weights=tied)

    with repeatable_randomness(device) as reset, torch.no_grad():
        reset()
        base = outputs_at(primals)
        for start in range(0, dim, step):
            block = _split_directions(
                directions(range(start, min(dim, start + step))), names, shapes
            )
            if not buffers:
                reset()
                along = vmap(lambda t: jvp(outputs_at, (primals,), (t,))[1], randomness="same")
                tangents.append(along(block))
                continue
            for k in range(len(next(iter(block.values())))):
                reset()
                with fwAD.dual_level():
                    dual = {n: fwAD.make_dual(primals[n], block[n][k]) for n in names}
                    out = outputs_at(dual)
                    tangents.append({t: fwAD.unpack_dual(o).tangent[None] for t, o in out.items()})
    jacobian = {t: torch.cat([piece[t] for piece in tangents]) for t in base}
    return base, jacobian


def output_gradients(
    outputs: Mapping[str, torch.Tensor], targets: Mapping[str, torch.Tensor], losses: LossFns
) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """``{task: ∂L_i/∂f_i}`` (shaped like the task's output) and the base losses ``[n]``: the
    losses' own backward, no model involved."""
    leaves = {n: outputs[n].detach().requires_grad_() for n in losses}
    with torch.enable_grad():
        values, base = _losses(leaves, targets, losses)
        grads = torch.autograd.grad(torch.stack(values).sum(), list(leaves.values()))
    return dict(zip(leaves, grads, strict=True)), base


def sketched_gradients(
    jacobian: Mapping[str, torch.Tensor], output_grads: Mapping[str, torch.Tensor]
) -> torch.Tensor:
    """``Ĝ`` ``[n, d]``: ``Ĝ[i] = Sᵀ g_i = Φ_iᵀ ∂L_i/∂f_i`` (row i in ``output_grads`` order)."""
    return torch.stack(
        [jacobian[t].reshape(len(jacobian[t]), -1) @ g.reshape(-1) for t, g in output_grads.items()]
    )


def linearised_affinity(
    outputs: Mapping[str, torch.Tensor],
    jacobian: Mapping[str, torch.Tensor],
    sketched: torch.Tensor,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    base: torch.Tensor,
    lr: float,
) -> torch.Tensor:
    """``Z`` ``[n, n]`` (float64) of the SGD lookahead on the linearised model:
    ``Z[i, j] = 1 − L_j(f_j − lr Φ_j Ĝ[i]) / L_j(f_j)`` (``Φ_j = J_j S`` from
    :func:`sketched_jacobian`, ``Ĝ`` from :func:`sketched_gradients`). With ``S Sᵀ = I``,
    ``Φ_j Ĝ[i] = J_j g_i`` exactly. Each target's loss is evaluated for all n sources in one
    vmapped call."""
    columns = []
    for j, (name, loss_fn) in enumerate(losses.items()):
        phi = jacobian[name]
        moved = outputs[name][None] - lr * (sketched @ phi.reshape(len(phi), -1)).reshape(
            len(sketched), *phi.shape[1:]
        )
        after = vmap(loss_fn, in_dims=(0, None))(moved, targets[name])
        columns.append(1.0 - after.double() / base[j].double())
    z = torch.stack(columns, dim=1)
    check_finite(z, list(losses), "a linearised lookahead loss (the step is too large?)")
    return z


class SourceSampler:
    """Which ``m`` of ``n`` source tasks to measure at each step, and their weights.

    The draws are consecutive windows of ``m`` of a stream of random permutations of
    ``range(n)`` (seeded): over ``n / m`` draws every source is measured about equally often,
    and each source's expected multiplicity per draw is exactly ``m / n``. A window that spans
    two permutations may hold a source twice; it is measured once and weighted by its count.
    Weights are ``count × n / m`` (Horvitz–Thompson), so the mean of weighted rows over the
    draws is unbiased for the full matrix."""

    def __init__(self, n: int, m: int, seed: int = 0):
        for name, value in (("n", n), ("sources", m)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if m > n:
            raise ValueError(f"sources must lie in 1..{n} (the number of tasks), got {m}")
        self.n, self.m = n, m
        self._generator = torch.Generator().manual_seed(seed)
        self._stream: list[int] = []

    def draw(self) -> tuple[list[int], torch.Tensor]:
        """The sources of the next step (sorted, distinct) and their weights ``[k]`` (float64)."""
        while len(self._stream) < self.m:
            self._stream += torch.randperm(self.n, generator=self._generator).tolist()
        window, self._stream = self._stream[: self.m], self._stream[self.m :]
        rows = sorted(set(window))
        counts = torch.tensor([window.count(r) for r in rows], dtype=torch.float64)
        return rows, counts * (self.n / self.m)


def sampled_lookahead(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    rows: Sequence[int],
    weights: torch.Tensor,
    *,
    shared: SharedSpec = None,
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
) -> LookaheadMeasurement:
    """The exact lookahead of the sources ``rows`` only, weighted: ``Z[i] = weights[k] ·
    (1 − L(θ_s + u_i) / L(θ_s))`` for ``i = rows[k]``, other rows 0. ``u_i``: the optimizer's
    step on ``g_i`` when ``optimizer`` is given, else ``−lr g_i``. ``len(rows)`` backward passes
    and lookahead forwards instead of n each. Parameters, buffers, the optimizer and the
    caller's RNG stream are left unchanged."""
    by_name = shared_parameters(model, shared)
    shared_names, params = list(by_name), list(by_name.values())
    names = list(losses)
    buffers, tied = _buffers(model), has_tied_tensors(model)
    with repeatable_randomness(params[0].device) as reset:
        reset()
        outputs = functional_call(model, buffers, (inputs,), tie_weights=tied)
        values, base = _losses(outputs, targets, losses)
        grads = task_gradients([values[i] for i in rows], params)
        del outputs, values  # frees the graph before the lookahead forwards
        check_finite(grads.T, [names[i] for i in rows], "the gradient of the loss")
        if optimizer is not None:
            moved = stepped_parameters(optimizer, params, grads, overwrite=True)
        else:
            moved = grads.mul_(-_step(lr, optimizer)).add_(flatten([p.detach() for p in params]))
        after = lookahead_losses(
            model, inputs, targets, losses, shared_names, moved,
            buffers=buffers, reset=reset, tie_weights=tied,
        )  # fmt: skip
    check_finite(after, names, "a lookahead loss (the step is too large?)")
    z = torch.zeros(len(names), len(names), dtype=torch.float64, device=base.device)
    z[list(rows)] = weights.to(z.device)[:, None] * (1.0 - after.double() / base.double()[None, :])
    return LookaheadMeasurement(z, base, _step(lr, optimizer))


def _step(lr: float | None, optimizer: torch.optim.Optimizer | None, cosine: bool = False) -> float:
    """``lr``, else the optimizer's (first parameter group), else 1.0 for a cosine."""
    if lr is None and optimizer is not None:
        lr = float(optimizer.param_groups[0]["lr"])
    if lr is None and cosine:
        return 1.0
    if lr is None:
        raise ValueError("this signal needs lr= (or an optimizer= to read it from)")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return float(lr)


def sketch_signal(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    *,
    signal: str = "sketch",
    shared: SharedSpec = None,
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    sketch_dim: int = SKETCH_DIM,
    sketch: str = "gaussian",
    seed: int = 0,
    chunk_size: int | None = None,
) -> LookaheadMeasurement:
    """``"sketch"``, ``"sketch_cosine"`` or ``"linearised"`` on one batch, from ``sketch_dim``
    Jacobian-vector products (:func:`sketched_jacobian`) of the sketch ``sketch``/``seed``."""
    by_name = shared_parameters(model, shared)
    first = next(iter(by_name.values()))
    numel = sum(p.numel() for p in by_name.values())
    sketch_directions(1, sketch_dim, kind=sketch, rows=range(0))  # checks the options first

    def directions(rows: range) -> torch.Tensor:
        return sketch_directions(
            numel, sketch_dim, kind=sketch, seed=seed, rows=rows, dtype=first.dtype,
            device=first.device,
        )  # fmt: skip

    step = _step(lr, optimizer, cosine=signal == "sketch_cosine")
    outputs, jacobian = sketched_jacobian(
        model, inputs, by_name, directions, sketch_dim, chunk_size=chunk_size
    )
    output_grads, base = output_gradients(outputs, targets, losses)
    sketched = sketched_gradients(jacobian, output_grads)
    check_finite(sketched.T, list(losses), "the sketched gradient of the loss")
    if signal == "linearised":
        z = linearised_affinity(outputs, jacobian, sketched, targets, losses, base, step)
    else:
        z = gramian_signal(sketched.double() @ sketched.double().T, base, step,
                           cosine=signal == "sketch_cosine")  # fmt: skip
    return LookaheadMeasurement(z, base, step)


def _linear_head_weights(model: MultiTaskModel, names: Sequence[str]) -> list | None:
    """Each task's head weight ``[k_i, D]`` when every head is exactly an ``nn.Linear`` or a
    :class:`~taskgroup.data.heads.LinearHead` (whose forward is known), else ``None``."""
    weights = []
    for name in names:
        head = model.heads[name]
        if type(head) not in (nn.Linear, LinearHead):
            return None
        weights.append(head.weight)
    return weights


def linear_head_gramian(
    model: MultiTaskModel, inputs, targets: Mapping[str, torch.Tensor], losses: LossFns
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``K = R Rᵀ`` ``[n, n]`` of :func:`representation_gradients` without forming ``R``, for
    models whose heads are all linear (else ``None``), and the base losses ``[n]``.

    With head i's output ``z_i = W_i h + b_i`` and ``u_i = ∂L_i/∂z_i`` ``[B, k_i]``, each row of
    ``r_i`` is ``W_iᵀ u_i[b]``, so ``K[i, j] = Σ_b u_i[b]ᵀ W_i W_jᵀ u_j[b]``: the blocks of
    ``(W Wᵀ) ⊙ (Uᵀ U)`` summed, ``W`` and ``U`` the heads' weights and output gradients side by
    side. Cost ``(Σk)² (D + B)`` instead of ``n² B D`` (100 one-output heads on ``[128, 1024]``:
    ~0.02 of the Gramian of ``R``)."""
    names = list(losses)
    weights = _linear_head_weights(model, names)
    if weights is None:
        return None
    with repeatable_randomness(next(model.parameters()).device) as reset:
        reset()  # the caller's stream is restored: dropout in the trunk leaves it as it was
        h = _representation(model, inputs)
    with torch.enable_grad():
        heads = [model.heads[name] for name in names]
        z = [torch.nn.functional.linear(h, head.weight, head.bias).detach() for head in heads]
        z = [value.requires_grad_() for value in z]
        squeezed = [isinstance(head, LinearHead) and head.out_features == 1 for head in heads]
        outputs = {
            name: value.squeeze(-1) if squeeze else value
            for name, value, squeeze in zip(names, z, squeezed, strict=True)
        }
        values, base = _losses(outputs, targets, losses)
        grads = torch.autograd.grad(torch.stack(values).sum(), z)
    U = torch.cat([g.reshape(-1, g.shape[-1]) for g in grads], dim=1)  # [B·…, Σk]
    sizes = [len(w) for w in weights]  # k_i: the columns of U and rows of W of task i
    columns = [name for name, k in zip(names, sizes, strict=True) for _ in range(k)]
    check_finite(U, columns, "the gradient with respect to the representation")
    W = torch.cat([w.detach() for w in weights])  # [Σk, D]
    blocks = (W @ W.T) * (U.T @ U)
    owner = torch.repeat_interleave(torch.arange(len(names)), torch.tensor(sizes))
    member = torch.nn.functional.one_hot(owner, len(names)).to(blocks.dtype).to(blocks.device)
    return member.T @ blocks @ member, base


def representation_signal(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    *,
    cosine: bool = False,
    lr: float | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    workspace: dict | None = None,
) -> LookaheadMeasurement:
    """``"representation"`` (``cosine=False``: ``lr K[i, j] / L_j``) or
    ``"representation_cosine"`` on one batch, ``K`` the Gramian of
    :func:`representation_gradients` (formed in the gradients' dtype, returned in float64):
    by :func:`linear_head_gramian` when every head is linear, else from ``R`` itself.
    ``workspace``: a dict kept between calls, as in :func:`~taskgroup.lookahead_affinity`; ``R``
    (up to ``AUTO_GRADIENT_BYTES``) is kept there and reused."""
    step = _step(lr, optimizer, cosine=cosine)
    _require_multitask(model)
    fast = linear_head_gramian(model, inputs, targets, losses)
    if fast is not None:
        gram, base = fast
        return LookaheadMeasurement(gramian_signal(gram, base, step, cosine=cosine), base, step)
    kept = None if workspace is None else workspace.pop("representation", None)
    rows, base = representation_gradients(model, inputs, targets, losses, out=kept)
    if workspace is not None and rows.numel() * rows.element_size() <= AUTO_GRADIENT_BYTES:
        workspace["representation"] = rows
    signal = gramian_signal(rows @ rows.T, base, step, cosine=cosine)
    return LookaheadMeasurement(signal, base, step)


class SignalMeasurer:
    """Measures one affinity signal step after step (what :class:`AffinityTracker` calls).

    Args:
        lookahead: a name of :data:`SIGNALS` (resolved by :func:`resolve_signal`).
        tasks: the number of tasks (the source sampler's ``n``).
        sketch_dim: ``d`` of ``"sketch"``, ``"sketch_cosine"`` and ``"linearised"``.
        sketch: ``"gaussian"``, ``"rademacher"`` or ``"orthogonal"`` (see
            :func:`sketch_directions`); the same ``S`` (``seed``) at every step.
        sources: ``m``, the sources ``"sampled"`` measures per step (default ⌈n / 4⌉).
        seed: seeds the sketch and the source sampler (the run's RNG is never touched).
        **lookahead_options: the options of :func:`~taskgroup.affinity.measure_lookahead` for
            the exact signals; the scalable ones take ``chunk_size`` only (the JVPs per vmap).
    """

    def __init__(
        self,
        lookahead: str,
        tasks: int,
        *,
        sketch_dim: int = SKETCH_DIM,
        sketch: str = "gaussian",
        sources: int | None = None,
        seed: int = 0,
        **lookahead_options: Any,
    ):
        self.lookahead, self.options = lookahead, dict(lookahead_options)
        self.sketch = {"sketch_dim": sketch_dim, "sketch": sketch, "seed": seed}
        if lookahead in ("sketch", "sketch_cosine", "linearised"):
            sketch_directions(1, sketch_dim, kind=sketch, rows=range(0))  # checks the options
        unknown = sorted(set(self.options) - {"chunk_size"})
        if lookahead in SCALABLE and (unknown and any(self.options[k] for k in unknown)):
            raise ValueError(
                f"option(s) {', '.join(unknown)} apply to the exact signals "
                f"({', '.join(LOOKAHEADS)}), not to lookahead={lookahead!r}"
            )
        m = sources if sources is not None else -(-tasks // SOURCES_FRACTION)
        self.sampler = SourceSampler(tasks, m, seed) if lookahead == "sampled" else None
        self.workspace: dict = {}  # buffers kept between measurements (see lookahead_affinity)

    def __call__(
        self,
        model: nn.Module,
        inputs,
        targets: Mapping[str, torch.Tensor],
        losses: LossFns,
        *,
        shared: SharedSpec = None,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
    ) -> LookaheadMeasurement:
        """One measurement of the signal on this batch (row = source task)."""
        kind = self.lookahead
        if kind not in SCALABLE:
            return measure_lookahead(
                model, inputs, targets, losses, shared=shared, lr=lr, lookahead=kind,
                optimizer=optimizer, workspace=self.workspace, **self.options,
            )  # fmt: skip
        if kind.startswith("representation"):
            cosine = kind == "representation_cosine"
            return representation_signal(
                model, inputs, targets, losses, cosine=cosine, lr=lr, optimizer=optimizer,
                workspace=self.workspace,
            )  # fmt: skip
        if kind == "sampled":
            rows, weights = self.sampler.draw()
            return sampled_lookahead(
                model, inputs, targets, losses, rows, weights, shared=shared, lr=lr,
                optimizer=optimizer,
            )  # fmt: skip
        return sketch_signal(
            model, inputs, targets, losses, signal=kind, shared=shared, lr=lr,
            optimizer=optimizer, chunk_size=self.options.get("chunk_size"), **self.sketch,
        )  # fmt: skip
