"""Plain-text tables for the terminal."""

from __future__ import annotations

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.report.signals import signal_of


def _scale(values) -> tuple[float, str]:
    """A power of ten that brings the largest magnitude into [1, 1000) for printing."""
    peak = float(abs(values).max())
    if peak == 0:
        return 1.0, ""
    exponent = 0
    while peak * 10**exponent < 1:
        exponent += 3
    return 10.0**exponent, (f" (×1e{exponent})" if exponent else "")


def affinity_table(affinity: AffinityMatrix, top: int = 5) -> str:
    """The matrix (rows = source, columns = target) and the strongest helping/hurting pairs."""
    factor, unit = _scale(affinity.values)
    names = affinity.tasks
    width = max(8, *(len(n) for n in names))
    header = f"{'source → target':<{width}} " + " ".join(f"{n[:10]:>10}" for n in names)
    signal = signal_of(affinity)
    title = f"{signal.name}: Z[source, target]{unit}; {signal.sign}"
    lines = [title, header]
    for name, row in zip(names, affinity.values, strict=True):
        lines.append(f"{name:<{width}} " + " ".join(f"{v * factor:>10.3f}" for v in row))
    pairs = affinity.pairs()
    k = min(top, len(pairs))
    if k:
        lines.append("")
        lines.append(f"Top {k} helping pairs{unit}:")
        lines += [f"  {s} → {t}: {v * factor:+.3f}" for s, t, v in pairs[:k]]
        lines.append(f"Top {k} hurting pairs{unit}:")
        lines += [f"  {s} → {t}: {v * factor:+.3f}" for s, t, v in reversed(pairs[-k:])]
    return "\n".join(lines)
