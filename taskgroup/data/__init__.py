"""Benchmarks: one :class:`Benchmark` type and one registry of named benchmarks."""

from __future__ import annotations

from collections.abc import Callable

from taskgroup.data import celeba, multidigits, nyuv2, planted, qm9
from taskgroup.data.benchmark import Benchmark, Split, TrainingDefaults, make_optimizer

_REGISTRY: dict[str, Callable[..., Benchmark]] = {
    "multidigits": multidigits.load,
    "planted": planted.load,
    "qm9": qm9.load,
    "celeba": celeba.load,
    "nyuv2": nyuv2.load,
}


def names() -> list[str]:
    """Registered benchmark names."""
    return list(_REGISTRY)


def loader(name: str) -> Callable[..., Benchmark]:
    """The loader function of benchmark ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(_REGISTRY)}")
    return _REGISTRY[name]


def get(name: str, **options) -> Benchmark:
    """Build the benchmark ``name`` with its loader's keyword ``options`` (e.g. ``seed=0``)."""
    return loader(name)(**options)


__all__ = ["Benchmark", "Split", "TrainingDefaults", "get", "loader", "make_optimizer", "names"]
