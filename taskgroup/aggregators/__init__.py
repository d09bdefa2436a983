"""Multi-task update rules behind one registry: gradient aggregators and loss weightings.

::

    import taskgroup as tg

    agg = tg.aggregators.get("nash_mtl")      # or get("cagrad", c=0.5)
    d = agg(G)                                # G: [k, d] per-task gradients -> direction [d]
    w = agg.weights(G)                        # -> [k] task weights, d = Gᵀw
    tg.aggregators.names()                    # every registered name

    step = tg.MTLStep(model, tasks, "nash_mtl", optimizer)   # a whole training step
    agg.backward(losses, shared_params)                      # or only fill .grad

A NaN/inf loss or gradient raises :class:`NonFiniteError` (a ``ValueError`` naming the tasks)
before anything reaches ``.grad`` or the parameters; under a ``GradScaler`` the step is skipped.

See docs/aggregators.md for every method's definition and reference. The registry lives in
:mod:`taskgroup.aggregators.registry`, the contract in :mod:`~taskgroup.aggregators.base`, the
backward plumbing of a training step in :mod:`~taskgroup.aggregators.backward`.
"""

from __future__ import annotations

from taskgroup.affinity.lookahead import NonFiniteError
from taskgroup.aggregators.aligned_mtl import AlignedMTL
from taskgroup.aggregators.base import Aggregation, Aggregator, GramianAggregator, LossWeighting
from taskgroup.aggregators.cagrad import CAGrad
from taskgroup.aggregators.dwa import DynamicWeightAverage
from taskgroup.aggregators.fairgrad import FairGrad
from taskgroup.aggregators.famo import FAMO
from taskgroup.aggregators.graddrop import GradDrop
from taskgroup.aggregators.imtl_g import IMTLG
from taskgroup.aggregators.mean import Mean
from taskgroup.aggregators.mgda import MGDA
from taskgroup.aggregators.nash_mtl import NashMTL
from taskgroup.aggregators.pcgrad import PCGrad
from taskgroup.aggregators.registry import describe, get, names, options
from taskgroup.aggregators.rlw import RandomLossWeighting
from taskgroup.aggregators.step import MTLStep, StepResult
from taskgroup.aggregators.transference import (
    Transference,
    TransferenceContext,
    lookahead_context,
)
from taskgroup.aggregators.uw import UncertaintyWeighting

__all__ = [
    "FAMO",
    "IMTLG",
    "MGDA",
    "Aggregation",
    "Aggregator",
    "AlignedMTL",
    "CAGrad",
    "DynamicWeightAverage",
    "FairGrad",
    "GradDrop",
    "GramianAggregator",
    "LossWeighting",
    "MTLStep",
    "Mean",
    "NashMTL",
    "NonFiniteError",
    "PCGrad",
    "RandomLossWeighting",
    "StepResult",
    "Transference",
    "TransferenceContext",
    "UncertaintyWeighting",
    "describe",
    "get",
    "lookahead_context",
    "names",
    "options",
]
