"""Recipes: TOML files that fix a benchmark, its tasks and the settings of each stage.

A recipe has a top-level ``seed``, a ``[benchmark]`` table (``name``, optional ``tasks`` and any
keyword of the benchmark's loader) and one table per stage (``[affinity]``, ...). A recipe is
named by a path or by the stem of a file in the repository's ``recipes/`` folder.
"""

from __future__ import annotations

import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskgroup import data

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

RECIPES_DIR = Path(__file__).resolve().parents[1] / "recipes"
DEFAULT_RECIPE = "multidigits"
STAGE_KEYS = {
    "affinity": {"steps", "every", "lookahead", "optimizer", "lr", "batch_size"},
    "group": {
        "budget",
        "method",
        "partition",
        "singleton_score",
        "time_limit",
        "sweep",
        "normalize",
    },
    "train": {
        "aggregator",
        "options",
        "optimizer",
        "lr",
        "weight_decay",
        "batch_size",
        "steps",
        "eval_every",
        "patience",
        "workers",
        "baselines",
    },
}


@dataclass(frozen=True)
class Recipe:
    """A parsed recipe. ``options`` are the loader keywords; ``stages[name]`` each stage's table."""

    source: str
    seed: int
    benchmark: str
    tasks: list[str] | None
    options: dict[str, Any] = field(default_factory=dict)
    stages: dict[str, dict[str, Any]] = field(default_factory=dict)

    def load_benchmark(self) -> data.Benchmark:
        """Build the benchmark (loader options and seed applied) restricted to ``tasks``."""
        return data.get(self.benchmark, **self._loader_kwargs()).select(self.tasks)

    def _loader_kwargs(self) -> dict[str, Any]:
        accepted = inspect.signature(data.loader(self.benchmark)).parameters
        unknown = sorted(set(self.options) - set(accepted))
        if unknown:
            raise ValueError(
                f"{self.source}: benchmark {self.benchmark!r} has no option(s) {unknown}; "
                f"its options are {sorted(set(accepted) - {'seed'})}"
            )
        seed = {"seed": self.seed} if "seed" in accepted else {}
        return {**seed, **self.options}

    def override(
        self,
        *,
        benchmark: str | None = None,
        tasks: list[str] | None = None,
        seed: int | None = None,
        data_root: str | None = None,
    ) -> Recipe:
        """A validated copy with command-line overrides. Another benchmark drops the recipe's
        task list and loader options, which belong to the recipe's benchmark. ``data_root`` is
        the folder a file-backed benchmark (celeba, nyuv2, qm9) reads."""
        raw = {
            "seed": self.seed,
            "benchmark": {"name": self.benchmark, **self.options},
            **self.stages,
        }
        if self.tasks is not None:
            raw["benchmark"]["tasks"] = self.tasks
        if benchmark is not None and benchmark != self.benchmark:
            raw["benchmark"] = {"name": benchmark}
        if tasks is not None:
            raw["benchmark"]["tasks"] = tasks
        if seed is not None:
            raw["seed"] = seed
        if data_root is not None:
            name = raw["benchmark"]["name"]
            if "data_root" not in inspect.signature(data.loader(name)).parameters:
                raise ValueError(f"--data-root: benchmark {name!r} reads no files")
            raw["benchmark"]["data_root"] = data_root
        return parse_recipe(raw, self.source)

    def stage(self, name: str) -> dict[str, Any]:
        return dict(self.stages.get(name, {}))

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
        return {
            "source": self.source,
            "seed": self.seed,
            "benchmark": {"name": self.benchmark, "tasks": self.tasks, **self.options},
            **self.stages,
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
    """Parse and validate a recipe; ``ValueError`` naming the file and the offending key."""
    path = resolve_recipe_path(recipe)
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path}: malformed TOML ({e})") from None
    return parse_recipe(raw, str(path))


def parse_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    unknown = sorted(set(raw) - {"seed", "benchmark", *STAGE_KEYS})
    if unknown:
        raise ValueError(
            f"{source}: unknown table(s) or key(s) {unknown}; "
            f"expected seed, [benchmark], {', '.join(f'[{s}]' for s in STAGE_KEYS)}"
        )
    seed = raw.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise ValueError(f"{source}: seed must be an integer, got {seed!r}")
    bench = dict(raw.get("benchmark", {}))
    name = bench.pop("name", None)
    if not isinstance(name, str):
        raise ValueError(f"{source}: [benchmark] needs name = one of {data.names()}")
    if name not in data.names():
        raise ValueError(f"{source}: unknown benchmark {name!r}; choose one of {data.names()}")
    tasks = bench.pop("tasks", None)
    if tasks is not None and (
        not isinstance(tasks, list) or not tasks or not all(isinstance(t, str) for t in tasks)
    ):
        raise ValueError(f"{source}: [benchmark] tasks must be a non-empty list of task names")
    stages = {}
    for stage, keys in STAGE_KEYS.items():
        table = raw.get(stage, {})
        if not isinstance(table, dict):
            raise ValueError(f"{source}: [{stage}] must be a table")
        extra = sorted(set(table) - keys)
        if extra:
            raise ValueError(
                f"{source}: [{stage}] has unknown key(s) {extra}; known: {sorted(keys)}"
            )
        stages[stage] = dict(table)
    return Recipe(source, seed, name, tasks, bench, stages)
