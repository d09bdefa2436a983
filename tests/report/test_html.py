"""report.html: self-contained, escaped, every section; loaded in headless chromium without
console errors, with the summary box first, the group graph decoded at its full size with every
task's label inside the image (and inside the graph's drawing area), no comparison whose sign
contradicts its "better" marker, and the stale-results banner after a regroup (the browser
tests are skipped where chromium is not installed; .ci/run installs Debian's)."""

from __future__ import annotations

import base64
import re
import shutil
import struct
import subprocess
from html.parser import HTMLParser

import numpy as np
import pytest
from matplotlib import rcParams
from matplotlib.backends.backend_agg import FigureCanvasAgg

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.cli import main
from taskgroup.pipeline import group_stage
from taskgroup.report import plots
from taskgroup.report.html import SECTIONS, render_report
from taskgroup.report.numbers import improvement
from taskgroup.report.rundata import read_run
from taskgroup.settings import GroupSettings
from taskgroup.training.groups import GroupResults

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def full_report(tiny_run):
    return tiny_run / "report.html"


def test_page_is_self_contained_with_every_section(full_report):
    page = full_report.read_text()
    for key in SECTIONS:
        assert f'<section id="{key}">' in page
    assert "Not run yet" not in page
    assert not re.search(r'src="(?!data:image/png;base64,)', page)  # nothing fetched from outside
    assert "<link" not in page
    assert page.count("<img") == 5  # heatmap, graph, over training, score vs budget, results


def test_partial_run_says_which_command_is_missing(tmp_path):
    values = np.array([[0.0, 0.2, -0.1], [0.1, 0.0, -0.2], [-0.3, -0.1, 0.0]])
    AffinityMatrix(values, ["a", "b", "c"]).save(tmp_path / "affinity.json")
    page = render_report(tmp_path)
    assert page.count("Not run yet") == 3  # groups, results, cost
    assert "taskgroup group RUN_DIR --budget B" in page


def test_task_names_and_user_strings_are_escaped(tmp_path):
    names = ["<script>alert(1)</script>", 'a"b', "c&d"]
    values = np.array([[0.0, 0.2, 0.1], [0.1, 0.0, 0.2], [0.3, 0.1, 0.0]])
    AffinityMatrix(values, names).save(tmp_path / "affinity.json")
    group_stage(tmp_path / "affinity.json", tmp_path, GroupSettings(budget=1))
    page = render_report(tmp_path)
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "a&quot;b" in page and "c&amp;d" in page
    assert page.count("<script>") == 1  # only the page's own image check


def load_in_chromium(path, tmp_path) -> tuple[str, list[str]]:
    """The DOM after load and the page's console messages."""
    run = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
            path.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return run.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_browser_detects_a_broken_page(tmp_path):
    """The check below can fail: a console error and a broken image are seen."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        '<html><body><img src="data:image/png;base64,AAAA"><script>'
        'console.error("boom"); window.addEventListener("load", () => {'
        "const b = Array.from(document.images).filter(i => i.naturalWidth === 0);"
        'document.body.dataset.images = b.length ? "broken" : "ok"; });'
        "</script></body></html>"
    )
    dom, console = load_in_chromium(bad, tmp_path)
    assert any("boom" in line for line in console)
    assert 'data-images="broken"' in dom


class Dom(HTMLParser):
    """The sections (in order), images and tables of a page: the DOM chromium dumped."""

    def __init__(self, page: str):
        super().__init__()
        self.sections: list[str] = []
        self.images: list[dict[str, str]] = []
        self.tables: dict[str, dict] = {}
        self.stale: list[tuple[str, str]] = []  # (section, stage) of each banner
        self._table = self._row = self._cell = None
        self.feed(page)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "section":
            self.sections.append(attrs.get("id"))
        elif tag == "img":
            self.images.append(attrs)
        elif tag == "div" and "stale" in attrs.get("class", ""):
            self.stale.append((self.sections[-1], attrs.get("data-stage")))
        elif tag == "table":
            self._table = self.tables.setdefault(attrs.get("data-table"), {"head": [], "rows": []})
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("th", "td") and self._row is not None:
            self._cell = {"text": "", "better": attrs.get("data-better"), "class": None}
            self._row.append(self._cell)
        elif tag == "span" and self._cell is not None:
            self._cell["class"] = attrs.get("class")

    def handle_endtag(self, tag):
        if tag == "tr" and self._row is not None:
            kind = "head" if self._table["head"] == [] else "rows"
            self._table[kind].append(self._row)
            self._row = None
        elif tag in ("th", "td"):
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell["text"] += data


def png_size(uri: str) -> tuple[int, int]:
    """Width and height from the PNG header of a data URI."""
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", png[16:24])


def signed(text: str) -> float:
    """The number of a comparison cell, "+0.48%" or "−1.25%"."""
    return float(text.strip().rstrip("%").replace("−", "-").replace("\u2212", "-"))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_loads_in_chromium_without_console_errors(full_report, tmp_path):
    dom, console = load_in_chromium(full_report, tmp_path)
    assert console == []
    assert 'data-images="ok"' in dom  # every embedded plot decoded
    for key in SECTIONS:
        assert f'id="{key}"' in dom
    assert "Δm vs single-task" in dom
    page = Dom(dom)
    assert page.sections[0] == "summary" and page.sections == list(SECTIONS)
    assert page.stale == []
    graph = next(img for img in page.images if img.get("data-plot") == "graph")
    width, height = (int(v) for v in graph["data-natural"].split("x"))
    assert width > 0 and height > 0 and (width, height) == png_size(graph["src"])


SAVE_DPI = 110  # the dpi of the report's PNGs (report.plots)


def graph_geometry(run_dir) -> tuple[dict[str, tuple], tuple, tuple[int, int]]:
    """The run's group graph drawn again as the report draws it: each task label's box and the
    drawing area's box in the pixels of the saved PNG ``(x0, y0, x1, y1)``, origin at the top
    left, and the PNG's size ``(width, height)`` that this geometry implies (the saved figure's
    tight bounding box plus its padding, at the report's dpi)."""
    run = read_run(run_dir)
    fig = plots.grouping_figure(run.affinity, run.grouping)
    fig.set_dpi(SAVE_DPI)  # text extents depend on the dpi they are drawn at
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    pad = rcParams["savefig.pad_inches"]
    tight = fig.get_tightbbox(renderer).padded(pad)  # inches
    height = tight.height * SAVE_DPI

    def pixels(box) -> tuple[float, float, float, float]:
        (x0, y0), (x1, y1) = box.get_points() / fig.dpi - [tight.x0, tight.y0]
        return (x0 * SAVE_DPI, height - y1 * SAVE_DPI, x1 * SAVE_DPI, height - y0 * SAVE_DPI)

    [ax] = fig.axes
    labels = {t.get_text(): pixels(t.get_window_extent(renderer)) for t in ax.texts if t.get_text()}
    assert len(labels) == len(run.affinity.tasks)
    size = (round(tight.width * SAVE_DPI), round(height))
    return labels, pixels(ax.get_window_extent(renderer)), size


def outside(box, area) -> bool:
    x0, y0, x1, y1 = box
    return x0 < area[0] - 0.5 or y0 < area[1] - 0.5 or x1 > area[2] + 0.5 or y1 > area[3] + 0.5


def test_the_label_check_fails_on_labels_beyond_the_drawing_area(tiny_run, monkeypatch):
    """Without the report's fitting of the axes to its labels, labels cross the drawing area:
    the check below sees it."""
    monkeypatch.setattr(plots, "_fit_texts", lambda fig, ax, texts, points: ax.margins(0))
    labels, area, _ = graph_geometry(tiny_run)
    assert any(outside(box, area) for box in labels.values())


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_chromium_shows_every_graph_label_inside_the_image(full_report, tmp_path):
    dom, console = load_in_chromium(full_report, tmp_path)
    assert console == [] and 'data-images="ok"' in dom
    graph = next(img for img in Dom(dom).images if img.get("data-plot") == "graph")
    shown = tuple(int(v) for v in graph["data-natural"].split("x"))  # as chromium decoded it
    labels, area, size = graph_geometry(full_report.parent)
    assert all(abs(a - b) <= 1 for a, b in zip(size, png_size(graph["src"]), strict=True))
    assert shown == png_size(graph["src"])
    image = (0, 0, *shown)
    assert not outside(area, image)  # the drawing area lies inside the image...
    for name, box in labels.items():  # ...and every task's label inside both
        assert not outside(box, area) and not outside(box, image), (name, box, area, shown)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_no_comparison_in_chromium_has_a_sign_against_its_marker(full_report, tmp_path):
    dom, _ = load_in_chromium(full_report, tmp_path)
    table = Dom(dom).tables["results"]
    head = table["head"][0]
    compare = {c: cell["better"] for c, cell in enumerate(head) if cell["better"]}
    assert list(compare.values()) == ["higher", "higher"]
    results = GroupResults.load(full_report.parent / "results.json")
    against = {"grouped vs alone": "single", "grouped vs all together": "together"}
    checked = 0
    for row in table["rows"]:
        task, metric = row[0]["text"], row[1]["text"]
        up = results.directions[task][metric]
        assert row[2]["text"] == ("↑\xa0higher" if up else "↓\xa0lower")
        for c, better in compare.items():
            base = [b for name, b in against.items() if head[c]["text"].startswith(name + ":")]
            baseline = (
                results.single[task].test[task][metric]
                if base == ["single"]
                else results.together.test[task][metric]
            )
            change = improvement(results.metrics[task][metric], baseline, up)
            shown = row[c]["text"]
            if shown.startswith("0.00"):
                assert abs(change) < 0.005
                continue
            value = signed(shown)
            assert value == pytest.approx(change, abs=0.006)  # + means better, as marked
            assert row[c]["class"] == ("better" if value > 0 else "worse")
            assert "higher is better" in head[c]["text"] and better == "higher"
            checked += 1
    assert checked >= 8


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_chromium_shows_the_stale_results_banner_after_a_regroup(copy_run, tmp_path):
    assert main(["group", str(copy_run), "--budget", "1"]) == 0  # the tiny run had budget 2
    (copy_run / "report.html").unlink()  # `taskgroup report` alone makes the same page
    assert main(["report", str(copy_run)]) == 0
    dom, console = load_in_chromium(copy_run / "report.html", tmp_path)
    assert console == [] and 'data-images="ok"' in dom
    page = Dom(dom)
    assert page.sections[0] == "summary"
    assert ("summary", "results") in page.stale and ("results", "results") in page.stale
    assert "results" not in page.tables  # no results of the old grouping beside the new one
    assert f"taskgroup train {copy_run}" in dom
    assert [r[1]["text"] for r in page.tables["summary-groups"]["rows"]] == [
        "g0_t0, g0_t1, g1_t0, g1_t1"
    ]


def test_selection_cost_is_shown(tmp_path):
    from taskgroup.grouping import select_groups

    values = np.array([[0.0, 0.2, 0.1], [0.1, 0.0, 0.2], [0.3, 0.1, 0.0]])
    grouping = select_groups(values, 1, tasks=["a", "b", "c"])
    data = grouping.to_dict()
    data["info"] = {"cost": {"networks": 6, "steps": 1200, "seconds": 12.5}}
    import json

    (tmp_path / "groups.json").write_text(json.dumps(data))
    page = render_report(tmp_path)
    assert "What the selection cost: networks 6, steps 1200, seconds 12.5." in page


def test_training_docs_show_a_screenshot_of_the_report():
    """docs/training.md links docs/img/report.png, a chromium screenshot of the default run's
    report (regenerate: `taskgroup run`, then chromium --headless --hide-scrollbars
    --window-size=1150,2150 --screenshot=docs/img/report.png runs/multidigits/report.html)."""
    from pathlib import Path

    docs = Path(__file__).resolve().parents[2] / "docs"
    text = (docs / "training.md").read_text(encoding="utf-8")
    assert "](img/report.png)" in text.split("## `report.html`", 1)[1].split("\n## ", 1)[0]
    png = (docs / "img" / "report.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", png[16:24])
    assert width >= 1000 and height >= width  # a page, top first: summary box and affinity
