"""verify: the verified selection's choice, with a stand-in training instead of networks."""

from __future__ import annotations

import itertools

import pytest

from taskgroup.grouping.verified import (
    ShortTraining,
    candidate_groupings,
    canonical,
    rungs,
    verify,
)

TASKS = ["a", "b", "c", "d"]


def loss(group: tuple[str, ...], task: str, steps: int) -> float:
    """A made-up validation loss: falls with the steps, depends on the group."""
    partners = sum(TASKS.index(u) + 1 for u in group if u != task)
    return (1.0 + ((3 * partners + TASKS.index(task)) % 7) / 10) / (1 + steps / 50)


class Recorder:
    def __init__(self):
        self.calls: list[tuple[tuple[str, ...], int]] = []

    def __call__(self, group, steps):
        self.calls.append((group, steps))
        return ShortTraining({t: loss(group, t, steps) for t in group}, steps, steps / 100)


def by_definition(groups, steps: int, final: int = 40) -> float:
    """Δm on validation losses at ``steps`` against single-task references (trained for the
    ``final`` steps), each task at its best group."""
    total = 0.0
    for t in TASKS:
        best = min(loss(g, t, steps) for g in groups if t in g)
        total += best / loss((t,), t, final) - 1
    return 100 * total / len(TASKS)


def all_candidates(budget: int):
    groups = [c for k in range(1, 5) for c in itertools.combinations(TASKS, k)]
    out = []
    for k in range(1, budget + 1):
        for combo in itertools.combinations(groups, k):
            if {t for g in combo for t in g} == set(TASKS):
                out.append(canonical(combo, TASKS))
    return out


def test_without_halving_the_choice_is_the_best_criterion_by_definition():
    candidates = all_candidates(2)[:12]
    train = Recorder()
    g = verify(candidates, train, tasks=TASKS, budget=2, final=40, every=10, halving=False)
    expected = min(range(len(candidates)), key=lambda c: (by_definition(candidates[c], 40), c))
    assert g.info["chosen_candidate"] == expected
    assert g.info["delta_m_val_loss"] == pytest.approx(by_definition(candidates[expected], 40))
    assert g.score == pytest.approx(sum(g.values.values()))
    assert len(set(train.calls)) == len(train.calls)  # each (group, steps) trained once
    assert g.info["cost"]["networks"] == len({group for group, _ in train.calls})


def test_halving_keeps_the_better_half_at_each_rung():
    candidates = all_candidates(2)[:5]
    train = Recorder()
    g = verify(candidates, train, tasks=TASKS, budget=2, final=40, every=10)
    record = g.info["rungs"]
    assert [r["steps"] for r in record] == rungs(40, 10, 5) == [10, 20, 40]
    assert [len(r["criteria"]) for r in record] == [5, 3, 2]
    for r in record:
        for c, value in r["criteria"].items():
            assert value == pytest.approx(by_definition(candidates[int(c)], r["steps"]))
    best = min(record[-1]["criteria"], key=lambda c: (record[-1]["criteria"][c], int(c)))
    assert g.info["chosen_candidate"] == int(best)
    steps = {group: max(s for h, s in train.calls if h == group) for group, _ in train.calls}
    assert g.info["cost"]["steps"] == sum(steps.values())


def test_one_candidate_trains_nothing():
    train = Recorder()
    g = verify([(("a", "b"), ("c", "d"))], train, tasks=TASKS, budget=2, final=40, every=10)
    assert train.calls == [] and g.info["rungs"] == [] and g.values == dict.fromkeys(TASKS, 0.0)
    assert g.groups == [("a", "b"), ("c", "d")] and g.serves == {"a": 0, "b": 0, "c": 1, "d": 1}


def test_explicit_candidates_are_canonical_distinct_and_within_the_budget():
    got, scores = candidate_groupings(
        None, 2, [[["b", "a"], ["d", "c"]], [["c", "d"], ["a", "b"]]], TASKS
    )
    assert got == [(("a", "b"), ("c", "d"))] and scores == [None]
    with pytest.raises(ValueError, match="more than the budget"):
        candidate_groupings(None, 1, [[["a", "b"], ["c", "d"]]], TASKS)
    with pytest.raises(ValueError, match="needs an affinity"):
        candidate_groupings(None, 2, 3, TASKS)
