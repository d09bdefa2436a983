"""measure_affinity: recovers planted groups, is reproducible, and refuses bad input clearly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import taskgroup as tg
from taskgroup.data import planted


@pytest.fixture(scope="module")
def planted_bench():
    return planted.load(seed=0, n_train=2000)


@pytest.mark.parametrize("lookahead", ["optimizer", "sgd", "first_order"])
def test_planted_groups_rank_above_cross_group_pairs(planted_bench, lookahead):
    a = tg.measure_affinity(planted_bench, steps=300, every=5, lookahead=lookahead, seed=1)
    group = {t: g for g, tasks in enumerate(planted_bench.info["groups"]) for t in tasks}
    within = [v for s, t, v in a.pairs() if group[s] == group[t]]
    across = [v for s, t, v in a.pairs() if group[s] != group[t]]
    assert min(within) > max(across)  # every within-group pair outranks every cross pair


def test_reproducible_from_the_seed_and_leaves_the_global_rng(planted_bench):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = tg.measure_affinity(planted_bench, steps=20, every=4, seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    second = tg.measure_affinity(planted_bench, steps=20, every=4, seed=5)
    other = tg.measure_affinity(planted_bench, steps=20, every=4, seed=6)
    np.testing.assert_array_equal(first.values, second.values)
    assert not np.array_equal(first.values, other.values)
    assert first.trace_steps == [0, 4, 8, 12, 16]
    assert first.metadata["benchmark"] == "planted" and first.metadata["optimizer"] == "adam"


def test_user_model_and_batches(planted_bench):
    model = planted_bench.make_model(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    a = tg.measure_affinity(
        model,
        batches=planted_bench.train.batches(64, seed=0),
        losses=planted_bench.tasks.losses(),
        optimizer=opt,
        steps=10,
        every=5,
    )
    assert a.tasks == planted_bench.tasks.names and a.trace_steps == [0, 5]
    assert a.metadata["optimizer"] == "SGD"


def test_bad_input_is_named(planted_bench):
    with pytest.raises(ValueError, match="unknown benchmark 'nope'"):
        tg.measure_affinity("nope")
    with pytest.raises(ValueError, match="unknown task"):
        tg.measure_affinity(planted_bench, tasks=["g0_t0", "zzz"], steps=2)
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        tg.measure_affinity(planted_bench, steps=0)
    with pytest.raises(ValueError, match="every must be a positive integer"):
        tg.measure_affinity(planted_bench, steps=2, every=0)
    with pytest.raises(ValueError, match="needs batches="):
        tg.measure_affinity(planted_bench.make_model(), steps=2)


def test_a_loss_that_diverges_is_named(planted_bench):
    model = planted_bench.make_model(seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=1e6)  # explodes within a few steps
    with pytest.raises(ValueError, match="not finite"):
        tg.measure_affinity(
            model,
            batches=planted_bench.train.batches(64, seed=0),
            losses=planted_bench.tasks.losses(),
            optimizer=opt,
            steps=50,
            every=100,
        )
