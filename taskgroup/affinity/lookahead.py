"""Lookahead (TAG / IT-MTL) inter-task affinity from one forward graph and n functional forwards.

At a training step with batch X, let u_i be the shared-parameter update that task i alone would
make. Then

    Z[i, j] = 1 − L_j(X; θ_s + u_i, θ_j) / L_j(X; θ_s, θ_j)

Row i = source task, column j = target task; Z[i, j] > 0 means task i's step lowers task j's
loss. The computation is a pure function of (parameters, buffers, batch): one forward gives every
base loss, the per-task gradients of θ_s come from that one graph, and each lookahead is a
``torch.func.functional_call`` on θ_s + u_i — no model copies, and the model's parameters,
buffers (batch-norm running statistics), the optimizer's state and the caller's RNG stream are
left exactly as they were. Every forward of one measurement replays the same random stream, so
dropout masks are identical in the base and the lookahead forwards.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Literal

import torch
import torch.distributed as dist
from torch import nn
from torch.func import functional_call, vmap

from taskgroup.affinity.optimizer_step import stepped_parameters
from taskgroup.distributed import average
from taskgroup.gradients import flatten, task_gradients
from taskgroup.models import SharedSpec, shared_parameters

LOOKAHEADS = ("sgd", "optimizer", "first_order", "cosine")
Lookahead = Literal["sgd", "optimizer", "first_order", "cosine"]
VECTORIZE = ("auto", "loop", "vmap")
Vectorize = Literal["auto", "loop", "vmap"]
LossFns = Mapping[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]]
# per-task gradient blocks up to this size are formed whole (see gradient_chunk_rows)
AUTO_GRADIENT_BYTES = 64 * 2**20


@dataclass(frozen=True)
class LookaheadMeasurement:
    """One measurement: ``affinity`` ``[n, n]`` (float64, row = source), the base losses ``[n]``
    and the learning rate of the step (the lr of the first shared parameter group)."""

    affinity: torch.Tensor
    base_losses: torch.Tensor
    lr: float


def task_loss_list(
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
) -> list[torch.Tensor]:
    """Scalar losses ``losses[name](outputs[name], targets[name])`` in ``losses`` order."""
    values = []
    for name, loss_fn in losses.items():
        if name not in outputs:
            raise ValueError(
                f"the model output has no prediction for task {name!r}; it returned "
                f"{', '.join(map(repr, outputs))}"
            )
        value = loss_fn(outputs[name], targets[name])
        if not isinstance(value, torch.Tensor) or value.ndim != 0:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"loss of task {name!r} must be a mean-reduced scalar tensor, got {shape}"
            )
        values.append(value)
    return values


def stack_task_losses(
    outputs: Mapping[str, torch.Tensor],
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
) -> torch.Tensor:
    """``[n]`` losses ``losses[name](outputs[name], targets[name])`` in ``losses`` order."""
    return torch.stack(task_loss_list(outputs, targets, losses))


class NonFiniteError(ValueError):
    """A loss or gradient turned NaN or infinite: training diverged (or its input is broken).

    Attributes:
        tasks: the tasks concerned, by name (or by row index where no names are known).
        what: what was not finite, e.g. ``"the training loss"``.
        step: the training step, where the raiser knows it (else ``None``).
    """

    def __init__(
        self, what: str, tasks: Sequence[str | int], *, step: int | None = None, detail: str = ""
    ):
        self.what, self.tasks, self.step, self.detail = what, tuple(tasks), step, detail
        at = "" if step is None else f" at step {step}"
        named = ", ".join(map(str, self.tasks)) or "?"
        super().__init__(f"{what}{at} is not finite (NaN or inf) for task(s) {named}{detail}")

    def at_step(self, step: int) -> NonFiniteError:
        """The same error, naming the training ``step``."""
        return NonFiniteError(self.what, self.tasks, step=step, detail=self.detail)


def check_finite(values: torch.Tensor, names: Sequence[str], what: str) -> None:
    """Raise :class:`NonFiniteError` (a ``ValueError``) naming the tasks whose entry of
    ``values`` (``[..., n]``) is NaN/inf."""
    # one reading pass: a NaN/inf entry makes the sum NaN/inf (a finite sum that overflows
    # only sends it to the exact test); isfinite takes four passes and two temporaries
    if bool(torch.isfinite(values.sum())):
        return
    finite = torch.isfinite(values)
    if not bool(finite.all()):
        bad = [names[j] for j in range(len(names)) if not bool(finite[..., j].all())]
        raise NonFiniteError(what, bad)


def nonfinite_gradient_tasks(
    task_losses: torch.Tensor | Sequence[torch.Tensor], params: Sequence[torch.Tensor]
) -> list[int]:
    """The indices of the tasks whose loss has a NaN/inf gradient for some of ``params`` (one
    backward pass per task on a retained graph: for error paths, to name the culprits).
    ``task_losses``: the k scalar losses as computed; entries of a stacked ``[k]`` tensor also
    work, but the zero cotangent the stack sends to the other tasks turns their ∞ into NaN
    (0 · ∞), so a NaN can then show in every task."""
    bad = []
    for i in range(len(task_losses)):
        grads = torch.autograd.grad(task_losses[i], params, retain_graph=True, allow_unused=True)
        if not all(bool(torch.isfinite(g).all()) for g in grads if g is not None):
            bad.append(i)
    return bad


@contextmanager
def repeatable_randomness(
    device: torch.device, cpu_state: torch.Tensor | None = None
) -> Iterator[Callable[[], None]]:
    """Fork the RNG; yield ``reset()`` that rewinds it to the fork point, or to ``cpu_state``
    when given (same dropout masks in every forward). The caller's stream is restored on exit."""
    # what torch.random.fork_rng does for these two generators, without its per-call overhead
    caller_cpu = torch.get_rng_state()
    cuda_state = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    if cpu_state is None:
        cpu_state = caller_cpu

    def reset() -> None:
        torch.set_rng_state(cpu_state)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)

    try:
        yield reset
    finally:
        torch.set_rng_state(caller_cpu)
        if cuda_state is not None:
            torch.cuda.set_rng_state(cuda_state, device)


def has_tied_tensors(model: nn.Module) -> bool:
    """Whether a parameter or buffer is registered under two names (tied weights).

    ``functional_call`` must then re-tie substituted values (``tie_weights=True``), a walk over
    every module on each call that costs ~40% of a small MLP's forward; without ties it is
    skipped. A *submodule* registered under two names is refused with ``ValueError``:
    ``functional_call`` cannot restore such a model and would silently replace its parameters
    by plain tensors."""
    seen_modules: dict[int, str] = {}
    seen: set[int] = set()
    tied = False
    # one walk (named_parameters/named_buffers would each walk the modules again)
    for name, module in model.named_modules(remove_duplicate=False):
        first = seen_modules.setdefault(id(module), name)
        if first != name and any(p is not None for p in module._parameters.values()):
            raise ValueError(
                f"submodule {first!r} is also registered as {name!r}; torch.func.functional_call "
                f"cannot restore a model with aliased submodules: register it once (tie single "
                f"parameters instead, e.g. a.weight = b.weight)"
            )
        for tensor in chain(module._parameters.values(), module._buffers.values()):
            if tensor is not None:
                tied = tied or id(tensor) in seen
                seen.add(id(tensor))
    return tied


def lookahead_losses(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    shared_names: Sequence[str],
    moved_shared: torch.Tensor,
    *,
    buffers: Mapping[str, torch.Tensor] | None = None,
    reset: Callable[[], None] = lambda: None,
    vectorize: Vectorize = "auto",
    chunk_size: int | None = None,
    tie_weights: bool | None = None,
) -> torch.Tensor:
    """Every task's loss at each of ``m`` candidate values of the shared parameters.

    Args:
        model: the multi-task model; its parameters other than ``shared_names`` are used as
            they are.
        shared_names: names of θ_s; ``moved_shared`` ``[m, P]`` holds m flat values of θ_s in
            that order (the layout of :func:`taskgroup.gradients.flatten`).
        buffers: buffers to run with (default: clones of the model's, so batch-norm running
            statistics of the model are never updated).
        reset: called before each forward (rewinds the RNG in :func:`lookahead_affinity`).
        vectorize: ``"loop"`` runs m functional forwards; ``"vmap"`` one vmapped forward over the
            stacked values (``chunk_size`` rows at a time), which cannot update batch-norm
            running statistics; ``"auto"`` is ``"vmap"`` for models without buffers.
        tie_weights: whether the model has tied tensors (see :func:`has_tied_tensors`;
            detected when ``None``).

    Returns ``[m, n]``: row k = losses of all tasks (``losses`` order) at ``moved_shared[k]``.
    Runs without autograd.
    """
    if vectorize not in VECTORIZE:
        raise ValueError(f"vectorize must be one of {', '.join(VECTORIZE)}, got {vectorize!r}")
    if buffers is None:
        buffers = {n: b.clone() for n, b in model.named_buffers()}
    if vectorize == "auto":
        vectorize = "loop" if buffers else "vmap"
    if tie_weights is None:
        tie_weights = has_tied_tensors(model)
    shapes = [model.get_parameter(n).shape for n in shared_names]
    pieces = torch.split(moved_shared, [s.numel() for s in shapes], dim=1)
    stacked = {
        n: piece.view(len(moved_shared), *shape)
        for n, piece, shape in zip(shared_names, pieces, shapes, strict=True)
    }

    def losses_at(shared_values: Mapping[str, torch.Tensor]) -> torch.Tensor:
        # only what moves is substituted: the other parameters are read from the module
        outputs = functional_call(
            model, {**shared_values, **buffers}, (inputs,), tie_weights=tie_weights
        )
        return stack_task_losses(outputs, targets, losses)

    with torch.no_grad():
        if vectorize == "vmap":
            reset()
            return vmap(losses_at, randomness="same", chunk_size=chunk_size)(stacked)
        rows = []
        for k in range(len(moved_shared)):
            reset()
            rows.append(losses_at({n: v[k] for n, v in stacked.items()}))
        return torch.stack(rows)


def _distributed(flag: bool | None) -> bool:
    active = dist.is_available() and dist.is_initialized()
    if flag and not active:
        raise ValueError("distributed=True but torch.distributed is not initialised")
    return active if flag is None else bool(flag)


def resolve_lookahead(
    lookahead: Lookahead | None, optimizer: torch.optim.Optimizer | None
) -> Lookahead:
    """The lookahead signal to measure: ``lookahead`` checked against :data:`LOOKAHEADS`, or by
    default (``None``) ``"optimizer"`` when an optimizer is given, else ``"sgd"``.

    Raises ``ValueError`` naming the accepted values for an unknown name, and for
    ``"optimizer"`` without the optimizer it replays.
    """
    if lookahead is None:
        lookahead = "optimizer" if optimizer is not None else "sgd"
    if lookahead not in LOOKAHEADS:
        raise ValueError(f"lookahead must be one of {', '.join(LOOKAHEADS)}, got {lookahead!r}")
    if lookahead == "optimizer" and optimizer is None:
        raise ValueError('lookahead="optimizer" needs the optimizer= that trains the model')
    return lookahead


def _step_size(
    lookahead: Lookahead, optimizer: torch.optim.Optimizer | None, lr: float | None
) -> float:
    """``lr``, or the optimizer's (first parameter group), or 1.0 for the cosine (no step)."""
    if lr is None and optimizer is not None:
        lr = float(optimizer.param_groups[0]["lr"])
    if lr is None and lookahead == "cosine":
        lr = 1.0  # the cosine has no step size
    if lr is None:
        raise ValueError(f'lookahead="{lookahead}" needs lr= (or an optimizer= to read it from)')
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    return float(lr)


def _task_names(losses: LossFns, targets: Mapping[str, torch.Tensor]) -> list[str]:
    """The task names of ``losses``; ``ValueError`` for no task, a missing target or an empty
    batch."""
    names = list(losses)
    if not names:
        raise ValueError("losses is empty; pass {task_name: loss_fn} for at least one task")
    missing = [n for n in names if n not in targets]
    if missing:
        raise ValueError(f"targets has no entry for task(s) {', '.join(map(repr, missing))}")
    if any(len(targets[n]) == 0 for n in names):
        raise ValueError("empty batch: the targets have no rows")
    return names


def gradient_chunk_rows(
    n: int, numel: int, itemsize: int, memory_budget: int | None, *, blocks: int = 1
) -> int:
    """How many per-task gradient rows of ``numel`` elements of ``itemsize`` bytes to hold at
    once when ``blocks`` such blocks are held together: all ``n`` when they fit in
    ``memory_budget`` bytes, else as many as fit (at least one).

    ``memory_budget=None`` (automatic): ``max(AUTO_GRADIENT_BYTES, 4 × one row)``, about what a
    plain training step with Adam holds besides its activations (parameters, gradients and two
    moments), so that a problem whose ``[n, P]`` matrix is at most 64 MiB keeps the one-block
    path and a larger one stays within about twice a training step."""
    if memory_budget is not None and (isinstance(memory_budget, bool) or memory_budget <= 0):
        raise ValueError(f"memory_budget must be a positive number of bytes, got {memory_budget!r}")
    row = max(1, numel * itemsize)
    if memory_budget is None:
        memory_budget = max(AUTO_GRADIENT_BYTES, 4 * row)
    return int(max(1, min(n, memory_budget // (blocks * row))))


def _forward_losses(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    buffers: Mapping[str, torch.Tensor],
    *,
    tied: bool,
    across_ranks: bool,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """One functional forward: the task losses on their graph and the detached base losses
    ``[n]`` (averaged over the ranks when ``across_ranks``). ``ValueError`` naming the tasks
    whose loss is not finite or exactly 0."""
    names = list(losses)
    outputs = functional_call(model, buffers, (inputs,), tie_weights=tied)
    task_losses = task_loss_list(outputs, targets, losses)
    base = torch.stack([loss.detach() for loss in task_losses])
    check_finite(base, names, "the loss")
    if across_ranks:
        base = average(base)
    if bool((base == 0).any()):
        zero = [names[j] for j in range(len(names)) if float(base[j]) == 0.0]
        raise ValueError(
            f"the loss of task(s) {', '.join(zero)} is exactly 0 on this batch, so the "
            f"relative change that defines affinity is undefined"
        )
    return task_losses, base


def _gradient_rows(
    task_losses: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
    rows: range,
    *,
    names: Sequence[str],
    across_ranks: bool,
    batched_grads: bool,
    chunk_size: int | None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """``[len(rows), P]``: the gradients of the shared parameters of the tasks ``rows`` (the
    graph is kept), checked finite, averaged over the ranks when ``across_ranks``. With
    ``out`` (a ``[≥ len(rows), P]`` buffer of the gradients' dtype and device), the rows are
    written into its first rows and a view of it is returned; all rows at once otherwise go
    through :func:`~taskgroup.gradients.task_gradients`, a chunk row by row into a new buffer
    (no second copy of the chunk)."""
    chosen = [task_losses[i] for i in rows]
    if out is None and (batched_grads or len(chosen) == len(task_losses)):
        grads = task_gradients(chosen, params, batched=batched_grads, chunk_size=chunk_size)
    else:
        grads = _gradient_buffer(len(chosen), params) if out is None else out[: len(chosen)]
        for r, loss in enumerate(chosen):
            pieces = torch.autograd.grad(
                loss, params, retain_graph=True, allow_unused=True, materialize_grads=True
            )
            torch.cat([g.reshape(-1) for g in pieces], out=grads[r])
            del pieces
    # a NaN row would poison the row
    check_finite(grads.T, [names[i] for i in rows], "the gradient of the loss")
    return average(grads) if across_ranks else grads


def _chunks(n: int, rows: int) -> list[range]:
    return [range(start, min(start + rows, n)) for start in range(0, n, rows)]


def _product64(a: torch.Tensor, b: torch.Tensor, columns: int = 2**20) -> torch.Tensor:
    """``a bᵀ`` in float64, accumulated over slices of ``columns`` columns (no float64 copy of
    a whole block)."""
    out = torch.zeros(len(a), len(b), dtype=torch.float64, device=a.device)
    for start in range(0, a.shape[1], columns):
        piece = a[:, start : start + columns].double()
        out += piece @ b[:, start : start + columns].double().T
    return out


def chunked_gramian(
    gradient_rows: Callable[[range], torch.Tensor], n: int, rows: int
) -> torch.Tensor:
    """``G Gᵀ`` ``[n, n]`` (float64) without ``G`` ``[n, P]`` whole: ``gradient_rows(chunk)``
    gives the rows of ``G`` for a ``range`` of tasks; chunk A (``rows`` tasks) is multiplied
    with itself and with every later chunk B, recomputed, so two chunks are held at once. For
    k = ⌈n / rows⌉ chunks it computes n (k + 1) / 2 gradient rows instead of n: the time it
    trades for memory."""
    chunks = _chunks(n, rows)
    gram = None
    for a, first_rows in enumerate(chunks):
        first = gradient_rows(first_rows)
        if gram is None:
            gram = torch.zeros(n, n, dtype=torch.float64, device=first.device)
        for second_rows in chunks[a:]:
            second = first if second_rows == first_rows else gradient_rows(second_rows)
            block = _product64(first, second)
            gram[first_rows.start : first_rows.stop, second_rows.start : second_rows.stop] = block
            gram[second_rows.start : second_rows.stop, first_rows.start : first_rows.stop] = block.T
            del second
        del first
    return gram


def _gradient_affinity(
    gram: torch.Tensor, base64: torch.Tensor, lr: float, lookahead: Lookahead
) -> torch.Tensor:
    """The signals read off the Gramian ``G Gᵀ`` ``[n, n]`` (float64), without lookahead
    forwards: ``"first_order"`` ``lr g_i·g_j / L_j``, ``"cosine"`` ``g_i·g_j / (|g_i| |g_j|)``."""
    if lookahead == "cosine":  # a zero gradient has cosine 0 with every task
        norms = gram.diagonal().sqrt()
        norms = torch.where(norms > 0, norms, torch.inf)
        return gram / norms[:, None] / norms[None, :]
    return lr * gram / base64[None, :]


def _moved_shared(
    lookahead: Lookahead,
    grads: torch.Tensor,
    lr: float,
    shared_params: Sequence[torch.Tensor],
    optimizer: torch.optim.Optimizer | None,
    compile_step: bool = False,
) -> torch.Tensor:
    """``[n, P]``: θ_s + u_i for every task i (``"sgd"``: u_i = −lr g_i; ``"optimizer"``: the
    optimizer's step on g_i alone, Adam's fused by ``torch.compile`` with ``compile_step``).
    Overwrites ``grads``."""
    # the steps overwrite grads in place (they are not reused): [n, P] stays in cache
    if lookahead == "sgd":
        return grads.mul_(-lr).add_(flatten([p.detach() for p in shared_params]))
    return stepped_parameters(
        optimizer, shared_params, grads, overwrite=True, compiled=compile_step
    )


def _gradient_buffer(rows: int, params: Sequence[torch.Tensor]) -> torch.Tensor:
    """An uninitialised ``[rows, P]`` buffer for the gradients of ``params`` (their promoted
    dtype, on their device)."""
    dtype = functools.reduce(torch.promote_types, (p.dtype for p in params))
    numel = sum(p.numel() for p in params)
    return torch.empty(rows, numel, dtype=dtype, device=params[0].device)


def _workspace_rows(
    workspace: dict | None, rows: int, params: Sequence[torch.Tensor]
) -> torch.Tensor | None:
    """The ``[rows, P]`` gradient buffer kept in ``workspace`` (made, or remade when its shape,
    dtype or device changed); ``None`` without a workspace, or when the buffer would exceed
    :data:`AUTO_GRADIENT_BYTES` (a larger one is not held between measurements: the memory
    would outweigh the page faults it saves next to that many backward passes)."""
    if workspace is None:
        return None
    dtype = functools.reduce(torch.promote_types, (p.dtype for p in params))
    shape = (rows, sum(p.numel() for p in params))
    if shape[0] * shape[1] * dtype.itemsize > AUTO_GRADIENT_BYTES:
        workspace.pop("gradients", None)
        return None
    kept = workspace.get("gradients")
    fits = kept is not None and kept.shape == shape
    if not fits or (kept.dtype, kept.device) != (dtype, params[0].device):
        kept = workspace["gradients"] = _gradient_buffer(rows, params)
    return kept


def _gramian(gradient_rows: Callable[[range], torch.Tensor], n: int, rows: int) -> torch.Tensor:
    """``G Gᵀ`` (float64) from ``gradient_rows``: whole when ``rows`` ≥ ``n``, else
    :func:`chunked_gramian`."""
    if rows < n:
        return chunked_gramian(gradient_rows, n, rows)
    grads = gradient_rows(range(n))
    return grads.double() @ grads.double().T


def _losses_after_step(
    model: nn.Module,
    batch: tuple,
    shared_names: Sequence[str],
    shared_params: Sequence[torch.Tensor],
    grads: torch.Tensor,
    *,
    lookahead: Lookahead,
    lr: float,
    optimizer: torch.optim.Optimizer | None,
    compile_step: bool = False,
    **options,
) -> torch.Tensor:
    """``[m, n]``: every task's loss after the step of each of the ``m`` gradient rows
    ``grads`` (overwritten); ``batch`` = (inputs, targets, losses); ``options`` go to
    :func:`lookahead_losses`."""
    moved = _moved_shared(lookahead, grads, lr, shared_params, optimizer, compile_step)
    return lookahead_losses(model, *batch, shared_names, moved, **options)


def measure_lookahead(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    *,
    shared: SharedSpec = None,
    lr: float | None = None,
    lookahead: Lookahead | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    distributed: bool | None = None,
    vectorize: Vectorize = "auto",
    batched_grads: bool = False,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    workspace: dict | None = None,
    compile_step: bool = False,
) -> LookaheadMeasurement:
    """:func:`lookahead_affinity` with the base losses and step size it used."""
    lookahead = resolve_lookahead(lookahead, optimizer)
    lr = _step_size(lookahead, optimizer, lr)
    names = _task_names(losses, targets)
    if workspace is not None and not isinstance(workspace, dict):
        raise ValueError(
            f"workspace must be a dict kept between calls (or None), got {type(workspace).__name__}"
        )
    shared_by_name = shared_parameters(model, shared)
    shared_names, shared_params = list(shared_by_name), list(shared_by_name.values())
    # cloned buffers absorb batch-norm running-stat updates; the model's own stay untouched
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    tied = has_tied_tensors(model)
    across_ranks = _distributed(distributed)
    gramian = lookahead in ("first_order", "cosine")
    numel, itemsize = sum(p.numel() for p in shared_params), shared_params[0].element_size()
    rows = gradient_chunk_rows(len(names), numel, itemsize, memory_budget, blocks=1 + gramian)
    options = {"names": names, "across_ranks": across_ranks, "batched_grads": batched_grads}
    step = {"lookahead": lookahead, "lr": lr, "optimizer": optimizer, "vectorize": vectorize}
    step |= {"buffers": buffers, "chunk_size": chunk_size, "tie_weights": tied}
    step |= {"compile_step": compile_step}

    with repeatable_randomness(shared_params[0].device) as reset:
        reset()
        task_losses, base = _forward_losses(
            model, inputs, targets, losses, buffers, tied=tied, across_ranks=across_ranks
        )
        gradient_rows = functools.partial(
            _gradient_rows, task_losses, shared_params, chunk_size=chunk_size, **options
        )
        del task_losses  # the partial holds the graph now; dropping it frees the graph
        base64 = base.double()
        if gramian:
            gram = _gramian(gradient_rows, len(names), rows)
            return LookaheadMeasurement(_gradient_affinity(gram, base64, lr, lookahead), base, lr)
        if not batched_grads:  # each chunk's rows are stepped and used before the next one's
            buffer = _workspace_rows(workspace, min(rows, len(names)), shared_params)
            gradient_rows = functools.partial(gradient_rows, out=buffer)
        batch = (inputs, targets, losses)
        losses_after = functools.partial(
            _losses_after_step, model, batch, shared_names, shared_params, reset=reset, **step
        )
        if rows < len(names):  # the graph stays until the last chunk's gradients
            after = torch.cat([losses_after(gradient_rows(c)) for c in _chunks(len(names), rows)])
        else:
            grads = gradient_rows(range(len(names)))
            del gradient_rows  # frees the graph before the lookahead forwards
            after = losses_after(grads)
    if across_ranks:
        after = average(after)
    check_finite(after, names, "a lookahead loss (the step is too large?)")
    return LookaheadMeasurement(1.0 - after.double() / base64[None, :], base, lr)


def lookahead_affinity(
    model: nn.Module,
    inputs,
    targets: Mapping[str, torch.Tensor],
    losses: LossFns,
    *,
    shared: SharedSpec = None,
    lr: float | None = None,
    lookahead: Lookahead | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    distributed: bool | None = None,
    vectorize: Vectorize = "auto",
    batched_grads: bool = False,
    chunk_size: int | None = None,
    memory_budget: int | None = None,
    workspace: dict | None = None,
    compile_step: bool = False,
) -> torch.Tensor:
    """Lookahead inter-task affinity ``Z`` ``[n, n]`` on one batch (float64).

    ``Z[i, j] = 1 − L_j(θ_s + u_i) / L_j(θ_s)``: row i = source task, column j = target task,
    positive when task i's update lowers task j's loss; the diagonal is self-improvement.

    Args:
        model: maps ``inputs`` to ``{task_name: prediction}``.
        inputs: the batch, passed to ``model`` as its only argument.
        targets: ``{task_name: target}`` for every task in ``losses``.
        losses: ``{task_name: loss_fn(prediction, target) -> scalar}``; order = row/col order.
        shared: the shared parameters θ_s (a submodule, a list of names or a predicate; ``None``
            for a :class:`~taskgroup.models.MultiTaskModel`'s trunk).
        lr: step size of ``"sgd"`` and ``"first_order"`` (read from ``optimizer`` when omitted).
        lookahead: ``"sgd"`` (u_i = −lr ∇L_i), ``"optimizer"`` (the step ``optimizer`` would take
            from its current state on ∇L_i alone; SGD/Adam/AdamW) or ``"first_order"`` (the
            Taylor estimate lr g_i·g_j / L_j from the Gramian, no lookahead forwards) or
            ``"cosine"`` (the gradient cosine g_i·g_j / (|g_i| |g_j|), a common baseline signal,
            no lookahead either). Default (:func:`resolve_lookahead`): ``"optimizer"`` when an
            optimizer is given, else ``"sgd"``.
        optimizer: the live optimizer (read only).
        distributed: average gradients and losses over the initialised process group so every
            rank gets the matrix of the global batch; ``None`` = whenever one is initialised.
        vectorize: lookahead forwards as a loop of functional calls (``"loop"``), one ``vmap``
            (``"vmap"``), or ``"auto"``: vmap unless the model has buffers (batch-norm running
            statistics cannot be updated under vmap).
        batched_grads: per-task gradients in one vmapped backward instead of n retained ones.
        chunk_size: bound on the rows of a batched backward or a vmapped forward.
        memory_budget: bytes the per-task gradients of θ_s may take at once (``None``:
            automatic, see :func:`gradient_chunk_rows`). When the ``[n, P]`` matrix does not
            fit, the lookaheads stream over chunks of tasks (same work; the forward graph is
            kept until the last chunk) and the Gramian signals multiply chunk pairs
            (:func:`chunked_gramian`: more backward passes, same result to float64
            rounding). The n lookahead forwards and the graph of one forward are not bounded
            by it.
        workspace: a dict the caller keeps between calls (:class:`AffinityTracker` does): the
            lookaheads keep their ``[n, P]`` gradient buffer in it (up to
            :data:`AUTO_GRADIENT_BYTES`) and reuse it, sparing a fresh allocation's page faults
            each call (on the width-256 MLP most of what the lookahead cost above the compute
            floor). Never changes a result.
        compile_step: with ``lookahead="optimizer"`` and Adam/AdamW, replay Adam's step in one
            kernel fused by ``torch.compile`` instead of five tensor passes (needs a C++
            compiler on CPU; compiled once per process, a few seconds). Same result to float
            rounding; on the width-256 MLP it takes the lookahead from 1.17 to 1.08 of the
            compute floor (``docs/benchmarks.md``).

    Parameters, buffers, optimizer state and the caller's RNG stream are left unchanged.
    """
    return measure_lookahead(
        model,
        inputs,
        targets,
        losses,
        shared=shared,
        lr=lr,
        lookahead=lookahead,
        optimizer=optimizer,
        distributed=distributed,
        vectorize=vectorize,
        batched_grads=batched_grads,
        chunk_size=chunk_size,
        memory_budget=memory_budget,
        workspace=workspace,
        compile_step=compile_step,
    ).affinity
