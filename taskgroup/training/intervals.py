"""The mean of a quantity over K initialisations, with its 95% Student-t confidence interval.

A network trained from another initialisation (another seed) ends elsewhere; Δm differs by a
few points from seed to seed. With K initialisations x_1..x_K of a quantity (a task's metric, or
Δm), the interval of its mean is

    mean ± t_{(1+c)/2, K−1} · s / √K,    s² = Σ_k (x_k − mean)² / (K − 1),

the two-sided Student-t interval of the mean at confidence c (0.95): it assumes the K values
are independent draws of one normal distribution, and is exact then for any K ≥ 2. With K = 1
there is no interval (``half_width`` is ``None``). Two solutions trained from the same seeds
(the grouping and all tasks together) are compared *paired*: the interval of the mean of the
per-seed differences, which removes what one seed does to both (the data are the same, only the
initialisation and the batch order change).

The t quantile is computed here from the closed form of the t distribution for integer degrees
of freedom (Abramowitz & Stegun 26.7.3–4), solved by bisection, so the package needs no
statistics library at run time; the tests check it against ``scipy.stats.t``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

CONFIDENCE = 0.95
DESCRIPTION = (
    "mean over the initialisations ± t(0.975, K-1) * s / sqrt(K): the two-sided 95% Student-t "
    "interval of the mean (s: the sample standard deviation of the K values)"
)


def t_within(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with ``df`` (a positive integer) degrees of freedom, from its
    closed form (Abramowitz & Stegun 26.7.3 for odd ``df``, 26.7.4 for even); O(df)."""
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 0:
        term = total = 1.0
        for k in range(1, df // 2):
            term *= (2 * k - 1) / (2 * k) * cos2
            total += term
        return math.sin(theta) * total
    if df == 1:
        return 2 * theta / math.pi
    term = total = math.cos(theta)
    for k in range(1, (df - 1) // 2):
        term *= (2 * k) / (2 * k + 1) * cos2
        total += term
    return 2 / math.pi * (theta + math.sin(theta) * total)


def t_quantile(confidence: float, df: int) -> float:
    """The t with P(|T| ≤ t) = ``confidence`` for ``df`` degrees of freedom, i.e. the
    (1 + confidence)/2 quantile (12.706 for 0.95 and 1, 2.776 for 4); bisection to machine
    precision."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    if isinstance(df, bool) or not isinstance(df, int) or df < 1:
        raise ValueError(f"df must be a positive integer, got {df!r}")
    low, high = 0.0, 1.0
    while t_within(high, df) < confidence:
        low, high = high, 2 * high
    for _ in range(200):
        middle = (low + high) / 2
        if middle in (low, high):
            break
        low, high = (middle, high) if t_within(middle, df) < confidence else (low, middle)
    return (low + high) / 2


@dataclass(frozen=True)
class Interval:
    """A quantity over K initialisations: its ``values`` (one per seed, in seed order), their
    mean and the half-width of the Student-t interval of the mean (``None`` for K = 1)."""

    values: tuple[float, ...]
    mean: float
    half_width: float | None
    confidence: float = CONFIDENCE

    @property
    def low(self) -> float | None:
        return None if self.half_width is None else self.mean - self.half_width

    @property
    def high(self) -> float | None:
        return None if self.half_width is None else self.mean + self.half_width

    def to_dict(self) -> dict[str, Any]:
        return {
            "mean": self.mean,
            "half_width": self.half_width,
            "low": self.low,
            "high": self.high,
            "confidence": self.confidence,
            "values": list(self.values),
        }


def mean_interval(values: Sequence[float], confidence: float = CONFIDENCE) -> Interval:
    """The mean of ``values`` and its Student-t interval (see the module doc). The mean of one
    value is that value exactly. A value that is not finite (a diverged metric) makes the mean
    and the half-width NaN or infinite rather than an error, so that a report still shows it;
    ``ValueError`` for no values."""
    values = tuple(float(v) for v in values)
    if not values:
        raise ValueError("an interval needs at least one value")
    k = len(values)
    if not all(math.isfinite(v) for v in values):
        return Interval(values, sum(values) / k, None if k == 1 else math.nan, confidence)
    mean = math.fsum(values) / k
    if k == 1:
        return Interval(values, mean, None, confidence)
    spread = math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (k - 1))
    return Interval(values, mean, t_quantile(confidence, k - 1) * spread / math.sqrt(k), confidence)


def signed_percent(value: float) -> str:
    """``+1.23%`` / ``-0.50%``: how the verdict writes a Δm."""
    return f"{value:+.2f}%"


def outcome(difference: Interval) -> str | None:
    """Which side of 0 the paired interval of Δm *of the grouping against all tasks together*
    (lower is better) lies: ``"grouping"`` (below 0: the grouping is better with the interval's
    confidence), ``"together"`` (above 0), ``"noise"`` (it holds 0); ``None`` without an
    interval (one initialisation)."""
    if difference.half_width is None:
        return None
    if difference.high < 0:
        return "grouping"
    return "together" if difference.low > 0 else "noise"


def verdict(difference: Interval, number: Callable[[float], str] = signed_percent) -> str | None:
    """What the paired interval of Δm *of the grouping against all tasks together* says (see
    :func:`outcome`), as a sentence with the interval; ``None`` for one initialisation.
    ``number`` writes a value (the report passes its own)."""
    side = outcome(difference)
    if side is None:
        return None
    pct = round(100 * difference.confidence)
    shown = (
        f"Δm against all together {number(difference.mean)} ± "
        f"{number(difference.half_width).lstrip('+')}, {pct}% interval "
        f"[{number(difference.low)}, {number(difference.high)}] over "
        f"{len(difference.values)} initialisations"
    )
    if side == "grouping":
        return f"the chosen grouping beats all tasks together with {pct}% confidence ({shown})"
    if side == "together":
        return f"all tasks together beat the chosen grouping with {pct}% confidence ({shown})"
    return f"the difference is within noise ({shown})"
