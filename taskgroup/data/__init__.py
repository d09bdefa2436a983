"""Benchmarks: one :class:`Benchmark` type and one registry of named benchmarks (the built-ins
and installed plugins of the entry-point group ``taskgroup.benchmarks``, see
:mod:`taskgroup.data.registry`)."""

from __future__ import annotations

from taskgroup.data.benchmark import Benchmark, Split, TrainingDefaults, make_optimizer
from taskgroup.data.fingerprint import data_fingerprint
from taskgroup.data.registry import (
    ENTRY_POINT_GROUP,
    get,
    is_plugin,
    loader,
    names,
    plugins,
    resolve_factory,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "Benchmark",
    "Split",
    "TrainingDefaults",
    "data_fingerprint",
    "get",
    "is_plugin",
    "loader",
    "make_optimizer",
    "names",
    "plugins",
    "resolve_factory",
]
