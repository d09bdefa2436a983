"""lookahead_affinity against a naive per-task loop (copy the model, step, forward)."""

from __future__ import annotations

import copy

import pytest
import torch

from taskgroup.affinity.lookahead import lookahead_affinity

from .conftest import LOSSES, make_batch, make_model


def naive_affinity(model, inputs, targets, losses, *, optimizer=None, lr=None):
    """Reference: for each source task, deep-copy model and optimizer, step θ_s on that task's
    loss alone, and forward again."""
    names = list(losses)
    shared = {n for n, _ in model.named_parameters() if n.startswith("trunk.")}
    rng = torch.get_rng_state()
    z = torch.zeros(len(names), len(names), dtype=torch.float64)
    for i, source in enumerate(names):
        clone = copy.deepcopy(model)
        params = dict(clone.named_parameters())
        if optimizer is None:
            opt = torch.optim.SGD(clone.parameters(), lr=lr)
        else:
            position = {id(p): k for k, p in enumerate(model.parameters())}
            cloned = list(clone.parameters())
            groups = [
                {"params": [cloned[position[id(p)]] for p in g["params"]]}
                for g in optimizer.param_groups
            ]
            opt = type(optimizer)(groups, lr=1.0)
            # load_state_dict keeps the very state tensors: copy them, or the steps corrupt them
            opt.load_state_dict(copy.deepcopy(optimizer.state_dict()))
        torch.set_rng_state(rng)
        out = clone(inputs)
        before = [float(losses[n](out[n], targets[n]).detach()) for n in names]
        losses[source](out[source], targets[source]).backward()
        for name, p in params.items():
            if name not in shared:
                p.grad = None
        opt.step()
        torch.set_rng_state(rng)
        with torch.no_grad():
            out = clone(inputs)
            after = [float(losses[n](out[n], targets[n])) for n in names]
        for j in range(len(names)):
            z[i, j] = 1 - after[j] / before[j]
    return z


def trained_optimizer(model, factory, steps=3):
    """An optimizer with non-trivial state after a few real steps on other batches."""
    opt = factory(model.parameters())
    for s in range(steps):
        x, t = make_batch(seed=100 + s)
        opt.zero_grad()
        out = model(x)
        sum(LOSSES[n](out[n], t[n]) for n in LOSSES).backward()
        opt.step()
    opt.zero_grad()
    return opt


OPTIMIZERS = {
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2),
    "adam_wd_amsgrad": lambda p: torch.optim.Adam(p, lr=5e-3, weight_decay=0.1, amsgrad=True),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.05, betas=(0.8, 0.99)),
    "sgd_momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "sgd_nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True),
    "sgd_plain_maximize": lambda p: torch.optim.SGD(p, lr=0.05, maximize=True),
}


@pytest.mark.parametrize("lr", [0.01, 0.3])
@pytest.mark.parametrize("batchnorm", [False, True])
def test_sgd_matches_naive_loop(lr, batchnorm, batch):
    model = make_model(batchnorm=batchnorm)
    x, t = batch
    ours = lookahead_affinity(model, x, t, LOSSES, lr=lr, lookahead="sgd")
    ref = naive_affinity(model, x, t, LOSSES, lr=lr)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert ours.abs().max() > 1e-3  # not a trivially zero comparison


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("fresh", [True, False])
def test_optimizer_lookahead_matches_naive_loop(name, fresh, batch):
    model = make_model(batchnorm=True)
    opt = (
        OPTIMIZERS[name](model.parameters())
        if fresh
        else trained_optimizer(model, OPTIMIZERS[name])
    )
    x, t = batch
    ours = lookahead_affinity(model, x, t, LOSSES, optimizer=opt)
    ref = naive_affinity(model, x, t, LOSSES, optimizer=opt)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert ours.abs().max() > 1e-3


def test_param_groups_with_their_own_hyperparameters(batch):
    model = make_model()
    first, second = model.trunk[0], model.trunk[3]
    opt = trained_optimizer(
        model,
        lambda _: torch.optim.Adam(
            [
                {"params": first.parameters(), "lr": 2e-2, "betas": (0.5, 0.9)},
                {"params": list(second.parameters()) + list(model.heads.parameters())},
            ],
            lr=3e-3,
        ),
    )
    x, t = batch
    ours = lookahead_affinity(model, x, t, LOSSES, optimizer=opt)
    torch.testing.assert_close(
        ours, naive_affinity(model, x, t, LOSSES, optimizer=opt), atol=1e-5, rtol=0
    )


def test_first_order_is_the_small_step_limit(batch):
    model = make_model()
    x, t = batch
    fo = lookahead_affinity(model, x, t, LOSSES, lr=1.0, lookahead="first_order")
    errors = []
    for lr in (1e-1, 1e-2, 1e-3):
        exact = lookahead_affinity(model, x, t, LOSSES, lr=lr, lookahead="sgd") / lr
        errors.append(float((exact - fo).abs().max() / fo.abs().max()))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 2e-2
    # first order is linear in lr
    torch.testing.assert_close(
        lookahead_affinity(model, x, t, LOSSES, lr=0.5, lookahead="first_order"), 0.5 * fo
    )


@pytest.mark.parametrize("batched_grads", [False, True])
def test_vmap_and_batched_gradients_agree_with_the_loop(batched_grads, batch):
    model = make_model()
    x, t = batch
    loop = lookahead_affinity(model, x, t, LOSSES, lr=0.1)
    other = lookahead_affinity(
        model, x, t, LOSSES, lr=0.1, vectorize="vmap", batched_grads=batched_grads, chunk_size=3
    )
    torch.testing.assert_close(loop, other, atol=1e-6, rtol=0)


def test_state_is_left_exactly_as_it_was(batch):
    model = make_model(batchnorm=True, dropout=0.3)
    opt = trained_optimizer(model, OPTIMIZERS["adam"])
    x, t = batch
    out = model(x)
    sum(LOSSES[n](out[n], t[n]) for n in LOSSES).backward()  # leave .grad populated
    params = {n: p.detach().clone() for n, p in model.state_dict(keep_vars=True).items()}
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    opt_state = copy.deepcopy(opt.state_dict())
    torch.manual_seed(7)
    expected_next = torch.rand(5)
    torch.manual_seed(7)
    lookahead_affinity(model, x, t, LOSSES, optimizer=opt)
    assert torch.equal(torch.rand(5), expected_next)  # caller's RNG stream untouched
    for n, v in model.state_dict(keep_vars=True).items():
        assert torch.equal(v, params[n]), n  # parameters and BN running stats, bit for bit
    for n, p in model.named_parameters():
        assert torch.equal(p.grad, grads[n]), n
    after = opt.state_dict()
    for k, s in opt_state["state"].items():
        for key, value in s.items():
            assert torch.equal(torch.as_tensor(after["state"][k][key]), torch.as_tensor(value))


def test_dropout_masks_are_shared_by_base_and_lookahead_forwards(batch):
    model = make_model(dropout=0.5)
    x, t = batch
    torch.manual_seed(3)
    first = lookahead_affinity(model, x, t, LOSSES, lr=0.1)
    torch.manual_seed(3)
    ref = naive_affinity(model, x, t, LOSSES, lr=0.1)
    torch.testing.assert_close(first, ref, atol=1e-5, rtol=0)


def test_custom_module_with_shared_predicate_and_names(batch):
    model = make_model()
    x, t = batch
    by_module = lookahead_affinity(model, x, t, LOSSES, lr=0.1, shared=model.trunk)
    by_names = lookahead_affinity(
        model,
        x,
        t,
        LOSSES,
        lr=0.1,
        shared=[n for n, _ in model.named_parameters() if n.startswith("trunk.")],
    )
    by_predicate = lookahead_affinity(
        model, x, t, LOSSES, lr=0.1, shared=lambda n: n.startswith("trunk.")
    )
    torch.testing.assert_close(by_module, by_names)
    torch.testing.assert_close(by_module, by_predicate)


def test_row_order_follows_the_losses_dict(batch):
    model = make_model()
    x, t = batch
    z = lookahead_affinity(model, x, t, LOSSES, lr=0.1)
    order = ["d", "b", "a", "c"]
    permuted = lookahead_affinity(model, x, t, {n: LOSSES[n] for n in order}, lr=0.1)
    idx = [list(LOSSES).index(n) for n in order]
    torch.testing.assert_close(permuted, z[idx][:, idx], atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda x, t, fns: (x, t, {**fns, "a": lambda p, y: (p * 0).sum() / 0}), "not finite.*a"),
        (lambda x, t, fns: (x, t, {**fns, "b": lambda p, y: (p.squeeze(-1) - y) ** 2}), "scalar"),
        (lambda x, t, fns: (x, {k: v for k, v in t.items() if k != "c"}, fns), "targets.*'c'"),
        (lambda x, t, fns: (x, t, {**fns, "zzz": fns["b"]}), "targets.*'zzz'"),
        (lambda x, t, fns: (x[:0], {k: v[:0] for k, v in t.items()}, fns), "empty batch"),
        (lambda x, t, fns: (x, t, {}), "losses is empty"),
    ],
)
def test_bad_input_is_named(mutate, message, batch):
    model = make_model()
    x, t, losses = mutate(*batch, dict(LOSSES))
    with pytest.raises(ValueError, match=message):
        lookahead_affinity(model, x, t, losses, lr=0.1)


def test_bad_configuration_is_named(batch):
    model = make_model()
    x, t = batch
    with pytest.raises(ValueError, match="matches no trainable"):
        lookahead_affinity(model, x, t, LOSSES, lr=0.1, shared=lambda n: n.startswith("nope"))
    with pytest.raises(ValueError, match="unknown or frozen"):
        lookahead_affinity(model, x, t, LOSSES, lr=0.1, shared=["trunk.9.weight"])
    with pytest.raises(ValueError, match="needs lr"):
        lookahead_affinity(model, x, t, LOSSES)
    with pytest.raises(ValueError, match="needs the optimizer"):
        lookahead_affinity(model, x, t, LOSSES, lr=0.1, lookahead="optimizer")
    with pytest.raises(ValueError, match="lookahead must be"):
        lookahead_affinity(model, x, t, LOSSES, lr=0.1, lookahead="adam")
    with pytest.raises(ValueError, match="supports SGD, Adam and AdamW"):
        lookahead_affinity(model, x, t, LOSSES, optimizer=torch.optim.RMSprop(model.parameters()))
    with pytest.raises(ValueError, match="does not update"):
        lookahead_affinity(
            model, x, t, LOSSES, optimizer=torch.optim.Adam(model.heads.parameters())
        )
    with pytest.raises(ValueError, match="exactly 0"):
        lookahead_affinity(model, x, t, {**LOSSES, "b": lambda p, y: (p * 0).mean()}, lr=0.1)


class TiedParameters(torch.nn.Module):
    """Heads ``b`` and ``d`` share their weight, and a side projection shares the trunk's first
    weight: functional_call must keep both ties."""

    def __init__(self):
        super().__init__()
        base = make_model()
        self.trunk, self.heads = base.trunk, base.heads
        self.proj = torch.nn.Linear(6, 12, bias=False)
        self.proj.weight = self.trunk[0].weight
        self.heads["d"].weight = self.heads["b"].weight

    def forward(self, x):
        features = self.trunk(x) + 0.1 * torch.tanh(self.proj(x))[:, :8]
        return {name: head(features) for name, head in self.heads.items()}


@pytest.mark.parametrize("vectorize", ["loop", "vmap"])
def test_tied_weights_match_the_naive_loop(vectorize, batch):
    model = TiedParameters()
    x, t = batch
    opt = trained_optimizer(model, OPTIMIZERS["adam"])
    for kwargs in ({"lr": 0.1}, {"optimizer": opt}):
        ours = lookahead_affinity(
            model, x, t, LOSSES, shared=model.trunk, vectorize=vectorize, **kwargs
        )
        ref = naive_affinity(model, x, t, LOSSES, **kwargs)
        torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)
    assert isinstance(model.trunk[0].weight, torch.nn.Parameter)
    assert model.proj.weight is model.trunk[0].weight


def test_an_aliased_submodule_is_refused_not_corrupted(batch):
    model = make_model()
    model.alias = model.trunk[0]  # the same Linear under a second name
    x, t = batch
    with pytest.raises(ValueError, match="also registered as 'alias'"):
        lookahead_affinity(model, x, t, LOSSES, lr=0.1)
    assert isinstance(model.trunk[0].weight, torch.nn.Parameter)


def test_tie_detection_matches_a_scan_of_the_named_tensors():
    """has_tied_tensors walks the modules once; the answer is that of scanning
    named_parameters and named_buffers with duplicates for a tensor seen twice."""
    from torch import nn

    from taskgroup.affinity.lookahead import has_tied_tensors

    def scan(model):
        named = [*model.named_parameters(remove_duplicate=False)]
        named += [*model.named_buffers(remove_duplicate=False)]
        return len({id(t) for _, t in named}) < len(named)

    tied = nn.Sequential(nn.Linear(3, 3), nn.Linear(3, 3))
    tied[1].weight = tied[0].weight
    stats = nn.BatchNorm1d(3, affine=False)  # buffers only, registered twice
    relu = nn.ReLU()
    shared_buffer = nn.Sequential(nn.BatchNorm1d(3))
    shared_buffer.register_buffer("mean_again", shared_buffer[0].running_mean)
    no_bias = nn.Linear(3, 3, bias=False)
    models = [
        make_model(),
        tied,
        nn.Sequential(stats, nn.Linear(3, 3), stats),
        nn.Sequential(nn.Linear(3, 3), relu, nn.Linear(3, 3), relu),
        shared_buffer,
        no_bias,
    ]
    for model in models:
        assert has_tied_tensors(model) == scan(model)
    assert [has_tied_tensors(m) for m in models] == [False, True, True, False, True, False]


@pytest.mark.parametrize("name", ["adam", "sgd_momentum"])
@pytest.mark.parametrize("memory_budget", [None, 1])  # whole, and one task per chunk
def test_a_kept_workspace_changes_no_result_and_reuses_its_buffer(name, memory_budget, batch):
    model = make_model()
    opt = trained_optimizer(model, OPTIMIZERS[name])
    x, t = batch
    options = {"optimizer": opt, "memory_budget": memory_budget, "vectorize": "loop"}
    expected = lookahead_affinity(model, x, t, LOSSES, **options)
    workspace: dict = {}
    first = lookahead_affinity(model, x, t, LOSSES, workspace=workspace, **options)
    buffer = workspace["gradients"]
    rows = len(LOSSES) if memory_budget is None else 1
    assert buffer.shape == (rows, sum(p.numel() for p in model.trunk.parameters()))
    other_x, other_t = make_batch(seed=5)
    other = lookahead_affinity(model, other_x, other_t, LOSSES, workspace=workspace, **options)
    assert workspace["gradients"] is buffer  # the second call wrote into the first's buffer
    assert torch.equal(first, expected)
    assert torch.equal(other, lookahead_affinity(model, other_x, other_t, LOSSES, **options))


def test_a_workspace_keeps_no_buffer_above_the_automatic_gradient_bytes(batch, monkeypatch):
    from taskgroup.affinity import lookahead

    model = make_model()
    x, t = batch
    workspace: dict = {}
    lookahead_affinity(model, x, t, LOSSES, lr=0.1, workspace=workspace)
    assert "gradients" in workspace
    monkeypatch.setattr(lookahead, "AUTO_GRADIENT_BYTES", 8)  # every buffer is "large" now
    z = lookahead_affinity(model, x, t, LOSSES, lr=0.1, memory_budget=10**9, workspace=workspace)
    assert "gradients" not in workspace
    assert torch.equal(z, lookahead_affinity(model, x, t, LOSSES, lr=0.1))


def test_a_workspace_that_is_not_a_dict_is_refused(batch):
    x, t = batch
    with pytest.raises(ValueError, match="workspace must be a dict"):
        lookahead_affinity(make_model(), x, t, LOSSES, lr=0.1, workspace=[])
