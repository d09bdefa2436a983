"""Mixed precision in ``MTLStep``: bf16 autocast on CPU (float32 gradients reach the aggregator,
the update within 2% of float32's), and float16 with a ``GradScaler``: the per-task gradients
are unscaled before aggregation, and an overflow step is skipped as ``GradScaler`` skips it,
without touching the parameters, the optimizer's or the aggregator's state."""

from __future__ import annotations

import copy

import pytest
import torch

import taskgroup as tg
from taskgroup import aggregators
from taskgroup.aggregators.base import Aggregation, Aggregator
from taskgroup.gradients import flatten
from tests.aggregators.conftest import small_batch, small_losses, small_model

BF16_TOLERANCE = 2e-2  # relative error of the parameters' displacement against float32


class Recording(Aggregator):
    """The mean of the rows of G, recording the G it receives and whether autocast was on."""

    def __init__(self):
        super().__init__()
        self.seen: list[tuple[torch.Tensor, bool]] = []

    def _aggregate(self, G, context):
        self.seen.append((G.detach().clone(), torch.is_autocast_enabled(G.device.type)))
        k = G.shape[0]
        return Aggregation(G.mean(dim=0), torch.full((k,), 1.0 / k, dtype=G.dtype))


def params(model) -> torch.Tensor:
    return flatten([p.detach() for p in model.parameters()])


def train(name, steps=3, *, optimizer=torch.optim.SGD, lr=0.1, wrap=None, seed=0, **step_kw):
    """``steps`` MTLSteps of a fresh small model; ``wrap`` is an autocast dtype the caller's
    context sets around each call."""
    model = small_model(seed)
    agg = aggregators.get(name) if isinstance(name, str) else name
    opt = optimizer(model.parameters(), lr=lr)
    step = tg.MTLStep(model, small_losses(), agg, opt, **step_kw)
    results = []
    for batch in range(1, steps + 1):
        x, targets = small_batch(batch)
        if wrap is None:
            results.append(step(x, targets))
        else:
            with torch.autocast("cpu", dtype=wrap):
                results.append(step(x, targets))
    return model, step, results


def relative_displacement_error(model, reference) -> float:
    start = params(small_model())
    return float((params(model) - params(reference)).norm() / (params(reference) - start).norm())


# ------------------------------------------------------------------------------------------
# bf16 autocast


@pytest.mark.parametrize("name", ["mean", "pcgrad", "nash_mtl", "famo"])
def test_bf16_autocast_matches_float32(name):
    fp32, _, expected = train(name)
    bf16, _, results = train(name, autocast=torch.bfloat16)
    wrapped, _, _ = train(name, wrap=torch.bfloat16)
    assert relative_displacement_error(bf16, fp32) < BF16_TOLERANCE
    assert relative_displacement_error(bf16, fp32) > 0  # the forward did run in bf16
    # the option and the caller's own autocast context are the same step
    assert torch.equal(params(bf16), params(wrapped))
    for got, want in zip(results, expected, strict=True):
        assert got.losses.dtype == torch.float32
        torch.testing.assert_close(got.losses, want.losses, rtol=2e-2, atol=1e-2)
    assert all(p.dtype == torch.float32 for p in bf16.parameters())


def test_bf16_gradients_reach_the_aggregator_in_float32_with_autocast_off():
    model = small_model()
    reference = copy.deepcopy(model)
    recording = Recording()
    step = tg.MTLStep(model, small_losses(), recording, torch.optim.SGD(model.parameters(), lr=0.1))
    x, targets = small_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        step(x, targets)
    ((G, autocast_on),) = recording.seen
    assert G.dtype == torch.float32 and not autocast_on
    # independent: the bf16 forward, then one plain float32 autograd call per task
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = reference(x)
        losses = [fn(outputs[n], targets[n]) for n, fn in small_losses().items()]
    shared = list(reference.trunk.parameters())
    rows = [flatten(torch.autograd.grad(loss, shared, retain_graph=True)) for loss in losses]
    torch.testing.assert_close(G, torch.stack(rows), rtol=1e-6, atol=1e-7)


def test_bf16_features_mode():
    """on="features": the representation is bf16; its per-task gradients are aggregated in
    float32 and the direction goes back through the trunk in the representation's dtype."""
    fp32, _, _ = train("mgda", on="features")
    bf16, _, results = train("mgda", on="features", autocast=torch.bfloat16)
    assert relative_displacement_error(bf16, fp32) < BF16_TOLERANCE
    assert all(r.weights.dtype == torch.float32 for r in results)


# ------------------------------------------------------------------------------------------
# GradScaler


def scaler(scale=2.0**16, **kw):
    return torch.amp.GradScaler("cpu", init_scale=scale, **kw)


@pytest.mark.parametrize("name", ["mean", "pcgrad", "nash_mtl", "cagrad", "famo", "dwa", "uw"])
def test_scaled_step_equals_the_unscaled_one(name):
    """Float32 forward: scaling by a power of two and unscaling is exact, so the scaled step is
    the plain step (the per-task gradients were unscaled before aggregation)."""
    plain, _, expected = train(name, optimizer=torch.optim.Adam, lr=0.01)
    scaled, _, results = train(name, optimizer=torch.optim.Adam, lr=0.01, scaler=scaler())
    torch.testing.assert_close(params(scaled), params(plain), rtol=1e-6, atol=1e-7)
    for got, want in zip(results, expected, strict=True):
        assert not got.skipped and got.info["loss_scale"] == 2.0**16
        torch.testing.assert_close(got.weights, want.weights, rtol=1e-5, atol=1e-7)


def test_the_aggregator_receives_unscaled_gradients():
    model = small_model()
    reference = copy.deepcopy(model)
    recording = Recording()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = tg.MTLStep(model, small_losses(), recording, opt, scaler=scaler(2.0**20))
    x, targets = small_batch()
    step(x, targets)
    outputs = reference(x)
    shared = list(reference.trunk.parameters())
    rows = [
        flatten(torch.autograd.grad(fn(outputs[n], targets[n]), shared, retain_graph=True))
        for n, fn in small_losses().items()
    ]
    torch.testing.assert_close(recording.seen[0][0], torch.stack(rows), rtol=1e-6, atol=1e-8)


STATEFUL = [
    ("mean", {}),
    ("pcgrad", {}),
    ("nash_mtl", {"update_weights_every": 2}),
    ("famo", {}),
    ("dwa", {"window": 1}),  # non-uniform weights from the third step: sensitive to history
    ("rlw", {}),
    ("uw", {}),
]


@pytest.mark.parametrize(("name", "options"), STATEFUL)
def test_fp16_overflow_step_is_skipped_and_changes_nothing(name, options):
    """Float16 autocast with a scale that overflows the backward: the first step is skipped
    (parameters, Adam's state and the aggregator's state untouched, the scale backed off, no
    weights); the run then continues exactly as one that never saw that batch."""
    overflowing = scaler(2.0**40, backoff_factor=2.0**-30)
    model = small_model()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    agg = aggregators.get(name, **options)
    step = tg.MTLStep(model, small_losses(), agg, opt, autocast=torch.float16, scaler=overflowing)
    start = params(model)
    first = step(*small_batch(7))
    assert first.skipped and first.weights is None
    assert first.info["loss_scale"] == 2.0**40 and overflowing.get_scale() == 2.0**10
    assert torch.equal(params(model), start) and not opt.state
    # the same run without the overflowing batch, starting at the backed-off scale
    clean_model = small_model()
    clean_opt = torch.optim.Adam(clean_model.parameters(), lr=0.01)
    clean = tg.MTLStep(
        clean_model,
        small_losses(),
        aggregators.get(name, **options),
        clean_opt,
        autocast=torch.float16,
        scaler=scaler(2.0**10),
    )
    for batch in (1, 2, 3):
        got, want = step(*small_batch(batch)), clean(*small_batch(batch))
        assert not got.skipped
        assert bool(torch.isfinite(got.weights).all())
        torch.testing.assert_close(got.weights, want.weights, rtol=0, atol=0)
    assert torch.equal(params(model), params(clean_model))
    assert torch.equal(
        flatten(list(opt.state[p]["exp_avg"] for p in model.parameters())),
        flatten(list(clean_opt.state[p]["exp_avg"] for p in clean_model.parameters())),
    )


@pytest.mark.parametrize("name", ["nash_mtl", "famo"])
def test_a_non_finite_loss_under_a_scaler_is_a_skipped_step(name):
    """A forward overflow (here a NaN input) makes the losses and gradients non-finite: the step
    is skipped where, without a scaler, it raises."""
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    step = tg.MTLStep(model, small_losses(), name, opt, scaler=scaler())
    x, targets = small_batch()
    x[0, 0] = float("nan")
    start = params(model)
    result = step(x, targets)
    assert result.skipped and result.weights is None
    assert torch.equal(params(model), start) and step.scaler.get_scale() == 2.0**15
    if name == "famo":
        assert step.aggregator._previous is None
        assert torch.equal(step.aggregator.logits, torch.zeros(3, dtype=torch.float64))
    other = small_model()
    plain = tg.MTLStep(other, small_losses(), name, torch.optim.SGD(other.parameters(), lr=0.1))
    with pytest.raises(ValueError, match="not finite"):
        plain(x, targets)


def test_precision_input_errors():
    model = small_model()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(
        ValueError, match=r"autocast must be None, torch\.bfloat16 or torch\.float16"
    ):
        tg.MTLStep(model, small_losses(), "mean", opt, autocast=torch.float32)
    with pytest.raises(TypeError, match=r"scaler must be a torch\.amp\.GradScaler"):
        tg.MTLStep(model, small_losses(), "mean", opt, scaler=2.0**16)
    with pytest.raises(ValueError, match='scaler= supports on="params"'):
        tg.MTLStep(model, small_losses(), "mgda", opt, on="features", scaler=scaler())
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    assert tg.MTLStep(model, small_losses(), "mean", opt, scaler=disabled).scaler is None


# ------------------------------------------------------------------------------------------
# CUDA: float16 with GradScaler("cuda")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("name", ["nash_mtl", "famo", "pcgrad"])
def test_cuda_fp16_with_grad_scaler(name):
    """The first step overflows and is skipped; the next two match float32 steps on the same
    batches from the same start within the bf16 tolerance."""

    def run(batches, **kw):
        model = small_model().cuda()
        step = tg.MTLStep(
            model, small_losses(), name, torch.optim.SGD(model.parameters(), lr=0.1), **kw
        )
        results = []
        for batch in batches:
            x, targets = small_batch(batch)
            results.append(step(x.cuda(), {n: t.cuda() for n, t in targets.items()}))
        return model, results

    overflowing = torch.amp.GradScaler("cuda", init_scale=2.0**40, backoff_factor=2.0**-30)
    fp16, results = run((1, 2, 3), autocast=torch.float16, scaler=overflowing)
    assert results[0].skipped and results[0].weights is None
    assert overflowing.get_scale() == 2.0**10
    assert not any(r.skipped for r in results[1:])
    assert all(bool(torch.isfinite(r.weights).all()) for r in results[1:])
    fp32, _ = run((2, 3))
    start = params(small_model()).cuda()
    error = (params(fp16) - params(fp32)).norm() / (params(fp32) - start).norm()
    assert 0 < float(error) < BF16_TOLERANCE
