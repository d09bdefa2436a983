"""``MTLStep``: one multi-task training step with any aggregator, for any PyTorch loop.

::

    step = tg.MTLStep(model, tasks, "nash_mtl", optimizer)
    for inputs, targets in loader:
        result = step(inputs, targets)        # forward, per-task gradients, aggregation, step

It zeroes the gradients, runs the forward, stacks the task losses, lets the aggregator fill
``.grad`` (:meth:`Aggregator.backward`: the shared parameters get the aggregated direction, each
task-specific parameter its own task's gradient; a loss weighting back-propagates its objective)
and calls ``optimizer.step()``. Loops that do their own forward call ``aggregator.backward(losses,
shared_params)`` in place of ``loss.backward()`` instead.

Compiled models and mixed precision (docs/aggregators.md):

- ``torch.compile(model)`` works as the model: the step runs its forward compiled and reads the
  shared parameters, names and the functional re-evaluations (FAMO's losses after the step,
  transference's lookahead) from the module it wraps. Its per-task gradients take k backward
  passes (``batched=False``): a compiled backward cannot run under ``vmap``.
- ``autocast=torch.bfloat16`` (or a call inside ``torch.autocast(...)``) runs the forward and the
  task losses in that precision; the backward, the aggregation and the optimizer step run with
  autocast off, and the aggregator receives float32 gradients.
- ``scaler=torch.amp.GradScaler(...)`` (float16): the per-task gradients are computed from the
  scaled losses and unscaled before the aggregator sees them; a step whose losses or gradients
  are not finite is skipped as ``GradScaler`` skips it (no optimizer step, the scale backs
  off), and the aggregator or loss weighting keeps the state it had before the step.

NaN and inf without a scaler. In full precision (or bf16) a NaN/inf loss or gradient is not an
overflow that a smaller scale fixes: training has diverged. The step then raises
:class:`~taskgroup.affinity.lookahead.NonFiniteError` (a ``ValueError``) naming the tasks,
before the optimizer steps and with ``.grad`` cleared, so no NaN reaches the parameters; a
gradient aggregator has not seen the step (its state is unchanged), a loss weighting has weighed
it. With a scaler the same step is skipped (``StepResult.skipped``), as ``GradScaler`` does.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from taskgroup.affinity.lookahead import (
    NonFiniteError,
    check_finite,
    stack_task_losses,
    task_loss_list,
)
from taskgroup.affinity.optimizer_step import SUPPORTED
from taskgroup.aggregators.backward import (
    accumulate_grads,
    all_finite,
    backpropagate,
    clipped_direction,
    global_values,
    own_task_gradients,
    per_task_gradients,
)
from taskgroup.aggregators.base import Aggregation, Aggregator, LossWeighting
from taskgroup.aggregators.registry import get
from taskgroup.aggregators.transference import Transference, lookahead_context
from taskgroup.distributed import active, average
from taskgroup.gradients import unflatten
from taskgroup.models import MultiTaskModel, SharedSpec, shared_parameter_names
from taskgroup.tasks import Task, TaskSet

ON = ("params", "features")
AUTOCAST = (torch.bfloat16, torch.float16)
COMPILED = "_orig_mod"  # the attribute under which torch.compile's wrapper keeps the module
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Tasks = TaskSet | Iterable[Task] | Mapping[str, LossFn]


@dataclass(frozen=True)
class StepResult:
    """One step: the task ``losses`` ``[k]`` before the update (detached), the task ``weights``
    the method used (``None`` where it defines none, and on a skipped step), its ``info``, and
    whether the step was ``skipped`` (an overflow under a loss scaler: no update was made)."""

    losses: torch.Tensor
    weights: torch.Tensor | None
    info: Mapping[str, Any] = field(default_factory=dict)
    skipped: bool = False


def compiled_original(model: nn.Module) -> nn.Module:
    """The module that ``torch.compile(model)`` wraps (``model`` itself when not compiled): its
    parameter names carry no ``_orig_mod.`` prefix, and ``functional_call`` on it runs eagerly
    instead of recompiling for every substituted parameter."""
    while isinstance(getattr(model, COMPILED, None), nn.Module):
        model = getattr(model, COMPILED)
    return model


def has_compiled_modules(model: nn.Module) -> bool:
    """Whether ``model`` or one of its submodules is a ``torch.compile`` wrapper."""
    return any(name.rpartition(".")[2] == COMPILED for name, _ in model.named_modules())


def _original_names(model: nn.Module, shared: SharedSpec) -> SharedSpec:
    """``shared`` for the module a compiled ``model`` wraps: parameter names listed as
    ``model.named_parameters()`` gives them lose the ``_orig_mod.`` prefix."""
    if isinstance(shared, nn.Module | str) or callable(shared) or shared is None:
        return shared
    prefix = ""
    while isinstance(getattr(model, COMPILED, None), nn.Module):
        model, prefix = getattr(model, COMPILED), f"{prefix}{COMPILED}."
    return [n.removeprefix(prefix) for n in shared]


def _loss_functions(tasks: Tasks) -> dict[str, Callable]:
    if isinstance(tasks, TaskSet):
        return tasks.losses()
    if isinstance(tasks, Mapping):
        losses = dict(tasks)
    else:
        items = list(tasks)
        if not all(isinstance(t, Task) for t in items):
            raise TypeError("tasks must be a TaskSet, a list of Task or {name: loss_fn}")
        losses = TaskSet(items).losses()
    if not losses:
        raise ValueError("tasks is empty; pass at least one task")
    for name, fn in losses.items():
        if not callable(fn):
            raise TypeError(f"the loss of task {name!r} is not callable")
    return losses


def _build_aggregator(
    aggregator: str | Aggregator | LossWeighting, options: Mapping[str, Any]
) -> Aggregator | LossWeighting:
    """The step's update rule: a registered name built with ``options``, or an instance."""
    if isinstance(aggregator, str):
        aggregator = get(aggregator, **options)
    elif options:
        raise ValueError("aggregator options go with a name, not with an instance")
    if not isinstance(aggregator, Aggregator | LossWeighting):
        raise TypeError(f"aggregator must be a name or an aggregator, got {aggregator!r}")
    return aggregator


def _check_features(model: nn.Module, aggregator: Aggregator | LossWeighting) -> None:
    """Raise ``ValueError`` unless ``on="features"`` applies to ``model`` and ``aggregator``."""
    if not isinstance(model, MultiTaskModel):
        raise ValueError(
            'on="features" needs a MultiTaskModel (trunk + heads) to know the shared '
            "representation; for other models call aggregator.backward(losses, "
            "shared_params, features=z)"
        )
    if isinstance(aggregator, Transference):
        raise ValueError('on="features" does not apply to transference')
    if isinstance(aggregator, LossWeighting):
        raise ValueError(
            f'on="features" applies to gradient aggregators; {aggregator.name} is a loss '
            f"weighting and needs no per-task gradients"
        )


def _use_distributed(
    distributed: bool | None, on: str, aggregator: Aggregator | LossWeighting
) -> bool:
    """Whether the step averages over the ranks (``None``: whenever a process group is active);
    ``ValueError`` when asked for without one or with what it does not support."""
    use = active() if distributed is None else bool(distributed)
    if use and not active():
        raise ValueError("distributed=True but no torch.distributed process group is active")
    if use and (on == "features" or isinstance(aggregator, Transference)):
        raise ValueError(
            'distributed training supports on="params" with any aggregator but transference'
        )
    return use


def _check_transference_optimizer(
    aggregator: Aggregator | LossWeighting, optimizer: torch.optim.Optimizer
) -> None:
    """Raise ``ValueError`` when transference would look ahead with an optimizer it cannot
    replay."""
    if (
        isinstance(aggregator, Transference)
        and aggregator.lookahead == "optimizer"
        and not isinstance(optimizer, SUPPORTED)
    ):
        raise ValueError(
            f'transference with lookahead="optimizer" supports SGD, Adam and AdamW, not '
            f'{type(optimizer).__name__}; use get("transference", lookahead="sgd")'
        )


def _check_precision(
    autocast: torch.dtype | None, scaler: torch.amp.GradScaler | None, on: str
) -> torch.amp.GradScaler | None:
    """The loss scaler to use (``None`` also for a disabled one); ``ValueError``/``TypeError``
    naming the argument for an autocast dtype or a scaler the step does not support."""
    if autocast is not None and autocast not in AUTOCAST:
        raise ValueError(
            f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast!r}"
        )
    if scaler is None:
        return None
    if not isinstance(scaler, torch.amp.GradScaler):
        raise TypeError(f"scaler must be a torch.amp.GradScaler, got {type(scaler).__name__}")
    if not scaler.is_enabled():
        return None
    if on == "features":
        raise ValueError('scaler= supports on="params" (the per-task gradients of θ_s)')
    return scaler


class MTLStep:
    """A training step ``step(inputs, targets)`` driven by an aggregator or a loss weighting.

    Args:
        model: maps ``inputs`` to ``{task_name: prediction}``; may be ``torch.compile(model)``.
        tasks: a :class:`~taskgroup.TaskSet`, a list of :class:`~taskgroup.Task` or
            ``{name: loss_fn(prediction, target)}``; its order is the row order of G.
        aggregator: a registered name (built with ``options``) or an instance.
        optimizer: the optimizer of the model's parameters. A loss weighting's own parameters
            (``uw``) are added to it as a new parameter group when missing.
        shared: the shared parameters θ_s (default: a :class:`MultiTaskModel`'s trunk). For a
            compiled model, names are those of the module it wraps (an ``_orig_mod.`` prefix is
            dropped).
        on: ``"params"`` aggregates gradients of θ_s; ``"features"`` aggregates gradients of the
            trunk's output (MGDA-UB; needs a :class:`MultiTaskModel`), then back-propagates the
            aggregated feature gradient through the trunk once.
        batched, chunk_size: how the per-task gradients are computed (see ``task_gradients``);
            ``batched`` is off for a model with compiled modules (their backward cannot be
            vmapped).
        distributed: under an initialised process group (the default ``None`` = whenever one
            is), each rank passes its shard of the global batch; per-task gradients and the
            losses a loss weighting reads are averaged over the ranks, so every rank takes the
            one-process step of the global batch. Not with ``transference`` or
            ``on="features"``.
        autocast: ``torch.bfloat16`` or ``torch.float16``: run the forward and the task losses
            under ``torch.autocast`` in that dtype (``None``: as the caller's context says). The
            rest of the step runs with autocast off; the aggregator gets float32 gradients.
        scaler: a ``torch.amp.GradScaler`` for float16: the losses are scaled for the backward,
            the per-task gradients unscaled before aggregation, and a step with non-finite losses
            or gradients is skipped (``StepResult.skipped``) with the aggregator's state left as
            it was. The step calls ``scaler.step`` and ``scaler.update`` itself. ``on="params"``.
        **options: options of the named aggregator.
    """

    def __init__(
        self,
        model: nn.Module,
        tasks: Tasks,
        aggregator: str | Aggregator | LossWeighting = "mean",
        optimizer: torch.optim.Optimizer | None = None,
        *,
        shared: SharedSpec = None,
        on: str = "params",
        batched: bool = True,
        chunk_size: int | None = None,
        distributed: bool | None = None,
        autocast: torch.dtype | None = None,
        scaler: torch.amp.GradScaler | None = None,
        **options: Any,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if on not in ON:
            raise ValueError(f"on must be one of {', '.join(ON)}, got {on!r}")
        aggregator = _build_aggregator(aggregator, options)
        self.scaler = _check_precision(autocast, scaler, on)
        self.autocast = autocast
        self.module = compiled_original(model)
        if on == "features":
            _check_features(self.module, aggregator)
        self.distributed = _use_distributed(distributed, on, aggregator)
        self.model = model
        self.losses = _loss_functions(tasks)
        self.aggregator = aggregator
        self.optimizer = optimizer
        self.on = on
        self.batched = batched and not has_compiled_modules(model)
        self.chunk_size = chunk_size
        self.shared_names = shared_parameter_names(self.module, _original_names(model, shared))
        named = dict(self.module.named_parameters())
        chosen = set(self.shared_names)
        self.shared_params = [named[n] for n in self.shared_names]
        self.task_params = [p for n, p in named.items() if n not in chosen and p.requires_grad]
        if isinstance(aggregator, LossWeighting):
            reference = self.shared_params[0]
            aggregator.prepare(len(self.losses), device=reference.device, dtype=reference.dtype)
            self._register(aggregator)
        _check_transference_optimizer(aggregator, optimizer)

    def _register(self, weighting: LossWeighting) -> None:
        params = weighting.parameters()
        if not params:
            return
        present = {id(p) for group in self.optimizer.param_groups for p in group["params"]}
        missing = [p for p in params if id(p) not in present]
        if missing:
            group: dict[str, Any] = {"params": missing}
            if getattr(weighting, "lr", None) is not None:
                group["lr"] = weighting.lr
            self.optimizer.add_param_group(group)

    def _precision(self) -> torch.autocast:
        """The autocast context of the forward: the ``autocast`` option, or the caller's."""
        device = self.shared_params[0].device.type
        if self.autocast is not None:
            return torch.autocast(device, dtype=self.autocast)
        enabled = torch.is_autocast_enabled(device)
        return torch.autocast(device, dtype=torch.get_autocast_dtype(device), enabled=enabled)

    def _forward(self, inputs) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        if self.on == "features":
            features = self.module.trunk(inputs)
            return {n: self.module.heads[n](features) for n in self.losses}, features
        return self.model(inputs), None

    def __call__(self, inputs, targets: Mapping[str, torch.Tensor]) -> StepResult:
        """Run one step on a batch; returns the losses before the update, weights and info."""
        names = list(self.losses)
        missing = [n for n in names if n not in targets]
        if missing:
            raise ValueError(f"targets has no entry for task(s) {', '.join(map(repr, missing))}")
        self.optimizer.zero_grad(set_to_none=True)
        rng_state = torch.get_rng_state()
        precision = self._precision()
        with precision:
            outputs, features = self._forward(inputs)
            per_task = task_loss_list(outputs, targets, self.losses)
        # the backward, the aggregation and the optimizer step in full precision
        with torch.autocast(self.shared_params[0].device.type, enabled=False):
            losses = torch.stack(per_task)
            if self.scaler is None:
                check_finite(losses.detach(), names, "the training loss")
            context = self._context(inputs, targets, losses, rng_state)
            if self.scaler is not None:
                result = self._scaled_update(per_task, losses, context)
            else:
                result = self._update(per_task, losses, features, context)
            del per_task, features, context
            losses = losses.detach()  # frees the step's graph before the after-step forward
            # a caller's autocast region caches the low-precision copies of the parameters,
            # which the step has just moved
            torch.clear_autocast_cache()
            aggregator = self.aggregator
            if getattr(aggregator, "wants_losses_after", False) and not result.skipped:
                after = self._losses_after(inputs, targets, rng_state, precision)
                with self._named(names):
                    aggregator.observe(average(after) if self.distributed else after)
        reported = average(losses) if self.distributed else losses
        return StepResult(reported, result.weights, result.info, result.skipped)

    def _context(self, inputs, targets, losses: torch.Tensor, rng_state: torch.Tensor):
        """Transference's lookahead context of this batch (``None`` for other methods)."""
        aggregator = self.aggregator
        if not isinstance(aggregator, Transference):
            return None
        return lookahead_context(
            self.module,
            inputs,
            targets,
            self.losses,
            shared=self.shared_names,
            optimizer=self.optimizer if aggregator.lookahead == "optimizer" else None,
            lr=float(self.optimizer.param_groups[0]["lr"]),
            base_losses=losses.detach(),
            rng_state=rng_state,
        )

    @contextmanager
    def _named(self, names: list[str]) -> Iterator[None]:
        """Turn a :class:`NonFiniteError` that names tasks by row into one naming them by name,
        with ``.grad`` cleared (nothing of the failed step stays for a later optimizer step)."""
        try:
            yield
        except NonFiniteError as e:
            self.optimizer.zero_grad(set_to_none=True)
            tasks = [names[t] if isinstance(t, int) and 0 <= t < len(names) else t for t in e.tasks]
            raise NonFiniteError(e.what, tasks, step=e.step) from None

    def _update(self, per_task, losses, features, context) -> StepResult:
        """Fill ``.grad`` with the aggregator (or loss weighting), then step the optimizer; a
        NaN/inf gradient raises :class:`NonFiniteError` naming the tasks, and no step is made."""
        aggregator = self.aggregator
        with self._named(list(self.losses)):
            if isinstance(aggregator, LossWeighting):
                result = aggregator.backward(
                    per_task, self.shared_params, distributed=self.distributed
                )
            else:
                result = aggregator.backward(
                    per_task,
                    self.shared_params,
                    task_params=self.task_params,
                    features=features,
                    batched=self.batched,
                    chunk_size=self.chunk_size,
                    context=context,
                    distributed=self.distributed,
                )
        self.optimizer.step()
        return StepResult(losses, result.weights, result.info)

    def _scaled_update(self, per_task, losses, context) -> StepResult:
        """:meth:`_update` under the loss scaler: ``.grad`` is filled from the scaled losses (as
        ``scaler.scale(loss).backward()`` would) and unscaled by ``scaler.unscale_``; the
        optimizer steps unless a loss or a gradient is not finite, in which case the aggregator
        was not called (a loss weighting gets its state back), and ``scaler.update()`` adapts
        the scale from the gradients as ``GradScaler`` does."""
        weighting = self.aggregator if isinstance(self.aggregator, LossWeighting) else None
        if weighting is not None:
            state = _state(weighting)
            finite, result = self._scaled_weighting(losses)
        else:
            finite, result = self._scaled_gradients(per_task, losses, context)
        scale = self.scaler.get_scale()
        self.scaler.unscale_(self.optimizer)
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"]]
        skipped = not (finite and all_finite(g for g in grads if g is not None))
        if skipped and weighting is not None:
            _restore(weighting, state)
        elif not skipped:
            if weighting is not None:
                clipped_direction(self.shared_params, weighting.max_norm)
            self.scaler.step(self.optimizer)  # unscaled already: it only steps
        self.scaler.update()
        if skipped:
            return StepResult(losses, None, {"loss_scale": scale}, skipped=True)
        return StepResult(losses, result.weights, {**result.info, "loss_scale": scale})

    def _scaled_gradients(self, per_task, losses, context) -> tuple[bool, Aggregation | None]:
        """``.grad`` from the per-task gradients of the scaled losses: the aggregated direction
        of the unscaled ones, times ``scale`` (so ``unscale_`` recovers it); on an overflow the
        aggregator is not called and ``.grad`` holds their non-finite sum."""
        scaled = [self.scaler.scale(loss) for loss in per_task]
        scale = self.scaler.get_scale()
        G = per_task_gradients(
            scaled,
            self.shared_params,
            batched=self.batched,
            chunk_size=self.chunk_size,
            distributed=self.distributed,
        )
        own = own_task_gradients(
            torch.stack(scaled), self.task_params, distributed=self.distributed
        )
        finite = all_finite([losses.detach(), G, *own])
        result = None
        if finite:
            result = self.aggregator.aggregate(G.div_(scale), context=context)
            direction = result.direction * scale
        else:
            direction = G.sum(dim=0)
        accumulate_grads(self.task_params, own)
        accumulate_grads(self.shared_params, unflatten(direction, self.shared_params))
        return finite, result

    def _scaled_weighting(self, losses) -> tuple[bool, Aggregation | None]:
        """``.grad`` from the scaled objective of the loss weighting. With non-finite losses
        (nothing to weigh: an overflow) the scaled sum of the losses is back-propagated, which
        ``scaler.update()`` reads."""
        if not all_finite([losses.detach()]):
            backpropagate(self.scaler.scale(losses.sum()), distributed=self.distributed)
            return False, None
        values = global_values(losses) if self.distributed else losses
        objective, weights = self.aggregator.weigh(values)
        backpropagate(self.scaler.scale(objective), distributed=self.distributed)
        return True, Aggregation(torch.zeros(0), weights, {"objective": float(objective.detach())})

    def _losses_after(
        self, inputs, targets, rng_state: torch.Tensor, precision: AbstractContextManager
    ) -> torch.Tensor:
        """The losses on the same batch at the updated parameters, with the same dropout masks
        and precision as the step's forward, without touching the model's buffers or the RNG
        stream."""
        params = dict(self.module.named_parameters())
        buffers = {n: b.clone() for n, b in self.module.named_buffers()}
        with torch.no_grad(), torch.random.fork_rng(devices=[]), precision:
            torch.set_rng_state(rng_state)
            outputs = functional_call(self.module, (params, buffers), (inputs,))
            return stack_task_losses(outputs, targets, self.losses)


def _state(weighting: LossWeighting) -> dict[str, Any]:
    """A copy of the loss weighting's state (its learnable parameters excepted: the optimizer,
    which a skipped step does not call, owns them)."""
    memo = {id(p): p for p in weighting.parameters()}
    return copy.deepcopy(vars(weighting), memo)


def _restore(weighting: LossWeighting, state: dict[str, Any]) -> None:
    vars(weighting).clear()
    vars(weighting).update(state)
