"""Matplotlib figures of affinity results, rendered off-screen to PNG bytes."""

from __future__ import annotations

import io
import math

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from taskgroup.affinity.matrix import AffinityMatrix


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def affinity_heatmap(affinity: AffinityMatrix) -> bytes:
    """Heatmap of Z (rows = source, columns = target), diverging around 0 (blue helps, red
    hurts), each cell annotated."""
    n = len(affinity.tasks)
    values = affinity.values
    bound = float(np.abs(values).max()) or 1.0
    fig = Figure(figsize=(1.2 + 0.75 * n, 0.9 + 0.65 * n))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="RdBu", norm=TwoSlopeNorm(0.0, -bound, bound))
    ax.set_xticks(range(n), affinity.tasks, rotation=45, ha="right")
    ax.set_yticks(range(n), affinity.tasks)
    ax.set_xlabel("target task (its loss is changed)")
    ax.set_ylabel("source task (takes the step)")
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{values[i, j]:.1e}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if abs(values[i, j]) > 0.6 * bound else "black",
            )
    fig.colorbar(image, ax=ax, shrink=0.8, label="Z = 1 − L_target(after) / L_target(before)")
    ax.set_title(f"Inter-task affinity ({affinity.metadata.get('lookahead', 'lookahead')})")
    return _png(fig)


def affinity_over_training(affinity: AffinityMatrix) -> bytes:
    """One panel per target task: the affinity every other task has onto it along training
    (moving average over ~5% of the measurements)."""
    if affinity.trace is None:
        raise ValueError("this affinity matrix has no per-step trace to plot")
    n = len(affinity.tasks)
    steps = np.asarray(affinity.trace_steps)
    window = max(1, len(steps) // 20)
    kernel = np.ones(window) / window
    cols = min(3, n)
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(4.2 * cols, 2.8 * rows))
    colours = [f"C{i % 10}" for i in range(n)]
    for j, target in enumerate(affinity.tasks):
        ax = fig.add_subplot(rows, cols, j + 1)
        for i, source in enumerate(affinity.tasks):
            if i == j:
                continue
            smooth = np.convolve(affinity.trace[:, i, j], kernel, mode="valid")
            ax.plot(steps[window - 1 :], smooth, color=colours[i], lw=1.2, label=source)
        ax.axhline(0.0, color="grey", lw=0.6)
        ax.set_title(f"onto {target}", fontsize=9)
        ax.set_xlabel("training step", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [
        fig.axes[0].plot([], [], color=colours[i], label=name)[0]
        for i, name in enumerate(affinity.tasks)
    ]
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=min(n, 6),
        fontsize=8,
        title="source task",
        bbox_to_anchor=(0.5, 1.02 + 0.02 * (n > 6)),
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93 - 0.03 * (n > 6)))
    return _png(fig)
