"""The taskgroup command line: outputs of `affinity`, one-line errors with exit code 2."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.cli import global_options_first, main

FAST = ["planted", "--steps", "6", "--every", "3", "--no-progress"]


def test_affinity_writes_every_output(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["affinity", *FAST, "--out", str(out), "--seed", "3"]) == 0
    printed = capsys.readouterr().out
    assert "Top 5 helping pairs" in printed and "Top 5 hurting pairs" in printed
    a = AffinityMatrix.load(out / "affinity.json")
    assert len(a.tasks) == 9 and a.trace_steps == [0, 3]
    manifest = json.loads((out / "manifest.json").read_text())
    stage = manifest["stages"]["affinity"]
    assert stage["recipe"]["seed"] == 3 and stage["recipe"]["affinity"]["steps"] == 6
    assert stage["versions"]["torch"]
    for png in ("affinity_heatmap.png", "affinity_over_training.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files


def test_default_recipe_with_task_subset(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "affinity",
        "--tasks",
        "left_class,sum",
        "--steps",
        "2",
        "--every",
        "1",
        "--lookahead",
        "first_order",
        "--no-progress",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    a = AffinityMatrix.load(out / "affinity.json")
    assert a.tasks == ["left_class", "sum"] and a.metadata["lookahead"] == "first_order"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--tasks", "g0_t0,nope"], "unknown task(s) 'nope'"),
        (["--every", "0"], "--every must be a positive integer or unset, got 0"),
        (["--steps", "-1"], "--steps must be a positive integer or unset, got -1"),
        (["--lookahead", "adam"], "--lookahead must be one of"),
        (["--benchmark", "imagenet"], "unknown benchmark 'imagenet'"),
        (["--seed", "-1"], "--seed must be a non-negative integer, got -1"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "run"
    assert main(["affinity", *FAST, *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("taskgroup: error:")
    assert message in err
    assert not out.exists()


@pytest.mark.parametrize(
    "recipe, message",
    [
        ("seed = 0\n[benchmark\n", "malformed TOML"),
        ('[benchmark]\nname = "planted"\n[affinity]\nstep = 3\n', "unknown key(s) ['step']"),
        ('[benchmark]\nname = "planted"\ncolour = 1\n', "no option(s) ['colour']"),
        ('[benchmark]\nname = "nope"\n', "unknown benchmark 'nope'"),
        (
            'seed = "x"\n[benchmark]\nname = "planted"\n',
            "seed must be a non-negative integer, got 'x'",
        ),
        ("[benchmark]\n", "needs name"),
        ('[benchmark]\nname = "planted"\n[grouping]\n', "unknown table"),
    ],
)
def test_bad_recipes_are_named(tmp_path, capsys, recipe, message):
    path = tmp_path / "recipe.toml"
    path.write_text(recipe)
    out = tmp_path / "run"
    assert main(["affinity", str(path), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert message in err and str(path) in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["affinity", "run"])
def test_a_negative_seed_names_the_option(tmp_path, capsys, command):
    out = tmp_path / "run"
    assert main([command, "planted", "--seed", "-1", "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "taskgroup: error: --seed must be a non-negative integer, got -1"
    assert not out.exists()


def test_unknown_recipe_lists_the_known_ones(capsys):
    assert main(["affinity", "no-such-recipe"]) == 2
    assert "multidigits" in capsys.readouterr().err


def test_console_script_has_no_traceback(tmp_path):
    run = [sys.executable, "-m", "taskgroup.cli", "affinity", *FAST, "--out", str(tmp_path)]
    ok = subprocess.run(run, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    bad = subprocess.run([*run, "--every", "0"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert (
        bad.stderr.strip() == "taskgroup: error: --every must be a positive integer or unset, got 0"
    )


def test_threads_option(tmp_path, capsys):
    from threadpoolctl import threadpool_info, threadpool_limits

    assert main(["--threads", "0", "affinity", *FAST, "--out", str(tmp_path / "a")]) == 2
    assert capsys.readouterr().err.strip() == "taskgroup: error: --threads must be >= 1, got 0"
    with threadpool_limits(2):  # restored on exit
        assert main(["--threads", "1", "affinity", *FAST, "--out", str(tmp_path / "b")]) == 0
        blas = {pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"}
        assert blas == {1}  # numpy's BLAS as well as torch


def test_usage_errors_exit_2_without_traceback(capsys):
    assert main(["affinity", "--bogus"]) == 2
    err = capsys.readouterr().err
    assert "No such option: --bogus" in err and "Traceback" not in err
    assert main(["no-such-command"]) == 2
    assert main(["--help"]) == 0


def test_global_options_after_the_subcommand(tmp_path):
    assert main(["affinity", *FAST, "--out", str(tmp_path / "a"), "--threads", "1"]) == 0
    assert main(["affinity", *FAST, "--threads=1", "--out", str(tmp_path / "b")]) == 0
    assert global_options_first(["run", "x.toml", "--threads", "2", "--out", "o"]) == [
        "--threads",
        "2",
        "run",
        "x.toml",
        "--out",
        "o",
    ]


def test_an_os_error_is_one_plain_sentence(tmp_path, capsys):
    (tmp_path / "afile").write_text("")
    assert main(["affinity", *FAST, "--out", str(tmp_path / "afile" / "sub")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"taskgroup: error: cannot use {tmp_path / 'afile' / 'sub'}: not a directory "
        f"(a part of this path is a file)"
    )


def test_an_interrupt_says_how_to_resume(tmp_path):
    """Ctrl-C in a long co-training run: exit code 130 and one line on how to resume."""
    command = [sys.executable, "-m", "taskgroup.cli", "affinity", "planted", "--steps", "100000"]
    process = subprocess.Popen(
        [*command, "--out", str(tmp_path), "--no-progress"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while not (tmp_path / "log.jsonl").exists() and time.monotonic() < deadline:
        time.sleep(0.2)  # the co-training run has started writing its event log
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130
    assert "run the same command again to resume" in err and "Traceback" not in err
