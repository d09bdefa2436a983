"""The settings of each stage: one frozen, typed dataclass per stage, the only home of a default.

:class:`AffinitySettings` (the co-training run that measures the affinity), :class:`GroupSettings`
(the selection of groups) and :class:`TrainSettings` (the training of each network) are what a
recipe's ``[affinity]``, ``[group]`` and ``[train]`` tables parse into, what the command line
overrides (``dataclasses.replace(recipe.train, steps=...)``) and what the library functions take.
Each field declares what it accepts, in the manner of scikit-learn's parameter constraints, and
an instance checks itself once, when it is made: a bad value raises :class:`SettingError` naming
the key before any stage runs or writes. The command line's help shows these defaults.

A schedule field whose default is ``None`` (``steps``, ``lr``, ...) means *the benchmark's own*
(:class:`~taskgroup.data.TrainingDefaults`); :meth:`AffinitySettings.resolve` and
:meth:`TrainSettings.resolve` fill them in for one benchmark.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

from taskgroup.affinity.scalable import SIGNALS
from taskgroup.aggregators import registry as aggregators
from taskgroup.data.benchmark import OPTIMIZERS, Benchmark, TrainingDefaults
from taskgroup.grouping.select import METHODS

NORMALIZE = ("source",)  # AffinityMatrix.relative(); unset: the matrix as measured
BENCHMARK_DEFAULT = "the benchmark's"


class SettingError(ValueError):
    """A setting out of its declared range: ``key`` (a recipe key) and the ``problem``
    ("must be a positive integer, got 0"); callers name the key as their user knows it
    (``--steps``, ``recipe.toml: [train] steps``) with :meth:`named`."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem

    def named(self, name: str) -> SettingError:
        """The same error with the key called ``name``."""
        error = SettingError(self.key, self.problem)
        error.args = (f"{name} {self.problem}",)
        return error


@dataclass(frozen=True)
class Accepts:
    """What one setting accepts: a predicate and the phrase an error shows (``"a positive
    integer"``). ``optional``: ``None`` is accepted too (it then means the field's ``unset``)."""

    test: Callable[[Any], bool]
    expected: str
    optional: bool = False

    def __call__(self, value: Any) -> bool:
        return (self.optional and value is None) or self.test(value)

    def or_unset(self) -> Accepts:
        return dataclasses.replace(self, optional=True)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


POSITIVE_INT = Accepts(lambda v: _integer(v) and v >= 1, "a positive integer")
NON_NEGATIVE_INT = Accepts(lambda v: _integer(v) and v >= 0, "a non-negative integer")
POSITIVE = Accepts(lambda v: _number(v) and v > 0, "a positive number")
NON_NEGATIVE = Accepts(lambda v: _number(v) and v >= 0, "a non-negative number")
NUMBER = Accepts(_number, "a finite number")
BOOLEAN = Accepts(lambda v: isinstance(v, bool), "true or false")
MAPPING = Accepts(lambda v: isinstance(v, Mapping), "a table of options")


def one_of(values: tuple[str, ...] | Callable[[], list[str]]) -> Accepts:
    """A name among ``values`` (a tuple, or a function returning the registered names)."""
    listed = values if callable(values) else lambda: list(values)
    return Accepts(lambda v: isinstance(v, str) and v in listed(), f"one of {', '.join(listed())}")


def setting(default: Any, accepts: Accepts, help: str, unset: str | None = None) -> Any:
    """A dataclass field with its constraint and its help text; ``unset`` says what a ``None``
    default means (e.g. "the benchmark's")."""
    metadata = {"accepts": accepts, "help": help, "unset": unset}
    if isinstance(default, Mapping):
        return field(default_factory=lambda: dict(default), metadata=metadata)
    return field(default=default, metadata=metadata)


class Settings:
    """Base of the stage settings: checks every field once, when an instance is made."""

    table: ClassVar[str]  # the recipe table the settings come from

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            accepts: Accepts = f.metadata["accepts"]
            if not accepts(value):
                unset = " or unset" if accepts.optional else ""
                raise SettingError(f.name, f"must be {accepts.expected}{unset}, got {value!r}")
        self.check_together()

    def check_together(self) -> None:
        """Constraints between fields (none by default)."""

    @classmethod
    def from_table(cls, table: Mapping[str, Any], source: str) -> Settings:
        """Settings from a recipe table; errors name ``source``, the table and the key."""
        known = [f.name for f in dataclasses.fields(cls)]
        where = f"{source}: [{cls.table}]"
        if not isinstance(table, Mapping):
            raise ValueError(f"{where} must be a table")
        unknown = sorted(set(table) - set(known))
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {unknown}; known: {sorted(known)}")
        try:
            return cls(**table)
        except SettingError as e:
            raise e.named(f"{where} {e.key}") from None

    @classmethod
    def help(cls, name: str) -> str:
        """The help text of field ``name`` with its default, for the command line."""
        f = next(f for f in dataclasses.fields(cls) if f.name == name)
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = f.metadata["unset"] if default is None and f.metadata["unset"] else default
        return f"{f.metadata['help']} [default: {_plain(shown)}]"

    def to_dict(self) -> dict[str, Any]:
        """Every field, as JSON-ready values."""
        return {
            f.name: dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v
            for f in dataclasses.fields(self)
        }


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, Mapping):
        return "{}" if not value else str(dict(value))
    return "unset" if value is None else str(value)


def _benchmark_fields(settings: Settings, defaults: TrainingDefaults, names: tuple[str, ...]):
    """``settings`` with its unset schedule fields ``names`` taken from ``defaults``."""
    fill = {name: getattr(defaults, name) for name in names if getattr(settings, name) is None}
    return dataclasses.replace(settings, **fill)


@dataclass(frozen=True)
class AffinitySettings(Settings):
    """How the co-training run of all tasks measures their affinity (a recipe's ``[affinity]``)."""

    table: ClassVar[str] = "affinity"

    lookahead: str = setting(
        "optimizer",
        one_of(SIGNALS),
        "the affinity signal: the lookahead with the run's optimizer step (TAG), sgd, "
        "first_order, or the gradient cosine; for many tasks or wide trunks representation, "
        "sketch or sampled (docs/concepts.md)",
    )
    steps: int | None = setting(
        None, POSITIVE_INT.or_unset(), "co-training steps", BENCHMARK_DEFAULT
    )
    every: int | None = setting(
        None, POSITIVE_INT.or_unset(), "measure every K steps", BENCHMARK_DEFAULT
    )
    optimizer: str | None = setting(
        None, one_of(tuple(OPTIMIZERS)).or_unset(), "optimizer of the run", BENCHMARK_DEFAULT
    )
    lr: float | None = setting(None, POSITIVE.or_unset(), "learning rate", BENCHMARK_DEFAULT)
    batch_size: int | None = setting(
        None, POSITIVE_INT.or_unset(), "rows per batch", BENCHMARK_DEFAULT
    )

    def resolve(self, defaults: TrainingDefaults) -> AffinitySettings:
        """Every unset schedule field from a benchmark's ``defaults``."""
        return _benchmark_fields(
            self, defaults, ("steps", "every", "optimizer", "lr", "batch_size")
        )


@dataclass(frozen=True)
class GroupSettings(Settings):
    """How groups are selected from the affinity (a recipe's ``[group]``)."""

    table: ClassVar[str] = "group"

    budget: int = setting(2, POSITIVE_INT, "the most groups (networks to train)")
    method: str = setting("auto", one_of(METHODS), "the selection method")
    partition: bool = setting(False, BOOLEAN, "only disjoint groups")
    singleton_score: float | None = setting(
        None,
        NUMBER.or_unset(),
        "value of a task trained alone",
        "a singleton serves no task",
    )
    time_limit: float | None = setting(
        None, POSITIVE.or_unset(), "seconds per solve", "the method's own"
    )
    sweep: bool = setting(
        False, BOOLEAN, "solve every budget 1..n and draw the score-vs-budget curve"
    )
    normalize: str | None = setting(
        None,
        one_of(NORMALIZE).or_unset(),
        "source: select from Z[i, j] / Z[i, i] (each source's step size out)",
        "the matrix as measured",
    )

    def check_budget(self, tasks: int) -> None:
        """``SettingError`` unless the budget lies in 1..``tasks``."""
        if self.budget > tasks:
            raise SettingError(
                "budget", f"must lie in 1..{tasks} (the number of tasks), got {self.budget}"
            )


SCHEDULE = ("optimizer", "lr", "weight_decay", "batch_size", "steps")
INIT_STRIDE = 1000  # initialisation k of a network trains with seed + INIT_STRIDE * k


@dataclass(frozen=True)
class TrainSettings(Settings):
    """How every network of a grouped run is trained (a recipe's ``[train]``).

    ``workers``, ``baselines`` and ``seeds`` say how the grouped run is scheduled; they do not
    change a network, so :meth:`network` leaves them out of what identifies one. With
    ``seeds = K`` every network is trained K times, initialisation k with the seed
    ``seed + INIT_STRIDE * k`` (:meth:`initialisation`), the convention of the ground truth in
    ``analysis/``.
    """

    table: ClassVar[str] = "train"

    aggregator: str = setting(
        "mean",
        one_of(aggregators.names),
        "aggregator or loss weighting of the groups (taskgroup aggregators)",
    )
    options: Mapping[str, Any] = setting(
        {}, MAPPING, "the aggregator's options, e.g. {c = 0.4} for cagrad"
    )
    optimizer: str | None = setting(
        None, one_of(tuple(OPTIMIZERS)).or_unset(), "optimizer", BENCHMARK_DEFAULT
    )
    lr: float | None = setting(None, POSITIVE.or_unset(), "learning rate", BENCHMARK_DEFAULT)
    weight_decay: float | None = setting(
        None, NON_NEGATIVE.or_unset(), "weight decay", BENCHMARK_DEFAULT
    )
    batch_size: int | None = setting(
        None, POSITIVE_INT.or_unset(), "rows per batch", BENCHMARK_DEFAULT
    )
    steps: int | None = setting(
        None, POSITIVE_INT.or_unset(), "most training steps per network", BENCHMARK_DEFAULT
    )
    eval_every: int = setting(50, POSITIVE_INT, "steps between validations and checkpoints")
    patience: int | None = setting(
        None,
        POSITIVE_INT.or_unset(),
        "stop after this many validations without improvement",
        "never stop early",
    )
    seed: int = setting(0, NON_NEGATIVE_INT, "seed of every network's initialisation and batches")
    log_every: int = setting(10, POSITIVE_INT, "steps between logged losses and weights")
    workers: int = setting(1, POSITIVE_INT, "networks trained in parallel")
    baselines: bool = setting(True, BOOLEAN, "also train each task alone and all together")
    seeds: int = setting(
        1,
        POSITIVE_INT,
        "initialisations of every network (seed, seed + 1000, ...); 2 or more report each "
        "metric and Δm as mean ± 95% interval",
    )

    def check_together(self) -> None:
        try:
            aggregators.get(self.aggregator, **self.options)
        except ValueError as e:
            raise SettingError("options", f"of aggregator {self.aggregator!r}: {e}") from None

    def resolve(self, defaults: TrainingDefaults) -> TrainSettings:
        """Every unset schedule field from a benchmark's ``defaults``."""
        return _benchmark_fields(self, defaults, SCHEDULE)

    @classmethod
    def for_benchmark(
        cls,
        benchmark: Benchmark,
        settings: TrainSettings | Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> TrainSettings:
        """``settings`` (a :class:`TrainSettings`, a dict of its fields, or ``None``: the
        defaults) with ``overrides`` (``None`` values ignored), resolved for ``benchmark``."""
        if settings is None or isinstance(settings, Mapping):
            settings = cls(**dict(settings or {}))
        elif not isinstance(settings, TrainSettings):
            raise TypeError(
                f"settings must be a TrainSettings or a dict of its fields, got {settings!r}"
            )
        given = {k: v for k, v in overrides.items() if v is not None}
        return dataclasses.replace(settings, **given).resolve(benchmark.defaults)

    def network(self) -> dict[str, Any]:
        """What identifies a trained network (every field but ``workers``, ``baselines`` and
        ``seeds``); recorded with each network and compared on resume."""
        record = self.to_dict()
        del record["workers"], record["baselines"], record["seeds"]
        return record

    def initialisation(self, k: int) -> TrainSettings:
        """The settings of initialisation ``k`` (0 ≤ k < ``seeds``): seed ``seed + INIT_STRIDE
        * k`` (initialisation 0 is these settings' own seed) and one seed."""
        if not 0 <= k < self.seeds:
            raise ValueError(f"initialisation must lie in 0..{self.seeds - 1}, got {k}")
        return dataclasses.replace(self, seed=self.seed + INIT_STRIDE * k, seeds=1)
