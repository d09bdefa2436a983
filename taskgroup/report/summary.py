"""The first section of ``report.html``: the answer before any plot.

Which groups were chosen and which network serves each task; the measured gain (Δm against
each task alone and against all tasks together); what it cost; and the command to run next (the
one that trains the groups, or that refreshes a stale stage, shown in a banner).
"""

from __future__ import annotations

import shlex

from taskgroup.report.freshness import train_command
from taskgroup.report.markup import banner, escape, section, table
from taskgroup.report.numbers import percent, percent_interval, plain
from taskgroup.report.rundata import RunData
from taskgroup.training.groups import GroupResults
from taskgroup.training.intervals import Interval, outcome, verdict

DELTA_M = (
    "Δm is the mean relative change of the test metrics against the baseline, signed so that "
    "<strong>lower is better</strong> (negative: the groups do better)"
)


def serving(run: RunData) -> tuple[list[tuple[str, ...]], dict[str, int], str]:
    """The groups, which of them serves each task, and how that was decided: by validation
    loss once the groups are trained (fresh results), else by affinity."""
    results = run.fresh_results
    if results is not None:
        groups = [r.tasks for r in results.groups]
        return groups, results.serves, "lowest validation loss of the trained networks"
    if run.grouping is None:
        return [], {}, ""
    return run.grouping.groups, run.grouping.serves, "highest affinity onto it (until trained)"


def _groups_part(run: RunData) -> str:
    groups, serves, how = serving(run)
    if not groups:
        return "<p>No groups chosen yet.</p>"
    rows = [
        [
            str(g + 1),
            escape(", ".join(members)),
            escape(", ".join(t for t in members if serves.get(t) == g) or "–"),
        ]
        for g, members in enumerate(groups)
    ]
    tasks = len({t for g in groups for t in g})
    return (
        f"<p><strong>Train {len(groups)} network(s) for {tasks} tasks.</strong> Each task is "
        f"served by one network, the one of its groups with the {escape(how)}.</p>"
        + table(["network", "trains", "serves"], rows, key="summary-groups")
    )


def _gain_part(run: RunData) -> str:
    results = run.fresh_results
    if results is None:
        why = "its results are stale (see above)" if run.results is not None else "not trained yet"
        return f"<p><strong>Gain:</strong> not measured: {why}.</p>"
    if results.single is None or results.together is None:
        return "<p><strong>Gain:</strong> not measured: the run trained no baselines.</p>"
    if results.initialisations:
        return _gain_with_intervals(results)
    alone, together = results.delta_m(), results.delta_m(against="together")
    return (
        f"<p><strong>Gain:</strong> Δm of the groups against each task trained alone "
        f'<strong data-delta-m="single">{percent(alone)}</strong>, against all tasks trained '
        f'together <strong data-delta-m="together">{percent(together)}</strong> (all tasks '
        f"together against each alone: {percent(results.delta_m_together())}; aggregator "
        f"<code>{escape(results.aggregator)}</code>). {DELTA_M}.</p>"
    )


def _shown(interval: Interval) -> str:
    return percent_interval(interval.mean, interval.half_width)


def seeds_note(results: GroupResults) -> str:
    """What the numbers of a several-initialisation run are: means ± 95% intervals."""
    seeds = ", ".join(str(s) for s in results.seeds)
    return (
        f"mean ± 95% interval over {len(results.per_seed)} initialisations, seeds "
        f"{escape(seeds)}: the Student-t interval of the mean, t<sub>0.975, K−1</sub>·s/√K"
    )


def verdict_part(results: GroupResults) -> str:
    """The sentence on whether the grouping beats all tasks together with 95% confidence,
    marked ``data-confidence`` with the :func:`~taskgroup.training.intervals.outcome`."""
    difference = results.delta_m_interval(against="together")
    sentence = verdict(difference, percent)
    if sentence is None:
        return ""
    text = escape(sentence[0].upper() + sentence[1:])
    return f'<strong data-confidence="{outcome(difference)}">{text}</strong>.'


def _gain_with_intervals(results: GroupResults) -> str:
    alone = results.delta_m_interval()
    together = results.delta_m_interval(against="together")
    return (
        f"<p><strong>Gain</strong> ({seeds_note(results)}): Δm of the groups against each task "
        f'trained alone <strong data-delta-m="single">{_shown(alone)}</strong>, against all '
        f'tasks trained together <strong data-delta-m="together">{_shown(together)}</strong> '
        f"(all tasks together against each alone: "
        f"{_shown(results.delta_m_together_interval())}; aggregator "
        f"<code>{escape(results.aggregator)}</code>). {verdict_part(results)} {DELTA_M}.</p>"
    )


def _seconds(value) -> str:
    if value is None:
        return "?"
    return "< 0.01 s" if float(value) < 0.01 else f"{plain(value, 3)} s"


def _cost_part(run: RunData) -> str:
    facts = []
    if run.affinity is not None:
        seconds = run.stage("affinity").get("seconds", run.affinity.metadata.get("seconds"))
        steps = run.affinity.metadata.get("steps_trained", "?")
        facts.append(f"co-training {_seconds(seconds)} ({escape(steps)} steps, all tasks)")
    if run.grouping is not None:
        facts.append(f"selection {_seconds(run.grouping.seconds)}")
        cost = run.grouping.info.get("cost")
        if isinstance(cost, dict) and cost:
            facts.append(
                "trainings to select: "
                + ", ".join(f"{escape(k)} {escape(v)}" for k, v in cost.items())
            )
    results = run.fresh_results
    if results is not None:
        cost = results.cost
        groups = cost["groups"]
        facts.append(f"training {_seconds(groups['seconds'])} for {groups['networks']} network(s)")
        if "single" in cost:
            extra = cost["single"]["networks"] + cost["together"]["networks"]
            seconds = cost["single"]["seconds"] + cost["together"]["seconds"]
            facts.append(f"baselines {_seconds(seconds)} for {extra} more network(s)")
        if results.initialisations:
            total = sum(c["seconds"] for r in results.per_seed for c in r.cost.values())
            facts.append(
                f"all {len(results.per_seed)} initialisations of every network "
                f"{_seconds(total)} (the figures before are initialisation 0's)"
            )
    if not facts:
        return ""
    return f"<p><strong>Cost:</strong> {'; '.join(facts)}.</p>"


def next_command(run: RunData) -> tuple[str, str] | None:
    """The command to run next and what it does, or ``None`` when every stage is fresh."""
    shown = shlex.quote(str(run.run_dir))
    if run.stale:
        first = run.stale[0]
        return first.command, f"refreshes the stale {first.stage}"
    if run.affinity is None and run.grouping is None:
        return f"taskgroup run --out {shown}", "measures the affinity, groups, trains, reports"
    if run.grouping is None and run.results is None:
        return f"taskgroup group {shown} --budget B", "chooses at most B groups"
    if run.results is None:
        return train_command(run.run_dir), "trains the groups and the baselines"
    return None


def summary_section(run: RunData) -> str:
    """The summary box: stale banners, groups, gain, cost and the next command."""
    parts = [banner(s.stage, escape(s.reason), s.command) for s in run.stale]
    parts += [_groups_part(run), _gain_part(run), _cost_part(run)]
    step = next_command(run)
    if step is not None:
        command, what = step
        parts.append(
            f'<p class="next"><strong>Next:</strong> <code>{escape(command)}</code> '
            f"({escape(what)}).</p>"
        )
    else:
        parts.append(
            "<p><strong>Up to date:</strong> every stage was made from the one before.</p>"
        )
    return section("summary", "Summary", "".join(parts))
