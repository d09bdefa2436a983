"""`taskgroup run`, `train` and `report`: every output, resume, and one-line errors (exit 2)
that lose nothing already computed."""

from __future__ import annotations

import json

import pytest

from taskgroup.cli import main
from taskgroup.training.groups import GroupResults
from tests.recipes import tiny

TINY = tiny(seed=1)


def write_recipe(tmp_path, text=TINY, name="tiny.toml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("run")
    out = tmp_path / "out"
    assert main(["run", write_recipe(tmp_path), "--out", str(out), "--no-progress"]) == 0
    return tmp_path, out


def test_run_writes_every_stage_output(finished_run):
    _, out = finished_run
    for name in (
        "manifest.json",
        "affinity.json",
        "groups.json",
        "results.json",
        "report.html",
        "log.jsonl",
        "affinity_heatmap.png",
        "groups_graph.png",
        "score_vs_budget.png",
        "results.png",
    ):
        assert (out / name).exists(), name
    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["stages"]) == {"affinity", "group", "train", "report"}
    assert manifest["run"]["benchmark"] == "planted" and manifest["run"]["seed"] == 1
    results = json.loads((out / "results.json").read_text())
    assert {"delta_m", "delta_m_together", "metrics", "cost"} <= set(results)
    groups = json.loads((out / "groups.json").read_text())["groups"]
    assert [g["tasks"] for g in results["groups"]] == groups
    assert list((out / "tensorboard").rglob("events.out.tfevents.*"))
    stages = {json.loads(line)["stage"] for line in (out / "log.jsonl").read_text().splitlines()}
    assert stages == {"affinity", "train"}
    assert not [p for p in out.rglob(".*.tmp")]  # no temp files left behind


def test_rerun_reuses_affinity_and_trains_nothing_again(finished_run, capsys):
    tmp_path, out = finished_run
    before = GroupResults.load(out / "results.json").to_dict()
    stamps = {p: p.stat().st_mtime_ns for p in (out / "train").rglob("checkpoint.pt")}
    # a lost results.json and one lost per-network result are rebuilt from the checkpoints
    (out / "results.json").unlink()
    next((out / "train").glob("*/result.json")).unlink()
    assert main(["run", write_recipe(tmp_path), "--out", str(out), "--no-progress"]) == 0
    assert "affinity: reusing" in capsys.readouterr().out
    assert GroupResults.load(out / "results.json").to_dict() == before
    assert {p: p.stat().st_mtime_ns for p in (out / "train").rglob("checkpoint.pt")} == stamps


def test_train_with_another_aggregator_and_report(finished_run, capsys):
    _, out = finished_run
    assert main(["train", str(out), "--aggregator", "pcgrad", "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "Δm vs single-task" in printed
    assert GroupResults.load(out / "results.json").aggregator == "pcgrad"
    assert main(["report", str(out)]) == 0
    page = (out / "report.html").read_text()
    assert "pcgrad" in page and page.count("data:image/png;base64,") >= 5


def one_line_error(capsys, message):
    err = capsys.readouterr().err.strip()
    assert err.startswith("taskgroup: error:"), err
    assert err.count("\n") == 0 and "Traceback" not in err
    assert message in err, err


def snapshot(out):
    return {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_groups_file_with_unknown_or_missing_tasks(finished_run, capsys):
    tmp_path, out = finished_run
    before = snapshot(out)
    bad = tmp_path / "bad.json"
    bad.write_text('{"groups": [["g0_t0", "nope"], ["g0_t1", "g1_t0", "g1_t1"]]}')
    assert main(["train", str(out), "--groups", str(bad), "--no-progress"]) == 2
    one_line_error(capsys, "unknown task(s) 'nope'")
    bad.write_text('{"groups": [["g0_t0", "g0_t1"]]}')
    assert main(["train", str(out), "--groups", str(bad), "--no-progress"]) == 2
    one_line_error(capsys, "misses task(s) 'g1_t0', 'g1_t1'")
    bad.write_text("{not json")
    assert main(["train", str(out), "--groups", str(bad), "--no-progress"]) == 2
    one_line_error(capsys, "malformed JSON")
    assert snapshot(out) == before


def test_run_dir_of_another_benchmark_is_refused(finished_run, capsys):
    tmp_path, out = finished_run
    before = snapshot(out)
    other = TINY.replace("seed = 1", "seed = 2")
    recipe = write_recipe(tmp_path, other, "other.toml")
    assert main(["run", recipe, "--out", str(out), "--no-progress"]) == 2
    one_line_error(capsys, "holds a run of another benchmark or task set (seed: 1 there, 2 now)")
    assert snapshot(out) == before


def test_recipe_with_unknown_key_names_it(tmp_path, capsys):
    recipe = write_recipe(tmp_path, TINY.replace("eval_every = 10", "eval_evry = 10"))
    assert main(["run", recipe, "--out", str(tmp_path / "out"), "--no-progress"]) == 2
    one_line_error(capsys, "[train] has unknown key(s) ['eval_evry']; known: ['aggregator'")
    assert not (tmp_path / "out").exists()


def test_unwritable_output_directory(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert (
        main(["run", write_recipe(tmp_path), "--out", str(blocker / "out"), "--no-progress"]) == 2
    )
    one_line_error(capsys, "not a directory (a part of this path is a file)")


def test_train_without_a_recorded_benchmark_asks_for_the_recipe(tmp_path, capsys):
    (tmp_path / "groups.json").write_text('[["g0_t0"]]')
    assert main(["train", str(tmp_path), "--no-progress"]) == 2
    one_line_error(capsys, "pass the recipe with --recipe")


def test_data_root_only_for_file_backed_benchmarks(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["affinity", "planted", "--data-root", str(tmp_path), "--out", str(out)]) == 2
    one_line_error(capsys, "--data-root: benchmark 'planted' reads no files")
    assert not out.exists()


def test_device_is_checked(tmp_path, capsys):
    import torch

    from taskgroup.data.benchmark import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="'nope' is not a torch device"):
        resolve_device("nope")
    if not torch.cuda.is_available():
        out = tmp_path / "out"
        for command in ("affinity", "run"):
            args = [command, "planted", "--device", "cuda", "--out", str(out), "--no-progress"]
            assert main(args) == 2
            one_line_error(capsys, "CUDA is not available on this machine")
            assert not out.exists()


def test_run_with_another_signal(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", write_recipe(tmp_path), "--out", str(out), "--no-progress"]
    assert main([*args, "--lookahead", "cosine"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["affinity"]["recipe"]["affinity"]["lookahead"] == "cosine"
    assert main([*args, "--lookahead", "adam"]) == 2
    one_line_error(capsys, "--lookahead must be one of")
