"""Results know what produced them: results.json records the groups (and settings) it was
trained for, groups.json the affinity it was selected from; the report shows a stale stage as
stale with the command that refreshes it and never shows results beside another grouping;
`taskgroup group` and `taskgroup train` refresh report.html."""

from __future__ import annotations

import hashlib
import json
import re

import numpy as np

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.cli import main
from taskgroup.grouping import Grouping
from taskgroup.report.html import render_report
from taskgroup.training.groups import GroupResults


def sha16(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def sections(page: str) -> dict[str, str]:
    return dict(re.findall(r'<section id="(\w+)">(.*?)</section>', page, flags=re.S))


def test_results_and_groups_record_what_produced_them(tiny_run):
    record = json.loads((tiny_run / "results.json").read_text())
    groups = json.loads((tiny_run / "groups.json").read_text())
    assert record["trained_for"]["groups"] == sha16([sorted(g) for g in groups["groups"]])
    assert record["trained_for"]["settings"] == sha16(record["settings"])
    affinity = json.loads((tiny_run / "affinity.json").read_text())
    assert groups["affinity_fingerprint"] == sha16(
        {"tasks": affinity["tasks"], "values": affinity["values"]}
    )
    results = GroupResults.load(tiny_run / "results.json")
    assert results.trained_for == record["trained_for"]


def test_a_fresh_run_shows_no_stale_stage(tiny_run):
    page = (tiny_run / "report.html").read_text()
    assert 'class="stale"' not in page and "Up to date" in page
    assert 'data-table="results"' in page


def test_regroup_flags_the_old_results_and_train_refreshes_them(copy_run, capsys):
    run = copy_run
    before = (run / "report.html").read_text()
    assert main(["group", str(run), "--budget", "1"]) == 0
    assert "report.html (refreshed)" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert page != before
    parts = sections(page)
    command = f"taskgroup train {run}"
    for key in ("summary", "results"):
        assert 'data-stage="results"' in parts[key] and command in parts[key]
    # nothing of the old 2-network results beside the new single group
    assert 'data-table="results"' not in page and "Δm vs single-task" not in page
    assert "data-delta-m" not in page and 'data-plot="results"' not in page
    assert "<td>g1_t0, g1_t1</td>" not in page  # the old group 2
    assert f"<code>{command}</code> (refreshes the stale results)" in parts["summary"]
    assert main(["train", str(run), "--no-progress"]) == 0
    assert "report.html (refreshed)" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    assert 'class="stale"' not in page and 'data-table="results"' in page
    assert len(GroupResults.load(run / "results.json").groups) == 1


def test_the_same_groups_again_are_not_stale(copy_run):
    assert main(["group", str(copy_run), "--budget", "2", "--sweep"]) == 0
    assert 'class="stale"' not in (copy_run / "report.html").read_text()


def test_another_affinity_makes_the_groups_stale(copy_run):
    affinity = AffinityMatrix.load(copy_run / "affinity.json")
    changed = AffinityMatrix(affinity.values * -1.0, affinity.tasks, **affinity.metadata)
    changed.save(copy_run / "affinity.json")
    parts = sections(render_report(copy_run))
    assert 'data-stage="groups"' in parts["summary"] and 'data-stage="groups"' in parts["groups"]
    assert f"taskgroup group {copy_run} --budget 2 --sweep" in parts["groups"]
    # the results still belong to groups.json's groups, so they stay
    assert 'data-stage="results"' not in parts["summary"]


def test_files_written_before_fingerprints_are_still_checked(copy_run):
    record = json.loads((copy_run / "results.json").read_text())
    del record["trained_for"]
    (copy_run / "results.json").write_text(json.dumps(record))
    groups = json.loads((copy_run / "groups.json").read_text())
    del groups["affinity_fingerprint"]
    (copy_run / "groups.json").write_text(json.dumps(groups))
    old = GroupResults.load(copy_run / "results.json")
    assert old.trained_for == {}
    assert 'class="stale"' not in render_report(copy_run)
    values = np.array(Grouping.load(copy_run / "groups.json").tasks)
    groups["groups"] = [list(values)]  # another grouping, the old results stay on disk
    groups["serves"] = dict.fromkeys(values.tolist(), 0)
    (copy_run / "groups.json").write_text(json.dumps(groups))
    page = render_report(copy_run)
    assert 'data-stage="results"' in page and 'data-table="results"' not in page
