"""Random affinity matrices for the grouping tests."""

from __future__ import annotations

import functools

import numpy as np


def random_matrix(n: int, seed: int, kind: str = "normal") -> np.ndarray:
    """``normal``: i.i.d. N(0, 1); ``ties``: small integers (many exactly equal scores);
    ``planted``: two clear groups plus noise, scaled like a real lookahead matrix (~1e-2)."""
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.normal(size=(n, n))
    if kind == "ties":
        return rng.integers(-2, 3, size=(n, n)).astype(float)
    labels = np.arange(n) % 2
    same = labels[:, None] == labels[None, :]
    return 0.01 * (np.where(same, 1.0, -0.5) + 0.3 * rng.normal(size=(n, n)))


CASES = [
    (n, seed, kind)
    for n in range(2, 8)
    for seed, kind in ((n, "normal"), (100 + n, "ties" if n % 2 else "planted"))
]


@functools.cache
def reference(n: int, seed: int, kind: str, partition: bool, singleton_score, budget: int):
    """The brute-force optimum of one case (cached across test modules)."""
    from tests.grouping.reference import optimum

    return optimum(
        random_matrix(n, seed, kind),
        budget,
        partition=partition,
        singleton_score=singleton_score,
    )


def close(a: float, b: float) -> bool:
    return abs(a - b) <= 1e-9 * max(1.0, abs(a), abs(b))
