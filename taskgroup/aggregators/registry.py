"""The registry of multi-task update rules: every method by name, built with checked options.

A new method is one module plus one line in the table below. ``transference`` registers itself
with :func:`register` in its own module: it builds its candidate aggregators through :func:`get`,
so this module cannot import it (that would be an import cycle).
"""

from __future__ import annotations

import inspect
from typing import Any, TypeVar

from taskgroup.aggregators.aligned_mtl import AlignedMTL
from taskgroup.aggregators.base import Aggregator, LossWeighting
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
from taskgroup.aggregators.uw import UncertaintyWeighting

Method = TypeVar("Method", type[Aggregator], type[LossWeighting])

_REGISTRY: dict[str, type[Aggregator] | type[LossWeighting]] = {}


def register(cls: Method) -> Method:
    """Add the method class ``cls`` under ``cls.name`` (usable as a class decorator)."""
    if not cls.name or cls.name in _REGISTRY:
        raise ValueError(f"cannot register {cls.__name__} under the name {cls.name!r}")
    _REGISTRY[cls.name] = cls
    return cls


for _method in (
    Mean,
    MGDA,
    PCGrad,
    CAGrad,
    IMTLG,
    AlignedMTL,
    GradDrop,
    NashMTL,
    FairGrad,
    UncertaintyWeighting,
    DynamicWeightAverage,
    RandomLossWeighting,
    FAMO,
):
    register(_method)


def names() -> list[str]:
    """Registered names: the gradient aggregators, then the loss weightings."""
    return sorted(_REGISTRY, key=lambda name: _REGISTRY[name].kind != "gradient")


def _cls(name: str) -> type[Aggregator] | type[LossWeighting]:
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"unknown aggregator {name!r}; choose one of {', '.join(names())}")
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
    records = []
    for name in names():
        cls = _REGISTRY[name]
        records.append(
            {
                "name": name,
                "kind": cls.kind,
                "summary": cls.summary,
                "reference": cls.reference,
                "options": options(name),
            }
        )
    return records
