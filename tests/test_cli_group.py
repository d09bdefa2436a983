"""``taskgroup group``: outputs, the manifest stage, and one-line errors that write nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import taskgroup as tg
from taskgroup.cli import main

TASKS = ["a", "b", "c", "d", "e"]
PNG = b"\x89PNG\r\n\x1a\n"


def run_dir(tmp_path, seed: int = 0):
    out = tmp_path / "run"
    values = np.random.default_rng(seed).normal(size=(5, 5)) * 0.01
    tg.AffinityMatrix(values, TASKS, lookahead="sgd").save(out / "affinity.json")
    return out


def test_group_writes_groups_plot_and_manifest(tmp_path, capsys):
    out = run_dir(tmp_path)
    (out / "manifest.json").write_text(json.dumps({"stages": {"affinity": {"seconds": 1}}}))
    assert main(["group", str(out), "--budget", "2"]) == 0
    printed = capsys.readouterr().out
    g = tg.Grouping.load(out / "groups.json")
    expected = tg.select_groups(tg.AffinityMatrix.load(out / "affinity.json"), 2)
    assert g.groups == expected.groups and g.score == expected.score and g.optimal
    for t in TASKS:
        assert f"  {t}  " in printed
    assert "group 1:" in printed and "score" in printed
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"affinity", "group"}  # history kept
    stage = manifest["stages"]["group"]
    assert stage["budget"] == 2 and stage["method"] == "auto" and stage["method_used"] == "exact"
    assert stage["outputs"] == ["groups.json", "groups_graph.png"]
    assert (out / "groups_graph.png").read_bytes()[:8] == PNG
    assert not (out / "score_vs_budget.png").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files


def test_group_sweep_from_a_json_file_with_out(tmp_path, capsys):
    out = run_dir(tmp_path, seed=1)
    target = tmp_path / "elsewhere"
    args = [
        "group",
        str(out / "affinity.json"),
        "--budget",
        "3",
        "--sweep",
        "--partition",
        "--singleton-score",
        "0",
        "--method",
        "milp",
        "--out",
        str(target),
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    data = json.loads((target / "groups.json").read_text())
    assert [s["budget"] for s in data["sweep"]] == [1, 2, 3, 4, 5]
    scores = [s["score"] for s in data["sweep"]]
    assert scores == sorted(scores) and data["score"] == scores[2]
    assert data["partition"] is True and data["singleton_score"] == 0.0
    assert data["method"] == "milp" and data["affinity"] == str(out / "affinity.json")
    members = [t for g in data["groups"] for t in g]
    assert sorted(members) == TASKS  # disjoint and covering
    assert "budget  score" in printed
    assert (target / "score_vs_budget.png").read_bytes()[:8] == PNG
    assert json.loads((target / "manifest.json").read_text())["stages"]["group"]["sweep"]
    assert not (out / "groups.json").exists()


def bad_files(tmp_path):
    good = run_dir(tmp_path)
    cases = {
        "not json": ("{oops", "malformed JSON"),
        "not affinity": (json.dumps({"format": "x"}), "not a taskgroup affinity file"),
    }
    data = json.loads((good / "affinity.json").read_text())
    data["values"] = [[0.0, 1.0], [1.0, 0.0], [0.0, 0.0]]
    cases["non-square"] = (json.dumps(data), "square")
    data = json.loads((good / "affinity.json").read_text())
    data["values"][0][1] = "nan"
    cases["non-finite"] = (json.dumps(data).replace('"nan"', "NaN"), "NaN is not a JSON number")
    data = json.loads((good / "affinity.json").read_text())
    data["tasks"] = ["a", "b", "c", "d"]
    cases["task names"] = (json.dumps(data), "there are 4 tasks")
    return cases


@pytest.mark.parametrize(
    "case", ["not json", "not affinity", "non-square", "non-finite", "task names"]
)
def test_bad_affinity_file_is_one_line_and_writes_nothing(tmp_path, capsys, case):
    text, message = bad_files(tmp_path)[case]
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "affinity.json").write_text(text)
    assert main(["group", str(bad), "--budget", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskgroup: error:") and err.count("\n") == 0
    assert message in err and str(bad / "affinity.json") in err
    assert sorted(p.name for p in bad.iterdir()) == ["affinity.json"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--budget", "0"], "--budget must be a positive integer, got 0"),
        (["--budget", "6"], "budget must lie in 1..5"),
        (["--budget", "2", "--method", "simulated"], "method must be one of"),
        (
            ["--budget", "2", "--singleton-score", "inf"],
            "--singleton-score must be a finite number",
        ),
        (["--budget", "2", "--time-limit", "-1"], "--time-limit must be a positive number"),
        (["--budget", "2", "--certify", "0"], "--certify takes a positive number of seconds"),
    ],
)
def test_bad_options_are_one_line_and_write_nothing(tmp_path, capsys, args, message):
    out = run_dir(tmp_path)
    assert main(["group", str(out), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskgroup: error:") and err.count("\n") == 0 and message in err
    assert sorted(p.name for p in out.iterdir()) == ["affinity.json"]


def test_missing_input_and_corrupt_manifest(tmp_path, capsys):
    assert main(["group", str(tmp_path / "nothing"), "--budget", "2"]) == 2
    assert "no such file or directory" in capsys.readouterr().err
    out = run_dir(tmp_path)
    (out / "manifest.json").write_text("[1, 2]")
    assert main(["group", str(out), "--budget", "2"]) == 2
    assert "not a taskgroup manifest" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["affinity.json", "manifest.json"]
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["group", str(empty), "--budget", "2"]) == 2
    assert "affinity.json: no such file" in capsys.readouterr().err


def test_console_script_has_no_traceback(tmp_path):
    out = run_dir(tmp_path)
    command = [sys.executable, "-m", "taskgroup.cli", "group", str(out)]
    ok = subprocess.run(
        [*command, "--budget", "2", "--method", "milp"], capture_output=True, text=True, timeout=120
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("2 group(s)") or ok.stdout.startswith("1 group(s)")
    assert "HiGHS" not in ok.stdout  # the solver's banner stays out of the user's output
    bad = subprocess.run([*command, "--budget", "6"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert (
        bad.stderr.strip()
        == "taskgroup: error: budget must lie in 1..5 (the number of tasks), got 6"
    )


def test_group_from_the_relative_affinity(tmp_path, capsys):
    out = tmp_path / "run"
    values = np.random.default_rng(0).normal(size=(5, 5)) * 0.01 + np.eye(5) * 0.05
    tg.AffinityMatrix(values, TASKS, lookahead="sgd").save(out / "affinity.json")
    assert main(["group", str(out), "--budget", "2", "--normalize", "source"]) == 0
    record = json.loads((out / "groups.json").read_text())
    assert record["normalize"] == "source"
    relative = tg.AffinityMatrix.load(out / "affinity.json").relative()
    assert record["score"] == pytest.approx(tg_score(relative, record["groups"]))
    assert main(["group", str(out), "--budget", "2", "--normalize", "target"]) == 2
    assert "normalize must be one of" in capsys.readouterr().err


def tg_score(affinity, groups):
    from taskgroup.grouping import score

    return score(affinity, [tuple(g) for g in groups])


def test_group_certify_reports_rounds_and_keeps_a_valid_bound(tmp_path, capsys):
    out = tmp_path / "run"
    tasks = [f"t{j}" for j in range(8)]
    values = np.random.default_rng(5).normal(size=(8, 8)) * 0.01  # greedy is 5% short here
    tg.AffinityMatrix(values, tasks, lookahead="sgd").save(out / "affinity.json")
    greedy = tg.select_groups(values, 3, method="greedy", tasks=tasks)
    assert not greedy.optimal
    args = ["group", str(out), "--budget", "3", "--method", "greedy", "--certify", "60"]
    assert main(args) == 0
    g = tg.Grouping.load(out / "groups.json")
    assert g.groups == greedy.groups and g.score == greedy.score
    assert greedy.score < tg.select_groups(values, 3, tasks=tasks).score <= g.bound + 1e-12
    assert g.bound <= greedy.bound
    assert "certificate round 1: bound" in capsys.readouterr().err
