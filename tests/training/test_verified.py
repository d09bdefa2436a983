"""verified_selection: admissible, deterministic for a seed, resumable, and its cost."""

import numpy as np
import pytest

import taskgroup as tg

FAST = {"steps": 40, "eval_every": 10, "batch_size": 32}


@pytest.fixture(scope="module")
def bench():
    return tg.data.get("planted", n_train=128, n_val=32, n_test=32, groups=2, tasks_per_group=2)


@pytest.fixture(scope="module")
def affinity(bench):
    values = np.random.default_rng(0).normal(size=(4, 4)) * 0.01
    return tg.AffinityMatrix(values, bench.tasks.names)


def admissible(g: tg.Grouping, budget: int, tasks) -> bool:
    members = {t for group in g.groups for t in group}
    return (
        1 <= len(g.groups) <= budget
        and members == set(tasks)
        and all(t in g.groups[g.serves[t]] for t in tasks)
    )


def comparable(g: tg.Grouping) -> dict:
    info = {k: v for k, v in g.info.items() if k not in ("trained", "cost")}
    return {"groups": g.groups, "serves": g.serves, "values": g.values, "info": info}


@pytest.mark.parametrize("budget", [1, 2, 3])
def test_never_violates_the_budget_or_misses_a_task(bench, affinity, budget):
    g = tg.verified_selection(bench, affinity, budget, shortlist=4, fraction=0.5, settings=FAST)
    assert admissible(g, budget, bench.tasks.names)
    assert g.method == "verified" and g.budget == budget and not g.optimal
    chosen = g.info["candidates"][g.info["chosen_candidate"]]["groups"]
    assert set(map(tuple, g.groups)) <= set(map(tuple, chosen))
    assert g.score == pytest.approx(sum(g.values.values()))
    assert g.info["delta_m_val_loss"] == pytest.approx(-100 * g.score / 4)
    cost = g.info["cost"]
    assert cost["networks"] == len(g.info["trained"])
    assert cost["steps"] == sum(r["steps"] for r in g.info["trained"])
    assert all(r["steps"] <= 20 for r in g.info["trained"])  # half of 40 steps


def test_deterministic_for_a_seed(bench, affinity):
    runs = [
        tg.verified_selection(bench, affinity, 2, shortlist=5, fraction=0.5, settings=FAST, seed=3)
        for _ in range(2)
    ]
    assert comparable(runs[0]) == comparable(runs[1])
    assert runs[0].info["cost"]["steps"] == runs[1].info["cost"]["steps"]


def test_halving_drops_candidates_and_resume_trains_nothing(bench, affinity, tmp_path, monkeypatch):
    g = tg.verified_selection(
        bench, affinity, 2, shortlist=5, fraction=1.0, settings=FAST, out=tmp_path
    )
    rungs = g.info["rungs"]
    assert [len(r["criteria"]) for r in rungs] == [5, 3, 2]
    assert [r["steps"] for r in rungs] == [10, 20, 40]
    winner = min(rungs[-1]["criteria"], key=lambda c: (rungs[-1]["criteria"][c], int(c)))
    assert g.info["chosen_candidate"] == int(winner)
    assert g.info["reference_source"].startswith("single-task")

    import taskgroup.training.trainer as trainer

    def no_training(*args, **kwargs):
        raise AssertionError("a finished rung trained again")

    monkeypatch.setattr(trainer, "MTLStep", no_training)
    again = tg.verified_selection(
        bench, affinity, 2, shortlist=5, fraction=1.0, settings=FAST, out=tmp_path
    )
    assert comparable(again) == comparable(g)


def test_explicit_candidates_and_given_references(bench):
    tasks = bench.tasks.names
    candidates = [[tasks[:2], tasks[2:]], [tasks], [[tasks[0]], tasks[1:]]]
    refs = dict.fromkeys(tasks, 1.0)
    g = tg.verified_selection(
        bench, None, 2, shortlist=candidates, references=refs, settings=FAST, halving=False
    )
    assert admissible(g, 2, tasks)
    assert len(g.info["rungs"]) == 1 and len(g.info["rungs"][0]["criteria"]) == 3
    assert g.info["reference_source"] == "given"
    criteria = g.info["rungs"][0]["criteria"]
    assert g.info["delta_m_val_loss"] == criteria[str(g.info["chosen_candidate"])]
    assert g.info["delta_m_val_loss"] == min(criteria.values())
    assert g.info["cost"]["networks"] == 5  # the candidates' distinct groups, no single-task runs


def test_bad_input_fails_before_training(bench, affinity):
    tasks = bench.tasks.names
    with pytest.raises(ValueError, match="more than the budget"):
        tg.verified_selection(bench, None, 1, shortlist=[[tasks[:2], tasks[2:]]])
    with pytest.raises(ValueError, match="misses task"):
        tg.verified_selection(bench, None, 2, shortlist=[[tasks[:2]]])
    with pytest.raises(ValueError, match="fraction"):
        tg.verified_selection(bench, affinity, 2, fraction=0.0)
    with pytest.raises(ValueError, match="needs an affinity"):
        tg.verified_selection(bench, None, 2, shortlist=3)
    with pytest.raises(ValueError, match="disjoint"):
        tg.verified_selection(bench, None, 2, shortlist=[[tasks[:3], tasks[2:]]], partition=True)
