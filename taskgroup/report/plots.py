"""Matplotlib figures of affinity results, rendered off-screen to PNG bytes."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from taskgroup.affinity.matrix import AffinityMatrix

if TYPE_CHECKING:
    from collections.abc import Sequence

    from taskgroup.grouping import Grouping
    from taskgroup.training.groups import GroupResults


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


def grouping_graph(
    affinity: AffinityMatrix, grouping: Grouping, max_edges: int | None = None
) -> bytes:
    """The affinity graph with the chosen groups outlined.

    Nodes are tasks, placed by a networkx spring layout that pulls together tasks with positive
    symmetrised affinity and members of one group. A directed edge i → j shows Z[i, j]: blue
    helps, red hurts, width ∝ |Z|; beyond 10 tasks only the ``max_edges`` (default 3n)
    strongest are drawn. Each group is a coloured outline; a task's label gives the affinity onto
    it from the group that serves it."""
    tasks = list(affinity.tasks)
    if list(grouping.tasks) != tasks:
        raise ValueError("the grouping was made for other tasks than this affinity matrix")
    n = len(tasks)
    values = affinity.values
    xy = _graph_layout(values, tasks, grouping)
    edges = _strongest_edges(values, max_edges)
    fig = Figure(figsize=(2.5 + 0.35 * n, 2.0 + 0.35 * n))
    ax = fig.add_subplot()
    _draw_group_outlines(ax, grouping, tasks, xy)
    labels = {i: f"{t}\n{grouping.values[t]:+.2g}" for i, t in enumerate(tasks)}
    _draw_affinity_graph(ax, values, edges, xy, labels)
    ax.plot([], [], color="#2166ac", label="i → j helps (Z > 0)")
    ax.plot([], [], color="#b2182b", label="i → j hurts (Z < 0)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.set_axis_off()
    ax.autoscale_view()
    status = (
        "optimal"
        if grouping.optimal
        else (f"gap ≤ {100 * grouping.gap:.1f}%" if grouping.gap is not None else "no bound")
    )
    ax.set_title(
        f"{len(grouping.groups)} groups, budget {grouping.budget}: score {grouping.score:.3g}"
        f" ({status}, {grouping.method})",
        fontsize=9,
    )
    return _png(fig)


def _graph_layout(values: np.ndarray, tasks: list[str], grouping: Grouping) -> np.ndarray:
    """Node positions ``[n, 2]``: a spring layout (seeded) whose springs pull together tasks with
    positive symmetrised affinity and, more strongly, members of one group."""
    import networkx as nx

    from taskgroup.grouping.heuristics import similarity

    n = len(tasks)
    sym = similarity(values)
    peak = float(np.abs(sym).max()) or 1.0
    layout = nx.Graph()
    layout.add_nodes_from(range(n))
    for i in range(n):
        for j in range(i + 1, n):
            together = any(tasks[i] in g and tasks[j] in g for g in grouping.groups)
            layout.add_edge(i, j, weight=0.05 + max(sym[i, j], 0.0) / peak + 1.0 * together)
    pos = nx.spring_layout(layout, weight="weight", seed=0) if n > 1 else {0: np.zeros(2)}
    return np.array([pos[i] for i in range(n)])


def _strongest_edges(values: np.ndarray, max_edges: int | None) -> list[tuple[int, int]]:
    """The directed edges i → j (i ≠ j) by decreasing |Z[i, j]|: all of them up to 10 tasks,
    else the ``max_edges`` (default 3n) strongest."""
    n = len(values)
    edges = [(i, j) for i in range(n) for j in range(n) if i != j]
    limit = max_edges if max_edges is not None else (len(edges) if n <= 10 else 3 * n)
    return sorted(edges, key=lambda e: -abs(values[e]))[:limit]


def _draw_group_outlines(ax, grouping: Grouping, tasks: list[str], xy: np.ndarray) -> None:
    """Each group as a tinted convex hull around its members' nodes, outlined in its colour and
    labelled in the legend; successive groups get wider margins, so overlapping outlines stay
    apart."""
    from matplotlib.patches import Polygon
    from scipy.spatial import ConvexHull

    span = float(np.ptp(xy, axis=0).max()) if len(tasks) > 1 else 1.0
    for g, members in enumerate(grouping.groups):
        radius = span * (0.07 + 0.025 * (g % 4))
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
        points = np.concatenate([xy[tasks.index(t)] + ring for t in members])
        hull = points[ConvexHull(points).vertices]
        colour = f"C{g % 10}"
        ax.add_patch(Polygon(hull, closed=True, facecolor=colour, alpha=0.08, edgecolor="none"))
        ax.add_patch(
            Polygon(
                hull,
                closed=True,
                fill=False,
                edgecolor=colour,
                lw=1.8,
                label=f"group {g + 1}: {len(members)} tasks",
            )
        )


def _draw_affinity_graph(
    ax, values: np.ndarray, edges: list[tuple[int, int]], xy: np.ndarray, labels: dict[int, str]
) -> None:
    """The ``edges`` i → j coloured by the sign of Z[i, j] (blue helps, red hurts), width ∝ |Z|,
    then the task nodes at ``xy`` with their ``labels``."""
    import networkx as nx

    n = len(xy)
    strongest = max((abs(values[e]) for e in edges), default=1.0) or 1.0
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(edges)
    nx.draw_networkx_edges(
        graph,
        {i: xy[i] for i in range(n)},
        ax=ax,
        edgelist=edges,
        edge_color=["#2166ac" if values[e] > 0 else "#b2182b" for e in edges],
        width=[0.4 + 2.6 * abs(values[e]) / strongest for e in edges],
        alpha=0.7,
        arrows=True,
        arrowsize=9,
        connectionstyle="arc3,rad=0.12",
        node_size=500,
    )
    nx.draw_networkx_nodes(
        graph,
        {i: xy[i] for i in range(n)},
        ax=ax,
        node_color="white",
        edgecolors="black",
        node_size=500,
    )
    nx.draw_networkx_labels(graph, {i: xy[i] for i in range(n)}, labels=labels, ax=ax, font_size=7)


def score_vs_budget(curve: Sequence[Grouping], chosen: int | None = None) -> bytes:
    """The score of the best grouping found for each budget, its upper bound where it is not
    proven optimal, and the chosen budget."""
    budgets = [g.budget for g in curve]
    scores = [g.score for g in curve]
    fig = Figure(figsize=(5.2, 3.4))
    ax = fig.add_subplot()
    ax.plot(budgets, scores, color="C0", lw=1.5, label="score")
    proven = [g.optimal for g in curve]
    ax.scatter(
        [b for b, p in zip(budgets, proven, strict=True) if p],
        [s for s, p in zip(scores, proven, strict=True) if p],
        color="C0",
        zorder=3,
        label="proven optimal",
    )
    ax.scatter(
        [b for b, p in zip(budgets, proven, strict=True) if not p],
        [s for s, p in zip(scores, proven, strict=True) if not p],
        facecolor="white",
        edgecolor="C0",
        zorder=3,
        label="best found",
    )
    if not all(proven):
        bounds = [g.bound if g.bound is not None else np.nan for g in curve]
        ax.plot(budgets, bounds, color="C3", ls="--", lw=1.0, label="upper bound")
    if chosen is not None:
        ax.axvline(chosen, color="grey", ls=":", lw=1.0, label=f"chosen budget {chosen}")
    ax.set_xlabel("budget (number of networks)")
    ax.set_ylabel("score: Σ over tasks of the affinity onto it")
    ax.set_xticks(budgets)
    ax.legend(fontsize=7)
    ax.set_title(f"Score vs budget ({curve[0].method if curve else ''})", fontsize=9)
    return _png(fig)


def task_results(results: GroupResults) -> bytes:
    """Per task and metric, the relative change (%) against single-task training of the
    grouped solution and of all tasks together, signed so that lower is better (as Δm)."""
    from taskgroup.training.metrics import LOSS

    if results.single is None or results.together is None:
        raise ValueError("these results have no baselines to compare with")
    labels, grouped, together = [], [], []
    for task in results.tasks:
        alone = results.single[task].test[task]
        for name, value in results.metrics[task].items():
            if name == LOSS or alone[name] == 0:
                continue
            sign = -1.0 if results.directions[task][name] else 1.0
            labels.append(f"{task}\n{name}")
            grouped.append(100 * sign * (value - alone[name]) / abs(alone[name]))
            together.append(
                100 * sign * (results.together.test[task][name] - alone[name]) / abs(alone[name])
            )
    x = np.arange(len(labels))
    fig = Figure(figsize=(1.6 + 0.9 * len(labels), 3.6))
    ax = fig.add_subplot()
    ax.bar(x - 0.2, grouped, 0.4, color="C0", label=f"grouped (Δm {results.delta_m():+.1f}%)")
    ax.bar(
        x + 0.2,
        together,
        0.4,
        color="C3",
        label=f"all together (Δm {results.delta_m_together():+.1f}%)",
    )
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("change vs single-task, % (lower is better)")
    ax.legend(fontsize=8)
    ax.set_title(f"Test metrics vs training each task alone ({results.aggregator})", fontsize=9)
    return _png(fig)
