"""``taskgroup group --method hoa``: selection from a pair table, its cost, and its errors."""

from __future__ import annotations

import json

import numpy as np

import taskgroup as tg
from taskgroup.cli import main
from taskgroup.grouping import PairTable

TASKS = ["a", "b", "c", "d"]


def pair_table(path, seed: int = 0) -> PairTable:
    rng = np.random.default_rng(seed)
    single = {t: float(rng.uniform(0.5, 2)) for t in TASKS}
    pair = {
        t: {u: single[t] * float(rng.uniform(0.7, 1.3)) for u in TASKS if u != t} for t in TASKS
    }
    table = PairTable(TASKS, single, pair, cost={"networks": 10, "steps": 500, "seconds": 3.5})
    table.save(path)
    return table


def test_hoa_reads_dir_pairs_json_and_prints_the_cost(tmp_path, capsys):
    run = tmp_path / "run"
    table = pair_table(run / "pairs.json")
    assert main(["group", str(run), "--budget", "2", "--method", "hoa", "--sweep"]) == 0
    printed = capsys.readouterr().out
    assert "method hoa" in printed and "10 networks, 500 steps, 3.5 s" in printed
    data = json.loads((run / "groups.json").read_text())
    expected = tg.select_groups(table, 2, method="hoa")
    assert data["groups"] == [list(g) for g in expected.groups] and data["method"] == "hoa"
    assert data["pairs"] == str(run / "pairs.json") and "affinity" not in data
    stage = json.loads((run / "manifest.json").read_text())["stages"]["group"]
    assert stage["method"] == "hoa" and stage["pairs"] == str(run / "pairs.json")
    assert (run / "groups_graph.png").exists() and (run / "score_vs_budget.png").exists()


def test_hoa_with_pairs_elsewhere(tmp_path, capsys):
    table = pair_table(tmp_path / "table.json", seed=1)
    run = tmp_path / "run"
    run.mkdir()
    args = ["group", str(run), "--budget", "3", "--method", "hoa", "--pairs"]
    assert main([*args, str(tmp_path / "table.json"), "--partition"]) == 0
    g = tg.Grouping.load(run / "groups.json")
    assert g.groups == tg.select_groups(table, 3, method="hoa", partition=True).groups


def test_hoa_errors_are_one_line_and_write_nothing(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    assert main(["group", str(run), "--budget", "2", "--method", "hoa"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskgroup: error: --method hoa needs a pair table")
    pair_table(tmp_path / "p.json")
    assert main(["group", str(run), "--budget", "2", "--pairs", str(tmp_path / "p.json")]) == 2
    assert "--pairs is read by --method hoa only" in capsys.readouterr().err
    (run / "pairs.json").write_text('{"format": "other"}')
    assert main(["group", str(run), "--budget", "2", "--method", "hoa"]) == 2
    err = capsys.readouterr().err.strip()
    assert "not a taskgroup pair table" in err and err.count("\n") == 0
    good = ["--pairs", str(tmp_path / "p.json"), "--singleton-score", "0"]
    assert main(["group", str(run), "--budget", "2", "--method", "hoa", *good]) == 2
    assert "leave singleton_score=None" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["pairs.json"]
