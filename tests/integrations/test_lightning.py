"""The Lightning callback measures inside ``Trainer.fit`` what an ``AffinityTracker`` measures in
a plain loop on the same steps, and leaves the training exactly as it is without it."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn
from torch.nn import functional as F

import taskgroup as tg
from taskgroup.data.heads import LinearHead
from taskgroup.gradients import flatten

pl = pytest.importorskip("lightning.pytorch")
lightning_callback = pytest.importorskip("taskgroup.integrations.lightning")
AffinityCallback = lightning_callback.AffinityCallback

LOSSES = {"a": F.cross_entropy, "b": F.mse_loss, "c": F.binary_cross_entropy_with_logits}
STEPS = 7


def make_model(seed: int = 0, *, dropout: float = 0.0, batchnorm: bool = False):
    """A 3-task MultiTaskModel ``[N, 5] -> {a: [N, 3], b: [N], c: [N]}``."""
    torch.manual_seed(seed)
    layers = [nn.Linear(5, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.Tanh(), nn.Dropout(dropout), nn.Linear(8, 6), nn.Tanh()]
    heads = {"a": LinearHead(6, 3), "b": LinearHead(6, 1), "c": LinearHead(6, 1)}
    return tg.MultiTaskModel(nn.Sequential(*layers), heads)


def make_batches(n_batches: int = STEPS, n: int = 16):
    g = torch.Generator().manual_seed(3)
    batches = []
    for _ in range(n_batches):
        x = torch.randn(n, 5, generator=g)
        targets = {
            "a": torch.randint(0, 3, (n,), generator=g),
            "b": 3 * x[:, 0] + 0.1 * torch.randn(n, generator=g),
            "c": (x[:, 1] > 0).float(),
        }
        batches.append((x, targets))
    return batches


class Module(pl.LightningModule):
    """The protocol: forward returns {task: prediction}; ``losses`` names the task losses."""

    def __init__(self, model: nn.Module, lr: float = 0.01):
        super().__init__()
        self.model = model
        self.losses = LOSSES
        self.lr = lr

    def forward(self, x):
        return self.model(x)

    def training_step(self, batch, batch_idx):
        x, targets = batch
        outputs = self(x)
        return sum(fn(outputs[n], targets[n]) for n, fn in LOSSES.items())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr)


class DictBatches(Module):
    """A module whose batches are ``{"x": inputs, "y": targets}``."""

    def training_step(self, batch, batch_idx):
        return super().training_step((batch["x"], batch["y"]), batch_idx)


def fit(module: Module, batches, callbacks, tmp_path) -> None:
    trainer = pl.Trainer(
        max_steps=len(batches),
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        default_root_dir=tmp_path,
        callbacks=callbacks,
    )
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and logging
        trainer.fit(module, loader)


def test_callback_equals_the_tracker_of_a_plain_loop(tmp_path):
    batches = make_batches()
    initial = make_model()
    module = Module(copy.deepcopy(initial))
    callback = AffinityCallback(shared="model.trunk", every=3)
    fit(module, batches, [callback], tmp_path)
    measured = callback.result()

    model = copy.deepcopy(initial)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
    tracker = tg.AffinityTracker(model, LOSSES, optimizer=optimizer, every=3)
    for x, targets in batches:
        tracker.step(x, targets)
        optimizer.zero_grad()
        outputs = model(x)
        sum(fn(outputs[n], targets[n]) for n, fn in LOSSES.items()).backward()
        optimizer.step()
    expected = tracker.result()

    assert measured.tasks == ["a", "b", "c"]
    assert measured.trace_steps == expected.trace_steps == [0, 3, 6]
    assert measured.trace_lr == expected.trace_lr
    assert measured.metadata["lookahead"] == "optimizer"
    assert abs(measured.values - expected.values).max() < 1e-6
    assert abs(measured.trace - expected.trace).max() < 1e-6
    # both runs trained alike, and the measurement moved with the training
    torch.testing.assert_close(
        flatten(list(module.model.parameters())), flatten(list(model.parameters()))
    )
    assert abs(measured.trace[0] - measured.trace[2]).max() > 1e-4


def state(module: Module) -> torch.Tensor:
    return flatten([t.detach() for t in [*module.parameters(), *module.buffers()]]).double()


def test_callback_leaves_the_training_unchanged(tmp_path):
    """Dropout (the RNG stream), batch-norm running statistics (buffers) and Adam (optimizer
    state): the weights after training are bit-identical with and without the callback."""
    batches = make_batches()
    initial = make_model(dropout=0.3, batchnorm=True)
    plain, measured = Module(copy.deepcopy(initial)), Module(copy.deepcopy(initial))
    torch.manual_seed(11)
    fit(plain, batches, [], tmp_path)
    callback = AffinityCallback(every=2)  # shared=None: the MultiTaskModel's trunk
    torch.manual_seed(11)
    fit(measured, batches, [callback], tmp_path)
    assert len(callback.result().trace) == 4
    assert torch.equal(state(plain), state(measured))
    assert not torch.equal(state(plain), state(Module(copy.deepcopy(initial))))


def test_sgd_lookahead_with_names_and_a_split_function(tmp_path):
    """shared= as parameter names, losses= on the callback, dict batches: the SGD lookahead of
    the first batch is lookahead_affinity's on the initial model."""
    batches = make_batches(2)
    initial = make_model()
    module = DictBatches(copy.deepcopy(initial))
    module.losses = None  # the callback's losses= instead
    names = [f"model.{n}" for n, _ in initial.trunk.named_parameters(prefix="trunk")]
    callback = AffinityCallback(
        shared=names,
        losses=LOSSES,
        lookahead="sgd",
        lr=0.5,
        every=5,
        split_batch=lambda batch: (batch["x"], batch["y"]),
    )
    fit(module, [{"x": x, "y": y} for x, y in batches], [callback], tmp_path)
    x, targets = batches[0]
    expected = tg.lookahead_affinity(initial, x, targets, LOSSES, lr=0.5, lookahead="sgd")
    result = callback.result(note="sgd")
    assert result.metadata["note"] == "sgd"
    assert abs(result.values - expected.numpy()).max() < 1e-6


def test_callback_input_errors(tmp_path):
    with pytest.raises(ValueError, match="every must be a positive integer"):
        AffinityCallback(every=0)
    with pytest.raises(ValueError, match="lookahead must be one of"):
        AffinityCallback(lookahead="adam")
    with pytest.raises(ValueError, match="no affinity measured yet"):
        AffinityCallback().result()
    batches = make_batches(1)
    module = Module(make_model())
    with pytest.raises(ValueError, match="not a submodule"):
        fit(module, batches, [AffinityCallback(shared="model.body")], tmp_path)
    module.losses = None
    with pytest.raises(ValueError, match="`losses`"):
        fit(module, batches, [AffinityCallback()], tmp_path)
    module = Module(make_model())
    with pytest.raises(ValueError, match=r"expects training batches \(inputs"):
        fit(module, [[x, list(t.values())] for x, t in batches], [AffinityCallback()], tmp_path)
    module = Module(nn.ModuleDict({"one": make_model(), "two": make_model()}))
    with pytest.raises(ValueError, match="exactly one MultiTaskModel"):
        fit(module, batches, [AffinityCallback()], tmp_path)
