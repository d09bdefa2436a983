"""train_groups: serving, baselines, Δm, cost, resume, workers and bad groupings."""

import pytest

import taskgroup as tg
from taskgroup.grouping.objective import check_groups
from taskgroup.training.groups import GroupResults, read_groups, train_groups
from taskgroup.training.metrics import delta_m


@pytest.fixture(scope="module")
def bench():
    return tg.data.get("planted", n_train=256, n_val=64, n_test=64, groups=2, tasks_per_group=2)


FAST = {"steps": 30, "eval_every": 10, "batch_size": 32}
GROUPS = [("g0_t0", "g0_t1"), ("g0_t1", "g1_t0", "g1_t1")]  # g0_t1 sits in two groups


@pytest.fixture(scope="module")
def results(bench, tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    return out, train_groups(bench, GROUPS, "nash_mtl", out=out, **FAST)


def test_each_task_is_served_by_its_best_validation_network(results):
    _, r = results
    assert r.serves["g0_t0"] == 0 and r.serves["g1_t0"] == r.serves["g1_t1"] == 1
    losses = [g.val["g0_t1"]["loss"] for g in r.groups]
    assert r.serves["g0_t1"] == losses.index(min(losses))
    assert r.metrics["g0_t1"] == r.groups[r.serves["g0_t1"]].test["g0_t1"]


def test_baselines_and_delta_m_from_their_parts(results, bench):
    _, r = results
    assert set(r.single) == set(bench.tasks.names)
    assert all(s.tasks == (t,) and s.aggregator == "mean" for t, s in r.single.items())
    assert r.together.tasks == tuple(bench.tasks.names) and r.together.aggregator == "nash_mtl"
    # independent Δm: mean over tasks of the relative change in MAE (lower is better)
    by_hand = (
        100
        * sum(
            (r.metrics[t]["mae"] - r.single[t].test[t]["mae"]) / r.single[t].test[t]["mae"]
            for t in bench.tasks.names
        )
        / len(bench.tasks)
    )
    assert r.delta_m() == pytest.approx(by_hand)
    assert r.delta_m_together() == pytest.approx(
        delta_m(r.together.test, {t: r.single[t].test[t] for t in r.tasks}, r.directions)
    )
    assert r.delta_m(against="together") == pytest.approx(
        delta_m(r.metrics, r.together.test, r.directions)
    )


def test_cost_counts_every_network(results):
    _, r = results
    cost = r.cost
    assert cost["groups"]["networks"] == 2 and cost["single"]["networks"] == 4
    assert cost["groups"]["steps"] == sum(g.steps for g in r.groups)
    assert cost["together"]["parameters"] == r.together.parameters


def test_results_round_trip_and_resume_skips_finished_trainings(results, bench, monkeypatch):
    out, r = results
    loaded = GroupResults.load(out / "results.json")
    assert loaded.to_dict() == r.to_dict()

    import taskgroup.training.trainer as trainer

    def no_training(*args, **kwargs):
        raise AssertionError("a finished training ran again")

    monkeypatch.setattr(trainer, "MTLStep", no_training)
    again = train_groups(bench, GROUPS, "nash_mtl", out=out, **FAST)
    assert again.to_dict() == r.to_dict()


def test_two_workers_give_the_same_results(bench, tmp_path, results):
    _, r = results
    parallel = train_groups(bench, GROUPS, "nash_mtl", out=tmp_path, workers=2, **FAST)

    def without_seconds(data):
        if isinstance(data, dict):
            return {k: without_seconds(v) for k, v in data.items() if k != "seconds"}
        if isinstance(data, list):
            return [without_seconds(v) for v in data]
        return data

    assert without_seconds(parallel.to_dict()) == without_seconds(r.to_dict())


def test_bad_groupings_are_named(bench, tmp_path):
    names = bench.tasks.names
    with pytest.raises(ValueError, match=r"unknown task.*'nope'"):
        check_groups([("g0_t0", "nope"), tuple(names)], names)
    with pytest.raises(ValueError, match=r"misses task.*'g1_t1'"):
        check_groups([("g0_t0", "g0_t1", "g1_t0")], names)
    with pytest.raises(ValueError, match="repeats a task"):
        check_groups([("g0_t0", "g0_t0"), tuple(names)], names)
    with pytest.raises(ValueError, match=r"group \['g0_t1', 'g0_t0'\] appears twice"):
        check_groups([("g0_t0", "g0_t1"), tuple(names), ("g0_t1", "g0_t0")], names)
    with pytest.raises(ValueError, match="workers"):
        train_groups(bench, [tuple(names)], workers=0)
    with pytest.raises(ValueError, match="aggregator must be one of mean, "):
        train_groups(bench, [tuple(names)], "nope")
    path = tmp_path / "groups.json"
    path.write_text('{"groups": [["a"], []]}')
    with pytest.raises(ValueError, match=r"groups\.json: expected 'groups'"):
        read_groups(path)
    path.write_text('[["a", "b"], ["c"]]')
    assert read_groups(path) == [("a", "b"), ("c",)]


def test_a_grouping_object_is_accepted(bench):
    values = [[0.0, 1, -1, -1], [1, 0, -1, -1], [-1, -1, 0, 1], [-1, -1, 1, 0]]
    grouping = tg.select_groups(values, 2, tasks=bench.tasks.names)
    r = train_groups(bench, grouping, baselines=False, **FAST)
    assert [g.tasks for g in r.groups] == [("g0_t0", "g0_t1"), ("g1_t0", "g1_t1")]
    assert r.single is None and "delta_m" not in r.to_dict()
    with pytest.raises(ValueError, match="no baselines"):
        r.delta_m()
