"""Small multi-task models and batches shared by the affinity tests."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from taskgroup.models import MultiTaskModel

TASKS = ("a", "b", "c", "d")


def make_model(seed: int = 0, *, batchnorm: bool = False, dropout: float = 0.0) -> MultiTaskModel:
    torch.manual_seed(seed)
    layers: list[nn.Module] = [nn.Linear(6, 12)]
    if batchnorm:
        layers.append(nn.BatchNorm1d(12))
    layers += [nn.Tanh(), nn.Dropout(dropout), nn.Linear(12, 8), nn.ReLU()]
    heads = {"a": nn.Linear(8, 3), "b": nn.Linear(8, 1), "c": nn.Linear(8, 1), "d": nn.Linear(8, 1)}
    return MultiTaskModel(nn.Sequential(*layers), heads)


def cross_entropy(pred, target):
    return F.cross_entropy(pred, target)


def mse(pred, target):
    return F.mse_loss(pred.squeeze(-1), target)


def bce(pred, target):
    return F.binary_cross_entropy_with_logits(pred.squeeze(-1), target)


LOSSES = {"a": cross_entropy, "b": mse, "c": bce, "d": mse}


def make_batch(seed: int = 1, n: int = 32):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 6, generator=g)
    targets = {
        "a": torch.randint(0, 3, (n,), generator=g),
        "b": x[:, 0] * 2 + 0.1 * torch.randn(n, generator=g),
        "c": (x[:, 1] > 0).float(),
        "d": x[:, 0] - x[:, 2],
    }
    return x, targets


@pytest.fixture
def batch():
    return make_batch()
