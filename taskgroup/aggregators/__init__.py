"""Multi-task update rules behind one registry: gradient aggregators and loss weightings.

::

    import taskgroup as tg

    agg = tg.aggregators.get("nash_mtl")      # or get("cagrad", c=0.5)
    d = agg(G)                                # G: [k, d] per-task gradients -> direction [d]
    w = agg.weights(G)                        # -> [k] task weights, d = Gᵀw
    tg.aggregators.names()                    # every registered name

    step = tg.MTLStep(model, tasks, "nash_mtl", optimizer)   # a whole training step
    agg.backward(losses, shared_params)                      # or only fill .grad

See docs/aggregators.md for every method's definition and reference.
"""

from __future__ import annotations

import inspect
from typing import Any

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
from taskgroup.aggregators.rlw import RandomLossWeighting
from taskgroup.aggregators.transference import Lookahead, Transference, lookahead_context
from taskgroup.aggregators.uw import UncertaintyWeighting

_REGISTRY: dict[str, type[Aggregator] | type[LossWeighting]] = {
    cls.name: cls
    for cls in (
        Mean,
        MGDA,
        PCGrad,
        CAGrad,
        IMTLG,
        AlignedMTL,
        GradDrop,
        NashMTL,
        FairGrad,
        Transference,
        UncertaintyWeighting,
        DynamicWeightAverage,
        RandomLossWeighting,
        FAMO,
    )
}


def names() -> list[str]:
    """Registered names: the gradient aggregators, then the loss weightings."""
    return list(_REGISTRY)


def _cls(name: str):
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown aggregator {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def options(name: str) -> dict[str, Any]:
    """The keyword options of aggregator ``name`` with their defaults (an ``__init__`` that
    passes ``**options`` on to its base class offers the base class's options too)."""
    found: dict[str, Any] = {}
    for cls in _cls(name).__mro__:
        if "__init__" not in vars(cls):
            continue
        parameters = inspect.signature(cls.__init__).parameters.values()
        for p in parameters:
            if p.kind is inspect.Parameter.KEYWORD_ONLY:
                found.setdefault(p.name, p.default)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return found


def get(name: str, **opts: Any) -> Aggregator | LossWeighting:
    """A fresh aggregator (or loss weighting) ``name`` built with its keyword ``opts``.

    Raises ``ValueError`` for an unknown name (listing the valid ones), an unknown option (listing
    the method's options) or an option out of range (naming it).
    """
    cls = _cls(name)
    valid = options(name)
    unknown = [key for key in opts if key not in valid]
    if unknown:
        raise ValueError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for aggregator {name!r}; its "
            f"options are: {', '.join(valid)}"
        )
    return cls(**opts)


def describe() -> list[dict[str, Any]]:
    """One record per registered method: name, kind, summary, reference and options."""
    return [
        {
            "name": name,
            "kind": cls.kind,
            "summary": cls.summary,
            "reference": cls.reference,
            "options": options(name),
        }
        for name, cls in _REGISTRY.items()
    ]


from taskgroup.aggregators.step import MTLStep, StepResult  # noqa: E402  (uses the registry)

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
    "Lookahead",
    "LossWeighting",
    "MTLStep",
    "Mean",
    "NashMTL",
    "PCGrad",
    "RandomLossWeighting",
    "StepResult",
    "Transference",
    "UncertaintyWeighting",
    "describe",
    "get",
    "lookahead_context",
    "names",
    "options",
]
