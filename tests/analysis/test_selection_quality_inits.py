"""``analysis/selection_quality.py`` beyond three initialisations: the two-stage bootstrap
interval against a hand computation and an independently written resampling loop, the
K-initialisation protocol against a brute force and against the three-initialisation numbers,
the affinity ensembles, the co-training run on scale-normalised losses, and HOA on trainings cut
short."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))

import grouping_quality as gq
import selection_quality as sq

import taskgroup as tg
from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.training.trainer import GroupResult, group_key
from tests.analysis.test_selection_quality import (
    AGGREGATOR,
    DIRECTIONS,
    TASKS,
    brute_force,
    write_layout,
    write_signals,
)


def test_bootstrap_interval_by_hand():
    # one data seed, two held-out initialisations, three groupings; the method chose grouping
    # 2. Resampling the initialisations: (0, 0) scores [0, 1, 2], regret 2 (probability 1/4);
    # (1, 1) scores [4, 0, 1], regret 1 (1/4); (0, 1) or (1, 0) scores [2, 0.5, 1.5], regret 1
    # (1/2). The 95% interval is [1, 2]; the replicates hold only 1 and 2, about 1/4 of them 2.
    block = np.array([[0.0, 1.0, 2.0], [4.0, 0.0, 1.0]])
    draws = sq.bootstrap_regrets([block], [{"m": 2}], reps=2000, seed=3)["m"]
    assert set(np.unique(draws)) == {1.0, 2.0}
    assert (draws == 2.0).mean() == pytest.approx(0.25, abs=0.04)
    assert sq.interval(draws) == [1.0, 2.0]
    # two data seeds of one held-out initialisation each, regrets 3 and 5: the mean over a
    # drawn pair of seeds is 3 (1/4), 4 (1/2) or 5 (1/4)
    blocks = [np.array([[0.0, 3.0]]), np.array([[5.0, 0.0]])]
    draws = sq.bootstrap_regrets(blocks, [{"m": 1}, {"m": 0}], reps=2000, seed=5)["m"]
    assert set(np.unique(draws)) == {3.0, 4.0, 5.0}
    assert (draws == 4.0).mean() == pytest.approx(0.5, abs=0.04)
    assert sq.interval(draws) == [3.0, 5.0]


def independent_bootstrap(blocks, picks, method, reps, seed):
    """The documented scheme written out plainly, without caching: the same draws in the same
    order (seeds, then each drawn seed's initialisations), the regret computed afresh."""
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(reps):
        regrets = []
        for s in rng.integers(len(blocks), size=len(blocks)):
            h = len(blocks[s])
            drawn = rng.integers(h, size=h)
            score = np.mean([blocks[s][i] for i in drawn], axis=0)
            if method in picks[s]:
                regrets.append(score[picks[s][method]] - min(score))
        means.append(np.mean(regrets) if regrets else np.nan)
    return np.array(means)


def test_bootstrap_matches_an_independent_loop():
    rng = np.random.default_rng(0)
    blocks = [rng.normal(size=(h, 7)) for h in (1, 2, 4)]
    picks = [{"x": 3, "y": 0}, {"x": 6}, {"x": 1, "y": 5}]  # y missing on the second seed
    draws = sq.bootstrap_regrets(blocks, picks, reps=300, seed=11)
    for method in ("x", "y"):
        expected = independent_bootstrap(blocks, picks, method, 300, 11)
        np.testing.assert_allclose(draws[method], expected, equal_nan=True)
        kept = expected[~np.isnan(expected)]
        assert sq.interval(draws[method]) == pytest.approx(np.percentile(kept, [2.5, 97.5]))
    # paired: the same replicates for every method
    assert not np.allclose(draws["x"], draws["y"], equal_nan=True)


@pytest.fixture(scope="module")
def five(tmp_path_factory) -> Path:
    """Seed 0 with five complete initialisations; seed 1 with four, the fourth incomplete."""
    out = tmp_path_factory.mktemp("runs5")
    write_layout(out, 0, inits=(0, 1, 2, 3, 4))
    write_signals(out, 0)
    write_layout(out, 1, inits=(0, 1, 2))
    write_layout(out, 1, inits=(3,), skip=None)
    (next((out / "seed1" / "init3").iterdir()) / "result.json").unlink()
    write_signals(out, 1)
    return out


def test_k_initialisations_against_a_brute_force(five):
    summary = sq.score_held_out(five, [0, 1], TASKS, AGGREGATOR, DIRECTIONS, reps=50)
    # every complete initialisation: seed 0 with K = 5, seed 1 with its first three
    assert summary["inits"] == {"0": [0, 1, 2, 3, 4], "1": [0, 1, 2]}
    assert any("seed 1" in n and "{3: 6}" in n for n in summary["notes"])
    for seed, held in ((0, (1, 2, 3, 4)), (1, (1, 2))):
        for budget in (2, 3):
            truth = brute_force(budget, held, "loss")
            for r in summary["rows"]:
                if (r["seed"], r["budget"], r["delta"]) != (seed, budget, "loss"):
                    continue
                value = truth[frozenset(map(tuple, r["groups"]))]
                assert r["delta_m"] == pytest.approx(value)
                assert r["regret"] == pytest.approx(value - min(truth.values()))
                assert r["rank"] == 1 + sum(v < value - 1e-9 for v in truth.values())
                assert len(r["delta_m_inits"]) == len(held) + 1


def test_k_equal_3_reproduces_the_three_initialisation_numbers(five, tmp_path):
    # the first three initialisations of a five-initialisation layout score exactly as a layout
    # that holds only those three (issue 9's protocol); seed 1 lacks a fourth: with K = 4 it is
    # listed, not scored
    three = tmp_path / "runs3"
    write_layout(three, 0)
    write_signals(three, 0)
    a = sq.score_held_out(five, [0], TASKS, AGGREGATOR, DIRECTIONS, inits=3, reps=100)
    b = sq.score_held_out(three, [0], TASKS, AGGREGATOR, DIRECTIONS, reps=100)
    assert a["rows"] == b["rows"]
    assert a["summary"] == b["summary"]
    four = sq.score_held_out(five, [0, 1], TASKS, AGGREGATOR, DIRECTIONS, inits=4, reps=10)
    assert four["inits"] == {"0": [0, 1, 2, 3]}
    assert four["incomplete"] == {"1": {0: 7, 1: 7, 2: 7, 3: 6}}


def test_scored_inits():
    assert sq.scored_inits({0: 7, 1: 7, 2: 3}, 7, None) == [0, 1]
    assert sq.scored_inits({0: 7, 1: 7, 2: 3}, 7, 3) is None
    assert sq.scored_inits({0: 7, 1: 2, 2: 7}, 7, None) == [0, 2]
    assert sq.scored_inits({0: 6, 1: 7, 2: 7}, 7, None) is None
    assert sq.scored_inits({0: 7}, 7, None) is None


def test_normalized_mean_by_hand():
    a = AffinityMatrix(np.array([[1.0, 2.0], [-2.0, 5.0]]), ["x", "y"])
    b = AffinityMatrix(np.array([[9.0, 0.5], [0.5, 9.0]]), ["y", "x"])  # another task order
    # a / mean|off| = a / 2; b in order x, y is [[9, .5], [.5, 9]] / 0.5
    expected = (np.array([[0.5, 1.0], [-1.0, 2.5]]) + np.array([[18.0, 1.0], [1.0, 18.0]])) / 2
    np.testing.assert_allclose(sq.normalized_mean([a, b]).values, expected)


def tiny_benchmark() -> tg.Benchmark:
    """Two regression tasks a hundredfold apart in scale on a shared linear trunk."""
    g = torch.Generator().manual_seed(0)

    def split(rows):
        x = torch.randn(rows, 4, generator=g)
        return tg.data.Split(x, {"small": x[:, 0], "large": 10 * x[:, 1] + x[:, 0]})

    def model(tasks):
        trunk = torch.nn.Sequential(torch.nn.Linear(4, 5), torch.nn.Tanh())
        heads = {
            t.name: torch.nn.Sequential(torch.nn.Linear(5, 1), torch.nn.Flatten(0)) for t in tasks
        }
        return tg.MultiTaskModel(trunk, heads)

    tasks = tg.TaskSet(tg.Task(t, F.mse_loss, kind="regression") for t in ("small", "large"))
    defaults = tg.data.TrainingDefaults(lr=1e-2, batch_size=16, steps=12, every=3)
    return tg.data.Benchmark("tiny", tasks, split(64), split(32), split(32), model, defaults)


def test_measure_scaled():
    bench = tiny_benchmark()
    settings = tg.AffinitySettings(lookahead="optimizer")
    # scales of 1: the benchmark path's very matrix
    plain = tg.measure_affinity(bench, settings, seed=4, progress=False)
    ones = sq.measure_scaled(bench, settings, 4, scales={"small": 1.0, "large": 1.0})
    np.testing.assert_array_equal(ones.values, plain.values)
    # default scales: each task's loss at initialisation on the first batch, computed here
    # from the same model and batch
    scaled = sq.measure_scaled(bench, settings, 4)
    model = bench.make_model(seed=4)
    inputs, targets = next(bench.train.batches(16, seed=4))
    with torch.no_grad():
        out = model(inputs)
    for t in ("small", "large"):
        expected = float(F.mse_loss(out[t], targets[t]))
        assert scaled.metadata["loss_scales"][t] == pytest.approx(expected)
    assert scaled.metadata["loss_scales"]["large"] > 10 * scaled.metadata["loss_scales"]["small"]
    assert not np.allclose(scaled.values, plain.values)


def test_a_verified_pick_of_another_signal_scores_the_same_from_its_file_and_the_digest(
    five, tmp_path
):
    import shutil

    from taskgroup.grouping import Grouping

    runs = tmp_path / "runs"
    shutil.copytree(five, runs)
    plain = sq.verified_path(runs, 0, 2, 8, 0.25)
    AffinityMatrix.load(runs / "seed0" / "affinity_optimizer.json").save(
        runs / "seed0" / "affinity_cosine.json"
    )
    other = sq.verified_path(runs, 0, 2, 8, 0.25, "cosine")
    assert other.name == "verified_cosine_B2_K8_f0.25.json" and plain.name.startswith("verified_B2")
    pick = Grouping.load(plain)
    pick.save(other)

    def rows(summary):
        return [r for r in summary["rows"] if r["method"] == "verified:cosine"]

    options = {"inits": 3, "reps": 20, "verify": [("cosine", 0.25)]}
    from_file = sq.score_held_out(runs, [0], TASKS, AGGREGATOR, DIRECTIONS, **options)
    assert rows(from_file) and all(r["budget"] == 2 for r in rows(from_file))
    digest = {"verified": sq.verified_digest(runs, [0], None)}
    assert set(digest["verified"]["0"]) == {plain.name, other.name}
    other.unlink()
    from_digest = sq.score_held_out(
        runs, [0], TASKS, AGGREGATOR, DIRECTIONS, digest=digest, **options
    )
    assert rows(from_digest) == rows(from_file)
    no_pick = sq.score_held_out(runs, [0], TASKS, AGGREGATOR, DIRECTIONS, **options)
    assert not rows(no_pick)
    assert any(other.name in n for n in no_pick["notes"])


def test_verify_specs_and_their_method_names():
    specs = sq.verify_specs(["optimizer", "cosine", "cosine_short0:0.1"], 0.25)
    assert specs == [("optimizer", 0.25), ("cosine", 0.25), ("cosine_short0", 0.1)]
    names = [sq.verified_method(signal, fraction, 0.25) for signal, fraction in specs]
    assert names == ["verified", "verified:cosine", "verified:cosine_short0 f0.1"]
    assert sq.verified_path(Path("r"), 1, 3, 8, 0.1, "cosine_short0").name == (
        "verified_cosine_short0_B3_K8_f0.1.json"
    )

    for bad in ("cosine:0", "cosine:abc", ":0.1", "cosine:1.5"):
        with pytest.raises(ValueError, match="--verify"):
            sq.verify_specs([bad], 0.25)


def _history_result(result: GroupResult, mid: dict[str, float]) -> GroupResult:
    """``result`` with three evaluations: initialisation, step 100 (losses ``mid``), its end."""
    history = [
        {"step": 0, "criterion": 1.0, "val_loss": dict.fromkeys(result.tasks, 2.0)},
        {"step": 100, "criterion": 0.5, "val_loss": mid},
        {
            "step": result.steps,
            "criterion": 0.1,
            "val_loss": {t: v["loss"] for t, v in result.val.items()},
        },
    ]
    return dataclasses.replace(result, history=history)


def test_cut_short_by_hand():
    full = GroupResult(
        ("a", "b"),
        "mean",
        300,
        300,
        0.1,
        {"a": {"loss": 0.5, "accuracy": 0.9}, "b": {"loss": 0.7}},
        {},
        1,
        30.0,
    )
    result = _history_result(full, {"a": 0.8, "b": 0.9})
    cut = sq.cut_short(result, 150)
    assert cut.val == {"a": {"loss": 0.8, "accuracy": 0.9}, "b": {"loss": 0.9}}
    assert (cut.best_step, cut.steps, cut.seconds) == (100, 150, 15.0)
    assert sq.cut_short(result, 50).val["a"]["loss"] == 2.0  # only the initialisation so far
    assert sq.cut_short(result, 1000).val["b"]["loss"] == 0.7  # stopped before: all of it
    assert sq.cut_short(result, 1000).seconds == 30.0
    with pytest.raises(ValueError, match="a\\+b: no history"):
        sq.cut_short(full, 150)


def test_hoa_on_trainings_cut_short(tmp_path):
    # at step 100 of initialisation 0 the pair {a, c} helps both tasks (0.6 against single 1.0)
    # and {a, b} does not yet (1.05); at its end {a, b} helps (0.5): HOA on the whole trainings
    # picks {a, b}, on the trainings cut at a sixth and a third of a 600-step schedule (both
    # step 100) {a, c} — what initialisations 1 and 2 favour
    write_layout(tmp_path, 0)
    for subset in gq.subsets(TASKS):
        if len(subset) > 2:
            continue
        path = gq.subsets_dir(tmp_path, 0, 0) / group_key(subset, AGGREGATOR) / "result.json"
        stored = json.loads(path.read_text())
        result = GroupResult.from_dict(stored["result"])
        mid = dict.fromkeys(
            subset, 0.6 if subset == ("a", "c") else 1.05 if len(subset) == 2 else 1.0
        )
        stored["result"] = _history_result(result, mid).to_dict()
        path.write_text(json.dumps(stored))
    summary = sq.score_held_out(tmp_path, [0], TASKS, AGGREGATOR, DIRECTIONS, reps=20, schedule=600)
    for budget in (2, 3):
        truth = brute_force(budget, (1, 2), "loss")
        rows = {
            r["method"]: r for r in summary["rows"] if (r["budget"], r["delta"]) == (budget, "loss")
        }
        assert sorted(rows["hoa"]["groups"]) == [["a", "b"], ["c"]]
        for name, cut in (("hoa f0.17", 100), ("hoa f0.33", 200)):
            assert sorted(rows[name]["groups"]) == [["a", "c"], ["b"]]
            assert rows[name]["regret"] == pytest.approx(
                truth[frozenset({("a", "c"), ("b",)})] - min(truth.values())
            )
            # the 6 single and pair networks, each for `cut` of its 1000 steps, of 7 whole ones
            assert rows[name]["cost_seconds"] == pytest.approx(6 * cut / 1000 / 7)
    # without the schedule there is no cut HOA; without histories neither, and a note says why
    plain = sq.score_held_out(tmp_path, [0], TASKS, AGGREGATOR, DIRECTIONS, reps=20)
    assert not any(r["method"].startswith("hoa f") for r in plain["rows"])
    write_layout(tmp_path / "bare", 0)
    bare = sq.score_held_out(
        tmp_path / "bare", [0], TASKS, AGGREGATOR, DIRECTIONS, reps=20, schedule=600
    )
    assert not any(r["method"].startswith("hoa f") for r in bare["rows"])
    assert any(n.startswith("hoa f0.17: a: no history to cut at step 100") for n in bare["notes"])
