"""Recipes: TOML files that fix a benchmark, its tasks and the settings of each stage.

A recipe has a top-level ``seed``, a ``[benchmark]`` table (``name``, optional ``tasks`` and any
keyword of the benchmark's loader) and one table per stage, ``[affinity]``, ``[group]`` and
``[train]``, which parse into :class:`~taskgroup.settings.AffinitySettings`,
:class:`~taskgroup.settings.GroupSettings` and :class:`~taskgroup.settings.TrainSettings`. The
whole recipe is checked when it is parsed, so a bad value deep in it stops a run before any
stage runs; errors name the file, the table and the key. A recipe is named by a path or by the
stem of a file in the repository's ``recipes/`` folder.
"""

from __future__ import annotations

import dataclasses
import inspect
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from taskgroup import data
from taskgroup.settings import AffinitySettings, GroupSettings, TrainSettings

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
DEFAULT_RECIPE = "multidigits"
STAGES = {"affinity": AffinitySettings, "group": GroupSettings, "train": TrainSettings}


@dataclass(frozen=True)
class Recipe:
    """A parsed, checked recipe. ``options`` are the benchmark loader's keywords; ``affinity``,
    ``group`` and ``train`` the stages' settings (``train.seed`` is the recipe's ``seed``)."""

    source: str
    seed: int
    benchmark: str
    tasks: list[str] | None
    options: dict[str, Any]
    affinity: AffinitySettings
    group: GroupSettings
    train: TrainSettings

    def load_benchmark(self) -> data.Benchmark:
        """Build the benchmark (loader options and seed applied) restricted to ``tasks``."""
        accepted = inspect.signature(data.loader(self.benchmark)).parameters
        seed = {"seed": self.seed} if "seed" in accepted else {}
        return data.get(self.benchmark, **seed, **self.options).select(self.tasks)

    def override(
        self,
        *,
        benchmark: str | None = None,
        tasks: list[str] | None = None,
        seed: int | None = None,
        data_root: str | None = None,
    ) -> Recipe:
        """A checked copy with command-line overrides. Another benchmark drops the recipe's
        task list and loader options, which belong to the recipe's benchmark. ``data_root`` is
        the folder a file-backed benchmark (celeba, nyuv2, qm9) reads."""
        raw = self.to_dict()
        if benchmark is not None and benchmark != self.benchmark:
            raw["benchmark"] = {"name": benchmark}
        if tasks is not None:
            raw["benchmark"]["tasks"] = tasks
        if seed is not None:
            raw["seed"] = seed
        if data_root is not None:
            name = raw["benchmark"]["name"]
            if "data_root" not in _loader_options(name):
                raise ValueError(f"--data-root: benchmark {name!r} reads no files")
            raw["benchmark"]["data_root"] = data_root
        return Recipe.from_dict(raw, self.source)

    def replace(self, stage: str, **given: Any) -> Recipe:
        """A copy whose ``stage`` settings take the ``given`` values (``None`` values ignored:
        the options a command line left out)."""
        values = {k: v for k, v in given.items() if v is not None}
        return dataclasses.replace(
            self, **{stage: dataclasses.replace(getattr(self, stage), **values)}
        )

    def identity(self) -> dict[str, Any]:
        """What fixes the data and tasks of a run: benchmark, loader options, tasks and seed."""
        return {
            "benchmark": self.benchmark,
            "options": dict(self.options),
            "tasks": self.tasks,
            "seed": self.seed,
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
        return {
            "source": self.source,
            "seed": self.seed,
            "benchmark": {"name": self.benchmark, "tasks": self.tasks, **self.options},
            "affinity": self.affinity.to_dict(),
            "group": self.group.to_dict(),
            "train": train,
        }


def resolve_recipe_path(recipe: str | Path | None) -> Path:
    """The file of ``recipe``: an existing path, or ``recipes/<name>.toml``."""
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
    """Parse and check a recipe; ``ValueError`` naming the file, the table and the key."""
    path = resolve_recipe_path(recipe)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: malformed TOML ({e})") from None
    return parse_recipe(raw, str(path))


def _loader_options(name: str) -> set[str]:
    return set(inspect.signature(data.loader(name)).parameters)


def _benchmark_table(table: Any, source: str) -> tuple[str, list[str] | None, dict[str, Any]]:
    """``(name, tasks, loader options)`` of a ``[benchmark]`` table, checked."""
    if not isinstance(table, dict):
        raise ValueError(f"{source}: [benchmark] must be a table")
    options = dict(table)
    name = options.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"{source}: [benchmark] needs name = one of {data.names()}")
    if name not in data.names():
        raise ValueError(
            f"{source}: [benchmark] name: unknown benchmark {name!r}; choose one of {data.names()}"
        )
    tasks = options.pop("tasks", None)
    if tasks is not None and (
        not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks)
    ):
        raise ValueError(f"{source}: [benchmark] tasks must be a non-empty list of task names")
    accepted = _loader_options(name) - {"seed"}
    unknown = sorted(set(options) - accepted)
    if unknown:
        raise ValueError(
            f"{source}: [benchmark] benchmark {name!r} has no option(s) {unknown}; "
            f"its options are {sorted(accepted)}"
        )
    return name, tasks, options


def parse_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    """A :class:`Recipe` from a parsed TOML document (or :meth:`Recipe.to_dict`'s record);
    every table and key is checked here."""
    unknown = sorted(set(raw) - {"seed", "benchmark", *STAGES})
    if unknown:
        raise ValueError(
            f"{source}: unknown table(s) or key(s) {unknown}; "
            f"expected seed, [benchmark], {', '.join(f'[{s}]' for s in STAGES)}"
        )
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"{source}: seed must be a non-negative integer, got {seed!r}")
    name, tasks, options = _benchmark_table(raw.get("benchmark", {}), source)
    train = raw.get("train", {})
    if isinstance(train, dict) and "seed" in train:
        raise ValueError(f"{source}: [train] seed: the recipe's seed is its top-level seed")
    stages = {stage: cls.from_table(raw.get(stage, {}), source) for stage, cls in STAGES.items()}
    stages["train"] = dataclasses.replace(stages["train"], seed=seed)
    return Recipe(source, seed, name, tasks, options, **stages)
