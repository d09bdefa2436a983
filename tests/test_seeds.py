"""Δm with variance (issue 16, item 5): every network trained with K initialisations, metrics
and Δm as mean ± 95% Student-t interval, the grouping compared with all tasks together paired by
seed, and one seed exactly as before."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import shutil

import pytest
import tomllib
from scipy import stats

from taskgroup.cli import main
from taskgroup.recipe import parse_recipe
from taskgroup.report.html import render_report
from taskgroup.rundir import RESULTS, TRAIN
from taskgroup.settings import INIT_STRIDE, SettingError, TrainSettings
from taskgroup.training.groups import GroupResults, train_groups
from taskgroup.training.intervals import mean_interval, outcome, t_quantile, verdict
from taskgroup.training.trainer import GroupResult, group_key
from tests.recipes import tiny

# --- the interval ------------------------------------------------------------------------------


def test_the_interval_matches_a_hand_computation():
    values = [-3.1, -1.4, -2.6, -0.9, -2.0]
    # by hand: mean -2.0; deviations -1.1, 0.6, -0.6, 1.1, 0 -> s² = 3.14 / 4 = 0.785;
    # t(0.975, 4) = 2.776 (table); half-width = 2.776 * sqrt(0.785) / sqrt(5) = 1.1000
    interval = mean_interval(values)
    assert interval.mean == pytest.approx(-2.0, abs=1e-12)
    assert interval.half_width == pytest.approx(2.776 * math.sqrt(0.785 / 5), abs=2e-4)
    reference = stats.t.ppf(0.975, 4) * math.sqrt(0.785 / 5)
    assert interval.half_width == pytest.approx(reference, rel=1e-12)
    assert (interval.low, interval.high) == pytest.approx((-2.0 - reference, -2.0 + reference))
    assert interval.values == tuple(values)
    # two seeds: t(0.975, 1) = 12.706 (table), s = |x1 - x2| / sqrt(2)
    two = mean_interval([1.0, 2.0])
    assert two.half_width == pytest.approx(12.706 * (1 / math.sqrt(2)) / math.sqrt(2), rel=1e-4)


def test_one_value_has_no_interval_and_keeps_its_value_exactly():
    one = mean_interval([0.1 + 0.2])
    assert one.mean == 0.1 + 0.2 and one.half_width is None and one.low is None
    assert outcome(one) is None and verdict(one) is None
    assert mean_interval([4.0, 4.0, 4.0]).half_width == 0.0
    with pytest.raises(ValueError, match="at least one value"):
        mean_interval([])


@pytest.mark.parametrize("confidence", [0.9, 0.95, 0.99])
@pytest.mark.parametrize("df", [1, 2, 3, 4, 5, 6, 9, 10, 19, 30, 99])
def test_t_quantile_equals_scipys(df, confidence):
    assert t_quantile(confidence, df) == pytest.approx(
        stats.t.ppf((1 + confidence) / 2, df), rel=1e-12
    )


@pytest.mark.parametrize(
    ("values", "side", "opening"),
    [
        ([-3.0, -2.0, -2.5], "grouping", "the chosen grouping beats all tasks together with 95%"),
        ([-3.0, 1.0, -1.0], "noise", "the difference is within noise (Δm against all together"),
        ([2.0, 3.0, 2.5], "together", "all tasks together beat the chosen grouping with 95%"),
    ],
)
def test_the_verdict_says_which_side_of_zero_the_interval_lies(values, side, opening):
    interval = mean_interval(values)
    assert outcome(interval) == side
    sentence = verdict(interval)
    assert sentence.startswith(opening)
    assert f"[{interval.low:+.2f}%, {interval.high:+.2f}%]" in sentence
    assert "over 3 initialisations" in sentence


# --- the setting and the command line ----------------------------------------------------------


def test_seeds_is_a_positive_integer_that_does_not_identify_a_network():
    assert TrainSettings().seeds == 1
    for bad in (0, -1, 1.5, True):
        with pytest.raises(SettingError, match=r"^seeds must be a positive integer, got"):
            TrainSettings(seeds=bad)
    assert TrainSettings(seeds=3).network() == TrainSettings().network()
    third = TrainSettings(seed=7, seeds=3).initialisation(2)
    assert (third.seed, third.seeds) == (7 + 2 * INIT_STRIDE, 1)
    with pytest.raises(ValueError, match=r"initialisation must lie in 0\.\.2"):
        TrainSettings(seeds=3).initialisation(3)


def snapshot(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("value", ["0", "-1"])
@pytest.mark.parametrize("command", ["train", "run"])
def test_a_bad_seeds_option_is_one_line_and_writes_nothing(tmp_path, capsys, command, value):
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(tiny())
    out = tmp_path / "run"
    out.mkdir()
    (out / "groups.json").write_text('{"groups": [["g0_t0", "g0_t1"], ["g1_t0", "g1_t1"]]}')
    before = snapshot(tmp_path)
    if command == "train":
        args = ["train", str(out), "--recipe", str(recipe), "--seeds", value]
    else:
        args = ["run", str(recipe), "--out", str(out), "--seeds", value]
    assert main([*args, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"taskgroup: error: --seeds must be a positive integer, got {value}"
    assert snapshot(tmp_path) == before


# --- training with several seeds ---------------------------------------------------------------

GROUPS = [("g0_t0", "g0_t1"), ("g1_t0", "g1_t1")]


@pytest.fixture(scope="module")
def tiny_recipe():
    return parse_recipe(tomllib.loads(tiny()), "tiny.toml")


def without_seconds(data):
    if isinstance(data, dict):
        return {k: without_seconds(v) for k, v in data.items() if k != "seconds"}
    if isinstance(data, list):
        return [without_seconds(v) for v in data]
    return data


@pytest.fixture(scope="module")
def trained(tiny_recipe, tmp_path_factory):
    """The tiny recipe's groups trained with seeds=2, and apart with seed 0 and seed 1000."""
    bench, settings = tiny_recipe.load_benchmark(), tiny_recipe.train
    out = tmp_path_factory.mktemp("seeds")
    apart = [
        train_groups(bench, GROUPS, settings=settings, seed=seed, out=out / f"seed{seed}")
        for seed in (0, INIT_STRIDE)
    ]
    both = train_groups(bench, GROUPS, settings=settings, seeds=2, out=out / "both")
    return out, bench, both, apart


def test_each_seed_equals_a_one_seed_training_with_that_seed(trained):
    out, _, both, apart = trained
    assert both.seeds == [0, INIT_STRIDE] and len(both.per_seed) == 2
    for one, alone in zip(both.per_seed, apart, strict=True):
        assert without_seconds(one.to_dict()) == without_seconds(alone.to_dict())
    # initialisation 0 keeps the one-seed layout; initialisation 1 has folders of its own
    for key in (group_key(g, "mean") for g in GROUPS):
        zero, one = out / "both" / TRAIN / key, out / "both" / TRAIN / "init1" / key
        for folder, alone in ((zero, "seed0"), (one, f"seed{INIT_STRIDE}")):
            stored = json.loads((folder / "result.json").read_text())
            apart_stored = json.loads((out / alone / TRAIN / key / "result.json").read_text())
            assert without_seconds(stored) == without_seconds(apart_stored)


def test_one_seed_writes_what_it_always_wrote(trained):
    out, _, _, apart = trained
    written = json.loads((out / "seed0" / RESULTS).read_text())
    assert "seeds" not in written and "seeds" not in written["settings"]
    assert not (out / "seed0" / TRAIN / "init1").exists()
    assert apart[0].initialisations == () and apart[0].verdict() is None


def test_results_carry_per_seed_values_and_intervals(trained):
    out, _, both, apart = trained
    written = json.loads((out / "both" / RESULTS).read_text())
    seeds = written["seeds"]
    assert seeds["seeds"] == [0, INIT_STRIDE]
    per_seed = [a.delta_m() for a in apart]
    assert seeds["delta_m"]["values"] == per_seed
    mean = (per_seed[0] + per_seed[1]) / 2
    half = 12.706204736 * abs(per_seed[0] - per_seed[1]) / math.sqrt(2) / math.sqrt(2)
    assert seeds["delta_m"]["mean"] == pytest.approx(mean) == written["delta_m"]
    assert seeds["delta_m"]["half_width"] == pytest.approx(half, rel=1e-9)
    against = [a.delta_m(against="together") for a in apart]
    assert seeds["delta_m_against_together"]["values"] == against
    assert seeds["verdict"] == verdict(mean_interval(against))
    accuracy = seeds["metrics"]["grouped"]["g0_t0"]["mae"]
    assert accuracy["values"] == [a.metrics["g0_t0"]["mae"] for a in apart]
    together = seeds["metrics"]["together"]["g1_t1"]["loss"]["values"]
    assert together == [a.together.test["g1_t1"]["loss"] for a in apart]
    loaded = GroupResults.load(out / "both" / RESULTS)
    assert loaded.to_dict() == both.to_dict()
    assert "± " in both.table() and both.table().count("\n") > len(both.tasks)


def test_more_seeds_on_a_one_seed_run_train_only_the_new_initialisation(
    trained, tiny_recipe, tmp_path, monkeypatch
):
    out, bench, both, _ = trained
    run = shutil.copytree(out / "seed0", tmp_path / "run")
    import taskgroup.training.trainer as trainer

    built = []
    real = trainer.MTLStep

    def counted(*args, **kwargs):
        built.append(args[1].names)  # the network's tasks
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer, "MTLStep", counted)
    more = train_groups(bench, GROUPS, settings=tiny_recipe.train, seeds=2, out=run)
    assert len(built) == 2 + 4 + 1  # initialisation 1: the groups, each task alone, together
    assert without_seconds(more.to_dict()) == without_seconds(both.to_dict())


# --- the report --------------------------------------------------------------------------------

DIRECTIONS = {"a": {"loss": False, "accuracy": True}, "b": {"loss": False, "mae": False}}
ALONE = {"a": {"loss": 0.5, "accuracy": 0.90}, "b": {"loss": 1.0, "mae": 1.0}}
TOGETHER = {"a": {"loss": 0.6, "accuracy": 0.88}, "b": {"loss": 1.2, "mae": 1.1}}


def network(tasks, test) -> GroupResult:
    return GroupResult(
        tasks=tuple(tasks),
        aggregator="mean",
        best_step=10,
        steps=20,
        criterion=0.5,
        val={t: {"loss": 1.0} for t in tasks},
        test={t: test[t] for t in tasks},
        parameters=100,
        seconds=1.0,
    )


def one_seed(seed: int, accuracy: float, mae: float) -> GroupResults:
    grouped = {"a": {"loss": 0.5, "accuracy": accuracy}, "b": {"loss": 1.0, "mae": mae}}
    return GroupResults(
        tasks=["a", "b"],
        aggregator="mean",
        groups=[network("ab", grouped)],
        serves={"a": 0, "b": 0},
        single={t: network(t, ALONE) for t in "ab"},
        together=network("ab", TOGETHER),
        directions=DIRECTIONS,
        settings={"seed": seed},
    )


def against_together(accuracy: float, mae: float) -> float:
    """Δm of the grouping against all together, by hand (accuracy higher, mae lower is better)."""
    return 100 * (-(accuracy - 0.88) / 0.88 + (mae - 1.1) / 1.1) / 2


def several_seeds(grouped: list[tuple[float, float]]) -> GroupResults:
    first, *others = [one_seed(INIT_STRIDE * k, a, m) for k, (a, m) in enumerate(grouped)]
    return dataclasses.replace(first, initialisations=tuple(others))


@pytest.mark.parametrize(
    ("grouped", "sentence"),
    [
        (
            [(0.92, 0.90), (0.93, 0.95), (0.91, 0.85)],
            "The chosen grouping beats all tasks together with 95% confidence",
        ),
        ([(0.92, 0.90), (0.86, 1.25), (0.91, 0.85)], "The difference is within noise"),
    ],
)
def test_the_report_shows_the_intervals_and_the_verdict(tmp_path, grouped, sentence):
    results = several_seeds(grouped)
    results.save(tmp_path / RESULTS)
    per_seed = [against_together(a, m) for a, m in grouped]
    mean = sum(per_seed) / 3
    s = math.sqrt(sum((v - mean) ** 2 for v in per_seed) / 2)
    half = 4.302652729749464 * s / math.sqrt(3)  # t(0.975, 2)
    page = render_report(tmp_path)
    summary = re.search(r'<section id="summary">(.*?)</section>', page, flags=re.S).group(1)
    shown = f"{'−' if mean < 0 else '+'}{abs(mean):.2f}% ± {half:.2f}%"
    assert f'data-delta-m="together">{shown}</strong>' in summary
    assert sentence in summary
    assert f"[{'−' if mean - half < 0 else '+'}{abs(mean - half):.2f}%," in summary
    assert "over 3 initialisations" in summary and "seeds 0, 1000, 2000" in summary
    # the results table: grouped accuracy of task a as mean ± interval
    accuracies = [a for a, _ in grouped]
    mean_a = sum(accuracies) / 3
    half_a = 4.302652729749464 * math.sqrt(sum((v - mean_a) ** 2 for v in accuracies) / 2)
    half_a /= math.sqrt(3)
    decimals = 1 - math.floor(math.log10(half_a))
    assert f"<td>{mean_a:.{decimals}f} ± {half_a:.{decimals}f}</td>" in page


def test_one_seed_shows_no_interval(tmp_path):
    several_seeds([(0.92, 0.90)]).save(tmp_path / RESULTS)
    page = render_report(tmp_path)
    assert "±" not in page and "confidence" not in page and "initialisations" not in page
