from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import taskgroup.data
from taskgroup.data import planted

SIZES = {"n_train": 2000, "n_val": 300, "n_test": 300}


@pytest.mark.parametrize("groups", [1, 2, 3, 5])
@pytest.mark.parametrize("conflict", [0.0, 0.3, 1.0])
def test_group_directions_have_the_planted_cosine(groups, conflict):
    w = planted.group_directions(groups, conflict, 8, np.random.default_rng(groups))
    assert w.shape == (groups, 8)
    expected = np.full((groups, groups), -conflict / (groups - 1) if groups > 1 else 0.0)
    np.fill_diagonal(expected, 1.0)
    np.testing.assert_allclose(w @ w.T, expected, atol=1e-6)


@pytest.mark.parametrize("conflict", [-0.1, 1.5, float("nan")])
def test_invalid_conflict_raises(conflict):
    with pytest.raises(ValueError, match="conflict"):
        planted.load(conflict=conflict)


def test_too_few_latent_factors_raise():
    with pytest.raises(ValueError, match="latent"):
        planted.load(groups=4, latent=3)


def test_tasks_groups_and_shapes():
    bench = taskgroup.data.get("planted", groups=2, tasks_per_group=3, dim=10, **SIZES)
    names = ["g0_t0", "g0_t1", "g0_t2", "g1_t0", "g1_t1", "g1_t2"]
    assert bench.tasks.names == names
    assert bench.info["groups"] == [names[:3], names[3:]]
    assert all(t.kind == "regression" and t.higher_is_better == {"mae": False} for t in bench.tasks)
    assert bench.train.inputs.shape == (2000, 10) and len(bench.val) == len(bench.test) == 300
    assert bench.defaults.lr == 3e-3 and bench.defaults.steps == 600 and bench.defaults.every == 5


def test_targets_are_standardised_with_train_statistics():
    bench = planted.load(**SIZES)
    for name, y in bench.train.targets.items():
        assert y.dtype == torch.float32 and y.shape == (2000,)
        assert abs(float(y.mean())) < 1e-5, name
        assert abs(float(y.std(unbiased=False)) - 1.0) < 1e-4, name
    for y in bench.test.targets.values():
        assert abs(float(y.mean())) < 0.25 and 0.7 < float(y.std()) < 1.3


def test_tasks_correlate_within_groups_not_across_orthogonal_groups():
    bench = planted.load(conflict=0.0, **SIZES)
    names = bench.tasks.names
    corr = np.corrcoef(np.stack([bench.train.targets[n].numpy() for n in names]))
    group = {n: g for g, members in enumerate(bench.info["groups"]) for n in members}
    for i, a in enumerate(names):
        for j, b in enumerate(names):
            if i != j:
                assert (corr[i, j] > 0.9) if group[a] == group[b] else (abs(corr[i, j]) < 0.2)


def test_same_seed_is_identical_and_other_seed_differs():
    a, b, c = planted.load(**SIZES), planted.load(**SIZES), planted.load(seed=1, **SIZES)
    assert torch.equal(a.train.inputs, b.train.inputs)
    assert all(torch.equal(a.test.targets[n], b.test.targets[n]) for n in a.tasks.names)
    assert not torch.equal(a.train.inputs, c.train.inputs)


def test_model_outputs_losses_and_metrics():
    bench = planted.load(**SIZES)
    net = bench.make_model(seed=0)
    x, targets = next(bench.train.batches(64, seed=0))
    out = net(x)
    assert list(out) == bench.tasks.names
    for task in bench.tasks:
        assert out[task.name].shape == (64,)
        assert torch.isfinite(task.loss(out[task.name], targets[task.name]))
        assert 0.0 <= task.metrics["mae"](out[task.name], targets[task.name]) < math.inf
