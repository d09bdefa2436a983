"""pair_results: shape, validation-only losses, cost, resume; HOA from it."""

import json

import pytest

import taskgroup as tg
from taskgroup.grouping import PairTable
from taskgroup.training.trainer import group_key

FAST = {"steps": 20, "eval_every": 10, "batch_size": 32}


@pytest.fixture(scope="module")
def bench():
    return tg.data.get("planted", n_train=128, n_val=32, n_test=32, groups=2, tasks_per_group=2)


@pytest.fixture(scope="module")
def table(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("pairs")
    return out, tg.pair_results(bench, FAST, out=out)


def test_shape_cost_and_validation_losses(table, bench):
    out, t = table
    tasks = bench.tasks.names
    assert t.tasks == tasks and set(t.single) == set(tasks)
    assert all(set(t.pair[a]) == set(tasks) - {a} for a in tasks)
    assert t.cost["networks"] == 4 + 6 and t.cost["steps"] == 10 * FAST["steps"]
    assert t.metadata["split"] == "val"
    for a in tasks:  # read independently from each training's result.json
        alone = json.loads((out / "train" / group_key((a,), "mean") / "result.json").read_text())
        assert t.single[a] == alone["result"]["val"][a]["loss"]
        for b in tasks:
            if a < b:
                path = out / "train" / group_key((a, b), "mean") / "result.json"
                both = json.loads(path.read_text())["result"]["val"]
                assert t.pair[a][b] == both[a]["loss"] and t.pair[b][a] == both[b]["loss"]
    assert PairTable.load(out / "pairs.json") == t


def test_resume_reads_finished_trainings_back(table, bench, monkeypatch):
    out, t = table
    import taskgroup.training.trainer as trainer

    def no_training(*args, **kwargs):
        raise AssertionError("a finished training ran again")

    monkeypatch.setattr(trainer, "MTLStep", no_training)
    assert tg.pair_results(bench, tg.TrainSettings.for_benchmark(bench, **FAST), out=out) == t


def test_hoa_from_the_table(table):
    _, t = table
    g = tg.select_groups(t, 2, method="hoa")
    assert g.method == "hoa" and len(g.groups) <= 2
    assert g.info["cost"] == t.cost


def test_bad_arguments(bench):
    with pytest.raises(TypeError, match="settings"):
        tg.pair_results(bench, 3)
    with pytest.raises(ValueError, match="workers"):
        tg.pair_results(bench, FAST, workers=0)
    with pytest.raises(ValueError, match="at least 2"):
        tg.pair_results(bench.select(["g0_t0"]), FAST)
