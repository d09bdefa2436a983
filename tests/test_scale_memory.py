"""The chunked per-task gradient path of the lookahead (issue 20, memory): the same affinity
whether the ``[n, P]`` gradient matrix is formed whole or in chunks of tasks, and the same as a
naive per-task loop; the chunked Gramian against a plain float64 product."""

from __future__ import annotations

import pytest
import torch

from taskgroup.affinity.lookahead import (
    AUTO_GRADIENT_BYTES,
    chunked_gramian,
    gradient_chunk_rows,
    lookahead_affinity,
)
from tests.affinity.conftest import LOSSES, make_batch, make_model
from tests.affinity.test_lookahead import OPTIMIZERS, naive_affinity, trained_optimizer

TRUNK = sum(p.numel() for p in make_model().trunk.parameters())  # P of the test model
ROW = TRUNK * 4  # bytes of one float32 gradient row


def naive_gradients(model, inputs, targets):
    """[n, P] float64: each task's trunk gradient by its own forward and backward."""
    rows = []
    for name, loss_fn in LOSSES.items():
        model.zero_grad()
        out = model(inputs)
        loss_fn(out[name], targets[name]).backward()
        rows.append(torch.cat([p.grad.flatten() for p in model.trunk.parameters()]))
    model.zero_grad()
    return torch.stack(rows).double()


def test_chunk_rows_keep_small_problems_whole_and_split_large_ones():
    assert gradient_chunk_rows(4, TRUNK, 4, None) == 4  # tiny: one block, the fast path
    # automatic: whole up to AUTO_GRADIENT_BYTES, beyond it 4 rows of P (at least 64 MiB)
    assert gradient_chunk_rows(100, 100_000, 4, None) == 100  # 40 MB: whole
    assert gradient_chunk_rows(100, 1_000_000, 4, None) == AUTO_GRADIENT_BYTES // 4_000_000
    assert gradient_chunk_rows(100, 10_000_000, 4, None) == 4
    assert gradient_chunk_rows(100, 10_000_000, 4, None, blocks=2) == 2
    assert gradient_chunk_rows(7, 10, 4, 85) == 2 and gradient_chunk_rows(7, 10, 4, 1) == 1
    for bad in (0, -5, True):
        with pytest.raises(ValueError, match="memory_budget"):
            gradient_chunk_rows(4, 10, 4, bad)


@pytest.mark.parametrize("rows", [1, 2, 3, 7])
def test_chunked_gramian_is_the_float64_product_and_costs_n_k_plus_1_over_2_rows(rows):
    g = torch.randn(7, 13, generator=torch.Generator().manual_seed(rows))
    asked = []

    def gradient_rows(chunk):
        asked.append(len(chunk))
        return g[chunk.start : chunk.stop]

    gram = chunked_gramian(gradient_rows, 7, rows)
    torch.testing.assert_close(gram, g.double() @ g.double().T, rtol=1e-13, atol=1e-13)
    k = -(-7 // rows)
    # chunk a is computed once as the first block and once against every earlier chunk
    expected = sum(len(range(a * rows, min(a * rows + rows, 7))) * (a + 1) for a in range(k))
    assert sum(asked) == expected and max(asked) <= rows
    if 7 % rows == 0:  # equal chunks: n (k + 1) / 2 gradient rows
        assert sum(asked) == 7 * (k + 1) // 2


@pytest.mark.parametrize("lookahead", ["first_order", "cosine"])
@pytest.mark.parametrize("rows", [1, 3])
def test_gramian_signals_chunked_equal_whole_and_the_naive_gradients(lookahead, rows):
    model = make_model(seed=2)
    x, t = make_batch(seed=3)
    whole = lookahead_affinity(model, x, t, LOSSES, lr=0.1, lookahead=lookahead)
    # two blocks of `rows` rows are held at once by the chunked Gramian
    chunked = lookahead_affinity(
        model, x, t, LOSSES, lr=0.1, lookahead=lookahead, memory_budget=2 * rows * ROW
    )
    torch.testing.assert_close(chunked, whole, rtol=1e-12, atol=1e-12)
    g = naive_gradients(model, x, t)
    gram = g @ g.T
    with torch.no_grad():
        out = model(x)
        base = torch.stack([LOSSES[n](out[n], t[n]) for n in LOSSES]).double()
    if lookahead == "cosine":
        norms = gram.diagonal().sqrt()
        expected = gram / norms[:, None] / norms[None, :]
    else:
        expected = 0.1 * gram / base[None, :]
    torch.testing.assert_close(chunked, expected, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("rows", [1, 2, 3])
@pytest.mark.parametrize("vectorize", ["loop", "vmap"])
def test_sgd_lookahead_chunked_equals_whole_and_the_naive_loop(rows, vectorize):
    model = make_model(seed=4, dropout=0.2)  # dropout: every chunk replays the same masks
    x, t = make_batch(seed=5)
    rng = torch.get_rng_state()
    whole = lookahead_affinity(model, x, t, LOSSES, lr=0.3, lookahead="sgd", vectorize=vectorize)
    chunked = lookahead_affinity(
        model,
        x,
        t,
        LOSSES,
        lr=0.3,
        lookahead="sgd",
        vectorize=vectorize,
        memory_budget=rows * ROW,
    )
    assert torch.equal(torch.get_rng_state(), rng)
    if vectorize == "loop":  # the same operations row by row: bit for bit
        assert torch.equal(chunked, whole)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    ref = naive_affinity(model, x, t, LOSSES, lr=0.3)
    torch.testing.assert_close(chunked, ref, atol=1e-5, rtol=0)
    assert ref.abs().max() > 1e-3


@pytest.mark.parametrize("name", ["adam", "adamw", "sgd_momentum"])
def test_optimizer_lookahead_chunked_equals_whole_and_the_naive_loop(name):
    model = make_model(seed=6, batchnorm=True)
    opt = trained_optimizer(model, OPTIMIZERS[name])
    x, t = make_batch(seed=7)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    whole = lookahead_affinity(model, x, t, LOSSES, optimizer=opt)
    chunked = lookahead_affinity(model, x, t, LOSSES, optimizer=opt, memory_budget=ROW)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert torch.equal(chunked, whole)
    torch.testing.assert_close(
        chunked, naive_affinity(model, x, t, LOSSES, optimizer=opt), atol=1e-5, rtol=0
    )


def test_batched_gradients_in_chunks_agree():
    model = make_model(seed=8)
    x, t = make_batch(seed=9)
    whole = lookahead_affinity(model, x, t, LOSSES, lr=0.2, lookahead="sgd")
    chunked = lookahead_affinity(
        model, x, t, LOSSES, lr=0.2, lookahead="sgd", batched_grads=True, memory_budget=2 * ROW
    )
    torch.testing.assert_close(chunked, whole, atol=1e-6, rtol=0)
