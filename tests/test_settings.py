"""The stage settings: each checks itself once, recipes parse into them whole, the CLI shows and
overrides their defaults, and a bad value stops a run before it writes anything."""

from __future__ import annotations

import dataclasses

import pytest
import torch

import taskgroup as tg
from taskgroup.cli import main
from taskgroup.recipe import Recipe, parse_recipe
from taskgroup.settings import AffinitySettings, GroupSettings, SettingError, TrainSettings
from tests.recipes import tiny


@pytest.mark.parametrize(
    ("make", "key", "problem"),
    [
        (lambda: TrainSettings(steps=-1), "steps", "must be a positive integer or unset, got -1"),
        (lambda: TrainSettings(aggregator="nope"), "aggregator", "must be one of mean, "),
        (lambda: TrainSettings(aggregator="cagrad", options={"z": 1}), "options", "'z'"),
        (lambda: TrainSettings(baselines="yes"), "baselines", "must be true or false"),
        (lambda: GroupSettings(budget=0), "budget", "must be a positive integer, got 0"),
        (lambda: GroupSettings(singleton_score=float("nan")), "singleton_score", "finite"),
        (lambda: AffinitySettings(lookahead="adam"), "lookahead", "must be one of sgd, "),
        (lambda: AffinitySettings(lr=0.0), "lr", "must be a positive number or unset, got 0.0"),
    ],
)
def test_a_bad_value_names_its_key(make, key, problem):
    with pytest.raises(SettingError) as caught:
        make()
    assert caught.value.key == key and problem in str(caught.value)
    assert str(caught.value).startswith(key)


def test_replace_checks_the_copy():
    with pytest.raises(SettingError, match="every must be a positive integer"):
        dataclasses.replace(AffinitySettings(), every=0)


def test_resolve_takes_unset_schedule_fields_from_the_benchmark():
    bench = tg.data.get("planted")
    resolved = TrainSettings(lr=0.5).resolve(bench.defaults)
    assert resolved.lr == 0.5 and resolved.steps == bench.defaults.steps
    assert resolved.optimizer == bench.defaults.optimizer
    affinity = AffinitySettings().resolve(bench.defaults)
    assert (affinity.steps, affinity.every) == (bench.defaults.steps, bench.defaults.every)


def test_network_leaves_out_what_does_not_change_a_network():
    record = TrainSettings(workers=2, baselines=False).network()
    assert "workers" not in record and "baselines" not in record
    assert record == TrainSettings().network()


def test_a_recipe_is_checked_whole_and_names_file_table_and_key():
    raw = {"benchmark": {"name": "planted"}, "train": {"steps": -1}}
    with pytest.raises(ValueError, match=r"^r\.toml: \[train\] steps must be a positive integer"):
        parse_recipe(raw, "r.toml")
    with pytest.raises(ValueError, match=r"\[group\] has unknown key\(s\) \['budgte'\]"):
        parse_recipe({"benchmark": {"name": "planted"}, "group": {"budgte": 2}}, "r.toml")
    with pytest.raises(ValueError, match=r"\[benchmark\] benchmark 'planted' has no option"):
        parse_recipe({"benchmark": {"name": "planted", "colour": 1}}, "r.toml")


def test_a_recipe_round_trips_through_its_record():
    recipe = parse_recipe(
        {
            "seed": 3,
            "benchmark": {"name": "planted", "groups": 2},
            "affinity": {"steps": 7, "lookahead": "cosine"},
            "group": {"budget": 2, "sweep": True},
            "train": {"aggregator": "cagrad", "options": {"c": 0.2}, "patience": 3},
        },
        "r.toml",
    )
    assert recipe.train.seed == 3
    assert Recipe.from_dict(recipe.to_dict(), "manifest") == dataclasses.replace(
        recipe, source="manifest"
    )


def test_the_help_shows_the_dataclass_defaults(capsys):
    main(["train", "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    # train takes the recorded recipe's values; the dataclass default is what a recipe without
    # the key gets
    assert f"a recipe without it: {TrainSettings().aggregator}]" in shown
    assert "a recipe without it: the benchmark's]" in shown  # --steps


def _files(root):
    return {p: p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("settings")
    (root / "tiny.toml").write_text(tiny(seed=2))
    assert main(["run", str(root / "tiny.toml"), "--out", str(root / "run"), "--no-progress"]) == 0
    return root


@pytest.mark.parametrize(
    ("line", "bad_line", "message"),
    [
        ("steps = 20", "steps = -1", "[train] steps must be a positive integer or unset, got -1"),
        ("budget = 2", "budget = 0", "[group] budget must be a positive integer, got 0"),
        (
            "budget = 2",
            "budget = 9",
            "[group] budget must lie in 1..4 (the number of tasks), got 9",
        ),
        ("[train]", '[train]\naggregator = "nope"', "[train] aggregator must be one of mean, "),
    ],
)
def test_a_bad_recipe_value_leaves_a_finished_run_byte_identical(
    finished_run, capsys, line, bad_line, message
):
    before = _files(finished_run / "run")
    bad = finished_run / "bad.toml"
    assert tiny(seed=2).count(line) == 1
    bad.write_text(tiny(seed=2).replace(line, bad_line))
    capsys.readouterr()
    assert main(["run", str(bad), "--out", str(finished_run / "run"), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith(f"taskgroup: error: {bad}: ")
    assert message in err
    assert _files(finished_run / "run") == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_an_absent_device_writes_nothing(finished_run, capsys):
    out = finished_run / "cuda"
    recipe = str(finished_run / "tiny.toml")
    assert main(["run", recipe, "--out", str(out), "--device", "cuda", "--no-progress"]) == 2
    assert "CUDA is not available" in capsys.readouterr().err
    assert not out.exists()
