"""``AffinityCallback``: lookahead affinity measured inside a PyTorch Lightning ``Trainer.fit``.

::

    from taskgroup.integrations.lightning import AffinityCallback

    callback = AffinityCallback(shared="model.trunk", every=10)
    lightning.Trainer(max_steps=1000, callbacks=[callback]).fit(module, loader)
    affinity = callback.result()              # a tg.AffinityMatrix

What the ``LightningModule`` offers (docs/integrations.md):

- ``forward(inputs)`` returns ``{task_name: prediction}``: the module itself is the model the
  lookahead evaluates (its parameter names are the module's, e.g. ``model.trunk.0.weight``);
- ``losses``: ``{task_name: loss_fn(prediction, target)}``, a mean-reduced scalar per task (or
  pass ``losses=`` to the callback); their order is the matrix's row/column order;
- a training batch ``(inputs, {task_name: target})`` (or pass ``split_batch=``);
- one optimizer from ``configure_optimizers`` (SGD, Adam or AdamW for the default
  ``lookahead="optimizer"``, which replays its step from its current state).

At every ``every``-th training batch (the first included), before Lightning's training step, the
callback runs :class:`~taskgroup.AffinityTracker` on the batch; parameters, buffers, the
optimizer's state and the RNG stream are left as they were, so training is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from taskgroup.affinity.lookahead import LOOKAHEADS, Lookahead, LossFns
from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.affinity.tracker import AffinityTracker
from taskgroup.models import MultiTaskModel, SharedSpec

try:
    import lightning.pytorch as pl
except ImportError as error:  # the optional extra
    raise ImportError(
        "taskgroup.integrations.lightning needs the `lightning` package: "
        'pip install "taskgroup[lightning]"'
    ) from error

Batch = tuple[Any, Mapping[str, torch.Tensor]]


def default_split(batch: Any) -> Batch:
    """``(inputs, targets)`` of a training batch that is such a pair."""
    if isinstance(batch, tuple | list) and len(batch) == 2 and isinstance(batch[1], Mapping):
        return batch[0], batch[1]
    raise ValueError(
        "AffinityCallback expects training batches (inputs, {task_name: target}); pass "
        "split_batch=function(batch) -> (inputs, targets) for another layout"
    )


def shared_of(module: nn.Module, shared: SharedSpec | str) -> SharedSpec:
    """The shared-parameter spec of ``module``: a submodule path (``"model.trunk"``) becomes the
    submodule, ``None`` the trunk of the one :class:`~taskgroup.MultiTaskModel` inside it; other
    specs (names, a predicate, a module) are kept."""
    if isinstance(shared, str):
        try:
            return module.get_submodule(shared)
        except AttributeError as error:
            raise ValueError(f"shared={shared!r} is not a submodule of the module") from error
    if shared is not None:
        return shared
    models = [m for m in module.modules() if isinstance(m, MultiTaskModel)]
    if len(models) != 1:
        raise ValueError(
            f"shared=None needs exactly one MultiTaskModel inside the LightningModule (found "
            f"{len(models)}); name the shared parameters with shared= (a submodule path such "
            f"as 'model.trunk', parameter names or a predicate)"
        )
    return models[0].trunk


class AffinityCallback(pl.Callback):
    """Measure lookahead affinity during ``Trainer.fit``; :meth:`result` is the mean matrix.

    Args:
        shared: θ_s, the shared parameters: a submodule path of the LightningModule
            (``"model.trunk"``), parameter names, a predicate on names, or ``None`` for the
            trunk of the one :class:`~taskgroup.MultiTaskModel` the module holds.
        losses: ``{task_name: loss_fn}``; ``None`` reads the module's ``losses`` attribute.
        every: measure every ``every`` training batches (>= 1), counted from the first batch
            of the fit.
        lookahead, lr: as in :func:`~taskgroup.lookahead_affinity`; by default the step of the
            module's optimizer (``trainer.optimizers``, which must then hold exactly one).
        split_batch: ``batch -> (inputs, targets)`` for batches that are not that pair.
        **lookahead_options: ``vectorize``, ``batched_grads``, ``chunk_size``, ``compile_step``,
            ``distributed`` (under DDP every rank measures on its shard and the gradients and
            losses are averaged, as in the tracker).

    Each ``fit`` starts a new measurement. The matrices are not saved in Lightning checkpoints.
    """

    def __init__(
        self,
        *,
        shared: SharedSpec | str = None,
        losses: LossFns | None = None,
        every: int = 1,
        lookahead: Lookahead | None = None,
        lr: float | None = None,
        split_batch: Callable[[Any], Batch] = default_split,
        **lookahead_options: Any,
    ) -> None:
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        if lookahead is not None and lookahead not in LOOKAHEADS:
            raise ValueError(f"lookahead must be one of {', '.join(LOOKAHEADS)}, got {lookahead!r}")
        if not callable(split_batch):
            raise TypeError("split_batch must be a function batch -> (inputs, targets)")
        self.shared, self.losses, self.every = shared, losses, every
        self.lookahead, self.lr, self.split_batch = lookahead, lr, split_batch
        self.options = lookahead_options
        self.tracker: AffinityTracker | None = None

    def _losses(self, module: nn.Module) -> LossFns:
        losses = self.losses if self.losses is not None else getattr(module, "losses", None)
        if not isinstance(losses, Mapping) or not losses:
            raise ValueError(
                "AffinityCallback reads the task losses from the LightningModule's `losses` "
                "attribute ({task_name: loss_fn}); set it, or pass losses= to the callback"
            )
        return losses

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        optimizers = list(trainer.optimizers)
        optimizer = optimizers[0] if len(optimizers) == 1 else None
        if optimizer is None and self.lookahead in (None, "optimizer"):
            raise ValueError(
                f"the optimizer lookahead replays one optimizer; the module configured "
                f"{len(optimizers)}: pass lookahead='sgd' and lr= to the callback"
            )
        self.tracker = AffinityTracker(
            pl_module,
            self._losses(pl_module),
            shared=shared_of(pl_module, self.shared),
            optimizer=optimizer,
            lr=self.lr,
            lookahead=self.lookahead,
            every=self.every,
            **self.options,
        )

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        inputs, targets = self.split_batch(batch)
        self.tracker.step(inputs, targets)

    def result(self, **metadata: Any) -> AffinityMatrix:
        """The mean of the measured matrices with per-step traces
        (:meth:`AffinityTracker.result`)."""
        if self.tracker is None:
            raise ValueError("no affinity measured yet: pass the callback to Trainer.fit first")
        return self.tracker.result(**metadata)
