"""Progress bars and logging of the long library calls: tqdm bars on when stderr is a terminal
(``progress=None``), forced by ``True``, silenced by ``False``; records through the
``taskgroup`` logger, which carries only a NullHandler."""

from __future__ import annotations

import io
import logging
import math

import numpy as np
import pytest

import taskgroup as tg

FAST = {"steps": 20, "eval_every": 10, "batch_size": 32}


@pytest.fixture(scope="module")
def bench():
    return tg.data.get("planted", n_train=128, n_val=32, n_test=32, groups=2, tasks_per_group=2)


class Terminal(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _calls(bench, tmp_path):
    """Each long public call on a tiny problem, as ``progress -> None``."""
    affinity = tg.AffinityMatrix(np.zeros((4, 4)), bench.tasks.names)
    two = bench.select(bench.tasks.names[:2])
    tasks = bench.tasks.names
    return {
        "measure_affinity": lambda p: tg.measure_affinity(bench, steps=4, every=2, progress=p),
        "train_group": lambda p: tg.train_group(bench, tasks, tg.TrainSettings(**FAST), progress=p),
        "train_groups": lambda p: tg.train_groups(
            bench, [tasks], baselines=False, progress=p, **FAST
        ),
        "pair_results": lambda p: tg.pair_results(two, FAST, progress=p),
        "verified_selection": lambda p: tg.verified_selection(
            bench, affinity, 2, shortlist=2, fraction=0.5, settings=FAST, progress=p
        ),
    }


CALLS = ["measure_affinity", "train_group", "train_groups", "pair_results", "verified_selection"]


@pytest.mark.parametrize("name", CALLS)
def test_bars_follow_the_terminal_unless_forced_or_silenced(bench, tmp_path, monkeypatch, name):
    call = _calls(bench, tmp_path)[name]
    for progress, tty, shown in [
        (None, False, False),  # the default, stderr a pipe or a file: silent
        (True, False, True),
        (None, True, True),  # the default at a terminal: bars
        (False, True, False),
    ]:
        stream = Terminal() if tty else io.StringIO()
        monkeypatch.setattr("sys.stderr", stream)
        call(progress)
        written = stream.getvalue()
        assert ("it/s" in written or "/s]" in written) == shown, (progress, tty, written[-200:])


def test_the_package_logger_has_only_a_null_handler():
    package = logging.getLogger("taskgroup")
    assert [type(h) for h in package.handlers] == [logging.NullHandler]
    for module in ["taskgroup.training.trainer", "taskgroup.training.cotrain"]:
        child = logging.getLogger(module)
        assert child.handlers == [] and child.propagate and child.parent is package


def _records(caplog, level=logging.INFO):
    return [r for r in caplog.records if r.name.startswith("taskgroup") and r.levelno == level]


def test_a_network_logs_its_start_and_its_best_criterion(bench, caplog):
    caplog.set_level(logging.INFO, logger="taskgroup")
    tasks = bench.tasks.names[:2]
    result = tg.train_group(bench, tasks, tg.TrainSettings(**FAST), progress=False)
    messages = [r.getMessage() for r in _records(caplog)]
    name = "+".join(tasks)
    assert {r.name for r in _records(caplog)} == {"taskgroup.training.trainer"}
    assert messages[0] == f"network {name}: training with mean up to step 20 of 20"
    assert messages[1].startswith(
        f"network {name}: finished at step {result.steps}, best criterion "
        f"{result.criterion:.4f} at step {result.best_step}"
    )
    assert not _records(caplog, logging.WARNING)


def test_a_network_that_never_improves_warns(bench, caplog):
    caplog.set_level(logging.INFO, logger="taskgroup")
    settings = tg.TrainSettings(optimizer="sgd", lr=1e-30, **FAST)  # updates below float32 eps
    result = tg.train_group(bench, bench.tasks.names[:2], settings, progress=False)
    assert result.best_step == 0
    (warning,) = _records(caplog, logging.WARNING)
    assert "no evaluation improved on the initialisation in 20 steps" in warning.getMessage()


def test_measure_affinity_logs_steps_measurements_and_seconds(bench, caplog):
    caplog.set_level(logging.INFO, logger="taskgroup")
    a = tg.measure_affinity(bench, steps=7, every=3, lookahead="sgd", lr=0.1, progress=False)
    (record,) = _records(caplog)
    assert record.name == "taskgroup.training.cotrain"
    assert record.getMessage() == (
        f"affinity (sgd) of 4 tasks measured: 7 steps, {math.ceil(7 / 3)} measurements, "
        f"{a.metadata['seconds']:.1f} s"
    )
    assert a.trace_steps == [0, 3, 6] and not _records(caplog, logging.WARNING)


def test_measure_affinity_warns_when_every_leaves_one_measurement(bench, caplog):
    caplog.set_level(logging.INFO, logger="taskgroup")
    a = tg.measure_affinity(bench, steps=4, every=5, progress=False)
    assert a.trace_steps == [0]
    (warning,) = _records(caplog, logging.WARNING)
    assert warning.getMessage().startswith("every=5 with steps=4 measures the affinity once")


def test_train_groups_logs_the_groups_and_their_delta_m(bench, caplog):
    caplog.set_level(logging.INFO, logger="taskgroup")
    groups = [tuple(bench.tasks.names[:2]), tuple(bench.tasks.names[2:])]
    results = tg.train_groups(bench, groups, **FAST, progress=False)
    final = _records(caplog)[-1]
    assert final.name == "taskgroup.training.groups"
    assert f"Δm {results.delta_m():+.2f}% against each task alone" in final.getMessage()
    assert "g0_t0+g0_t1, g1_t0+g1_t1" in final.getMessage()


def test_a_second_call_says_it_read_the_network_back(bench, tmp_path, caplog):
    tasks = bench.tasks.names[:2]
    tg.train_group(bench, tasks, tg.TrainSettings(**FAST), directory=tmp_path, progress=False)
    caplog.set_level(logging.INFO, logger="taskgroup")
    caplog.clear()  # the first call's records, caught when an earlier test left INFO enabled
    tg.train_group(bench, tasks, tg.TrainSettings(**FAST), directory=tmp_path, progress=False)
    (record,) = _records(caplog)
    assert record.getMessage() == f"network g0_t0+g0_t1: already trained, read back from {tmp_path}"


def test_pair_results_and_verified_selection_log_what_they_did(bench, caplog):
    caplog.set_level(logging.INFO, logger="taskgroup")
    two = bench.select(bench.tasks.names[:2])
    table = tg.pair_results(two, FAST, progress=False)
    affinity = tg.AffinityMatrix(np.zeros((4, 4)), bench.tasks.names)
    chosen = tg.verified_selection(
        bench, affinity, 2, shortlist=2, fraction=0.5, settings=FAST, progress=False
    )
    by_module = {r.name: r.getMessage() for r in _records(caplog)}
    assert by_module["taskgroup.training.pair_trainings"].startswith(
        f"pair table of 2 tasks: 3 networks, {table.cost['steps']} steps"
    )
    groups = ", ".join("+".join(g) for g in chosen.groups)
    assert by_module["taskgroup.training.verified"].startswith(
        f"verified selection of 2 candidates chose {groups}"
    )
