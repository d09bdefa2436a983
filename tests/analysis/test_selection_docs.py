"""docs/selection.md shows what the committed held-out results say: each of its four tables is
``summary_table`` of ``analysis/results/selection_heldout_<recipe>.json``, cell for cell."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "analysis"))

import selection_quality as sq

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("recipe", ["multidigits", "multimnist"])
@pytest.mark.parametrize("delta", ["loss", "metric"])
def test_the_docs_tables_are_the_committed_summaries(recipe, delta):
    doc = (ROOT / "docs" / "selection.md").read_text()
    summary = json.loads(
        (ROOT / "analysis" / "results" / f"selection_heldout_{recipe}.json").read_text()
    )
    table = sq.summary_table(summary, delta)
    assert table.count("\n") > 10
    assert table in doc
