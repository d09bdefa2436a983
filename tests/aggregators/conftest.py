"""Random gradient matrices and small helpers shared by the aggregator tests."""

from __future__ import annotations

import warnings

import torch

# (k, d) shapes: few and many tasks, k < d and k > d (rank-deficient Gramian)
SHAPES = [(2, 7), (3, 20), (5, 40), (9, 64), (11, 300)]
SEEDS = [0, 1, 2]


def random_gradients(k: int, d: int, seed: int, *, spread: float = 10.0) -> torch.Tensor:
    """``[k, d]`` float64 gradients with correlated rows and norms spread over ``spread``²."""
    g = torch.Generator().manual_seed(seed)
    shared = torch.randn(1, d, generator=g, dtype=torch.float64)
    rows = torch.randn(k, d, generator=g, dtype=torch.float64) + 0.5 * shared
    scales = spread ** (2 * torch.rand(k, 1, generator=g, dtype=torch.float64) - 1)
    return rows * scales


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def quiet(fn, *args, **kwargs):
    """Call a reference implementation with its solver warnings silenced."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def small_model(seed: int = 0, *, batchnorm: bool = False):
    """A 3-task MultiTaskModel ``[N, 5] -> {a: [N, 3], b: [N], c: [N]}``."""
    from torch import nn

    from taskgroup.data.heads import LinearHead
    from taskgroup.models import MultiTaskModel

    torch.manual_seed(seed)
    layers = [nn.Linear(5, 8)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(8))
    layers += [nn.Tanh(), nn.Linear(8, 6), nn.Tanh()]
    heads = {"a": LinearHead(6, 3), "b": LinearHead(6, 1), "c": LinearHead(6, 1)}
    return MultiTaskModel(nn.Sequential(*layers), heads)


def small_losses():
    from torch.nn import functional as F

    return {"a": F.cross_entropy, "b": F.mse_loss, "c": F.binary_cross_entropy_with_logits}


def small_batch(seed: int = 1, n: int = 16):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 5, generator=g)
    targets = {
        "a": torch.randint(0, 3, (n,), generator=g),
        "b": 3 * x[:, 0] + 0.1 * torch.randn(n, generator=g),
        "c": (x[:, 1] > 0).float(),
    }
    return x, targets
