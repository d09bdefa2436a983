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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from taskgroup.affinity.lookahead import check_finite, stack_task_losses, task_loss_list
from taskgroup.affinity.optimizer_step import SUPPORTED
from taskgroup.aggregators.base import Aggregator, LossWeighting
from taskgroup.aggregators.registry import get
from taskgroup.aggregators.transference import Transference, lookahead_context
from taskgroup.distributed import active, average
from taskgroup.models import MultiTaskModel, SharedSpec, shared_parameter_names
from taskgroup.tasks import Task, TaskSet

ON = ("params", "features")
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Tasks = TaskSet | Iterable[Task] | Mapping[str, LossFn]


@dataclass(frozen=True)
class StepResult:
    """One step: the task ``losses`` ``[k]`` before the update (detached), the task ``weights``
    the method used (``None`` where it defines none) and its ``info``."""

    losses: torch.Tensor
    weights: torch.Tensor | None
    info: Mapping[str, Any] = field(default_factory=dict)


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


class MTLStep:
    """A training step ``step(inputs, targets)`` driven by an aggregator or a loss weighting.

    Args:
        model: maps ``inputs`` to ``{task_name: prediction}``.
        tasks: a :class:`~taskgroup.TaskSet`, a list of :class:`~taskgroup.Task` or
            ``{name: loss_fn(prediction, target)}``; its order is the row order of G.
        aggregator: a registered name (built with ``options``) or an instance.
        optimizer: the optimizer of the model's parameters. A loss weighting's own parameters
            (``uw``) are added to it as a new parameter group when missing.
        shared: the shared parameters θ_s (default: a :class:`MultiTaskModel`'s trunk).
        on: ``"params"`` aggregates gradients of θ_s; ``"features"`` aggregates gradients of the
            trunk's output (MGDA-UB; needs a :class:`MultiTaskModel`), then back-propagates the
            aggregated feature gradient through the trunk once.
        batched, chunk_size: how the per-task gradients are computed (see ``task_gradients``).
        distributed: under an initialised process group (the default ``None`` = whenever one
            is), each rank passes its shard of the global batch; per-task gradients and the
            losses a loss weighting reads are averaged over the ranks, so every rank takes the
            one-process step of the global batch. Not with ``transference`` or
            ``on="features"``.
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
        **options: Any,
    ) -> None:
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(
                f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
            )
        if on not in ON:
            raise ValueError(f"on must be one of {', '.join(ON)}, got {on!r}")
        aggregator = _build_aggregator(aggregator, options)
        if on == "features":
            _check_features(model, aggregator)
        self.distributed = _use_distributed(distributed, on, aggregator)
        self.model = model
        self.losses = _loss_functions(tasks)
        self.aggregator = aggregator
        self.optimizer = optimizer
        self.on = on
        self.batched = batched
        self.chunk_size = chunk_size
        self.shared_names = shared_parameter_names(model, shared)
        named = dict(model.named_parameters())
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

    def _forward(self, inputs) -> tuple[dict[str, torch.Tensor], torch.Tensor | None]:
        if self.on == "features":
            features = self.model.trunk(inputs)
            return {n: self.model.heads[n](features) for n in self.losses}, features
        return self.model(inputs), None

    def __call__(self, inputs, targets: Mapping[str, torch.Tensor]) -> StepResult:
        """Run one step on a batch; returns the losses before the update, weights and info."""
        names = list(self.losses)
        missing = [n for n in names if n not in targets]
        if missing:
            raise ValueError(f"targets has no entry for task(s) {', '.join(map(repr, missing))}")
        self.optimizer.zero_grad(set_to_none=True)
        rng_state = torch.get_rng_state()
        outputs, features = self._forward(inputs)
        per_task = task_loss_list(outputs, targets, self.losses)
        losses = torch.stack(per_task)
        check_finite(losses.detach(), names, "the training loss")
        aggregator = self.aggregator
        if isinstance(aggregator, LossWeighting):
            result = aggregator.backward(losses, self.shared_params, distributed=self.distributed)
        else:
            context = None
            if isinstance(aggregator, Transference):
                optimizer = self.optimizer if aggregator.lookahead == "optimizer" else None
                context = lookahead_context(
                    self.model,
                    inputs,
                    targets,
                    self.losses,
                    shared=self.shared_names,
                    optimizer=optimizer,
                    lr=float(self.optimizer.param_groups[0]["lr"]),
                    base_losses=losses.detach(),
                    rng_state=rng_state,
                )
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
        if isinstance(aggregator, LossWeighting) and aggregator.wants_losses_after:
            after = self._losses_after(inputs, targets, rng_state)
            aggregator.observe(average(after) if self.distributed else after)
        reported = average(losses.detach()) if self.distributed else losses.detach()
        return StepResult(reported, result.weights, result.info)

    def _losses_after(self, inputs, targets, rng_state: torch.Tensor) -> torch.Tensor:
        """The losses on the same batch at the updated parameters, with the same dropout masks
        and without touching the model's buffers or the RNG stream."""
        params = dict(self.model.named_parameters())
        buffers = {n: b.clone() for n, b in self.model.named_buffers()}
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            torch.set_rng_state(rng_state)
            outputs = functional_call(self.model, (params, buffers), (inputs,))
            return stack_task_losses(outputs, targets, self.losses)
