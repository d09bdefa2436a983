"""How the report writes numbers: plain notation (``0.26``, never ``2.6e-01``), Δm and relative
changes with 2 decimals, and changes signed so that + always means better."""

from __future__ import annotations

import math

PERCENT_DECIMALS = 2


def plain(value: float, digits: int = 3) -> str:
    """``value`` in plain notation with ``digits`` significant digits (``0.263``, ``0.0041``,
    ``12.3``, ``1.0e6`` → ``1000000``); ``"0"`` for zero, ``"nan"``/``"inf"`` as such."""
    value = float(value)
    if value == 0:
        return "0"
    if not math.isfinite(value):
        return str(value)
    magnitude = math.floor(math.log10(abs(value)))
    decimals = min(12, max(0, digits - 1 - magnitude))
    text = f"{value:.{decimals}f}"
    return "0" if float(text) == 0 else text


def percent(value: float) -> str:
    """A signed percentage with 2 decimals (``+0.04%``, ``−1.25%`` with a true minus sign);
    ``0.00%`` (no sign) when it rounds to zero."""
    text = f"{abs(value):.{PERCENT_DECIMALS}f}"
    if float(text) == 0:
        return f"{0:.{PERCENT_DECIMALS}f}%"
    return f"{'+' if value > 0 else '−'}{text}%"


def improvement(value: float, base: float, higher_is_better: bool) -> float | None:
    """The relative change of ``value`` against ``base`` in percent, signed so that **+ means
    better** whichever way the metric points (an accuracy 0.976 against 0.9713 is +0.48, a loss
    0.9 against 1.0 is +10); ``None`` when ``base`` is 0."""
    if base == 0:
        return None
    change = 100 * (value - base) / abs(base)
    return change if higher_is_better else -change


def plus_minus(mean: float, half_width: float | None, digits: int = 3) -> str:
    """``mean ± half_width`` in plain notation, the half-width with 2 significant digits and
    the mean to the same decimal place (``0.912 ± 0.013``, ``1234 ± 35``); just the mean
    (``digits`` significant digits) when there is no interval (``None``)."""
    if half_width is None:
        return plain(mean, digits)
    half_width = abs(float(half_width))
    if half_width == 0 or not math.isfinite(half_width):
        return f"{plain(mean, digits)} ± {plain(half_width)}"
    decimals = min(12, max(0, 1 - math.floor(math.log10(half_width))))
    return f"{mean:.{decimals}f} ± {half_width:.{decimals}f}"


def percent_interval(mean: float, half_width: float | None) -> str:
    """A signed percentage ± its half-width, 2 decimals (``−1.25% ± 0.40%``); just
    :func:`percent` without an interval."""
    if half_width is None:
        return percent(mean)
    return f"{percent(mean)} ± {abs(half_width):.{PERCENT_DECIMALS}f}%"
