"""Loss weightings against from-scratch re-implementations of their papers' update rules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from taskgroup import aggregators


def loss_sequence(steps: int, k: int = 3, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    decay = torch.rand(k, generator=g, dtype=torch.float64) * 0.05
    return [
        (torch.exp(-decay * t) * (1 + torch.rand(k, generator=g, dtype=torch.float64) * 0.1))
        for t in range(steps)
    ]


def test_uncertainty_weighting():
    uw = aggregators.get("uw", n_tasks=3, init=0.3)
    losses = torch.tensor([1.0, 2.0, 0.5], requires_grad=True)
    objective, weights = uw.weigh(losses)
    s = 0.3
    expected_objective = sum(0.5 * (math.exp(-s) * v + s) for v in (1, 2, 0.5))
    assert float(objective.detach()) == pytest.approx(expected_objective)
    torch.testing.assert_close(weights, torch.full((3,), 0.5 * math.exp(-s)))
    objective.backward()
    torch.testing.assert_close(losses.grad, weights)
    expected = 0.5 * (1 - math.exp(-s) * torch.tensor([1.0, 2.0, 0.5]))
    torch.testing.assert_close(uw.log_variances.grad, expected)
    with pytest.raises(ValueError, match="pass n_tasks"):
        aggregators.get("uw").parameters()


@pytest.mark.parametrize(("window", "temperature"), [(1, 2.0), (5, 0.5)])
def test_dwa(window, temperature):
    dwa = aggregators.get("dwa", window=window, temperature=temperature)
    history: list[torch.Tensor] = []
    for losses in loss_sequence(30):
        if len(history) >= 2 * window:
            recent = torch.stack(history[-window:]).mean(0)
            before = torch.stack(history[-2 * window : -window]).mean(0)
            r = recent / before
            expected = torch.exp(r / temperature) / torch.exp(r / temperature).sum()
        else:
            expected = torch.full((3,), 1 / 3, dtype=torch.float64)
        objective, weights = dwa.weigh(losses)
        torch.testing.assert_close(weights, expected)
        torch.testing.assert_close(objective, (expected * losses).sum())
        history.append(losses)


def test_rlw():
    rlw = aggregators.get("rlw", seed=7)
    g = torch.Generator().manual_seed(7)
    for losses in loss_sequence(5):
        z = torch.randn(3, generator=g, dtype=torch.float64)
        torch.testing.assert_close(rlw.weights(losses), torch.softmax(z, 0))
    rlw.reset()
    first = rlw.weights(loss_sequence(1)[0])
    torch.testing.assert_close(
        first,
        torch.softmax(
            torch.randn(3, generator=torch.Generator().manual_seed(7), dtype=torch.float64), 0
        ),
    )


def test_famo_follows_the_paper():
    """FAMO (Algorithm 1): weights z/(c·(L − m)), logits updated by Adam on Jᵀδ — with Adam
    (L2 weight decay) written out here."""
    gamma, lr, eps_adam = 0.01, 0.025, 1e-8
    famo = aggregators.get("famo", gamma=gamma, w_lr=lr, min_losses=0.1)
    xi = torch.zeros(3, dtype=torch.float64)
    m = torch.zeros(3, dtype=torch.float64)
    v = torch.zeros(3, dtype=torch.float64)
    sequence = loss_sequence(12, seed=3)
    for t, (losses, after) in enumerate(itertools.pairwise(sequence), start=1):
        z = torch.softmax(xi, 0)
        shifted = losses - 0.1 + 1e-8
        c = (z / shifted).sum()
        expected = z / (c * shifted)
        tracked = losses.clone().requires_grad_(True)
        objective, weights = famo.weigh(tracked)
        torch.testing.assert_close(weights, expected)
        objective.backward()
        torch.testing.assert_close(tracked.grad, expected)  # ∇ objective = Σ w_i ∇L_i
        famo.observe(after)
        delta = torch.log(shifted) - torch.log(after - 0.1 + 1e-8)
        grad = z * (delta - (z * delta).sum()) + gamma * xi
        m = 0.9 * m + 0.1 * grad
        v = 0.999 * v + 0.001 * grad**2
        xi = xi - lr * (m / (1 - 0.9**t)) / ((v / (1 - 0.999**t)).sqrt() + eps_adam)
        torch.testing.assert_close(famo.logits.detach(), xi)


def test_famo_without_observe_learns_from_the_next_losses():
    a = aggregators.get("famo")
    b = aggregators.get("famo")
    first, second = loss_sequence(2, seed=1)
    a.weigh(first)
    a.observe(second)
    b.weigh(first)
    b.weigh(second)  # the toy protocol: the next call's losses are the feedback
    torch.testing.assert_close(a.logits.detach(), b.logits.detach())
    with pytest.raises(ValueError, match="follows a step"):
        aggregators.get("famo").observe(first)
