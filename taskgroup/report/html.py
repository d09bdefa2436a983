"""``report.html``: one self-contained page for a run directory.

Plots are embedded as PNG data URIs and the styles are inline, so the file can be mailed or
archived alone. Every task name and other user string is HTML-escaped. Sections whose stage has
not run yet say which command produces them. A short script marks ``<body data-images>`` with
``ok`` once every image has decoded (``broken`` otherwise), so automated checks can tell.
"""

from __future__ import annotations

import base64
import html
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import Grouping
from taskgroup.report import plots
from taskgroup.rundir import AFFINITY, GROUPS, RESULTS, run_identity
from taskgroup.storage import read_json
from taskgroup.training.groups import GroupResults
from taskgroup.training.metrics import LOSS

SECTIONS = ("affinity", "training", "groups", "results", "cost")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: .5rem 0; }
.missing { color: #777; font-style: italic; } .better { color: #1a7f37; } .worse { color: #b42318; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""

SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const broken = images.filter((img) => !img.complete || img.naturalWidth === 0);
  document.body.dataset.images = broken.length === 0 ? "ok" : "broken";
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{_e(alt)}" src="data:image/png;base64,{data}">'


def _missing(command: str) -> str:
    return f'<p class="missing">Not run yet: <code>{_e(command)}</code></p>'


NUMBER = re.compile(r"^[-+]?\d[\d.]*(e[-+]?\d+)?%?$")


def _cell(content: str) -> str:
    numeric = NUMBER.match(re.sub(r"<[^>]+>", "", content).strip())
    return f'<td class="n">{content}</td>' if numeric else f"<td>{content}</td>"


def _table(header: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(key: str, title: str, content: str) -> str:
    return f'<section id="{key}"><h2>{_e(title)}</h2>{content}</section>'


def _change(value: float, base: float, higher_is_better: bool) -> str:
    if base == 0:
        return "–"
    change = 100 * (value - base) / abs(base) * (-1 if higher_is_better else 1)
    if abs(change) < 0.05:  # no "-0.0%"
        return "0.0%"
    css = "better" if change < 0 else "worse"
    return f'<span class="{css}">{change:+.1f}%</span>'


def _affinity_sections(affinity: AffinityMatrix | None, grouping: Grouping | None) -> list[str]:
    if affinity is None:
        return [
            _section("affinity", "Task affinity", _missing("taskgroup affinity")),
            _section("training", "Affinity over training", _missing("taskgroup affinity")),
        ]
    meta = affinity.metadata
    facts = (
        f"<p>Lookahead <code>{_e(meta.get('lookahead', '?'))}</code>, "
        f"{len(affinity.trace_steps or [])} measurements over {_e(meta.get('steps_trained', '?'))} "
        f"co-training steps. Z[i, j] &gt; 0: the step of source task i lowers target j's loss.</p>"
    )
    parts = [facts, _image(plots.affinity_heatmap(affinity), "affinity heatmap")]
    if grouping is not None:
        parts.append(_image(plots.grouping_graph(affinity, grouping), "affinity graph and groups"))
    over = (
        _image(plots.affinity_over_training(affinity), "affinity over training")
        if affinity.trace is not None
        else '<p class="missing">This affinity matrix has no per-step trace.</p>'
    )
    return [
        _section("affinity", "Task affinity", "".join(parts)),
        _section("training", "Affinity over training", over),
    ]


def _groups_section(grouping: Grouping | None, sweep: list[dict] | None) -> str:
    if grouping is None:
        return _section("groups", "Chosen groups", _missing("taskgroup group RUN_DIR --budget B"))
    rows = []
    for g, members in enumerate(grouping.groups):
        served = [t for t in members if grouping.serves[t] == g]
        rows.append([str(g + 1), _e(", ".join(members)), _e(", ".join(served) or "–")])
    status = (
        "proven optimal"
        if grouping.optimal
        else (f"bound {grouping.bound:.4g}" if grouping.bound is not None else "no bound")
    )
    parts = [
        f"<p>{len(grouping.groups)} group(s) under budget {grouping.budget}, method "
        f"<code>{_e(grouping.method)}</code>, score {grouping.score:.4g} ({_e(status)}).</p>",
        _table(["group", "tasks", "serves (by affinity)"], rows),
    ]
    cost = grouping.info.get("cost")
    if isinstance(cost, dict) and cost:  # methods that train networks to select (hoa, verified)
        facts = ", ".join(f"{_e(k)} {_e(v)}" for k, v in cost.items())
        parts.insert(1, f"<p>What the selection cost: {facts}.</p>")
    if sweep:
        curve = [SimpleNamespace(**record) for record in sweep]
        parts.append(
            _image(plots.score_vs_budget(curve, chosen=grouping.budget), "score vs budget")
        )
    return _section("groups", "Chosen groups", "".join(parts))


def _results_sections(results: GroupResults | None) -> list[str]:
    if results is None:
        missing = _missing("taskgroup train RUN_DIR")
        return [
            _section("results", "Results per task", missing),
            _section("cost", "Cost", missing),
        ]
    baselines = results.single is not None and results.together is not None
    rows = []
    for task in results.tasks:
        for name, value in results.metrics[task].items():
            row = [_e(task), _e(name), str(results.serves[task] + 1), f"{value:.4g}"]
            if baselines:
                alone = results.single[task].test[task][name]
                together = results.together.test[task][name]
                better = results.directions[task][name]
                row += [f"{alone:.4g}", f"{together:.4g}", _change(value, alone, better)]
            rows.append(row)
    header = ["task", "metric", "network", "grouped"]
    if baselines:
        header += ["alone", "all together", "grouped vs alone"]
    parts = [
        f"<p>Aggregator <code>{_e(results.aggregator)}</code>; each task is served by the "
        f"network of its groups with the lowest validation loss; test-split metrics.</p>"
    ]
    if baselines:
        parts.append(
            f"<p><strong>Δm vs single-task</strong> (lower is better): grouped "
            f"{results.delta_m():+.2f}%, all together {results.delta_m_together():+.2f}% "
            f"(on test loss: {results.delta_m(only=[LOSS]):+.2f}%, "
            f"{results.delta_m_together(only=[LOSS]):+.2f}%).</p>"
        )
    parts.append(_table(header, rows))
    if baselines:
        parts.append(_image(plots.task_results(results), "per-task change against single-task"))
    cost_rows = [
        [
            _e(name),
            str(c["networks"]),
            str(c["steps"]),
            f"{c['seconds']:.1f}",
            str(c["parameters"]),
        ]
        for name, c in results.cost.items()
    ]
    cost = _table(["networks of", "networks", "steps", "seconds", "parameters"], cost_rows)
    return [
        _section("results", "Results per task", "".join(parts)),
        _section("cost", "Cost", cost),
    ]


def render_report(run_dir: str | Path) -> str:
    """The HTML page of ``run_dir`` from its affinity.json, groups.json, results.json and
    manifest.json (whichever exist)."""
    run_dir = Path(run_dir)
    affinity = AffinityMatrix.load(run_dir / AFFINITY) if (run_dir / AFFINITY).exists() else None
    grouping, sweep = None, None
    if (run_dir / GROUPS).exists():
        record = read_json(run_dir / GROUPS)
        grouping = Grouping.from_dict(record, source=str(run_dir / GROUPS))
        sweep = record.get("sweep")
    results = GroupResults.load(run_dir / RESULTS) if (run_dir / RESULTS).exists() else None
    run = run_identity(run_dir)
    title = f"taskgroup report: {run['benchmark']}" if run else "taskgroup report"
    intro = ""
    if run:
        intro = (
            f"<p>Benchmark <code>{_e(run['benchmark'])}</code>, seed {_e(run['seed'])}, "
            f"tasks: {_e(', '.join(run['tasks'] or []))}.</p>"
        )
    body = "".join(
        [
            f"<h1>{_e(title)}</h1>",
            intro,
            *_affinity_sections(affinity, grouping),
            _groups_section(grouping, sweep),
            *_results_sections(results),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{_e(title)}</title><style>{STYLE}</style>"
        f"<script>{SCRIPT}</script></head><body>{body}</body></html>\n"
    )
