"""``report.html``: one self-contained page for a run directory.

The page opens with the answer (:mod:`taskgroup.report.summary`: groups, gain, cost, the next
command), then the affinity, the groups and the results. A stage whose output was made from
something the directory no longer holds is shown stale, with the command that refreshes it, and
results are never shown beside groups they were not trained for
(:mod:`taskgroup.report.freshness`). The affinity is labelled with the signal that was measured
(:mod:`taskgroup.report.signals`); numbers are in plain notation, Δm and changes with 2
decimals, and every comparison column says which way is better.

Plots are embedded as PNG data URIs and the styles are inline, so the file can be mailed or
archived alone. Every task name and other user string is HTML-escaped. Sections whose stage has
not run yet say which command produces them. A short script marks ``<body data-images>`` with
``ok`` once every image has decoded (``broken`` otherwise) and each image with its natural size
(``data-natural="WxH"``), so automated checks can tell.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.grouping import Grouping
from taskgroup.report import plots
from taskgroup.report.markup import banner, escape, image, missing, section, table
from taskgroup.report.numbers import improvement, percent, percent_interval, plain, plus_minus
from taskgroup.report.rundata import RunData, read_run
from taskgroup.report.signals import signal_of
from taskgroup.report.summary import DELTA_M, seeds_note, serving, summary_section, verdict_part
from taskgroup.rundir import run_identity
from taskgroup.training.groups import GroupResults
from taskgroup.training.metrics import LOSS

SECTIONS = ("summary", "affinity", "training", "groups", "results", "cost")

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.6rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: .2rem; }
table { border-collapse: collapse; margin: .5rem 0 1rem; font-size: .9rem; }
th, td { border: 1px solid #ddd; padding: .25rem .6rem; text-align: left; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { max-width: 100%; display: block; margin: .5rem 0; }
figure { margin: .5rem 0 1rem; } figcaption { font-size: .85rem; color: #555; }
.missing { color: #777; font-style: italic; } .better { color: #1a7f37; } .worse { color: #b42318; }
.stale { background: #fff4e5; border: 1px solid #f0a030; padding: .5rem .8rem; margin: .5rem 0; }
#summary { background: #f5f8fc; border: 1px solid #c9d6e8; padding: .2rem 1rem .5rem; }
code { background: #f4f4f4; padding: 0 .2rem; }
"""

SCRIPT = """
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  images.forEach((img) => { img.dataset.natural = img.naturalWidth + "x" + img.naturalHeight; });
  const broken = images.filter((img) => !img.complete || img.naturalWidth === 0);
  document.body.dataset.images = broken.length === 0 ? "ok" : "broken";
});
"""

SERVES = (
    "Each task is served by exactly one network: of the groups that hold it, the one with the "
    "lowest validation loss on it once trained (before training, the one with the highest "
    "affinity onto it); its test metrics are read there. Groups may overlap (TAG's selection): "
    "a task can also sit in another group only to help that group's other tasks; that network "
    "trains on it, but its predictions for the task are not used."
)


def _signal_text(affinity: AffinityMatrix) -> str:
    signal, meta = signal_of(affinity), affinity.metadata
    measured = (
        f"averaged over {len(affinity.trace_steps)} measurements during "
        f"{escape(meta.get('steps_trained', '?'))} co-training steps"
        if affinity.trace is not None
        else "as given"
    )
    return (
        f"<p>Signal: <strong>{escape(signal.name)}</strong> (<code>lookahead = "
        f"{escape(signal.key or 'not recorded')}</code>), {measured}. {escape(signal.definition)}."
        f" Row i = source task, column j = target task. Sign: {escape(signal.sign)}. The "
        f"diagonal ({escape(signal.diagonal)}) is drawn grey and left out of the colour scale.</p>"
    )


def _graph_caption(affinity: AffinityMatrix) -> str:
    k = plots.edges_per_task(len(affinity.tasks))
    return (
        f"Tasks (filled with the colour of the group that serves them), each group outlined. "
        f"Edges i → j: for each task the {k} strongest |Z[i, j]| onto it (blue helps, red hurts, "
        f"width ∝ |Z|). Next to a name: the affinity onto it from the group that serves it."
    )


def _affinity_sections(run: RunData) -> list[str]:
    affinity, grouping = run.affinity, run.grouping
    if affinity is None:
        return [
            section("affinity", "Task affinity", missing("taskgroup affinity")),
            section("training", "Affinity over training", missing("taskgroup affinity")),
        ]
    heatmap = image(plots.affinity_heatmap(affinity), "affinity heatmap", key="heatmap")
    parts = [_signal_text(affinity), heatmap]
    if grouping is not None and list(grouping.tasks) == list(affinity.tasks):
        graph = plots.grouping_graph(_graph_affinity(affinity, run), grouping)
        parts.append(image(graph, "affinity graph and groups", _graph_caption(affinity), "graph"))
    over = (
        image(plots.affinity_over_training(affinity), "affinity over training", key="over")
        if affinity.trace is not None
        else '<p class="missing">This affinity matrix has no per-step trace.</p>'
    )
    return [
        section("affinity", "Task affinity", "".join(parts)),
        section("training", "Affinity over training", over),
    ]


def _graph_affinity(affinity: AffinityMatrix, run: RunData) -> AffinityMatrix:
    """The matrix the groups were selected from: normalised by each source's self-improvement
    when ``groups.json`` says so."""
    if (run.groups_record or {}).get("normalize") == "source":
        try:
            return affinity.relative()
        except ValueError:
            return affinity
    return affinity


def _status(grouping: Grouping) -> str:
    if grouping.optimal:
        return "proven optimal"
    return "no bound" if grouping.bound is None else f"bound {plain(grouping.bound, 4)}"


def _groups_section(run: RunData) -> str:
    grouping = run.grouping
    if grouping is None:
        return section("groups", "Chosen groups", missing("taskgroup group RUN_DIR --budget B"))
    _, serves, how = serving(run)
    rows = []
    for g, members in enumerate(grouping.groups):
        served = [t for t in members if serves.get(t) == g]
        helps = [t for t in members if serves.get(t) != g]
        rows.append([str(g + 1), escape(", ".join(members)), escape(", ".join(served) or "–")])
        rows[-1].append(escape(", ".join(helps) or "–"))
    layout = "disjoint groups (a partition)" if grouping.partition else "groups that may overlap"
    parts = [
        *(banner(s.stage, escape(s.reason), s.command) for s in run.stale if s.stage == "groups"),
        f"<p>{len(grouping.groups)} group(s) under budget {grouping.budget}, {layout}, method "
        f"<code>{escape(grouping.method)}</code>, score {plain(grouping.score, 4)} "
        f"({escape(_status(grouping))}).</p>",
        f"<p>{escape(SERVES)} Below, “serves” is decided by the {escape(how)}.</p>",
        table(
            ["network", "trains", "serves (its predictions are used)", "in it only to help"],
            rows,
            key="groups",
        ),
    ]
    cost = grouping.info.get("cost")
    if isinstance(cost, dict) and cost:  # methods that train networks to select (hoa, verified)
        facts = ", ".join(f"{escape(k)} {escape(v)}" for k, v in cost.items())
        parts.insert(2, f"<p>What the selection cost: {facts}.</p>")
    sweep = (run.groups_record or {}).get("sweep")
    if sweep:
        curve = [SimpleNamespace(**record) for record in sweep]
        png = plots.score_vs_budget(curve, chosen=grouping.budget)
        parts.append(image(png, "score vs budget", key="sweep"))
    return section("groups", "Chosen groups", "".join(parts))


def _change(value: float, base: float, higher_is_better: bool) -> str:
    """A comparison cell: the change signed so that + is better, coloured and worded alike."""
    change = improvement(value, base, higher_is_better)
    if change is None:
        return "–"
    text = percent(change)
    if text.startswith("0"):
        return text
    verdict = "better" if change > 0 else "worse"
    return f'<span class="{verdict}" data-verdict="{verdict}">{text}</span>'


COMPARE = "{}: change, % (↑ higher is better)"


def _results_rows(results: GroupResults) -> list[list[str]]:
    """One row per task and metric; with several initialisations each value is the mean ± its
    95% interval, the changes are between means, and "served by" lists each seed's network
    when they differ."""
    baselines = results.single is not None and results.together is not None
    kinds = ["grouped", "single", "together"] if baselines else ["grouped"]
    intervals = {kind: results.metric_intervals(kind) for kind in kinds}
    rows = []
    for task in results.tasks:
        served = dict.fromkeys(str(r.serves[task] + 1) for r in results.per_seed)
        for name in results.metrics[task]:
            up = results.directions[task][name]
            means = {kind: intervals[kind][task][name].mean for kind in kinds}
            row = [
                escape(task),
                escape(name),
                "↑&nbsp;higher" if up else "↓&nbsp;lower",
                ", ".join(served),
            ]
            for kind in kinds:
                interval = intervals[kind][task][name]
                row.append(plus_minus(interval.mean, interval.half_width, 4))
            if baselines:
                row += [
                    _change(means["grouped"], means["single"], up),
                    _change(means["grouped"], means["together"], up),
                ]
            rows.append(row)
    return rows


def _results_table(results: GroupResults) -> str:
    header = ["task", "metric", "better", "served by network", "grouped"]
    better = {}
    if results.single is not None and results.together is not None:
        header += ["alone", "all together"]
        header += [COMPARE.format("grouped vs alone"), COMPARE.format("grouped vs all together")]
        better = {7: "higher", 8: "higher"}
    return table(header, _results_rows(results), better=better, key="results")


def _delta_m_text(results: GroupResults) -> str:
    if results.initialisations:
        return _delta_m_intervals_text(results)
    return (
        f"<p><strong>Δm vs single-task</strong> (lower is better): grouped "
        f"{percent(results.delta_m())}, all together {percent(results.delta_m_together())} "
        f"(on test loss: {percent(results.delta_m(only=[LOSS]))}, "
        f"{percent(results.delta_m_together(only=[LOSS]))}). {DELTA_M}. In the table, the "
        f"change of each metric is signed so that + is better, whichever way the metric "
        f"points.</p>"
    )


def _delta_m_intervals_text(results: GroupResults) -> str:
    def shown(interval) -> str:
        return percent_interval(interval.mean, interval.half_width)

    return (
        f"<p><strong>Δm vs single-task</strong> (lower is better; {seeds_note(results)}): "
        f"grouped {shown(results.delta_m_interval())}, all together "
        f"{shown(results.delta_m_together_interval())} (on test loss: "
        f"{shown(results.delta_m_interval(only=[LOSS]))}, "
        f"{shown(results.delta_m_together_interval(only=[LOSS]))}); grouped against all "
        f"together, paired by seed: {shown(results.delta_m_interval(against='together'))}. "
        f"{verdict_part(results)} {DELTA_M}. In the table, each value is the mean ± its 95% "
        f"interval over the initialisations, and the change of each metric (between means) is "
        f"signed so that + is better, whichever way the metric points.</p>"
    )


def _results_sections(run: RunData) -> list[str]:
    results = run.fresh_results
    if results is None:
        stale = [s for s in run.stale if s.stage == "results"]
        note = (
            "".join(banner(s.stage, escape(s.reason), s.command) for s in stale)
            if stale
            else missing("taskgroup train RUN_DIR")
        )
        cost = (
            '<p class="missing">Not shown: results.json is stale (see Results per task).</p>'
            if stale
            else note
        )
        return [section("results", "Results per task", note), section("cost", "Cost", cost)]
    baselines = results.single is not None and results.together is not None
    parts = [
        f"<p>Aggregator <code>{escape(results.aggregator)}</code>; each task is served by the "
        f"network of its groups with the lowest validation loss; test-split metrics.</p>"
    ]
    if baselines:
        parts.append(_delta_m_text(results))
    parts.append(_results_table(results))
    if baselines:
        png = plots.task_results(results)
        parts.append(image(png, "per-task change against single-task", key="results"))
    cost_rows = [
        [
            escape(name),
            str(c["networks"]),
            str(c["steps"]),
            f"{c['seconds']:.1f}",
            str(c["parameters"]),
        ]
        for name, c in results.cost.items()
    ]
    cost = table(["networks of", "networks", "steps", "seconds", "parameters"], cost_rows)
    return [
        section("results", "Results per task", "".join(parts)),
        section("cost", "Cost", cost),
    ]


def render_report(run_dir: str | Path) -> str:
    """The HTML page of ``run_dir`` from its affinity.json, groups.json, results.json and
    manifest.json (whichever exist); the commands it prints name ``run_dir`` as given."""
    run = read_run(run_dir)
    identity = run_identity(run.run_dir)
    title = f"taskgroup report: {identity['benchmark']}" if identity else "taskgroup report"
    intro = ""
    if identity:
        intro = (
            f"<p>Benchmark <code>{escape(identity['benchmark'])}</code>, seed "
            f"{escape(identity['seed'])}, tasks: {escape(', '.join(identity['tasks'] or []))}.</p>"
        )
    body = "".join(
        [
            f"<h1>{escape(title)}</h1>",
            intro,
            summary_section(run),
            *_affinity_sections(run),
            _groups_section(run),
            *_results_sections(run),
        ]
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{STYLE}</style>"
        f"<script>{SCRIPT}</script></head><body>{body}</body></html>\n"
    )
