"""One group's training: early stopping, exact resume, weights-only checkpoints, the event log."""

import json
from dataclasses import replace

import pytest
import torch

import taskgroup as tg
from taskgroup.rundir import CHECKPOINT, RESULT, WEIGHTS
from taskgroup.settings import TrainSettings
from taskgroup.training.checkpoint import load_checkpoint, load_object_state, object_state
from taskgroup.training.events import read_log
from taskgroup.training.metrics import evaluate
from taskgroup.training.trainer import train_group


@pytest.fixture(scope="module")
def bench():
    return tg.data.get("planted", n_train=256, n_val=64, n_test=64, groups=2, tasks_per_group=2)


def _strip_seconds(result):
    data = result.to_dict()
    data.pop("seconds")
    return data


class Interrupt(Exception):
    pass


def _interrupt_at(step_to_fail):
    def on_step(step):
        if step == step_to_fail:
            raise Interrupt

    return on_step


@pytest.mark.parametrize("aggregator", ["mean", "nash_mtl", "uw", "dwa", "graddrop", "famo", "rlw"])
def test_resume_after_a_kill_equals_an_uninterrupted_run(bench, tmp_path, aggregator):
    settings = TrainSettings.for_benchmark(
        bench, aggregator=aggregator, steps=60, eval_every=20, batch_size=32, seed=3
    )
    tasks = bench.tasks.names
    whole = train_group(bench, tasks, settings, directory=tmp_path / "whole")
    with pytest.raises(Interrupt):
        train_group(bench, tasks, settings, directory=tmp_path / "cut", on_step=_interrupt_at(47))
    assert (tmp_path / "cut" / CHECKPOINT).exists() and not (tmp_path / "cut" / RESULT).exists()
    resumed = train_group(bench, tasks, settings, directory=tmp_path / "cut")
    assert _strip_seconds(resumed) == _strip_seconds(whole)
    a = torch.load(tmp_path / "whole" / WEIGHTS, weights_only=True)
    b = torch.load(tmp_path / "cut" / WEIGHTS, weights_only=True)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_paused_with_until_and_continued_equals_an_uninterrupted_run(bench, tmp_path):
    settings = TrainSettings.for_benchmark(
        bench, aggregator="nash_mtl", steps=60, eval_every=20, batch_size=32, seed=3
    )
    tasks = bench.tasks.names
    whole = train_group(bench, tasks, settings, directory=tmp_path / "whole")
    paused = train_group(bench, tasks, settings, directory=tmp_path / "cut", until=40)
    assert paused.steps == 40 and not (tmp_path / "cut" / RESULT).exists()
    assert paused.history == whole.history[:3]
    best = min(paused.history, key=lambda h: h["criterion"])
    assert paused.best_step == best["step"] and paused.criterion == best["criterion"]
    again = train_group(bench, tasks, settings, directory=tmp_path / "cut", until=20)
    assert _strip_seconds(again) == _strip_seconds(paused)  # trained past 20: where it stands
    resumed = train_group(bench, tasks, settings, directory=tmp_path / "cut")
    assert _strip_seconds(resumed) == _strip_seconds(whole)
    with pytest.raises(ValueError, match="multiple of eval_every"):
        train_group(bench, tasks, settings, until=30)
    with pytest.raises(ValueError, match="until"):
        train_group(bench, tasks, settings, until=0)


def test_finished_group_is_read_back_not_retrained(bench, tmp_path):
    settings = TrainSettings.for_benchmark(bench, steps=20, eval_every=10, batch_size=32)
    first = train_group(bench, ["g0_t0"], settings, directory=tmp_path)

    def fail(step):
        raise AssertionError("trained again")

    assert train_group(bench, ["g0_t0"], settings, directory=tmp_path, on_step=fail) == first
    other = TrainSettings.for_benchmark(bench, steps=30, eval_every=10, batch_size=32)
    with pytest.raises(ValueError, match=r"another training \(steps: 20 there, 30 now\)"):
        train_group(bench, ["g0_t0"], other, directory=tmp_path)


def test_best_step_and_metrics_are_those_of_the_best_validation(bench, tmp_path):
    settings = TrainSettings.for_benchmark(bench, steps=80, eval_every=20, batch_size=32)
    result = train_group(bench, bench.tasks.names, settings, directory=tmp_path)
    criteria = {h["step"]: h["criterion"] for h in result.history}
    assert list(criteria) == [0, 20, 40, 60, 80]
    assert result.best_step == min(criteria, key=criteria.get)
    assert result.criterion == criteria[result.best_step]
    # the saved weights are the best step's: re-evaluating them gives the stored metrics
    model = bench.make_model(seed=0)
    model.load_state_dict(torch.load(tmp_path / WEIGHTS, weights_only=True))
    assert evaluate(model, bench.test, bench.tasks) == result.test
    initial = result.history[0]["val_loss"]
    val = evaluate(model, bench.val, bench.tasks)
    mean_ratio = sum(val[t]["loss"] / initial[t] for t in initial) / len(initial)
    assert result.criterion == pytest.approx(mean_ratio)


def test_patience_stops_early(bench):
    # validation targets negated: every step that fits the training data hurts validation,
    # so the initialisation stays best and training stops after `patience` evaluations
    val = tg.data.benchmark.Split(bench.val.inputs, {k: -v for k, v in bench.val.targets.items()})
    flipped = replace(bench, val=val)
    settings = TrainSettings.for_benchmark(
        flipped, steps=200, eval_every=5, patience=3, lr=1e-2, batch_size=32
    )
    result = train_group(flipped, flipped.tasks.names, settings)
    assert result.best_step == 0 and result.criterion == 1.0
    assert result.steps == 15 == result.history[-1]["step"]
    assert all(h["criterion"] > 1.0 for h in result.history[1:])


def test_nan_loss_names_the_task_and_keeps_the_checkpoint(bench, tmp_path):
    poisoned_train = tg.data.benchmark.Split(
        bench.train.inputs,
        {**bench.train.targets, "g0_t1": torch.full_like(bench.train.targets["g0_t1"], torch.nan)},
    )
    bad = replace(bench, train=poisoned_train)
    settings = TrainSettings.for_benchmark(bad, steps=20, eval_every=5, batch_size=32)
    result = train_group(bad, bad.tasks.names, settings, directory=tmp_path)
    # diverged at the first step: recorded, nothing after the initialisation kept
    assert result.diverged["step"] == 1 and result.diverged["tasks"] == ["g0_t1"]
    assert result.steps == 0 and result.best_step == 0
    assert not (tmp_path / CHECKPOINT).exists() and (tmp_path / RESULT).exists()


def test_checkpoint_is_weights_only_and_corruption_is_named(bench, tmp_path):
    settings = TrainSettings.for_benchmark(
        bench, aggregator="nash_mtl", steps=20, eval_every=10, batch_size=32
    )
    with pytest.raises(Interrupt):
        train_group(
            bench, bench.tasks.names, settings, directory=tmp_path, on_step=_interrupt_at(15)
        )
    checkpoint = torch.load(tmp_path / CHECKPOINT, weights_only=True)
    assert checkpoint["state"]["step"] == 10
    (tmp_path / CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match=f"{CHECKPOINT}: unreadable checkpoint"):
        load_checkpoint(tmp_path / CHECKPOINT)


def test_object_state_round_trip():
    agg = tg.aggregators.get("dwa", window=2)
    for _ in range(5):
        agg.weigh(torch.rand(3))
    nash = tg.aggregators.get("nash_mtl")
    nash.weights(torch.randn(3, 7))
    for original in (agg, nash):
        state = object_state(original)
        clone = type(original)()
        load_object_state(clone, torch.load(_saved(state), weights_only=True))
        assert object_state(clone).keys() == state.keys()
        for key, value in state.items():
            restored = object_state(clone)[key]
            assert repr(restored) == repr(value), key


def _saved(obj):
    import io

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    buffer.seek(0)
    return buffer


def test_training_streams_to_jsonl_and_tensorboard(bench, tmp_path):
    settings = TrainSettings.for_benchmark(
        bench, aggregator="nash_mtl", steps=20, eval_every=10, batch_size=32, log_every=5
    )
    train_group(bench, bench.tasks.names, settings, run_dir=tmp_path)
    records = read_log(tmp_path)
    kinds = {(r["kind"], r["step"]) for r in records}
    assert {("loss", 5), ("weight", 20), ("val", 0), ("val", 10), ("val", 20)} <= kinds
    weights = next(r for r in records if r["kind"] == "weight")["values"]
    assert set(weights) == set(bench.tasks.names)
    assert all(json.dumps(r) for r in records)
    events = list((tmp_path / "tensorboard" / "train").rglob("events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
