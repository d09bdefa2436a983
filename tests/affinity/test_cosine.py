"""The gradient-cosine signal against torch's own cosine of independently computed gradients."""

import torch

import taskgroup as tg


def test_cosine_signal_is_the_cosine_of_the_shared_gradients():
    bench = tg.data.get("planted", groups=2, tasks_per_group=2)
    model = bench.make_model(seed=0)
    x, y = next(bench.train.batches(64, seed=0))
    Z = tg.lookahead_affinity(model, x, y, bench.tasks.losses(), lookahead="cosine")
    out = model(x)
    shared = list(model.trunk.parameters())
    rows = []
    for name in bench.tasks.names:
        loss = bench.tasks[name].loss(out[name], y[name])
        grads = torch.autograd.grad(loss, shared, retain_graph=True)
        rows.append(torch.cat([g.flatten() for g in grads]))
    G = torch.stack(rows).double()
    expected = torch.nn.functional.cosine_similarity(G[:, None, :], G[None, :, :], dim=-1)
    assert torch.allclose(Z, expected, atol=1e-6)
    assert torch.allclose(Z.diagonal(), torch.ones(4, dtype=Z.dtype), atol=1e-6)


def test_measure_affinity_accepts_cosine():
    A = tg.measure_affinity("planted", steps=4, every=2, lookahead="cosine")
    assert A.metadata["lookahead"] == "cosine" and A.values.shape == (9, 9)
