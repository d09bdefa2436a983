"""``planted``: synthetic regression tasks whose right grouping is known by construction.

Latent factors ``z ~ N(0, I_latent)`` are observed through ``x = tanh(z A) + noise`` (``A`` a random
``latent × dim`` matrix). Group ``g`` has a unit direction ``w_g`` in latent space; the group
directions have pairwise cosine ``-conflict / (groups - 1)``, so ``conflict=0`` gives orthogonal
groups and ``conflict=1`` the most anti-aligned set possible (a regular simplex). Task ``t`` of
group ``g`` predicts ``f(s) + noise`` with ``s = (w_g + spread · ξ_t) · z`` (``ξ_t`` a random
task-specific perturbation of norm about 1) and ``f(s) = s + s²/2``, standardised with the training
split's mean and std. Tasks of one group share a factor; groups compete for a narrow trunk.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import torch
from torch import nn

from taskgroup.data.benchmark import Benchmark, Split, TrainingDefaults
from taskgroup.data.heads import make_heads, make_target, make_task
from taskgroup.models import MultiTaskModel
from taskgroup.tasks import TaskSet

SPLITS = ("train", "val", "test")


def group_directions(
    groups: int, conflict: float, latent: int, rng: np.random.Generator
) -> np.ndarray:
    """Unit group directions ``W [groups, latent]`` (float64) with ``W[g] · W[h] = -c`` for
    ``g != h``, ``c = conflict / (groups - 1)`` (``c = 0`` for a single group).

    The Gram matrix ``(1 + c) I - c 11ᵀ`` has eigenvalues ``1 + c`` and ``1 - conflict`` (on ``1``),
    so it is positive semi-definite exactly for ``0 <= conflict <= 1``. Its factor ``V √Λ`` is
    rotated into latent space by a random orthonormal basis drawn from ``rng``.
    """
    if not 0.0 <= conflict <= 1.0:
        raise ValueError(f"conflict must lie in [0, 1], got {conflict}")
    if groups < 1:
        raise ValueError(f"groups must be >= 1, got {groups}")
    if latent < groups:
        raise ValueError(f"latent must be >= groups ({groups}) to hold the group directions")
    c = conflict / (groups - 1) if groups > 1 else 0.0
    gram = (1.0 + c) * np.eye(groups) - c * np.ones((groups, groups))
    eigenvalues, eigenvectors = np.linalg.eigh(gram)
    factor = eigenvectors * np.sqrt(np.clip(eigenvalues, 0.0, None))
    basis, _ = np.linalg.qr(rng.standard_normal((latent, groups)))
    return factor @ basis.T


def build_model(tasks: TaskSet, *, dim: int = 32, width: int = 16) -> MultiTaskModel:
    """A fresh model for inputs ``[N, dim]``: trunk Linear(dim, width), ReLU, Linear(width, width),
    ReLU; one linear head per task of ``tasks``, predictions ``[N]``."""
    trunk = nn.Sequential(nn.Linear(dim, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU())
    return MultiTaskModel(trunk, make_heads(tasks, width))


def load(
    *,
    seed: int = 0,
    groups: int = 3,
    tasks_per_group: int = 3,
    conflict: float = 0.5,
    n_train: int = 4000,
    n_val: int = 1000,
    n_test: int = 1000,
    latent: int = 8,
    dim: int = 32,
    noise: float = 0.1,
    spread: float = 0.1,
    width: int = 16,
) -> Benchmark:
    """The ``planted`` benchmark: ``groups × tasks_per_group`` regression tasks ``g{g}_t{t}``.

    Args:
        seed: fixes the structure (``A``, group directions, task perturbations) and every sample.
        groups, tasks_per_group: the planted grouping, listed in ``info["groups"]``.
        conflict: in [0, 1]; pairwise cosine of group directions is ``-conflict / (groups - 1)``.
        n_train, n_val, n_test: split sizes.
        latent, dim: latent factors and input features (inputs ``[N, dim]``).
        noise: std of the Gaussian noise added to inputs and (before standardising) to targets.
        spread: size of each task's perturbation of its group direction.
        width: trunk width (narrow, so that groups compete).
    """
    for name, value in [("groups", groups), ("tasks_per_group", tasks_per_group), ("dim", dim)]:
        if value < 1:
            raise ValueError(f"{name} must be >= 1, got {value}")
    for name, value in [("n_train", n_train), ("n_val", n_val), ("n_test", n_test)]:
        if value < 2:
            raise ValueError(f"{name} must be >= 2, got {value}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    if noise < 0 or spread < 0:
        raise ValueError(f"noise and spread must be >= 0, got noise={noise}, spread={spread}")

    structure, *samples = (np.random.default_rng(q) for q in np.random.SeedSequence(seed).spawn(4))
    directions = group_directions(groups, conflict, latent, structure)
    mixing = structure.standard_normal((latent, dim)) / np.sqrt(latent)
    perturbations = structure.standard_normal((groups, tasks_per_group, latent)) / np.sqrt(latent)
    # task_directions[:, g * tasks_per_group + t] is the direction of task g{g}_t{t}.
    task_directions = (directions[:, None, :] + spread * perturbations).reshape(-1, latent).T
    planted_groups = [[f"g{g}_t{t}" for t in range(tasks_per_group)] for g in range(groups)]
    names = [name for group in planted_groups for name in group]

    raw = {}
    for split, n, rng in zip(SPLITS, (n_train, n_val, n_test), samples, strict=True):
        z = rng.standard_normal((n, latent))
        x = np.tanh(z @ mixing) + noise * rng.standard_normal((n, dim))
        s = z @ task_directions
        raw[split] = (x, s + 0.5 * s**2 + noise * rng.standard_normal(s.shape))
    mean, std = raw["train"][1].mean(axis=0), raw["train"][1].std(axis=0)
    splits = {
        split: Split(
            inputs=torch.as_tensor(x, dtype=torch.float32),
            targets={
                name: make_target((y[:, k] - mean[k]) / std[k], "regression")
                for k, name in enumerate(names)
            },
        )
        for split, (x, y) in raw.items()
    }
    return Benchmark(
        name="planted",
        tasks=TaskSet(make_task(name, "regression") for name in names),
        model_factory=partial(build_model, dim=dim, width=width),
        defaults=TrainingDefaults(optimizer="adam", lr=3e-3, batch_size=128, steps=600, every=5),
        info={
            "seed": seed,
            "groups": planted_groups,
            "conflict": conflict,
            "group_cosine": -conflict / (groups - 1) if groups > 1 else 0.0,
            "sizes": {"train": n_train, "val": n_val, "test": n_test},
            "latent": latent,
            "dim": dim,
            "noise": noise,
            "spread": spread,
            "width": width,
        },
        **splits,
    )
