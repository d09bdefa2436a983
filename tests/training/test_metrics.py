"""Evaluation and Δm against hand computations."""

import math

import pytest
import torch

import taskgroup as tg
from taskgroup.tasks import StreamingMetric, Task, TaskSet
from taskgroup.training.metrics import delta_m, evaluate, higher_is_better


def test_delta_m_hand_computed():
    # accuracy 0.9 vs 0.8 (higher better): -(0.9-0.8)/0.8 = -0.125
    # mae 2.0 vs 2.5 (lower better): (2.0-2.5)/2.5 = -0.2
    # loss 1.0 vs 0.5 (lower better): +1.0 (excluded by default)
    metrics = {"a": {"accuracy": 0.9, "loss": 1.0}, "b": {"mae": 2.0, "loss": 1.0}}
    baseline = {"a": {"accuracy": 0.8, "loss": 0.5}, "b": {"mae": 2.5, "loss": 2.0}}
    directions = {"a": {"accuracy": True, "loss": False}, "b": {"mae": False, "loss": False}}
    assert delta_m(metrics, baseline, directions) == pytest.approx(100 * (-0.125 - 0.2) / 2)
    # losses only: (1.0-0.5)/0.5 = 1.0, (1.0-2.0)/2.0 = -0.5
    assert delta_m(metrics, baseline, directions, only=["loss"]) == pytest.approx(25.0)
    assert delta_m(baseline, baseline, directions) == 0.0


def test_delta_m_errors_name_the_problem():
    directions = {"a": {"mae": False}}
    with pytest.raises(ValueError, match="a/mae: the baseline is 0"):
        delta_m({"a": {"mae": 1.0}}, {"a": {"mae": 0.0}}, directions)
    with pytest.raises(ValueError, match="no task 'a'"):
        delta_m({"a": {"mae": 1.0}}, {}, directions)
    with pytest.raises(ValueError, match="finite"):
        delta_m({"a": {"mae": math.nan}}, {"a": {"mae": 1.0}}, directions)


class MaxError(StreamingMetric):
    """Largest absolute error over the split: not a mean of batch values."""

    def reset(self):
        self.value = 0.0

    def update(self, prediction, target):
        self.value = max(self.value, float((prediction - target).abs().max()))

    def compute(self):
        return self.value


def test_evaluate_matches_a_full_batch_computation():
    bench = tg.data.get("planted", n_train=50, n_val=37, n_test=10, groups=2, tasks_per_group=1)
    tasks = TaskSet(
        Task(
            t.name,
            t.loss,
            {**t.metrics, "max_error": MaxError()},
            {**t.higher_is_better, "max_error": False},
        )
        for t in bench.tasks
    )
    model = bench.make_model(seed=0)
    result = evaluate(model, bench.val, tasks, batch_size=8)  # 5 batches, the last of 5 rows
    inputs, targets = bench.val.full()
    with torch.no_grad():
        outputs = model(inputs)
    for task in tasks:
        pred, target = outputs[task.name], targets[task.name]
        assert result[task.name]["loss"] == pytest.approx(float(task.loss(pred, target)), rel=1e-5)
        assert result[task.name]["mae"] == pytest.approx(float((pred - target).abs().mean()))
        assert result[task.name]["max_error"] == pytest.approx(float((pred - target).abs().max()))
    assert higher_is_better(tasks)[tasks[0].name] == {
        "loss": False,
        "mae": False,
        "max_error": False,
    }


def test_evaluate_restores_training_mode():
    bench = tg.data.get("multidigits", pairs=(20, 20, 20), model="cnn")
    model = bench.make_model(seed=0)
    model.train()
    before = {n: b.clone() for n, b in model.named_buffers()}
    evaluate(model, bench.val, bench.tasks)
    assert model.training
    for n, b in model.named_buffers():
        assert torch.equal(b, before[n]), n  # eval mode: batch-norm stats untouched
