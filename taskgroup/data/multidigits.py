"""``multidigits``: pairs of scikit-learn's bundled 8×8 digits side by side (the default benchmark).

Each example is an image ``[1, 8, 16]`` in [0, 1]: a left digit ``a`` and a right digit ``b``.
Tasks ask about the left digit, the right digit and both, so the true structure is known, and they
mix classification, binary and regression losses of different scales (``sum`` is an MSE on 0..18).

The 1797 source images are first split 60/20/20 (stratified by class); the pairs of each split are
drawn only from that split's images, so no image leaks across splits. Everything is a function of
``seed``. No download: the digits ship with scikit-learn.
"""

from __future__ import annotations

from functools import cache, partial

import numpy as np
import torch
from torch import nn

from taskgroup.data.benchmark import Benchmark, Split, TrainingDefaults
from taskgroup.data.heads import make_heads, make_target, make_task
from taskgroup.models import MultiTaskModel
from taskgroup.tasks import TaskSet

SPLITS = ("train", "val", "test")
SOURCE_FRACTIONS = (0.6, 0.2, 0.2)
MODELS = ("mlp", "cnn")

# (name, kind, target as a function of the left and right labels), in canonical order.
# The first six are the default task set (DEFAULT_TASKS); parity and ``_ge5`` targets are 1 when
# the digit is odd / at least 5.
TASK_TABLE = (
    ("left_class", "classification", lambda a, b: a),
    ("left_parity", "binary", lambda a, b: a % 2),
    ("right_class", "classification", lambda a, b: b),
    ("right_ge5", "binary", lambda a, b: b >= 5),
    ("sum", "regression", lambda a, b: a + b),
    ("left_gt_right", "binary", lambda a, b: a > b),
    ("left_ge5", "binary", lambda a, b: a >= 5),
    ("right_parity", "binary", lambda a, b: b % 2),
    ("diff", "regression", lambda a, b: a - b),
    ("same_parity", "binary", lambda a, b: a % 2 == b % 2),
)
DEFAULT_TASKS = tuple(name for name, _, _ in TASK_TABLE[:6])


@cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    # Imported here: scikit-learn takes most of a second to import, and the registry imports
    # this module whenever taskgroup.data is imported.
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)
    images.setflags(write=False)
    labels = digits.target.astype(np.int64)
    labels.setflags(write=False)
    return images, labels


def _streams(seed: int) -> list[np.random.SeedSequence]:
    """Independent random streams: the source split, then the pairs of each split."""
    return np.random.SeedSequence(seed).spawn(1 + len(SPLITS))


def split_by_class(labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    """Indices (sorted, into ``labels`` ``[N]``) of each split's source images, stratified
    60/20/20 by class from the data seed's first stream; multimnist shares it."""
    rng = np.random.default_rng(_streams(seed)[0])
    cuts = np.cumsum(SOURCE_FRACTIONS)[:-1]
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for digit in range(10):
        members = rng.permutation(np.flatnonzero(labels == digit))
        bounds = np.round(cuts * len(members)).astype(int)
        for split, part in zip(SPLITS, np.split(members, bounds), strict=True):
            parts[split].append(part)
    return {split: np.sort(np.concatenate(parts[split])) for split in SPLITS}


def draw_pairs(
    sources: dict[str, np.ndarray], seed: int, pairs: tuple[int, int, int]
) -> dict[str, np.ndarray]:
    """Source indices ``[pairs[k], 2]`` (left, right) of every pair of each split, drawn
    uniformly with replacement from that split's ``sources``, one seed stream per split."""
    return {
        split: np.random.default_rng(stream).choice(sources[split], size=(n, 2))
        for split, n, stream in zip(SPLITS, pairs, _streams(seed)[1:], strict=True)
    }


def source_splits(seed: int) -> dict[str, np.ndarray]:
    """Indices (sorted, into ``sklearn.datasets.load_digits()``) of the source images of each
    split: ``{"train": [~1078], "val": [~359], "test": [~360]}``, stratified 60/20/20 by class."""
    return split_by_class(_digits()[1], seed)


def pair_sources(seed: int, pairs: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Source image indices ``[pairs[k], 2]`` (left, right) of every pair of each split, drawn
    uniformly with replacement from that split's :func:`source_splits`."""
    return draw_pairs(source_splits(seed), seed, pairs)


def _split(sources: np.ndarray) -> Split:
    images, labels = _digits()
    left, right = sources[:, 0], sources[:, 1]
    inputs = np.concatenate([images[left], images[right]], axis=2)[:, None]
    a, b = labels[left], labels[right]
    targets = {name: make_target(fn(a, b), kind) for name, kind, fn in TASK_TABLE}
    return Split(inputs=torch.from_numpy(inputs), targets=targets)


def build_model(tasks: TaskSet, *, model: str = "mlp", width: int = 48) -> MultiTaskModel:
    """A fresh model for digit pairs ``[N, 1, 8, 16]`` with one head per task of ``tasks``.

    ``model="mlp"``: Flatten, Linear(128, width), ReLU, Linear(width, width), ReLU.
    ``model="cnn"``: two 3×3 convolutions (16 and 32 channels, the second with stride 2) each
    followed by batch-norm and ReLU, then Flatten, Linear(32·4·8, width), ReLU.
    Heads are linear on the ``[N, width]`` features: ``[N, 10]`` for classification, ``[N]``
    otherwise.
    """
    if model == "mlp":
        trunk = nn.Sequential(
            nn.Flatten(),
            nn.Linear(8 * 16, width),
            nn.ReLU(),
            nn.Linear(width, width),
            nn.ReLU(),
        )
    elif model == "cnn":
        trunk = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1, stride=2),
            nn.BatchNorm2d(32),
            nn.ReLU(),
            nn.Flatten(),
            nn.Linear(32 * 4 * 8, width),
            nn.ReLU(),
        )
    else:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    return MultiTaskModel(trunk, make_heads(tasks, width, classes=10))


def load(
    *,
    seed: int = 0,
    pairs: tuple[int, int, int] = (6000, 1500, 1500),
    model: str = "mlp",
    width: int = 48,
) -> Benchmark:
    """The ``multidigits`` benchmark with all tasks of :data:`TASK_TABLE`.

    Args:
        seed: fixes the source split and the pairs.
        pairs: number of (train, val, test) pairs.
        model: model family, ``"mlp"`` or ``"cnn"``; both take inputs ``[N, 1, 8, 16]``.
        width: trunk feature width (small, so that tasks compete for it).

    Restrict to the default six tasks with ``benchmark.select(list(DEFAULT_TASKS))`` (also listed
    in ``info["default_tasks"]``).
    """
    if model not in MODELS:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if len(pairs) != len(SPLITS) or any(int(n) < 1 for n in pairs):
        raise ValueError(f"pairs must be three positive counts (train, val, test), got {pairs!r}")
    if width < 1:
        raise ValueError(f"width must be >= 1, got {width}")
    pairs = tuple(int(n) for n in pairs)
    sources = pair_sources(seed, pairs)
    splits = {split: _split(sources[split]) for split in SPLITS}
    return Benchmark(
        name="multidigits",
        tasks=TaskSet(make_task(name, kind) for name, kind, _ in TASK_TABLE),
        model_factory=partial(build_model, model=model, width=width),
        defaults=TrainingDefaults(optimizer="adam", lr=1e-3, batch_size=128, steps=1500, every=10),
        info={
            "seed": seed,
            "pairs": dict(zip(SPLITS, pairs, strict=True)),
            "source_images": {split: len(s) for split, s in source_splits(seed).items()},
            "source_fractions": list(SOURCE_FRACTIONS),
            "input_shape": [1, 8, 16],
            "model": model,
            "width": width,
            "default_tasks": list(DEFAULT_TASKS),
        },
        **splits,
    )
