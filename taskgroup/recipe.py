"""Recipes: TOML files that fix a benchmark, its tasks and the settings of each stage.

A recipe has a top-level ``seed``, a ``[benchmark]`` table and one table per stage,
``[affinity]``, ``[group]`` and ``[train]``, which parse into
:class:`~taskgroup.settings.AffinitySettings`, :class:`~taskgroup.settings.GroupSettings` and
:class:`~taskgroup.settings.TrainSettings`. The ``[benchmark]`` table names where the benchmark
comes from, by one of

- ``name = "multidigits"``: a built-in benchmark or an installed plugin's (entry-point group
  ``taskgroup.benchmarks``, see :mod:`taskgroup.data.registry`);
- ``factory = "package.module:function"`` or ``factory = "path/to/file.py:function"`` (a
  relative path is read from the recipe file's folder): user code that returns a
  :class:`~taskgroup.data.Benchmark`;

and takes an optional ``tasks`` list; its other keys are the loader's or factory's keywords
(``seed``, the recipe's seed, is passed too when it takes one). The whole recipe is checked when
it is parsed (a factory is imported and its keywords checked then, without being called), so a
bad value deep in it stops a run before any stage runs; errors name the file, the table and the
key. A recipe is named by a path or by the stem of a file shipped in the package's ``recipes/``
folder (:data:`RECIPES_DIR`).
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskgroup import data
from taskgroup.data.registry import absolute_factory, describe_error
from taskgroup.settings import AffinitySettings, GroupSettings, TrainSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
DEFAULT_RECIPE = "multidigits"
STAGES = {"affinity": AffinitySettings, "group": GroupSettings, "train": TrainSettings}


@dataclass(frozen=True)
class Recipe:
    """A parsed, checked recipe. ``benchmark``: a registered benchmark's name, or ``None`` when
    ``factory`` (``"package.module:function"``, or an absolute ``"/path/file.py:function"``)
    builds it; ``options`` are the loader's or factory's keywords; ``affinity``, ``group`` and
    ``train`` the stages' settings (``train.seed`` is the recipe's ``seed``)."""

    source: str
    seed: int
    benchmark: str | None
    tasks: list[str] | None
    options: dict[str, Any]
    affinity: AffinitySettings
    group: GroupSettings
    train: TrainSettings
    factory: str | None = None

    @property
    def key(self) -> str:
        """The recipe key the benchmark comes from, as error messages name it."""
        if self.factory is not None:
            return f"[benchmark] factory {self.factory!r}"
        return f"[benchmark] name {self.benchmark!r}"

    def load_benchmark(self) -> data.Benchmark:
        """Build the benchmark (options and seed applied) restricted to ``tasks``. User code (a
        factory or a plugin) that raises or returns something other than a
        :class:`~taskgroup.data.Benchmark` is a ``ValueError`` naming the recipe and key."""
        build = _builder(self.benchmark, self.factory, self.source)
        seed = {"seed": self.seed} if "seed" in (_parameters(build) or {}) else {}
        if self.factory is None and not data.is_plugin(self.benchmark):
            return build(**seed, **self.options).select(self.tasks)
        where = f"{self.source}: {self.key}"
        try:
            bench = build(**seed, **self.options)
        except Exception as e:  # user code may fail in any way: one line naming the key
            raise ValueError(f"{where} raised {describe_error(e)}") from None
        if not isinstance(bench, data.Benchmark):
            raise ValueError(
                f"{where} returned a {type(bench).__name__}, not a taskgroup.data.Benchmark"
            )
        return bench.select(self.tasks)

    def override(
        self,
        *,
        benchmark: str | None = None,
        tasks: list[str] | None = None,
        seed: int | None = None,
        data_root: str | None = None,
    ) -> Recipe:
        """A checked copy with command-line overrides. Another benchmark drops the recipe's
        task list and options (and its factory), which belong to the recipe's benchmark.
        ``data_root`` is the folder a file-backed benchmark (celeba, nyuv2, qm9) reads."""
        raw = self.to_dict()
        if benchmark is not None and benchmark != self.benchmark:
            raw["benchmark"] = {"name": benchmark}
        if tasks is not None:
            raw["benchmark"]["tasks"] = tasks
        if seed is not None:
            raw["seed"] = seed
        if data_root is not None:
            recipe = Recipe.from_dict(raw, self.source)
            accepted = _accepted(_builder(recipe.benchmark, recipe.factory, self.source))
            if accepted is not None and "data_root" not in accepted:
                what = recipe.benchmark or recipe.factory
                raise ValueError(f"--data-root: benchmark {what!r} reads no files")
            raw["benchmark"]["data_root"] = data_root
        return Recipe.from_dict(raw, self.source)

    def replace(self, stage: str, **given: Any) -> Recipe:
        """A copy whose ``stage`` settings take the ``given`` values (``None`` values ignored:
        the options a command line left out)."""
        values = {k: v for k, v in given.items() if v is not None}
        return dataclasses.replace(
            self, **{stage: dataclasses.replace(getattr(self, stage), **values)}
        )

    def identity(self, bench: data.Benchmark) -> dict[str, Any]:
        """What fixes the data and tasks of a run of this recipe on ``bench`` (the benchmark it
        loads): the benchmark's name (and the factory that built it), options, tasks, seed and a
        fingerprint of the data (:func:`~taskgroup.data.data_fingerprint`)."""
        origin = {"benchmark": self.benchmark}
        if self.factory is not None:
            origin = {"benchmark": bench.name, "factory": self.factory}
        return {
            **origin,
            "options": dict(self.options),
            "tasks": bench.tasks.names,
            "seed": self.seed,
            "data": data.data_fingerprint(bench),
        }

    @classmethod
    def from_dict(cls, record: dict[str, Any], source: str) -> Recipe:
        """The recipe :meth:`to_dict` recorded (e.g. in a run directory's manifest)."""
        if not isinstance(record, dict) or not isinstance(record.get("benchmark"), dict):
            raise ValueError(f"{source}: malformed recipe record")
        raw = {k: v for k, v in record.items() if k != "source"}
        raw["benchmark"] = {k: v for k, v in raw["benchmark"].items() if v is not None}
        return parse_recipe(raw, source)

    def to_dict(self) -> dict[str, Any]:
        """Every setting, as JSON-ready values (what a run directory's manifest records)."""
        train = self.train.to_dict()
        del train["seed"]  # the recipe's seed
        origin = {"name": self.benchmark} if self.factory is None else {"factory": self.factory}
        return {
            "source": self.source,
            "seed": self.seed,
            "benchmark": {**origin, "tasks": self.tasks, **self.options},
            "affinity": self.affinity.to_dict(),
            "group": self.group.to_dict(),
            "train": train,
        }


def resolve_recipe_path(recipe: str | Path | None) -> Path:
    """The file of ``recipe``: an existing path, or ``<RECIPES_DIR>/<name>.toml``."""
    if recipe is None:
        recipe = DEFAULT_RECIPE
    path = Path(recipe)
    if path.is_file():
        return path
    named = RECIPES_DIR / f"{recipe}.toml"
    if named.is_file():
        return named
    known = sorted(p.stem for p in RECIPES_DIR.glob("*.toml"))
    raise ValueError(f"no recipe {str(recipe)!r}: not a file, and not one of {known}")


def load_recipe(recipe: str | Path | None = None) -> Recipe:
    """Parse and check a recipe; ``ValueError`` naming the file, the table and the key. A
    factory's relative file path is read from the recipe's folder."""
    path = resolve_recipe_path(recipe)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: malformed TOML ({e})") from None
    return parse_recipe(raw, str(path), base=path.resolve().parent)


def _builder(name: str | None, factory: str | None, source: str) -> Callable[..., data.Benchmark]:
    """The loader of benchmark ``name`` or the ``factory``'s callable; errors name the key."""
    try:
        return data.resolve_factory(factory) if factory is not None else data.loader(name)
    except ValueError as e:
        key = f"factory {factory!r}" if factory is not None else f"name {name!r}"
        raise ValueError(f"{source}: [benchmark] {key}: {e}") from None


def _parameters(build: Callable) -> dict[str, inspect.Parameter] | None:
    """The parameters of ``build``, ``None`` when it has no signature (e.g. a builtin)."""
    try:
        return dict(inspect.signature(build).parameters)
    except (TypeError, ValueError):
        return None


def _accepted(build: Callable) -> set[str] | None:
    """The keywords ``build`` takes, ``None`` when it takes any (``**kwargs``) or is unknown."""
    parameters = _parameters(build)
    if parameters is None or any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return None
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {name for name, p in parameters.items() if p.kind in kinds}


def _check_options(build: Callable, options: dict[str, Any], where: str) -> None:
    """That ``build`` takes ``options`` (and the seed where it has that keyword), with every
    keyword it requires."""
    accepted = _accepted(build)
    if accepted is not None:
        unknown = sorted(set(options) - (accepted - {"seed"}))
        if unknown:
            raise ValueError(
                f"{where} has no option(s) {unknown}; its options are {sorted(accepted - {'seed'})}"
            )
    if "seed" in options:
        raise ValueError(f"{where}: seed is the recipe's top-level seed, not a [benchmark] key")
    parameters = _parameters(build)
    if parameters is None:  # no signature: checked when called
        return
    seed = {"seed": 0} if "seed" in parameters else {}
    try:
        inspect.signature(build).bind(**seed, **options)
    except TypeError as e:
        raise ValueError(f"{where} cannot take the recipe's options: {e}") from None


def _benchmark_table(
    table: Any, source: str, base: Path | None
) -> tuple[str | None, str | None, list[str] | None, dict[str, Any]]:
    """``(name, factory, tasks, options)`` of a ``[benchmark]`` table, checked: a factory is
    imported (not called) and its keywords checked against the options."""
    if not isinstance(table, dict):
        raise ValueError(f"{source}: [benchmark] must be a table")
    options = dict(table)
    name, factory = options.pop("name", None), options.pop("factory", None)
    if name is not None and factory is not None:
        raise ValueError(f"{source}: [benchmark] takes name or factory, not both")
    if factory is not None:
        try:
            factory = absolute_factory(factory, base)
        except ValueError as e:
            raise ValueError(f"{source}: [benchmark] factory {e}") from None
        where = f"{source}: [benchmark] factory {factory!r}"
    elif not isinstance(name, str):
        raise ValueError(
            f"{source}: [benchmark] needs name = one of {data.names()}, "
            f"or factory = 'package.module:function'"
        )
    elif name not in data.names():
        raise ValueError(
            f"{source}: [benchmark] name: unknown benchmark {name!r}; choose one of {data.names()}"
        )
    else:
        where = f"{source}: [benchmark] benchmark {name!r}"
    tasks = options.pop("tasks", None)
    if tasks is not None and (
        not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks)
    ):
        raise ValueError(f"{source}: [benchmark] tasks must be a non-empty list of task names")
    _check_options(_builder(name, factory, source), options, where)
    return name, factory, tasks, options


def parse_recipe(
    raw: dict[str, Any], source: str = "recipe", *, base: Path | None = None
) -> Recipe:
    """A :class:`Recipe` from a parsed TOML document (or :meth:`Recipe.to_dict`'s record);
    every table and key is checked here. ``base``: the folder a factory's relative file path
    is read from (default: the working directory)."""
    unknown = sorted(set(raw) - {"seed", "benchmark", *STAGES})
    if unknown:
        raise ValueError(
            f"{source}: unknown table(s) or key(s) {unknown}; "
            f"expected seed, [benchmark], {', '.join(f'[{s}]' for s in STAGES)}"
        )
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{source}: seed must be a non-negative integer, got {seed!r}")
    name, factory, tasks, options = _benchmark_table(raw.get("benchmark", {}), source, base)
    train = raw.get("train", {})
    if isinstance(train, dict) and "seed" in train:
        raise ValueError(f"{source}: [train] seed: the recipe's seed is its top-level seed")
    stages = {stage: cls.from_table(raw.get(stage, {}), source) for stage, cls in STAGES.items()}
    stages["train"] = dataclasses.replace(stages["train"], seed=seed)
    return Recipe(source, seed, name, tasks, options, **stages, factory=factory)
