"""The held-out protocol in ``analysis/selection_quality.py`` on a fabricated run layout.

Three tasks a, b, c, every subset "trained" with three initialisations (``inits=3``: issue 9's
protocol, whose numbers these tests fixed before it took K initialisations) whose losses are set
so that initialisation 0 and the held-out initialisations 1 and 2 disagree: in initialisation 0 the
pair {a, b} helps both tasks, in 1 and 2 it hurts and {a, c} helps instead. A method that selects
from initialisation 0 must then be charged for it; the expected numbers are worked out by hand
below and, for every row, by an independent brute force over groupings of task names.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))

import grouping_quality as gq
import selection_quality as sq

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import Grouping
from taskgroup.training.trainer import GroupResult, group_key

TASKS = ["a", "b", "c"]
AGGREGATOR = "mean"
DIRECTIONS = {t: {"loss": False, "accuracy": True} for t in TASKS}
SECONDS, STEPS = 10.0, 1000  # every fabricated training; exhaustive search = 7 of them
# task's loss in a subset, per initialisation: singles 1.0, all three together 1.2, other
# pairs 1.05; the special pairs below
SPECIAL = {
    0: {("a", "b"): 0.5},
    1: {("a", "b"): 1.1, ("a", "c"): 0.6},
    2: {("a", "b"): 1.3, ("a", "c"): 0.8},
    # two more initialisations for the K-initialisation tests (test_selection_quality_inits.py)
    3: {("b", "c"): 0.7},
    4: {("a", "b"): 0.9, ("b", "c"): 0.95, ("a", "b", "c"): 1.0},
}


def loss(init: int, task: str, subset: tuple[str, ...]) -> float:
    if len(subset) == 1:
        return 1.0
    if len(subset) == 3:
        return 1.2
    return SPECIAL[init].get(subset, 1.05)


def write_layout(out: Path, seed: int, inits=(0, 1, 2), skip: tuple[str, ...] | None = None):
    for init in inits:
        for subset in gq.subsets(TASKS):
            if init == 2 and subset == skip:
                continue
            metrics = {t: {"loss": loss(init, t, subset), "accuracy": 0.5} for t in subset}
            result = GroupResult(
                tasks=subset,
                aggregator=AGGREGATOR,
                best_step=STEPS,
                steps=STEPS,
                criterion=1.0,
                val=metrics,
                test=metrics,
                parameters=1,
                seconds=SECONDS,
            )
            directory = gq.subsets_dir(out, seed, init) / group_key(subset, AGGREGATOR)
            directory.mkdir(parents=True)
            config = {"tasks": list(subset), "settings": {"seed": seed + 1000 * init}}
            (directory / "result.json").write_text(
                json.dumps({"config": config, "result": result.to_dict()})
            )


def write_signals(out: Path, seed: int) -> None:
    root = out / f"seed{seed}"
    # a and c help each other, c helps b: TAG (a singleton serves no task) picks {a,c},{b,c}
    helps_ac = np.array([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0], [1.0, 0.5, 1.0]])
    AffinityMatrix(helps_ac, TASKS, seconds=7.0, steps_trained=100).save(
        root / "affinity_optimizer.json"
    )
    # a source whose own step does not help itself: the relative variant is undefined
    AffinityMatrix(-np.eye(3) + 0.1, TASKS, seconds=7.0, steps_trained=100).save(
        root / "affinity_first_order.json"
    )
    verified = Grouping(
        groups=[("a", "c"), ("b",)],
        score=0.0,
        serves={"a": 0, "b": 1, "c": 0},
        values=dict.fromkeys(TASKS, 0.0),
        optimal=False,
        bound=None,
        method="verified",
        budget=2,
        partition=False,
        singleton_score=None,
        tasks=TASKS,
        info={"cost": {"networks": 3, "steps": 300, "seconds": 7.0}},
    )
    verified.save(root / "verified_B2_K8_f0.25.json")  # none at B = 3


def brute_force(budget: int, inits, metric: str) -> dict[frozenset, float]:
    """Every grouping of at most ``budget`` subsets covering the tasks → its Δm (points,
    ``metric`` of each task, served by the lowest validation loss) averaged over ``inits``."""
    subsets = [s for r in (1, 2, 3) for s in itertools.combinations(TASKS, r)]
    table = {}
    for size in range(1, budget + 1):
        for grouping in itertools.combinations(subsets, size):
            if set().union(*grouping) != set(TASKS):
                continue
            per_init = []
            for init in inits:
                total = 0.0
                for t in TASKS:
                    serving = min((g for g in grouping if t in g), key=lambda g: loss(init, t, g))
                    value = loss(init, t, serving) if metric == "loss" else 0.5
                    single = loss(init, t, (t,)) if metric == "loss" else 0.5
                    sign = -1 if metric == "accuracy" else 1
                    total += sign * (value - single) / single
                per_init.append(100 * total / len(TASKS))
            table[frozenset(grouping)] = sum(per_init) / len(per_init)
    return table


@pytest.fixture(scope="module")
def summary(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("runs")
    write_layout(out, 0)
    write_signals(out, 0)
    write_layout(out, 1, skip=("b", "c"))  # initialisation 2 not finished
    write_signals(out, 1)
    return sq.score_held_out(out, [0, 1], TASKS, AGGREGATOR, DIRECTIONS, inits=3, reps=200)


def row(summary: dict, method: str, budget: int = 2, delta: str = "loss") -> dict:
    (found,) = [
        r
        for r in summary["rows"]
        if r["method"] == method and r["budget"] == budget and r["delta"] == delta
    ]
    return found


def test_only_complete_seeds_are_scored(summary):
    assert summary["seeds"] == [0]
    assert summary["incomplete"] == {"1": {0: 7, 1: 7, 2: 6}}
    assert {r["seed"] for r in summary["rows"]} == {0}


def test_held_out_regret_and_rank_by_hand(summary):
    # Δm (loss) = 100/3 Σ_t (served loss − 1). Initialisation 0's best grouping is {a,b},{c}
    # (−33.33); exhaustive search (validation pick) and HOA (pairs of init 0) both choose it.
    # Held out, {a,b},{c} is (+6.67 + 20) / 2 = +13.33 and the best is {a,c},{b}:
    # (−26.67 − 13.33) / 2 = −20; groupings strictly better than +13.33 at B = 2: {a,c},{b}
    # −20, {a,c},{b,c} −18.33, {a,b},{a,c} and {a,c},{a,b,c} −13.33, {a},{b,c} +3.33,
    # {a,b},{b,c} and {b,c},{a,b,c} +10 → rank 8 of the 13 groupings (1 of one network, 12 of
    # two).
    for method in ("exhaustive", "exhaustive:test", "hoa"):
        r = row(summary, method)
        assert sorted(map(tuple, r["groups"])) == [("a", "b"), ("c",)]
        assert r["delta_m"] == pytest.approx(40 / 3)
        assert r["best"] == pytest.approx(-20.0)
        assert r["regret"] == pytest.approx(40 / 3 + 20)
        assert (r["rank"], r["groupings"]) == (8, 13)
        assert r["delta_m_inits"] == pytest.approx([-100 / 3, 20 / 3, 20.0])
        assert r["regret_init0"] == pytest.approx(0.0)  # looks perfect on what it saw
        # against the mean of all three initialisations: (−33.33 + 6.67 + 20) / 3 = −2.22;
        # the best there is {a,b},{a,c}: (−31.67 − 23.33 − 3.33) / 3 = −19.44
        assert r["regret_all_inits"] == pytest.approx(-20 / 9 + 175 / 9)
    # TAG picks {a,c},{b,c} from the affinity (no subset training): held out (−25 − 11.67) / 2
    # = −18.33, second best
    for method in ("tag:optimizer", "tag:optimizer/source"):
        r = row(summary, method)
        assert sorted(map(tuple, r["groups"])) == [("a", "c"), ("b", "c")]
        assert r["delta_m"] == pytest.approx(-55 / 3)
        assert (r["regret"], r["rank"]) == (pytest.approx(5 / 3), 2)
    r = row(summary, "verified")  # the fabricated verified pick is the held-out best
    assert sorted(map(tuple, r["groups"])) == [("a", "c"), ("b",)]
    assert (r["regret"], r["rank"]) == (pytest.approx(0.0), 1)


def test_every_row_matches_a_brute_force(summary):
    for budget in (2, 3):
        for delta, metric in (("loss", "loss"), ("metric", "accuracy")):
            held = brute_force(budget, (1, 2), metric)
            every = brute_force(budget, (0, 1, 2), metric)
            rows = [r for r in summary["rows"] if r["budget"] == budget and r["delta"] == delta]
            assert rows
            for r in rows:
                value = held[frozenset(map(tuple, r["groups"]))]
                assert r["delta_m"] == pytest.approx(value)
                assert r["best"] == pytest.approx(min(held.values()))
                assert r["regret"] == pytest.approx(value - min(held.values()))
                assert r["rank"] == 1 + sum(v < value - 1e-9 for v in held.values())
                assert r["groupings"] == len(held)
                chosen_all = every[frozenset(map(tuple, r["groups"]))]
                assert r["regret_all_inits"] == pytest.approx(chosen_all - min(every.values()))


def test_methods_and_costs(summary):
    methods = {r["method"] for r in summary["rows"] if r["budget"] == 2}
    # first-order's relative variant is undefined (negative diagonal) and cosine, the scaled
    # and the short runs were not measured: skipped with a note, as is the missing verified
    # pick at B = 3
    assert methods == {
        "tag:optimizer",
        "tag:optimizer/source",
        "tag:optimizer partition",
        "tag:optimizer singleton=0",
        "tag:first_order",
        "hoa",
        "verified",
        "exhaustive",
        "exhaustive:test",
    }
    assert "verified" not in {r["method"] for r in summary["rows"] if r["budget"] == 3}
    assert any("first_order/source" in n for n in summary["notes"])
    assert any("verified_B3" in n for n in summary["notes"])
    assert any("cosine" in n and "optimizer_scaled" in n for n in summary["notes"])
    cost = {r["method"]: r["cost_seconds"] for r in summary["rows"] if r["budget"] == 2}
    assert cost["tag:optimizer"] == pytest.approx(7 / 70)
    assert cost["verified"] == pytest.approx(14 / 70)
    assert cost["hoa"] == pytest.approx(60 / 70)  # 3 singles + 3 pairs
    assert cost["exhaustive"] == cost["exhaustive:test"] == 1.0


def test_summary_and_plot(summary, tmp_path):
    (s,) = [
        s
        for s in summary["summary"]
        if (s["delta"], s["budget"], s["method"]) == ("loss", 2, "exhaustive")
    ]
    assert s["seeds"] == [0]
    assert s["regret_mean"] == s["regret_worst"] == pytest.approx(100 / 3)
    rows = [{**row(summary, "hoa"), "seed": k, "regret": float(k)} for k in range(3)]
    (two,) = sq.summarise(rows)
    assert (two["regret_mean"], two["regret_worst"]) == (1.0, 2.0)
    # against the noise floor (exhaustive search's held-out regret, 100/3 above): TAG's
    # +5/3 (rank 2 of 13)
    (tag,) = [
        s
        for s in summary["summary"]
        if (s["delta"], s["budget"], s["method"]) == ("loss", 2, "tag:optimizer")
    ]
    assert tag["regret_mean"] - s["regret_mean"] == pytest.approx(5 / 3 - 100 / 3)
    assert tag["top_mean"] == pytest.approx(100 * 2 / 13)
    path = tmp_path / "plot.png"
    sq.plot_cost_regret(summary, path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not math.isnan(s["cost_seconds"])


def test_partition_and_singleton_variants_by_hand(summary):
    # disjoint groups: with singletons serving no task only {a,b,c} remains (score −0.25);
    # held out it is +20 (every task at 1.2) against the best −20: regret 40
    r = row(summary, "tag:optimizer partition")
    assert r["groups"] == [["a", "b", "c"]]
    assert (r["delta_m"], r["regret"]) == (pytest.approx(20.0), pytest.approx(40.0))
    # singleton_score 0: {a,c},{b} scores 1 + 1 + 0 = 2, {a,c},{b,c} 1 + max(1, −1) + 0.5: the
    # same pick as the default
    r = row(summary, "tag:optimizer singleton=0")
    assert sorted(map(tuple, r["groups"])) == [("a", "c"), ("b", "c")]
