"""The scalable affinity signals (issue 20) against independent computations on small models."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.func import functional_call

import taskgroup as tg
from taskgroup.affinity.scalable import (
    SCALABLE,
    SIGNALS,
    SignalMeasurer,
    SourceSampler,
    linear_head_gramian,
    representation_gradients,
    representation_signal,
    sampled_lookahead,
    sketch_directions,
    sketch_signal,
)
from taskgroup.data.heads import LinearHead
from taskgroup.models import MultiTaskModel
from taskgroup.settings import AffinitySettings, SettingError
from tests.affinity.conftest import LOSSES, make_batch, make_model

LR = 0.05


def float64_model(**options):
    return make_model(**options).double()


def float64_batch():
    x, y = make_batch()
    return x.double(), {k: v.double() if v.is_floating_point() else v for k, v in y.items()}


def naive_gradients(model, x, y):
    """Per-task gradients of the trunk's parameters, one plain autograd call per task."""
    out = model(x)
    params = list(model.trunk.parameters())
    rows = []
    for name, loss_fn in LOSSES.items():
        grads = torch.autograd.grad(loss_fn(out[name], y[name]), params, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows).detach()


def state_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("batchnorm", [False, True])
def test_representation_gradients_equal_a_per_task_autograd_loop(batchnorm):
    model = float64_model(batchnorm=batchnorm)
    x, y = float64_batch()
    before, rng = state_of(model), torch.get_rng_state()
    rows, base = representation_gradients(model, x, y, LOSSES)
    # independent: the trunk's output on the graph, one autograd.grad per task
    model_copy = float64_model(batchnorm=batchnorm)
    h = model_copy.trunk(x)
    expected, losses = [], []
    for name, loss_fn in LOSSES.items():
        loss = loss_fn(model_copy.heads[name](h), y[name])
        losses.append(loss.detach())
        expected.append(torch.autograd.grad(loss, h, retain_graph=True)[0].reshape(-1))
    expected = torch.stack(expected)
    assert torch.allclose(rows, expected, atol=1e-12)
    assert torch.allclose(base, torch.stack(losses), atol=1e-12)
    for k, v in model.state_dict().items():  # batch-norm running statistics untouched
        assert torch.equal(v, before[k])
    assert torch.equal(torch.get_rng_state(), rng)
    gram = expected @ expected.T
    cos = SignalMeasurer("representation_cosine", 4)(model, x, y, LOSSES).affinity
    norms = gram.diagonal().sqrt()
    assert torch.allclose(cos, gram / norms[:, None] / norms[None, :], atol=1e-12)
    taylor = SignalMeasurer("representation", 4)(model, x, y, LOSSES, lr=LR).affinity
    assert torch.allclose(taylor, LR * gram / torch.stack(losses)[None, :], atol=1e-12)


def nonlinear_heads_model() -> MultiTaskModel:
    torch.manual_seed(3)
    out = {"a": 3, "b": 1, "c": 1, "d": 1}
    heads = {t: nn.Sequential(nn.Linear(8, 5), nn.Tanh(), nn.Linear(5, k)) for t, k in out.items()}
    return MultiTaskModel(float64_model().trunk, heads).double()


@pytest.mark.parametrize("head", ["linear", "linear_head"])
@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_the_linear_head_gramian_equals_the_gramian_of_the_representation_gradients(head, dropout):
    model = float64_model(dropout=dropout)
    losses = LOSSES  # their squeeze(-1) takes a squeezed prediction too
    if head == "linear_head":  # taskgroup's own squeezed heads
        for name, old in list(model.heads.items()):
            new = LinearHead(old.in_features, old.out_features).double()
            new.load_state_dict(old.state_dict())
            model.heads[name] = new
    x, y = float64_batch()
    rng = torch.get_rng_state()
    gram, base = linear_head_gramian(model, x, y, losses)
    assert torch.equal(torch.get_rng_state(), rng)  # the trunk's dropout leaves the stream alone
    rows, expected_base = representation_gradients(model, x, y, losses)  # same dropout masks
    torch.testing.assert_close(gram, rows @ rows.T, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(base, expected_base, rtol=0, atol=0)
    workspace: dict = {}
    measured = representation_signal(model, x, y, losses, lr=LR, workspace=workspace)
    assert not workspace  # no [n, B·D] matrix on this path
    torch.testing.assert_close(measured.affinity, LR * (rows @ rows.T) / base[None, :])


@pytest.mark.parametrize("kind", ["representation", "representation_cosine"])
def test_the_measurer_reuses_its_representation_buffer_without_changing_a_value(kind):
    model = nonlinear_heads_model()
    assert linear_head_gramian(model, *float64_batch(), LOSSES) is None  # R is formed
    measurer = SignalMeasurer(kind, len(LOSSES))
    first_batch, second_batch = float64_batch(), make_batch(seed=9)
    second_batch = (
        second_batch[0].double(),
        {k: v.double() if v.is_floating_point() else v for k, v in second_batch[1].items()},
    )
    first = measurer(model, *first_batch, LOSSES, lr=LR)
    buffer = measurer.workspace["representation"].data_ptr()
    second = measurer(model, *second_batch, LOSSES, lr=LR)
    assert measurer.workspace["representation"].data_ptr() == buffer  # written into the first R
    for batch, measured in ((first_batch, first), (second_batch, second)):
        fresh = SignalMeasurer(kind, len(LOSSES))(model, *batch, LOSSES, lr=LR)
        assert torch.equal(measured.affinity, fresh.affinity)
        assert torch.equal(measured.base_losses, fresh.base_losses)
    # a buffer of another shape is not used
    rows, _ = representation_gradients(model, *first_batch, LOSSES, out=torch.empty(3, 5).double())
    assert rows.shape[0] == len(LOSSES) and rows.shape[1] != 5


def test_representation_signals_need_a_multitask_model():
    model = float64_model()
    plain = torch.nn.Sequential()  # not a MultiTaskModel
    plain.inner = model
    with pytest.raises(ValueError, match="MultiTaskModel"):
        representation_gradients(plain, *float64_batch(), LOSSES)


@pytest.mark.parametrize("batchnorm", [False, True])
def test_orthogonal_sketch_of_full_size_equals_the_exact_gramian(batchnorm):
    model = float64_model(batchnorm=batchnorm)
    x, y = float64_batch()
    P = sum(p.numel() for p in model.trunk.parameters())
    before, rng = state_of(model), torch.get_rng_state()
    G = naive_gradients(float64_model(batchnorm=batchnorm), x, y)
    for signal, exact in (("sketch", "first_order"), ("sketch_cosine", "cosine")):
        z = sketch_signal(
            model, x, y, LOSSES, signal=signal, lr=LR, sketch_dim=P + 5, sketch="orthogonal",
            chunk_size=64,
        ).affinity  # fmt: skip
        reference = tg.lookahead_affinity(model, x, y, LOSSES, lr=LR, lookahead=exact)
        assert torch.allclose(z, reference, atol=1e-10)
    gram = sketch_signal(model, x, y, LOSSES, lr=1.0, sketch_dim=P, sketch="orthogonal")
    assert torch.allclose(gram.affinity * gram.base_losses[None, :], G @ G.T, atol=1e-10)
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])
    assert torch.equal(torch.get_rng_state(), rng)


@pytest.mark.parametrize("kind", ["gaussian", "rademacher"])
def test_sketched_gradients_are_the_projection_of_the_exact_gradients(kind):
    """The forward-mode path (d JVPs) equals Sᵀ g_i formed from autograd gradients and S."""
    model = float64_model()
    x, y = float64_batch()
    P = sum(p.numel() for p in model.trunk.parameters())
    S = sketch_directions(P, 16, kind=kind, seed=3, dtype=torch.float64).T  # [P, d]
    sketched = naive_gradients(model, x, y) @ S
    z = sketch_signal(model, x, y, LOSSES, lr=1.0, sketch_dim=16, sketch=kind, seed=3)
    assert torch.allclose(z.affinity * z.base_losses[None, :], sketched @ sketched.T, atol=1e-10)
    chunked = sketch_directions(P, 16, kind=kind, seed=3, rows=range(5, 9), dtype=torch.float64)
    assert torch.equal(chunked, S.T[5:9])  # any chunking draws the same sketch


@pytest.mark.parametrize("kind", ["gaussian", "rademacher", "orthogonal"])
def test_sketch_is_unbiased_and_its_error_shrinks_with_its_size(kind):
    g = torch.Generator().manual_seed(0)
    G = torch.randn(5, 300, generator=g, dtype=torch.float64)
    exact = G @ G.T

    def sketched(d, seed):
        S = sketch_directions(300, d, kind=kind, seed=seed, dtype=torch.float64).T
        return (G @ S) @ (G @ S).T

    mean = torch.stack([sketched(8, seed) for seed in range(400)]).mean(0)
    # per-entry standard error of the mean over 400 draws of d = 8 is about |g|² / √(8·400)
    assert (mean - exact).abs().max() < 4 * exact.diagonal().max() / (8 * 400) ** 0.5
    errors = {
        d: torch.stack([(sketched(d, s) - exact).norm() for s in range(20)]).mean()
        for d in (4, 32, 256)
    }
    assert errors[4] > 2 * errors[32] > 4 * errors[256]


def naive_linearised(model, x, y, lr):
    """Z[i, j] = 1 − L_j(f_j + J_j u_i) / L_j(f_j) with u_i = −lr g_i: one JVP per source by
    torch.autograd.functional.jvp (the double-backward trick, not forward mode)."""
    G = naive_gradients(model, x, y)
    names = [f"trunk.{n}" for n, _ in model.trunk.named_parameters()]
    params = tuple(p.detach() for p in model.trunk.parameters())
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    order = list(LOSSES)

    def outputs(*values):
        out = functional_call(model, {**dict(zip(names, values, strict=True)), **buffers}, (x,))
        return tuple(out[n] for n in order)

    base = {n: LOSSES[n](o, y[n]) for n, o in model(x).items()}
    z = torch.empty(4, 4, dtype=torch.float64)
    for i in range(4):
        pieces = torch.split(-lr * G[i], [p.numel() for p in params])
        step = tuple(s.view_as(p) for s, p in zip(pieces, params, strict=True))
        out, tangent = torch.autograd.functional.jvp(outputs, params, step)
        for j, name in enumerate(order):
            z[i, j] = 1 - LOSSES[name](out[j] + tangent[j], y[name]) / base[name]
    return z.detach()


@pytest.mark.parametrize("batchnorm", [False, True])
def test_linearised_lookahead_of_full_size_equals_a_naive_jvp_per_source(batchnorm):
    model = float64_model(batchnorm=batchnorm)
    x, y = float64_batch()
    P = sum(p.numel() for p in model.trunk.parameters())
    z = sketch_signal(
        model, x, y, LOSSES, signal="linearised", lr=0.5, sketch_dim=P, sketch="orthogonal"
    ).affinity
    assert torch.allclose(
        z, naive_linearised(float64_model(batchnorm=batchnorm), x, y, 0.5), atol=1e-10
    )
    # at a small step the linearised lookahead meets the exact one and the first-order estimate
    small = sketch_signal(model, x, y, LOSSES, signal="linearised", lr=1e-4, sketch_dim=P,
                          sketch="orthogonal").affinity  # fmt: skip
    exact = tg.lookahead_affinity(model, x, y, LOSSES, lr=1e-4, lookahead="sgd")
    assert torch.allclose(small, exact, rtol=1e-2, atol=1e-9)


def test_source_sampler_covers_every_source_equally_over_whole_cycles():
    sampler = SourceSampler(7, 3, seed=1)
    counts = torch.zeros(7, dtype=torch.float64)
    for _ in range(7):  # 21 draws of sources = 3 permutations of 7
        rows, weights = sampler.draw()
        assert rows == sorted(set(rows)) and len(weights) == len(rows)
        counts[rows] += weights * 3 / 7
    assert torch.equal(counts, torch.full((7,), 3.0, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"sources must lie in 1\.\.7"):
        SourceSampler(7, 8)


@pytest.mark.parametrize("use_optimizer", [False, True])
def test_sampled_sources_equal_the_exact_lookahead_at_m_equal_n(use_optimizer):
    model = float64_model(batchnorm=True)
    x, y = float64_batch()
    optimizer = None
    if use_optimizer:
        optimizer = torch.optim.Adam(model.parameters(), lr=0.01)
        model(x)["a"].sum().backward()
        optimizer.step()
    measurer = SignalMeasurer("sampled", 4, sources=4, seed=2)
    z = measurer(model, x, y, LOSSES, lr=LR, optimizer=optimizer).affinity
    look = "optimizer" if use_optimizer else "sgd"
    exact = tg.lookahead_affinity(model, x, y, LOSSES, lr=LR, optimizer=optimizer, lookahead=look)
    assert torch.allclose(z, exact, atol=1e-12)


def test_sampled_sources_average_to_the_full_matrix_on_a_fixed_batch():
    model = float64_model()
    x, y = float64_batch()
    exact = tg.lookahead_affinity(model, x, y, LOSSES, lr=LR, lookahead="sgd")
    measurer = SignalMeasurer("sampled", 4, sources=3, seed=0)
    draws = [measurer(model, x, y, LOSSES, lr=LR).affinity for _ in range(8)]
    # 8 draws of 3 = 6 whole permutations of 4: every source measured 6 times, weight 4/3
    assert torch.allclose(torch.stack(draws).mean(0), exact, atol=1e-12)
    single = [d for d in draws if (d.abs().sum(1) > 0).sum() < 4]
    assert single, "some draws must leave a source unmeasured"
    drift = SignalMeasurer("sampled", 4, sources=1, seed=5)
    mean = torch.stack([drift(model, x, y, LOSSES, lr=LR).affinity for _ in range(41)]).mean(0)
    # 41 single-source draws: within one draw's weight of the full matrix per row
    assert torch.allclose(mean, exact, atol=4 / 41 * exact.abs().max())
    rows, weights = [2, 0], torch.tensor([2.0, 1.0], dtype=torch.float64)
    direct = sampled_lookahead(model, x, y, LOSSES, rows, weights, lr=LR).affinity
    assert torch.allclose(direct[2], 2 * exact[2]) and torch.allclose(direct[0], exact[0])
    assert torch.equal(direct[[1, 3]], torch.zeros(2, 4, dtype=torch.float64))


@pytest.mark.parametrize("signal", SCALABLE)
def test_every_scalable_signal_runs_in_measure_affinity_and_the_settings(signal):
    assert AffinitySettings(lookahead=signal).lookahead == signal and signal in SIGNALS
    A = tg.measure_affinity(
        "planted", steps=4, every=2, lookahead=signal, progress=False, sketch_dim=8
    )
    assert A.metadata["lookahead"] == signal and A.values.shape == (9, 9)
    assert torch.isfinite(torch.as_tensor(A.values)).all()


def test_bad_options_name_what_is_accepted():
    model = make_model()
    with pytest.raises(ValueError, match="representation, representation_cosine, sketch"):
        tg.AffinityTracker(model, LOSSES, lookahead="sketchy", lr=0.1)
    with pytest.raises(SettingError, match="sampled"):
        AffinitySettings(lookahead="sketchy")
    with pytest.raises(ValueError, match="sketch must be one of gaussian, rademacher"):
        tg.AffinityTracker(model, LOSSES, lookahead="sketch", sketch="fourier", lr=0.1)
    with pytest.raises(ValueError, match="sketch_dim must be a positive integer"):
        tg.AffinityTracker(model, LOSSES, lookahead="linearised", sketch_dim=0, lr=0.1)
    with pytest.raises(ValueError, match=r"sources must lie in 1\.\.4"):
        tg.AffinityTracker(model, LOSSES, lookahead="sampled", sources=5, lr=0.1)
    with pytest.raises(ValueError, match="vectorize apply to the exact signals"):
        tg.AffinityTracker(model, LOSSES, lookahead="sketch", vectorize="loop", lr=0.1)
