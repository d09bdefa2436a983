"""A measurement schedule that measures the affinity once (``every`` ≥ ``steps``): a
``UserWarning`` from the library, one line on stderr naming --every and --steps from the CLI."""

from __future__ import annotations

import warnings

import pytest

import taskgroup as tg
from taskgroup.cli import main
from taskgroup.training.cotrain import FewMeasurementsWarning

QUIET = ["--no-progress"]


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("taskgroup: warning:")]


@pytest.fixture(scope="module")
def bench():
    return tg.data.get("planted", groups=2, tasks_per_group=2, n_train=128, n_val=32, n_test=32)


def test_the_library_warns_at_the_caller(bench):
    with pytest.warns(UserWarning, match="every=5 with steps=2 measures the affinity once") as w:
        a = tg.measure_affinity(bench, steps=2, every=5, lookahead="sgd", lr=0.1, progress=False)
    assert a.trace_steps == [0]  # what the warning says: one measurement, at step 0
    (warning,) = [r for r in w if issubclass(r.category, FewMeasurementsWarning)]
    assert warning.filename == __file__  # points at the call, not into taskgroup
    assert (warning.message.steps, warning.message.every) == (2, 5)


@pytest.mark.parametrize("steps, every, measured", [(6, 3, [0, 3]), (2, 1, [0, 1])])
def test_no_warning_with_two_measurements_or_more(bench, steps, every, measured):
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewMeasurementsWarning)
        a = tg.measure_affinity(bench, steps=steps, every=every, lookahead="sgd", lr=0.1)
    assert a.trace_steps == measured


def test_the_command_line_names_both_options_in_one_line(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["affinity", "planted", "--every", "50", "--steps", "20", "--out", str(out), *QUIET]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert warning_lines(err) == [
        "taskgroup: warning: --every 50 with --steps 20 measures the affinity once (at step 0 "
        "only), so it is one step's noise; lower --every or raise --steps ([affinity] every "
        "and steps in a recipe)"
    ]
    assert "UserWarning" not in err and "Traceback" not in err
    assert tg.AffinityMatrix.load(out / "affinity.json").trace_steps == [0]


def test_the_command_line_warns_after_the_benchmark_defaults(tmp_path, capsys):
    """--steps 3 alone: planted's own every (5) leaves one measurement."""
    assert tg.data.get("planted").defaults.every == 5
    out = tmp_path / "run"
    assert main(["affinity", "planted", "--steps", "3", "--out", str(out), *QUIET]) == 0
    (line,) = warning_lines(capsys.readouterr().err)
    assert line.startswith("taskgroup: warning: --every 5 with --steps 3 measures")
    assert main(["affinity", "planted", "--steps", "6", "--out", str(out), *QUIET]) == 0
    assert not warning_lines(capsys.readouterr().err)
