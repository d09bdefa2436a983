"""report.html: self-contained, escaped, every section; loaded in headless chromium without
console errors (the browser test is skipped where chromium is not installed; .ci/run installs
Debian's)."""

from __future__ import annotations

import re
import shutil
import subprocess

import numpy as np
import pytest

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.cli import main
from taskgroup.pipeline import group_stage
from taskgroup.report.html import SECTIONS, render_report
from taskgroup.settings import GroupSettings
from tests.recipes import tiny

TINY = tiny(seed=0)

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("report")
    recipe = tmp_path / "tiny.toml"
    recipe.write_text(TINY)
    out = tmp_path / "out"
    assert main(["run", str(recipe), "--out", str(out), "--no-progress"]) == 0
    return out / "report.html"


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


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs it)")
def test_report_loads_in_chromium_without_console_errors(full_report, tmp_path):
    dom, console = load_in_chromium(full_report, tmp_path)
    assert console == []
    assert 'data-images="ok"' in dom  # every embedded plot decoded
    for key in SECTIONS:
        assert f'id="{key}"' in dom
    assert "Δm vs single-task" in dom


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
