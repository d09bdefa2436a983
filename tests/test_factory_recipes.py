"""Recipes that name user code (`[benchmark] factory = ...`) and installed plugins (entry-point
group `taskgroup.benchmarks`): the whole pipeline on them, resume and its refusal on other data,
and bad factories as one-line errors (exit 2) that write nothing."""

from __future__ import annotations

import dataclasses
import importlib
import json
import sys
import warnings
from pathlib import Path

import pytest

from taskgroup import data
from taskgroup.cli import main
from taskgroup.recipe import RECIPES_DIR, Recipe, load_recipe, parse_recipe
from taskgroup.training.groups import GroupResults
from tests.factories import factory_recipe, write_package, write_plugin


@pytest.fixture
def mytasks(tmp_path_factory, monkeypatch):
    """The user's package `mytasks`, outside the repository and importable (on sys.path)."""
    root = write_package(tmp_path_factory.mktemp("site"))
    monkeypatch.syspath_prepend(str(root))
    importlib.invalidate_caches()
    monkeypatch.delitem(sys.modules, "mytasks", raising=False)
    yield root
    sys.modules.pop("mytasks", None)


def write(tmp_path, text, name="recipe.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskgroup: error:") and err.count("\n") == 0, err
    assert "Traceback" not in err
    return err.removeprefix("taskgroup: error: ")


def test_run_resume_and_train_on_a_factory_recipe(mytasks, tmp_path, capsys, monkeypatch):
    recipe = write(tmp_path, factory_recipe("mytasks:make", seed=3, n=96))
    out = tmp_path / "out"
    run = ["run", str(recipe), "--out", str(out), "--no-progress"]
    assert main(run) == 0
    for name in ("affinity.json", "groups.json", "results.json", "report.html"):
        assert (out / name).exists(), name
    results = json.loads((out / "results.json").read_text())
    assert isinstance(results["delta_m"], float)
    identity = json.loads((out / "manifest.json").read_text())["run"]
    import mytasks

    bench = mytasks.make(seed=3, n=96)  # the factory gets the recipe's seed and options
    assert identity["benchmark"] == "mytasks" and identity["factory"] == "mytasks:make"
    assert identity["options"] == {"n": 96} and identity["tasks"] == ["a1", "a2", "b1", "b2"]
    assert identity["data"] == data.data_fingerprint(bench)
    assert identity["data"]["train"]["rows"] == 96 and identity["data"]["test"]["rows"] == 48
    capsys.readouterr()

    stamps = {p: p.stat().st_mtime_ns for p in (out / "train").rglob("checkpoint.pt")}
    assert main(run) == 0  # resume: the affinity and every network are reused
    assert "affinity: reusing" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in (out / "train").rglob("checkpoint.pt")} == stamps

    assert main(["train", str(out), "--aggregator", "nash_mtl", "--no-progress"]) == 0
    assert GroupResults.load(out / "results.json").aggregator == "nash_mtl"
    capsys.readouterr()

    # the same recipe on other data (the user's code changed its noise) is refused
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    monkeypatch.setattr(mytasks, "NOISE", 0.2)
    assert main(run) == 2
    err = one_line_error(capsys)
    assert err.startswith(f"{out} holds a run on other data (data.train.targets.a1: ")
    assert "data.train.inputs" not in err  # the inputs did not change: only targets are named
    assert main(["train", str(out), "--no-progress"]) == 2
    assert "holds a run on other data" in one_line_error(capsys)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


BAD = {
    "does not import": (
        'factory = "no_such_module_xyz:make"',
        "[benchmark] factory 'no_such_module_xyz:make': module 'no_such_module_xyz' does not "
        "import: ModuleNotFoundError: No module named 'no_such_module_xyz'",
    ),
    "no such function": (
        'factory = "mytasks:nope"',
        "[benchmark] factory 'mytasks:nope': 'mytasks' has no attribute 'nope'",
    ),
    "not callable": (
        'factory = "mytasks:TASKS"',
        "[benchmark] factory 'mytasks:TASKS': mytasks:TASKS is a tuple, not callable",
    ),
    "raises": (
        'factory = "mytasks:boom"',
        "[benchmark] factory 'mytasks:boom' raised RuntimeError: no data here",
    ),
    "returns something else": (
        'factory = "mytasks:not_a_benchmark"',
        "[benchmark] factory 'mytasks:not_a_benchmark' returned a dict, "
        "not a taskgroup.data.Benchmark",
    ),
    "targets lack a task": (
        'factory = "mytasks:make"\ndrop = "b2"',
        "[benchmark] factory 'mytasks:make' raised ValueError: benchmark 'mytasks': the train "
        "split has no target for task(s) ['b2']; its targets are ['a1', 'a2', 'b1']",
    ),
    "unknown option": (
        'factory = "mytasks:make"\ncolour = 1',
        "[benchmark] factory 'mytasks:make' has no option(s) ['colour']; "
        "its options are ['drop', 'n', 'width']",
    ),
    "malformed": (
        'factory = "mytasks.make"',
        "[benchmark] factory 'mytasks.make' is not 'package.module:function' or "
        "'path/to/file.py:function'",
    ),
    "name and factory": (
        'factory = "mytasks:make"\nname = "planted"',
        "[benchmark] takes name or factory, not both",
    ),
}


@pytest.mark.parametrize("command", ["run", "affinity"])
@pytest.mark.parametrize("case", list(BAD))
def test_a_bad_factory_is_one_line_naming_the_key_and_writes_nothing(
    mytasks, tmp_path, capsys, command, case
):
    table, message = BAD[case]
    recipe = write(tmp_path, f"[benchmark]\n{table}\n[affinity]\nsteps = 2\n")
    out = tmp_path / "out"
    assert main([command, str(recipe), "--out", str(out), "--no-progress"]) == 2
    assert one_line_error(capsys) == f"{recipe}: {message}"
    assert not out.exists()


def test_a_file_factory_is_read_relative_to_its_recipe(tmp_path, capsys, monkeypatch):
    code = write_package(tmp_path / "project" / "code")  # code/mytasks/__init__.py
    recipe = write(tmp_path / "project", factory_recipe("code/mytasks/__init__.py:make", n=64))
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    parsed = load_recipe(recipe)
    assert parsed.factory == f"{code / 'mytasks' / '__init__.py'}:make"
    assert parsed.benchmark is None and parsed.options == {"n": 64}
    assert Recipe.from_dict(parsed.to_dict(), "manifest") == dataclasses.replace(
        parsed, source="manifest"
    )
    bench = parsed.load_benchmark()
    assert bench.name == "mytasks" and len(bench.train) == 64
    assert data.resolve_factory(parsed.factory) is data.resolve_factory(parsed.factory)

    broken = write(tmp_path / "project", "def make(:\n", "broken.py")
    recipe.write_text(factory_recipe("broken.py:make"))
    assert main(["affinity", str(recipe), "--out", str(tmp_path / "out")]) == 2
    assert one_line_error(capsys) == (
        f"{recipe}: [benchmark] factory '{broken}:make': file '{broken}' does not import: "
        f"SyntaxError: invalid syntax (broken.py, line 1)"
    )
    recipe.write_text(factory_recipe("missing.py:make"))
    assert main(["affinity", str(recipe), "--out", str(tmp_path / "out")]) == 2
    missing = tmp_path / "project" / "missing.py"
    assert f"file '{missing}' does not exist" in one_line_error(capsys)
    assert not (tmp_path / "out").exists()


SIGNATURES = """
import mytasks

def needs_n(*, n):
    return mytasks.make(n=n)

def nothing():
    return mytasks.make(n=8)

def anything(**options):
    return mytasks.make(**options)
"""


def test_options_are_checked_against_the_factorys_signature(mytasks, tmp_path):
    (tmp_path / "signatures.py").write_text(SIGNATURES)

    def parse(function, **options):
        table = {"factory": f"signatures.py:{function}", **options}
        return parse_recipe({"seed": 5, "benchmark": table}, "r.toml", base=tmp_path)

    with pytest.raises(ValueError) as missing:
        parse("needs_n")
    assert str(missing.value) == (
        f"r.toml: [benchmark] factory '{tmp_path / 'signatures.py'}:needs_n' cannot take the "
        f"recipe's options: missing a required argument: 'n'"
    )
    assert len(parse("needs_n", n=12).load_benchmark().train) == 12
    with pytest.raises(ValueError, match=r"has no option\(s\) \['n'\]; its options are \[\]"):
        parse("nothing", n=12)
    assert len(parse("nothing").load_benchmark().train) == 8
    # **options: any key is passed on; the seed only to a factory with a `seed` parameter
    assert parse("anything", n=20, width=4).load_benchmark().info == {"seed": 0, "n": 20}
    with pytest.raises(ValueError, match="seed is the recipe's top-level seed"):
        parse("anything", seed=3)
    with pytest.raises(ValueError, match=r"has no option\(s\) \['seed'\]"):
        parse("needs_n", n=1, seed=3)


def test_tasks_select_among_the_factorys_and_the_seed_is_passed(mytasks, tmp_path):
    recipe = load_recipe(write(tmp_path, factory_recipe("mytasks:make", seed=5, n=32)))
    one = recipe.override(tasks=["b2", "a1"]).load_benchmark()
    import mytasks as module

    whole = module.make(seed=5, n=32)
    assert one.tasks.names == ["b2", "a1"]
    assert (one.train.targets["b2"] == whole.train.targets["b2"]).all()
    assert not (recipe.override(seed=6).load_benchmark().train.inputs == whole.train.inputs).all()
    switched = recipe.override(benchmark="planted")
    assert switched.factory is None and switched.benchmark == "planted" and not switched.options


def test_an_installed_plugin_is_a_benchmark_name(mytasks, monkeypatch, tmp_path, capsys):
    write_plugin(mytasks, {"mytasks": "mytasks:make", "broken_plugin": "no_such_module_xyz:load"})
    importlib.invalidate_caches()
    assert {"mytasks", "broken_plugin"} <= set(data.names())
    assert data.names()[:5] == ["multidigits", "planted", "qm9", "celeba", "nyuv2"]
    assert data.is_plugin("mytasks") and not data.is_plugin("planted")
    recipe = parse_recipe({"seed": 2, "benchmark": {"name": "mytasks", "n": 40}})
    bench = recipe.load_benchmark()
    import mytasks as module

    assert data.data_fingerprint(bench) == data.data_fingerprint(module.make(seed=2, n=40))
    with pytest.raises(ValueError, match=r"benchmark 'mytasks' has no option\(s\) \['colour'\]"):
        parse_recipe({"benchmark": {"name": "mytasks", "colour": 1}})
    path = write(tmp_path, '[benchmark]\nname = "broken_plugin"\n')
    assert main(["affinity", str(path), "--out", str(tmp_path / "out")]) == 2
    assert one_line_error(capsys) == (
        f"{path}: [benchmark] name 'broken_plugin': benchmark plugin 'broken_plugin' "
        f"(no_such_module_xyz:load) does not import: ModuleNotFoundError: No module named "
        f"'no_such_module_xyz'"
    )
    assert not (tmp_path / "out").exists()


def test_a_plugin_cannot_take_a_built_in_name(mytasks):
    write_plugin(mytasks, {"planted": "mytasks:make"})
    importlib.invalidate_caches()
    with pytest.warns(UserWarning, match="benchmark plugin 'planted' .* is ignored"):
        names = data.names()
    assert names.count("planted") == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert data.get("planted", n_train=8, n_val=4, n_test=4).name == "planted"
        assert not data.is_plugin("planted")


def test_the_recipes_ship_inside_the_package():
    import taskgroup

    assert RECIPES_DIR.parent == Path(taskgroup.__file__).resolve().parent
    assert {p.stem for p in RECIPES_DIR.glob("*.toml")} >= {"multidigits", "planted"}
    assert load_recipe().source == str(RECIPES_DIR / "multidigits.toml")


def test_version(capsys):
    from taskgroup._version import __version__

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"taskgroup {__version__}\n"
