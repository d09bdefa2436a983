"""Where a benchmark comes from: a built-in name, an installed plugin, or user code.

- **Built-in**: the benchmarks of this package (:data:`BUILT_IN`).
- **Plugins**: installed distributions that declare an entry point in the group
  ``taskgroup.benchmarks`` (:data:`ENTRY_POINT_GROUP`); the entry point's name is the benchmark's
  name and its object a loader ``load(**options) -> Benchmark``, e.g. in the plugin's
  ``pyproject.toml``::

      [project.entry-points."taskgroup.benchmarks"]
      mytasks = "mytasks:load"

  A plugin that takes a built-in's name is ignored, with a warning: the built-in wins, so an
  installed package can never change what a built-in recipe runs.
- **Factories**: ``"package.module:function"`` (an importable module) or
  ``"path/to/file.py:function"`` (a file, imported as a module of its own); see
  :func:`resolve_factory`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

from taskgroup.data import celeba, multidigits, multimnist, nyuv2, planted, qm9
from taskgroup.data.benchmark import Benchmark

ENTRY_POINT_GROUP = "taskgroup.benchmarks"

BUILT_IN: dict[str, Callable[..., Benchmark]] = {
    "multidigits": multidigits.load,
    "planted": planted.load,
    "qm9": qm9.load,
    "celeba": celeba.load,
    "nyuv2": nyuv2.load,
    "multimnist": multimnist.load,
}


def plugins() -> dict[str, EntryPoint]:
    """The installed plugins' benchmarks by name, not yet imported (a name that a built-in
    benchmark holds is skipped with a warning; of two plugins with one name, the first found)."""
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name in BUILT_IN:
            warnings.warn(
                f"benchmark plugin {entry.name!r} ({entry.value}) is ignored: "
                f"a built-in benchmark has that name",
                stacklevel=2,
            )
        else:
            found.setdefault(entry.name, entry)
    return found


def names() -> list[str]:
    """The benchmark names a recipe may use: the built-ins, then the plugins (sorted)."""
    return [*BUILT_IN, *sorted(plugins())]


def is_plugin(name: str) -> bool:
    """Whether ``name`` is an installed plugin's benchmark (not a built-in)."""
    return name not in BUILT_IN and name in plugins()


def loader(name: str) -> Callable[..., Benchmark]:
    """The loader function of benchmark ``name`` (a plugin's is imported here); ``ValueError``
    when the name is unknown or the plugin does not import."""
    if name in BUILT_IN:
        return BUILT_IN[name]
    found = plugins()
    if name not in found:
        raise ValueError(f"unknown benchmark {name!r}; choose one of {', '.join(names())}")
    entry = found[name]
    try:
        load = entry.load()
    except Exception as e:  # a plugin's import may fail in any way; report it, one line
        raise ValueError(
            f"benchmark plugin {name!r} ({entry.value}) does not import: {describe_error(e)}"
        ) from None
    if not callable(load):
        raise ValueError(f"benchmark plugin {name!r} ({entry.value}) is not callable")
    return load


def get(name: str, **options) -> Benchmark:
    """Build the benchmark ``name`` with its loader's keyword ``options`` (e.g. ``seed=0``)."""
    return loader(name)(**options)


def describe_error(error: BaseException) -> str:
    """``"TypeName: message"`` on one line (what a user-code failure is reported as)."""
    message = " ".join(str(error).split())
    return f"{type(error).__name__}: {message}" if message else type(error).__name__


def split_factory(spec: str) -> tuple[str, str]:
    """``(module or file, attribute)`` of a factory spec ``"where:attribute"``; ``ValueError``
    when it has no ``:`` or an empty side."""
    if not isinstance(spec, str):
        raise ValueError(f"must be a string 'package.module:function', got {spec!r}")
    where, _, attribute = spec.rpartition(":")
    if not where or not attribute or not all(p.isidentifier() for p in attribute.split(".")):
        raise ValueError(f"{spec!r} is not 'package.module:function' or 'path/to/file.py:function'")
    return where, attribute


def is_file_factory(spec: str) -> bool:
    """Whether ``spec`` names a file (``.py``, or a path with a separator) rather than a module."""
    where, _ = split_factory(spec)
    return where.endswith(".py") or "/" in where or "\\" in where


def absolute_factory(spec: str, base: Path | None) -> str:
    """``spec`` with a relative file resolved against ``base`` (default: the working
    directory); a module spec unchanged."""
    if not is_file_factory(spec):
        return spec
    where, attribute = split_factory(spec)
    path = Path(where).expanduser()
    if not path.is_absolute():
        path = (base or Path.cwd()) / path
    return f"{path.resolve()}:{attribute}"


def resolve_factory(spec: str, base: Path | None = None) -> Callable[..., Benchmark]:
    """The callable that ``spec`` names: ``"package.module:function"`` is imported from
    ``sys.path``; ``"path/to/file.py:function"`` (relative to ``base``, default the working
    directory) is imported as a module of its own, once per file. The attribute may be dotted
    (``"module:Class.build"``). ``ValueError`` (one line) when the module or file does not
    import, lacks the attribute, or the attribute is not callable."""
    where, attribute = split_factory(spec)
    if is_file_factory(spec):
        module = _import_file(Path(absolute_factory(spec, base).rpartition(":")[0]))
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:  # user code: any failure of its import is reported
            raise ValueError(f"module {where!r} does not import: {describe_error(e)}") from None
    try:
        found = functools.reduce(getattr, attribute.split("."), module)
    except AttributeError:
        raise ValueError(f"{where!r} has no attribute {attribute!r}") from None
    if not callable(found):
        raise ValueError(f"{where}:{attribute} is a {type(found).__name__}, not callable")
    return found


def _import_file(path: Path):
    """The module of the Python file ``path``, imported once under a name derived from its path
    (registered in ``sys.modules``, so its classes pickle and a second import reuses it)."""
    name = "taskgroup_factory_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    if name in sys.modules:
        return sys.modules[name]
    if not path.is_file():
        raise ValueError(f"file {str(path)!r} does not exist")
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValueError(f"file {str(path)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # user code: any failure of its import is reported
        del sys.modules[name]
        raise ValueError(f"file {str(path)!r} does not import: {describe_error(e)}") from None
    return module
