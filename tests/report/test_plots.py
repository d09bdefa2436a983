"""The report's figures: the heatmap names its signal and leaves the diagonal out of its colour
scale; the group graph keeps every name inside the image, names each group's tasks and draws
only the strongest edges; every axis is labelled; Δm in legends has 2 decimals."""

from __future__ import annotations

import re

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.image import AxesImage
from matplotlib.text import Annotation

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import Grouping
from taskgroup.report import plots


def cosine_matrix(n: int, seed: int = 0) -> AffinityMatrix:
    """A cosine-like matrix: symmetric, unit diagonal, off-diagonal ≤ 0.33 (the issue's case)."""
    rng = np.random.default_rng(seed)
    values = rng.uniform(-0.2, 0.33, (n, n))
    values = (values + values.T) / 2
    np.fill_diagonal(values, 1.0)
    names = [f"task_{'with_a_long_name_' if i % 3 == 0 else ''}{i}" for i in range(n)]
    return AffinityMatrix(values, names, lookahead="cosine")


def test_heatmap_names_the_cosine_and_scales_colours_off_the_diagonal():
    affinity = cosine_matrix(6)
    fig = plots.heatmap_figure(affinity)
    heat, bar = fig.axes
    assert "cos(g_i, g_j)" in bar.get_ylabel()
    assert "L_target" not in bar.get_ylabel() and "1 − L" not in bar.get_ylabel()
    assert "gradient cosine" in heat.get_title()
    image = next(a for a in heat.get_children() if isinstance(a, AxesImage))
    off = affinity.values[~np.eye(6, dtype=bool)]
    peak = np.abs(off).max()  # the diagonal of 1.0 would set ±1
    assert (image.norm.vmin, image.norm.vmax) == pytest.approx((-peak, peak))
    data = image.get_array()
    assert data.mask[np.eye(6, dtype=bool)].all() and not data.mask[~np.eye(6, dtype=bool)].any()
    cells = [t.get_text() for t in heat.texts]
    assert len(cells) == 36 and not any("e" in c for c in cells)  # no "2.6e-01"
    assert cells[0] == "1.0" and float(cells[1]) == float(f"{affinity.values[0, 1]:.2g}")
    assert heat.get_xlabel() and heat.get_ylabel()


def test_heatmap_of_a_lookahead_names_the_lookahead():
    affinity = AffinityMatrix(np.array([[0.3, 0.1], [-0.05, 0.2]]), ["a", "b"], lookahead="sgd")
    bar = plots.heatmap_figure(affinity).axes[1]
    assert "1 − L_j" in bar.get_ylabel() and "SGD" in bar.get_ylabel()


def test_over_training_panels_have_labelled_axes():
    trace = np.stack([cosine_matrix(3).values] * 4)
    affinity = AffinityMatrix(trace.mean(0), ["a", "b", "c"], trace=trace, lookahead="cosine")
    png = plots.affinity_over_training(affinity)
    assert png.startswith(b"\x89PNG")
    fig = plots.over_training_figure(affinity)
    for ax in fig.axes:
        assert ax.get_xlabel() and ax.get_ylabel()


def hand_grouping(affinity: AffinityMatrix, groups: int, overlap: bool = True) -> Grouping:
    """Tasks dealt round-robin into ``groups`` groups (the first task also joins group 2 when
    ``overlap``), each served by the group that holds it with the highest mean affinity onto it:
    a grouping without a solver (the solvers take seconds at 20 tasks)."""
    tasks, values = affinity.tasks, affinity.values
    members = [[t for k, t in enumerate(tasks) if k % groups == g] for g in range(groups)]
    if overlap:
        members[1].insert(0, tasks[0])

    def onto(t, g):
        j = tasks.index(t)
        return np.mean([values[tasks.index(i), j] for i in members[g] if i != t])

    serves = {
        t: max((g for g in range(groups) if t in members[g]), key=lambda g: onto(t, g))
        for t in tasks
    }
    scores = {t: float(onto(t, serves[t])) for t in tasks}
    return Grouping(
        groups=[tuple(m) for m in members],
        score=sum(scores.values()),
        serves=serves,
        values=scores,
        optimal=False,
        bound=None,
        method="by hand",
        budget=groups,
        partition=not overlap,
        singleton_score=None,
        tasks=list(tasks),
    )


def independent_top_edges(values: np.ndarray, k: int) -> set[tuple[int, int]]:
    n = len(values)
    edges = set()
    for j in range(n):
        column = [(-abs(values[i, j]), i) for i in range(n) if i != j]
        edges |= {(i, j) for _, i in sorted(column)[:k]}
    return edges


@pytest.mark.parametrize("n", [6, 12, 20])
def test_graph_keeps_names_inside_the_image_and_names_the_groups(n):
    affinity = cosine_matrix(n, seed=n)
    grouping = hand_grouping(affinity, 3 if n == 6 else 5)
    fig = plots.grouping_figure(affinity, grouping)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    ax = fig.axes[0]
    labels = [t for t in ax.texts if isinstance(t, Annotation)]
    assert sorted(t.get_text().split(" (")[0] for t in labels) == sorted(affinity.tasks)
    inside = ax.get_window_extent(renderer)
    figure = fig.bbox
    for text in labels:
        box = text.get_window_extent(renderer)
        assert inside.x0 <= box.x0 and box.x1 <= inside.x1, text.get_text()
        assert inside.y0 <= box.y0 and box.y1 <= inside.y1, text.get_text()
        assert figure.x0 <= box.x0 and box.x1 <= figure.x1 and box.y1 <= figure.y1
    legend = " ".join(t.get_text() for t in fig.legends[0].get_texts())
    legend = re.sub(r"\s+", " ", legend)
    for g, members in enumerate(grouping.groups):
        assert f"group {g + 1}: {', '.join(members)}" in legend  # not "group 1: 2 tasks"


@pytest.mark.parametrize("k", [1, 2, 3])
def test_graph_draws_the_strongest_edges_onto_each_task(k):
    values = cosine_matrix(9, seed=3).values + np.random.default_rng(1).normal(0, 0.01, (9, 9))
    edges = plots.strongest_edges(values, k)
    assert set(edges) == independent_top_edges(values, k)
    assert len(edges) == 9 * k
    strengths = [abs(values[e]) for e in edges]
    assert strengths == sorted(strengths, reverse=True)


def test_graph_thins_edges_for_many_tasks():
    assert plots.edges_per_task(6) == 2 and plots.edges_per_task(20) == 1
    affinity = cosine_matrix(20, seed=2)
    fig = plots.grouping_figure(affinity, hand_grouping(affinity, 4))
    assert "the 1 strongest" in fig.axes[0].get_title()
