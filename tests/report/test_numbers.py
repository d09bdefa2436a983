"""The report's numbers: plain notation, 2-decimal percentages, changes signed so + is better;
and the signal labels."""

from __future__ import annotations

import numpy as np
import pytest

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.report.numbers import improvement, percent, plain
from taskgroup.report.signals import SIGNALS, UNKNOWN, signal_of
from taskgroup.report.tables import affinity_table


@pytest.mark.parametrize(
    ("value", "digits", "text"),
    [
        (0.26, 2, "0.26"),
        (0.2634, 3, "0.263"),
        (-0.00015, 2, "-0.00015"),
        (2.6e-5, 2, "0.000026"),
        (1.0, 2, "1.0"),
        (12.34, 3, "12.3"),
        (123456.0, 3, "123456"),
        (0.0, 3, "0"),
    ],
)
def test_plain_notation(value, digits, text):
    assert plain(value, digits) == text
    assert "e" not in plain(value, digits)


def test_plain_keeps_the_significant_digits_asked_for():
    rng = np.random.default_rng(0)
    for value in 10.0 ** rng.uniform(-6, 4, 200) * rng.choice([-1, 1], 200):
        text = plain(value, 3)
        assert abs(float(text) - value) <= 0.5 * 10 ** (np.floor(np.log10(abs(value))) - 2) * 1.0001


def test_percent_has_two_decimals_and_a_sign():
    assert percent(0.04) == "+0.04%"  # the bar chart once showed "+0.0%"
    assert percent(-1.254) == "−1.25%"
    assert percent(0.001) == "0.00%"
    assert percent(12.0) == "+12.00%"


def test_improvement_is_positive_when_better_whichever_way_the_metric_points():
    # the case: accuracy 0.976 against 0.9713 is a gain, not "−0.5%"
    assert improvement(0.976, 0.9713, higher_is_better=True) == pytest.approx(
        100 * (0.976 - 0.9713) / 0.9713
    )
    assert improvement(0.976, 0.9713, True) > 0
    assert improvement(0.9, 1.0, higher_is_better=False) == pytest.approx(10.0)
    assert improvement(1.1, 1.0, higher_is_better=False) == pytest.approx(-10.0)
    assert improvement(0.5, 0.0, True) is None


def test_each_signal_is_named_with_its_own_definition():
    values = np.array([[1.0, 0.26], [0.1, 1.0]])
    cosine = signal_of(AffinityMatrix(values, ["a", "b"], lookahead="cosine"))
    assert cosine.name == "gradient cosine" and "cos(g_i, g_j)" in cosine.formula
    assert "aligned" in cosine.sign and "L_j" not in cosine.formula
    for key in ("sgd", "optimizer"):
        assert "1 − L_j" in SIGNALS[key].formula and "lowers" in SIGNALS[key].sign
    assert "g_i·g_j" in SIGNALS["first_order"].formula
    assert signal_of(AffinityMatrix(values, ["a", "b"])) is UNKNOWN


def test_terminal_table_names_the_signal():
    values = np.array([[1.0, 0.26], [0.1, 1.0]])
    table = affinity_table(AffinityMatrix(values, ["a", "b"], lookahead="first_order"))
    assert table.splitlines()[0].startswith("first-order lookahead")
