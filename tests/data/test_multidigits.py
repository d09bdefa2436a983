from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

import taskgroup.data
from taskgroup.data import multidigits
from taskgroup.data.benchmark import Benchmark

PAIRS = (300, 100, 100)


@pytest.fixture(scope="module")
def bench() -> Benchmark:
    return multidigits.load(seed=0, pairs=PAIRS)


def test_registry_lists_both_and_rejects_unknown_names():
    assert {"multidigits", "planted"} <= set(taskgroup.data.names())
    with pytest.raises(ValueError, match=r"'nope'.*multidigits.*planted"):
        taskgroup.data.get("nope")


def test_default_load_has_documented_sizes_and_defaults():
    bench = taskgroup.data.get("multidigits")
    assert [len(bench.train), len(bench.val), len(bench.test)] == [6000, 1500, 1500]
    assert bench.train.inputs.shape == (6000, 1, 8, 16)
    assert bench.defaults.optimizer == "adam" and bench.defaults.steps == 1500
    assert bench.info["seed"] == 0 and bench.info["model"] == "mlp"


def test_tasks_cover_all_kinds_with_the_default_set_first(bench):
    assert len(bench.tasks) >= 8
    assert {t.kind for t in bench.tasks} == {"classification", "binary", "regression"}
    default = ["left_class", "left_parity", "right_class", "right_ge5", "sum", "left_gt_right"]
    assert bench.tasks.names[:6] == default
    assert list(multidigits.DEFAULT_TASKS) == bench.info["default_tasks"] == default
    for task in bench.tasks:
        metric = "mae" if task.kind == "regression" else "accuracy"
        assert task.higher_is_better == {metric: task.kind != "regression"}


def test_same_seed_is_identical_and_other_seed_differs(bench):
    again = multidigits.load(seed=0, pairs=PAIRS)
    other = multidigits.load(seed=1, pairs=PAIRS)
    for split in ("train", "val", "test"):
        a, b, c = (getattr(x, split) for x in (bench, again, other))
        assert torch.equal(a.inputs, b.inputs)
        assert all(torch.equal(a.targets[n], b.targets[n]) for n in a.targets)
        assert not torch.equal(a.inputs, c.inputs)


def test_no_source_image_is_shared_between_splits():
    sources = multidigits.pair_sources(0, PAIRS)
    used = {split: set(np.unique(s)) for split, s in sources.items()}
    assert not used["train"] & used["val"]
    assert not used["train"] & used["test"]
    assert not used["val"] & used["test"]
    splits = multidigits.source_splits(0)
    assert sum(len(s) for s in splits.values()) == 1797
    assert len(np.unique(np.concatenate(list(splits.values())))) == 1797
    for split, s in sources.items():
        assert set(np.unique(s)) <= set(splits[split])


def test_images_and_labels_match_the_sklearn_digits(bench):
    digits = load_digits()
    sources = multidigits.pair_sources(0, PAIRS)
    for split in ("train", "val", "test"):
        data = getattr(bench, split)
        left, right = sources[split][:, 0], sources[split][:, 1]
        images = torch.as_tensor(digits.images / 16.0, dtype=torch.float32)
        assert torch.equal(data.inputs[:, 0, :, :8], images[left])
        assert torch.equal(data.inputs[:, 0, :, 8:], images[right])
        assert data.inputs.min() >= 0.0 and data.inputs.max() <= 1.0
        a, b = digits.target[left].tolist(), digits.target[right].tolist()
        ab = list(zip(a, b, strict=True))
        expected = {
            "left_class": a,
            "right_class": b,
            "left_parity": [x % 2 == 1 for x in a],
            "right_parity": [y % 2 == 1 for y in b],
            "left_ge5": [x >= 5 for x in a],
            "right_ge5": [y >= 5 for y in b],
            "sum": [x + y for x, y in ab],
            "diff": [x - y for x, y in ab],
            "left_gt_right": [x > y for x, y in ab],
            "same_parity": [(x % 2) == (y % 2) for x, y in ab],
        }
        assert set(expected) <= set(data.targets)
        for name, values in expected.items():
            target = data.targets[name]
            kind = bench.tasks[name].kind
            assert target.dtype == (torch.int64 if kind == "classification" else torch.float32)
            assert target.shape == (len(data),)
            assert target.tolist() == [float(v) for v in values], name


@pytest.mark.parametrize("model", ["mlp", "cnn"])
def test_models_output_shapes_finite_losses_and_metrics_in_range(model):
    bench = multidigits.load(seed=0, pairs=PAIRS, model=model, width=12)
    net = bench.make_model(seed=0)
    x, targets = next(bench.train.batches(32, seed=0))
    out = net(x)
    assert list(out) == bench.tasks.names
    for task in bench.tasks:
        expected = (32, 10) if task.kind == "classification" else (32,)
        assert out[task.name].shape == expected
        assert torch.isfinite(task.loss(out[task.name], targets[task.name]))
        for name, metric in task.metrics.items():
            value = metric(out[task.name], targets[task.name])
            assert isinstance(value, float)
            assert 0.0 <= value <= (1.0 if name == "accuracy" else math.inf)
    if model == "cnn":
        assert any("running_mean" in n for n, _ in net.named_buffers())


def test_model_factory_follows_a_task_subset(bench):
    sub = bench.select(["sum", "left_class"])
    out = sub.make_model(seed=0)(sub.train.inputs[:4])
    assert list(out) == ["sum", "left_class"]
    assert out["sum"].shape == (4,) and out["left_class"].shape == (4, 10)


def test_tasks_and_factory_pickle(bench):
    tasks, factory = pickle.loads(pickle.dumps((bench.tasks, bench.model_factory)))
    assert tasks.names == bench.tasks.names
    assert factory(tasks).tasks == bench.tasks.names


@pytest.mark.parametrize(
    "options", [{"model": "resnet"}, {"pairs": (10, 0, 10)}, {"pairs": (10, 10)}, {"width": 0}]
)
def test_invalid_options_raise(options):
    with pytest.raises(ValueError):
        multidigits.load(**options)
