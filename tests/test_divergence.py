"""A task that diverges (issue 21, item 2): a NaN/inf loss or gradient never reaches the
parameters, training stops that network naming the task and the step and keeps its last good
checkpoint, the other networks finish, the CLI exits 3; co-training names the task and the step
and writes no affinity matrix.

Faults are injected into one task's loss: ``Poison`` returns NaN (or a finite value whose
gradient is NaN) once it is armed, after a given number of training forwards or from a callback.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import taskgroup as tg
from taskgroup import aggregators
from taskgroup.affinity.lookahead import NonFiniteError
from taskgroup.cli import main
from taskgroup.rundir import AFFINITY, CHECKPOINT, RESULT, RESULTS, WEIGHTS
from taskgroup.settings import TrainSettings
from taskgroup.tasks import TaskSet
from taskgroup.training.checkpoint import load_checkpoint
from taskgroup.training.trainer import train_group
from tests.aggregators.conftest import small_batch, small_losses, small_model
from tests.recipes import TINY_STAGES

NAN = float("nan")


def nan_gradient(prediction: torch.Tensor) -> torch.Tensor:
    """0 in value, NaN in gradient: d/dp sqrt(0·p) = 0 · ∞."""
    return torch.sqrt(prediction * 0.0).sum() * 0.0


class Poison:
    """A task loss that turns bad once armed: ``kind="loss"`` returns NaN, ``"gradient"`` a
    finite loss with a NaN gradient. Armed after ``after`` forwards with gradients (training
    steps; evaluations run without), or by setting ``armed``; ``evaluation=True`` poisons only
    forwards without gradients (validation)."""

    def __init__(self, loss, *, after: int | None = None, kind="loss", evaluation=False):
        self.loss, self.after, self.kind, self.evaluation = loss, after, kind, evaluation
        self.calls, self.armed = 0, False

    def __call__(self, prediction, target):
        value = self.loss(prediction, target)
        training = torch.is_grad_enabled()
        if training and self.after is not None:
            self.calls += 1
            self.armed = self.armed or self.calls > self.after
        if not self.armed or training == self.evaluation:
            return value
        return value * NAN if self.kind == "loss" else value + nan_gradient(prediction)


def planted():
    return tg.data.get("planted", n_train=256, n_val=64, n_test=64, groups=2, tasks_per_group=2)


def poisoned(bench, task: str, poison: Poison):
    """``bench`` with ``task``'s loss wrapped by ``poison``."""
    poison.loss = bench.tasks[task].loss if poison.loss is None else poison.loss
    tasks = [dataclasses.replace(t, loss=poison) if t.name == task else t for t in bench.tasks]
    return dataclasses.replace(bench, tasks=TaskSet(tasks))


# ------------------------------------------------------------------------------------------
# MTLStep and every registered method: raise before a NaN reaches a parameter


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def unchanged(model, before) -> bool:
    return all(torch.equal(p, before[n]) for n, p in model.named_parameters())


def nan_in_b(kind: str):
    """The small 3-task model's losses, task b's poisoned: a NaN loss, a NaN gradient through
    the whole network, or a NaN gradient of b's head only (a hook: the shared gradient stays
    finite)."""
    losses = small_losses()
    if kind == "loss":
        losses["b"] = lambda p, y: F.mse_loss(p, y) * NAN
    elif kind == "gradient":
        losses["b"] = lambda p, y: F.mse_loss(p, y) + nan_gradient(p)
    return losses


def model_for(kind: str):
    model = small_model()
    if kind == "head":
        model.heads["b"].weight.register_hook(lambda g: g * NAN)
    return model


@pytest.mark.parametrize("kind", ["loss", "gradient", "head"])
@pytest.mark.parametrize("name", aggregators.names())
def test_mtlstep_raises_naming_the_task_and_leaves_parameters_alone(name, kind):
    model = model_for(kind)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    step = tg.MTLStep(model, nan_in_b(kind), name, optimizer)
    x, targets = small_batch()
    before = snapshot(model)
    with pytest.raises(NonFiniteError, match=r"not finite \(NaN or inf\) for task\(s\) b$") as e:
        step(x, targets)
    assert e.value.tasks == ("b",)
    assert unchanged(model, before)
    assert all(p.grad is None for p in model.parameters())  # nothing left for a later step


def test_nash_mtl_reusing_its_weights_also_raises():
    """``update_weights_every=2``: the second step reuses the weights (one weighted backward,
    no G) and must check the gradient it writes too."""
    model = small_model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    losses = small_losses()
    poison = Poison(losses["b"], after=1, kind="gradient")
    losses["b"] = poison
    step = tg.MTLStep(model, losses, "nash_mtl", optimizer, update_weights_every=2)
    x, targets = small_batch()
    step(x, targets)
    before = snapshot(model)
    with pytest.raises(NonFiniteError, match=r"task\(s\) b$"):
        step(x, targets)
    assert poison.armed and unchanged(model, before)


@pytest.mark.parametrize("name", aggregators.names())
def test_backward_writes_nothing_into_grad_and_names_the_row(name):
    model = model_for("gradient")
    x, targets = small_batch()
    outputs = model(x)
    losses = [fn(outputs[t], targets[t]) for t, fn in nan_in_b("gradient").items()]
    agg = aggregators.get(name)
    context = None
    if name == "transference":
        context = aggregators.TransferenceContext(lambda D: torch.ones(len(D), 3), torch.ones(3))
    kwargs = {} if agg.kind == "loss" else {"context": context}
    with pytest.raises(NonFiniteError, match=r"for task\(s\) 1$") as e:
        agg.backward(losses, model.trunk, **kwargs)
    assert e.value.tasks == (1,)
    assert all(p.grad is None for p in model.parameters())


def test_a_finite_step_is_unaffected():
    """The checks change nothing on a healthy step: the parameters of a mean step written by
    hand (the trunk follows the mean loss, each head its own task's loss)."""
    model, reference = small_model(), small_model()
    x, targets = small_batch()
    step = tg.MTLStep(model, small_losses(), "mean", torch.optim.SGD(model.parameters(), lr=0.1))
    step(x, targets)
    outputs = reference(x)
    losses = torch.stack([fn(outputs[t], targets[t]) for t, fn in small_losses().items()])
    trunk, heads = list(reference.trunk.parameters()), list(reference.heads.parameters())
    grads = torch.autograd.grad(losses.mean(), trunk, retain_graph=True)
    grads += torch.autograd.grad(losses.sum(), heads)
    with torch.no_grad():
        for p, g in zip(trunk + heads, grads, strict=True):
            p -= 0.1 * g
    for (n, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=n)


# ------------------------------------------------------------------------------------------
# training one network, and all networks of a grouping


def settings(**given):
    return TrainSettings(steps=40, eval_every=10, batch_size=32, seed=1, **given)


def finite_tensors(value) -> bool:
    if isinstance(value, torch.Tensor):
        return not value.is_floating_point() or bool(torch.isfinite(value).all())
    if isinstance(value, dict):
        return all(finite_tensors(v) for v in value.values())
    if isinstance(value, list | tuple):
        return all(finite_tensors(v) for v in value)
    return True


def test_a_task_whose_loss_turns_nan_stops_its_network_at_that_step(tmp_path, caplog):
    tasks = ["g0_t0", "g1_t0"]
    bench = poisoned(planted(), "g1_t0", Poison(None, after=25))
    with caplog.at_level(logging.WARNING, logger="taskgroup.training.trainer"):
        result = train_group(bench, tasks, settings(), directory=tmp_path / "bad")
    # the 26th step's loss is NaN: 25 steps done, the checkpoint of step 20 is the last one
    assert result.diverged["step"] == 26 and result.diverged["tasks"] == ["g1_t0"]
    assert "the training loss at step 26 is not finite" in result.diverged["message"]
    assert result.steps == 25
    assert "g0_t0+g1_t0 diverged" in caplog.text and "g1_t0" in caplog.text
    assert "step 26" in caplog.text
    checkpoint = load_checkpoint(tmp_path / "bad" / CHECKPOINT)
    assert checkpoint["state"]["step"] == 20 and finite_tensors(checkpoint)
    # the kept checkpoint and best weights are those of an unpoisoned run at step 20
    clean = train_group(planted(), tasks, settings(), directory=tmp_path / "clean", until=20)
    reference = load_checkpoint(tmp_path / "clean" / CHECKPOINT)
    assert all(torch.equal(checkpoint["model"][k], v) for k, v in reference["model"].items())
    weights = torch.load(tmp_path / "bad" / WEIGHTS, weights_only=True)
    clean_weights = torch.load(tmp_path / "clean" / WEIGHTS, weights_only=True)
    assert all(torch.equal(weights[k], v) for k, v in clean_weights.items())
    assert result.best_step == clean.best_step and result.val == clean.val
    # recorded as finished: valid JSON (no NaN), read back by a rerun without training
    stored = json.loads((tmp_path / "bad" / RESULT).read_text())
    assert stored["result"]["diverged"] == result.diverged
    again = train_group(planted(), tasks, settings(), directory=tmp_path / "bad")
    assert again == result


def test_a_nan_gradient_with_a_finite_loss_stops_the_network_too():
    bench = poisoned(planted(), "g0_t1", Poison(None, after=12, kind="gradient"))
    result = train_group(bench, ["g0_t0", "g0_t1"], settings(aggregator="uw"))
    assert result.diverged["step"] == 13 and result.diverged["tasks"] == ["g0_t1"]
    assert "the gradient at step 13" in result.diverged["message"]


def test_a_nan_validation_loss_stops_at_that_evaluation_without_keeping_it(tmp_path):
    poison = Poison(None, evaluation=True)
    bench = poisoned(planted(), "g1_t1", poison)

    def arm(step):
        poison.armed = step >= 15

    result = train_group(bench, ["g1_t0", "g1_t1"], settings(), directory=tmp_path, on_step=arm)
    assert result.diverged["step"] == 20 and result.diverged["tasks"] == ["g1_t1"]
    assert "the validation loss at step 20" in result.diverged["message"]
    assert [h["step"] for h in result.history] == [0, 10]  # step 20's evaluation not kept
    assert load_checkpoint(tmp_path / CHECKPOINT)["state"]["step"] == 10


def test_a_non_finite_parameter_at_an_evaluation_stops_the_network(tmp_path):
    """A parameter that the losses do not read (so every loss stays finite) turns NaN: the
    evaluation names it, every task (it is shared) and the step."""
    base = planted()
    network = {}

    def factory(tasks):
        network["model"] = model = base.model_factory(tasks)
        model.trunk.register_parameter("spare", nn.Parameter(torch.zeros(2)))
        return model

    bench = dataclasses.replace(base, model_factory=factory)

    def poison(step):
        if step == 15:
            network["model"].trunk.spare.data.fill_(math.inf)

    result = train_group(bench, ["g0_t0", "g1_t1"], settings(), directory=tmp_path, on_step=poison)
    assert result.diverged["step"] == 20
    assert result.diverged["tasks"] == ["g0_t0", "g1_t1"]
    assert "a parameter at step 20" in result.diverged["message"]
    assert "trunk.spare" in result.diverged["message"]
    assert load_checkpoint(tmp_path / CHECKPOINT)["state"]["step"] == 10


def test_the_other_networks_of_train_groups_finish(tmp_path):
    bench = poisoned(planted(), "g1_t1", Poison(None, after=15))
    groups = [("g0_t0", "g0_t1"), ("g1_t0", "g1_t1")]
    results = tg.train_groups(bench, groups, settings=settings(baselines=False), out=tmp_path)
    healthy, diverged = results.groups
    assert healthy.diverged is None and healthy.steps == 40
    assert diverged.diverged["step"] == 16 and diverged.diverged["tasks"] == ["g1_t1"]
    alone = train_group(planted(), groups[0], settings(baselines=False))
    assert dataclasses.replace(healthy, seconds=0) == dataclasses.replace(alone, seconds=0)
    stored = json.loads((tmp_path / RESULTS).read_text())
    assert stored["groups"][0]["diverged"] is None
    assert stored["groups"][1]["diverged"]["tasks"] == ["g1_t1"]


# ------------------------------------------------------------------------------------------
# the command line: train exits 3 naming the network; affinity exits 2 and writes no matrix

FACTORY = """
import dataclasses
import taskgroup as tg
from taskgroup.tasks import TaskSet
from tests.test_divergence import Poison


def make(seed=0, task="g1_t1", after=5, kind="loss"):
    bench = tg.data.get("planted", seed=seed, n_train=256, n_val=64, n_test=64, groups=2,
                        tasks_per_group=2)
    tasks = [dataclasses.replace(t, loss=Poison(t.loss, after=after, kind=kind))
             if t.name == task else t for t in bench.tasks]
    return dataclasses.replace(bench, tasks=TaskSet(tasks))
"""


def recipe(tmp_path, **options) -> str:
    (tmp_path / "poisoned.py").write_text(FACTORY)
    table = "".join(f"{k} = {json.dumps(v)}\n" for k, v in options.items())
    path = tmp_path / "poisoned.toml"
    path.write_text(f'seed = 0\n[benchmark]\nfactory = "poisoned.py:make"\n{table}' + TINY_STAGES)
    return str(path)


def test_cli_train_finishes_the_others_and_exits_3_naming_the_network(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    groups = tmp_path / "groups.json"
    groups.write_text(json.dumps({"groups": [["g0_t0", "g0_t1"], ["g1_t0", "g1_t1"]]}))
    spec = recipe(tmp_path, after=5)
    args = ["train", str(out), "--recipe", spec, "--groups", str(groups), "--no-baselines"]
    code = main([*args, "--no-progress"])
    err = capsys.readouterr().err
    assert code == 3
    assert "1 network(s) diverged" in err
    assert "g1_t0+g1_t1 (mean): the training loss at step 6 is not finite" in err
    assert "for task(s) g1_t1" in err
    results = json.loads((out / RESULTS).read_text())
    assert results["groups"][0]["diverged"] is None and results["groups"][0]["steps"] == 20
    assert results["groups"][1]["diverged"]["step"] == 6


@pytest.mark.parametrize(
    ("kind", "what"), [("loss", "training loss"), ("gradient", "gradient of the training loss")]
)
def test_cli_affinity_names_the_task_and_step_and_writes_no_matrix(tmp_path, capsys, kind, what):
    # six co-training steps measured every 3 (steps 0 and 3): a training forward per step and
    # one per measurement (its lookahead forwards run without gradients), so the 7th forward
    # with gradients is step 4's training forward
    spec = recipe(tmp_path, after=6, kind=kind)
    out = tmp_path / "run"
    code = main(["affinity", spec, "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"{what} at step 4 is not finite (NaN or inf) for task(s) g1_t1" in err
    assert not (out / AFFINITY).exists()


@pytest.mark.parametrize("lookahead", ["sgd", "cosine"])
def test_a_nan_gradient_at_a_measured_step_is_named_not_averaged(lookahead):
    """At a measurement the lookahead's own gradients carry the NaN first: named with the
    step, never a matrix with NaN (cosine used to average it in)."""
    bench = poisoned(planted(), "g0_t1", Poison(None, after=0, kind="gradient"))
    with pytest.raises(NonFiniteError, match=r"gradient of the loss at step 0 .* g0_t1$"):
        tg.measure_affinity(bench, steps=6, every=3, lookahead=lookahead, lr=0.1)


def test_check_finite_names_the_task_and_passes_sums_that_overflow():
    from taskgroup.affinity.lookahead import NonFiniteError, check_finite

    huge = torch.full((4, 3), 3e38)  # finite float32 whose sum overflows to inf
    check_finite(huge, ["a", "b", "c"], "the gradient")  # no error: every entry is finite
    for bad in (float("nan"), float("inf"), -float("inf")):
        values = huge.clone()
        values[2, 1] = bad
        with pytest.raises(NonFiniteError, match=r"the gradient is not finite .* task\(s\) b$"):
            check_finite(values, ["a", "b", "c"], "the gradient")
