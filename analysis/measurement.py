"""What the benchmark scripts share: ratios of timings taken in the same repetition, and the
plain-text table they print."""

from __future__ import annotations

import statistics


def median_ratio(samples: dict[str, list[float]], numerator: str, denominator: str) -> float:
    """Median over repetitions of ``numerator / denominator`` timed in the same repetition."""
    return statistics.median(
        a / b for a, b in zip(samples[numerator], samples[denominator], strict=True)
    )


def print_table(title: str, header: list[str], rows: list[list[object]]) -> None:
    """Print ``rows`` under ``header``: first column left-aligned, the others right-aligned."""
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[k]) for row in cells) for k in range(len(header))]
    print(f"\n{title}")
    for r, row in enumerate(cells):
        print(
            "  "
            + "  ".join(
                c.rjust(w) if k else c.ljust(w)
                for k, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
        if r == 0:
            print("  " + "  ".join("-" * w for w in widths))
