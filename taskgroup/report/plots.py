"""Matplotlib figures of affinity results, rendered off-screen to PNG bytes."""

from __future__ import annotations

import io
import math
import textwrap
from typing import TYPE_CHECKING

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.report.numbers import improvement, percent_interval, plain
from taskgroup.report.signals import signal_of
from taskgroup.training.intervals import Interval, mean_interval

if TYPE_CHECKING:
    from collections.abc import Sequence

    from taskgroup.grouping import Grouping
    from taskgroup.training.groups import GroupResults


DIAGONAL_GREY = "#e4e4e4"


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def affinity_heatmap(affinity: AffinityMatrix) -> bytes:
    """PNG of :func:`heatmap_figure`."""
    return _png(heatmap_figure(affinity))


def heatmap_figure(affinity: AffinityMatrix) -> Figure:
    """Heatmap of Z (rows = source, columns = target), diverging around 0 (blue helps, red
    hurts), each cell annotated in plain notation. The colour limits come from the off-diagonal
    values only; the diagonal (self-improvement, or 1 for the cosine) is drawn grey with its
    values, so it does not wash out the rest. The colour bar names the measured signal."""
    signal = signal_of(affinity)
    n = len(affinity.tasks)
    values = affinity.values
    diagonal = np.eye(n, dtype=bool)
    bound = float(np.abs(values[~diagonal]).max()) if n > 1 else 0.0
    bound = bound or 1.0
    fig = Figure(figsize=(2.4 + 0.8 * n, 1.4 + 0.7 * n), layout="constrained")
    ax = fig.add_subplot()
    cmap = colormaps["RdBu"].with_extremes(bad=DIAGONAL_GREY)
    image = ax.imshow(
        np.ma.masked_array(values, mask=diagonal),
        cmap=cmap,
        norm=TwoSlopeNorm(0.0, -bound, bound),
    )
    ax.set_xticks(range(n), affinity.tasks, rotation=45, ha="right")
    ax.set_yticks(range(n), affinity.tasks)
    ax.set_xlabel("target task j (column)")
    ax.set_ylabel("source task i (row)")
    for i in range(n):
        for j in range(n):
            strong = i != j and abs(values[i, j]) > 0.6 * bound
            ax.text(
                j,
                i,
                plain(values[i, j], 2),
                ha="center",
                va="center",
                fontsize=7,
                color="white" if strong else "black",
            )
    label = textwrap.fill(signal.formula, 44) + "\n(off-diagonal cells)"
    fig.colorbar(image, ax=ax, shrink=0.8, label=label)
    ax.set_title(f"Task affinity: {signal.name}\n(diagonal in grey: {signal.diagonal})", fontsize=9)
    return fig


def affinity_over_training(affinity: AffinityMatrix) -> bytes:
    """PNG of :func:`over_training_figure`."""
    return _png(over_training_figure(affinity))


def over_training_figure(affinity: AffinityMatrix) -> Figure:
    """One panel per target task: the affinity every other task has onto it along training
    (moving average over ~5% of the measurements)."""
    if affinity.trace is None:
        raise ValueError("this affinity matrix has no per-step trace to plot")
    n = len(affinity.tasks)
    signal = signal_of(affinity)
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
        ax.set_xlabel("co-training step", fontsize=8)
        ax.set_ylabel(f"Z[source, {target}]", fontsize=8)
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
        title=f"source task ({signal.name}, moving average)",
        bbox_to_anchor=(0.5, 1.02 + 0.02 * (n > 6)),
    )
    fig.tight_layout(rect=(0, 0, 1, 0.93 - 0.03 * (n > 6)))
    return fig


def edges_per_task(tasks: int) -> int:
    """How many edges onto each task the group graph draws: 2 up to 10 tasks, then 1."""
    return 2 if tasks <= 10 else 1


def grouping_graph(
    affinity: AffinityMatrix, grouping: Grouping, per_task: int | None = None
) -> bytes:
    """PNG of :func:`grouping_figure`."""
    return _png(grouping_figure(affinity, grouping, per_task))


def grouping_figure(
    affinity: AffinityMatrix, grouping: Grouping, per_task: int | None = None
) -> Figure:
    """The affinity graph with the chosen groups outlined, readable from 2 to 20 tasks.

    Nodes are tasks, filled with the colour of the group that serves them and placed by a
    seeded spring layout that pulls together tasks with positive symmetrised affinity and
    members of one group; each name sits beside its node with the affinity onto it from its
    serving group, and the axes grow until every name lies inside them. Edges i → j show
    Z[i, j] (blue helps, red hurts, width ∝ |Z|), thinned to the ``per_task`` strongest onto
    each task (default :func:`edges_per_task`; :func:`strongest_edges`). Each group is a
    coloured outline; the legend below names its tasks and the ones it serves."""
    tasks = list(affinity.tasks)
    if list(grouping.tasks) != tasks:
        raise ValueError("the grouping was made for other tasks than this affinity matrix")
    n = len(tasks)
    values = affinity.values
    xy = _graph_layout(values, tasks, grouping)
    side = max(4.2, 1.8 + 0.42 * n)
    fig = Figure(figsize=(side + 1.0, side + 0.9 + 0.22 * len(grouping.groups)))
    fig.set_layout_engine("constrained")
    ax = fig.add_subplot()
    hulls = _draw_group_outlines(ax, grouping, tasks, xy)
    per_task = edges_per_task(n) if per_task is None else per_task
    edges = strongest_edges(values, per_task)
    colours = [f"C{grouping.serves[t] % 10}" for t in tasks]
    _draw_affinity_graph(ax, values, edges, xy, colours)
    labels = _draw_labels(ax, grouping, tasks, xy)
    ax.plot([], [], color="#2166ac", label="edge i → j: i helps j (Z[i, j] > 0)")
    ax.plot([], [], color="#b2182b", label="edge i → j: i hurts j (Z[i, j] < 0)")
    fig.legend(loc="outside lower center", fontsize=8, frameon=False)
    ax.set_axis_off()
    status = (
        "optimal"
        if grouping.optimal
        else (f"gap ≤ {100 * grouping.gap:.1f}%" if grouping.gap is not None else "no bound")
    )
    ax.set_title(
        f"{len(grouping.groups)} groups, budget {grouping.budget}: score {plain(grouping.score)}"
        f" ({status}, {grouping.method})\nedges: the {per_task} strongest |Z[i, j]| onto "
        f"each task; a name's number: the affinity onto it from the group that serves it",
        fontsize=8,
    )
    _fit_texts(fig, ax, labels, np.vstack([xy, *hulls]))
    return fig


def _fit_texts(fig: Figure, ax, texts: list, points: np.ndarray) -> None:
    """Grow the limits of ``ax`` until ``points`` and every text of ``texts`` lie inside it
    (text keeps its size in points while the data scale changes, hence a few rounds)."""
    canvas = FigureCanvasAgg(fig)
    lo, hi = points.min(axis=0), points.max(axis=0)
    pad = 0.04 * float((hi - lo).max() or 1.0)
    ax.set_xlim(lo[0] - pad, hi[0] + pad)
    ax.set_ylim(lo[1] - pad, hi[1] + pad)
    for _ in range(8):
        canvas.draw()
        renderer = canvas.get_renderer()
        inverse = ax.transData.inverted()
        corners = [inverse.transform(t.get_window_extent(renderer).get_points()) for t in texts]
        need = np.vstack([points, *corners])
        (x0, x1), (y0, y1) = ax.get_xlim(), ax.get_ylim()
        lo, hi = need.min(axis=0), need.max(axis=0)
        if x0 <= lo[0] and lo[1] >= y0 and hi[0] <= x1 and hi[1] <= y1:
            return
        ax.set_xlim(min(x0, lo[0] - pad), max(x1, hi[0] + pad))
        ax.set_ylim(min(y0, lo[1] - pad), max(y1, hi[1] + pad))


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


def strongest_edges(values: np.ndarray, per_task: int) -> list[tuple[int, int]]:
    """The edges the group graph draws: for each target j, the ``per_task`` sources i ≠ j with
    the largest |Z[i, j]| (ties to the lower i), all by decreasing |Z[i, j]|."""
    n = len(values)
    edges = []
    for j in range(n):
        sources = sorted((i for i in range(n) if i != j), key=lambda i: (-abs(values[i, j]), i))
        edges += [(i, j) for i in sources[:per_task]]
    return sorted(edges, key=lambda e: (-abs(values[e]), e))


def _group_legend(grouping: Grouping, g: int) -> str:
    members = grouping.groups[g]
    served = [t for t in members if grouping.serves[t] == g]
    text = f"group {g + 1}: {', '.join(members)} (serves {', '.join(served) or 'none'})"
    return textwrap.fill(text, 90, subsequent_indent="    ")


def _draw_group_outlines(
    ax, grouping: Grouping, tasks: list[str], xy: np.ndarray
) -> list[np.ndarray]:
    """Each group as a tinted convex hull around its members' nodes, outlined in its colour and
    named with its tasks in the legend; successive groups get wider margins, so overlapping
    outlines stay apart. Returns the hulls' vertices."""
    from matplotlib.patches import Polygon
    from scipy.spatial import ConvexHull

    span = float(np.ptp(xy, axis=0).max()) if len(tasks) > 1 else 1.0
    span = span or 1.0
    hulls = []
    for g, members in enumerate(grouping.groups):
        radius = span * (0.05 + 0.02 * (g % 4))
        angles = np.linspace(0, 2 * np.pi, 24, endpoint=False)
        ring = np.stack([np.cos(angles), np.sin(angles)], axis=1) * radius
        points = np.concatenate([xy[tasks.index(t)] + ring for t in members])
        hull = points[ConvexHull(points).vertices]
        hulls.append(hull)
        colour = f"C{g % 10}"
        ax.add_patch(Polygon(hull, closed=True, facecolor=colour, alpha=0.08, edgecolor="none"))
        ax.add_patch(
            Polygon(
                hull,
                closed=True,
                fill=False,
                edgecolor=colour,
                lw=1.8,
                label=_group_legend(grouping, g),
            )
        )
    return hulls


def _draw_affinity_graph(
    ax, values: np.ndarray, edges: list[tuple[int, int]], xy: np.ndarray, colours: list[str]
) -> None:
    """The ``edges`` i → j coloured by the sign of Z[i, j] (blue helps, red hurts), width ∝ |Z|,
    then the task nodes at ``xy`` filled with ``colours``."""
    import networkx as nx

    n = len(xy)
    strongest = max((abs(values[e]) for e in edges), default=1.0) or 1.0
    graph = nx.DiGraph()
    graph.add_nodes_from(range(n))
    graph.add_edges_from(edges)
    pos = {i: xy[i] for i in range(n)}
    nx.draw_networkx_edges(
        graph,
        pos,
        ax=ax,
        edgelist=edges,
        edge_color=["#2166ac" if values[e] > 0 else "#b2182b" for e in edges],
        width=[0.5 + 2.5 * abs(values[e]) / strongest for e in edges],
        alpha=0.7,
        arrows=True,
        arrowsize=9,
        connectionstyle="arc3,rad=0.12",
        node_size=NODE_SIZE,
    )
    nx.draw_networkx_nodes(
        graph, pos, ax=ax, node_color=colours, edgecolors="black", node_size=NODE_SIZE
    )


NODE_SIZE = 160


def _draw_labels(ax, grouping: Grouping, tasks: list[str], xy: np.ndarray) -> list:
    """Each task's name and the affinity onto it from its serving group, beside its node on
    the side away from the layout's centre, on a white ground. Returns the texts."""
    centre = xy.mean(axis=0)
    texts = []
    for i, task in enumerate(tasks):
        dx, dy = xy[i] - centre
        angle = math.atan2(dy, dx) if (dx or dy) else 0.0
        cos, sin = math.cos(angle), math.sin(angle)
        value = grouping.values[task]
        texts.append(
            ax.annotate(
                f"{task} ({'+' if value > 0 else ''}{plain(value, 2)})",
                xy[i],
                xytext=(10 * cos, 10 * sin),
                textcoords="offset points",
                ha="left" if cos > 0.35 else ("right" if cos < -0.35 else "center"),
                va="bottom" if sin > 0.7 else ("top" if sin < -0.7 else "center"),
                fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.85},
                zorder=5,
            )
        )
    return texts


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
    """PNG of :func:`results_figure`."""
    return _png(results_figure(results))


def _changes(results: GroupResults) -> tuple[list[str], list[Interval], list[Interval]]:
    """Per task and metric (the loss and metrics whose baseline is 0 left out): its label and
    the change of the grouped and the all-together network against single-task training, in
    percent, + = better, over the initialisations (each against its own seed's baseline)."""
    from taskgroup.training.metrics import LOSS

    labels, grouped, together = [], [], []
    for task in results.tasks:
        for name in results.metrics[task]:
            alone = [r.single[task].test[task][name] for r in results.per_seed]
            if name == LOSS or 0 in alone:
                continue
            better = results.directions[task][name]

            def change(values: list[float], alone=alone, better=better) -> Interval:
                pairs = zip(values, alone, strict=True)
                return mean_interval([improvement(v, b, better) for v, b in pairs])

            labels.append(f"{task}\n{name} ({'↑' if better else '↓'})")
            grouped.append(change([r.metrics[task][name] for r in results.per_seed]))
            together.append(change([r.together.test[task][name] for r in results.per_seed]))
    return labels, grouped, together


def results_figure(results: GroupResults) -> Figure:
    """Per task and metric, the relative change (%) against single-task training of the
    grouped solution and of all tasks together, signed so that **+ is better** for every metric
    (:func:`~taskgroup.report.numbers.improvement`); the legend gives each one's Δm (2 decimals,
    lower is better). With several initialisations, each bar is the mean of the seeds' changes
    (each against the single-task network of its seed) with its 95% interval as an error bar."""
    if results.single is None or results.together is None:
        raise ValueError("these results have no baselines to compare with")
    labels, grouped, together = _changes(results)
    x = np.arange(len(labels))
    fig = Figure(figsize=(2.2 + 0.9 * len(labels), 4.0), layout="constrained")
    ax = fig.add_subplot()
    for shift, changes, color, name, interval in (
        (-0.2, grouped, "C0", "grouped", results.delta_m_interval()),
        (0.2, together, "C3", "all together", results.delta_m_together_interval()),
    ):
        errors = None if not results.initialisations else [c.half_width for c in changes]
        ax.bar(
            x + shift,
            [c.mean for c in changes],
            0.4,
            yerr=errors,
            capsize=3,
            color=color,
            label=f"{name} (Δm {percent_interval(interval.mean, interval.half_width)})",
        )
    ax.axhline(0.0, color="grey", lw=0.8)
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_xlabel("task, metric (↑ higher is better, ↓ lower is better)")
    ax.set_ylabel("improvement vs single-task, %\n(higher is better)")
    ax.legend(fontsize=8, title="Δm: lower is better", title_fontsize=8)
    ax.set_title(f"Test metrics vs training each task alone ({results.aggregator})", fontsize=9)
    return fig
