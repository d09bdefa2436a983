"""AffinityTracker: measure lookahead affinity inside any training loop."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from taskgroup.affinity.lookahead import Lookahead, LossFns, NonFiniteError
from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.affinity.scalable import SignalMeasurer, resolve_signal
from taskgroup.models import SharedSpec, shared_parameter_names


class AffinityTracker:
    """A thin stateful shell around :func:`~taskgroup.lookahead_affinity` for users' own loops.

    Call :meth:`step` once per training step with that step's batch, *before*
    ``optimizer.step()``; every ``every``-th call (the first included) measures the lookahead
    affinity on the batch. :meth:`result` returns the mean matrix with per-step traces::

        tracker = tg.AffinityTracker(model, losses, optimizer=opt, every=10)
        for x, y in loader:
            tracker.step(x, y)
            opt.zero_grad(); sum_of_losses(model(x), y).backward(); opt.step()
        affinity = tracker.result()

    Args:
        model, losses, shared, lr, lookahead, optimizer: as in :func:`lookahead_affinity`; the
            lookahead is resolved once, here (:func:`~taskgroup.affinity.resolve_lookahead`), and
            kept as :attr:`lookahead`.
        every: measure every ``every`` steps (>= 1).
        **lookahead_options: ``distributed``, ``vectorize``, ``batched_grads``, ``chunk_size``,
            ``memory_budget``, ``compile_step``; for the scalable signals (``lookahead=`` one of
            :data:`~taskgroup.affinity.scalable.SCALABLE`) ``sketch_dim``, ``sketch``,
            ``sources`` and ``seed`` (see :class:`~taskgroup.affinity.scalable.SignalMeasurer`).
    """

    def __init__(
        self,
        model: nn.Module,
        losses: LossFns,
        *,
        shared: SharedSpec = None,
        optimizer: torch.optim.Optimizer | None = None,
        lr: float | None = None,
        lookahead: Lookahead | None = None,
        every: int = 1,
        **lookahead_options: Any,
    ):
        if not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.model, self.losses, self.every = model, dict(losses), every
        self.lookahead = resolve_signal(lookahead, optimizer)
        # resolved once: a model that needs shared= fails here, not at the first step()
        self.shared = shared_parameter_names(model, shared)
        self.options = dict(shared=self.shared, optimizer=optimizer, lr=lr)
        self._measure = SignalMeasurer(self.lookahead, len(self.losses), **lookahead_options)
        self.steps_seen = 0
        self._steps: list[int] = []
        self._lrs: list[float] = []
        self._matrices: list[np.ndarray] = []

    def step(self, inputs, targets: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        """Count one training step; measure on this batch when it is due.

        Returns the step's ``[n, n]`` affinity when measured, else ``None``.
        """
        step = self.steps_seen
        self.steps_seen += 1
        if step % self.every:
            return None
        try:
            measured = self._measure(self.model, inputs, targets, self.losses, **self.options)
        except NonFiniteError as e:  # name the step: the measurement itself cannot know it
            raise e.at_step(step) from None
        self._steps.append(step)
        self._lrs.append(measured.lr)
        self._matrices.append(measured.affinity.cpu().numpy())
        return measured.affinity

    @property
    def measurements(self) -> int:
        return len(self._matrices)

    def result(self, **metadata: Any) -> AffinityMatrix:
        """Mean of the measured matrices, with traces, steps, lrs and ``metadata``."""
        if not self._matrices:
            raise ValueError("no affinity measured yet: call step() at least once")
        trace = np.stack(self._matrices)
        return AffinityMatrix(
            trace.mean(axis=0),
            list(self.losses),
            trace=trace,
            trace_steps=self._steps,
            trace_lr=self._lrs,
            **{"lookahead": self.lookahead, "every": self.every, **metadata},
        )
