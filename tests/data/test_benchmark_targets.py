"""A Benchmark refuses, at construction, splits that lack a target for one of its tasks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from taskgroup.data.benchmark import Benchmark, Split, StreamingSplit, target_names
from taskgroup.data.heads import make_task
from taskgroup.data.planted import build_model
from taskgroup.tasks import TaskSet


def split(names, rows=8):
    return Split(torch.zeros(rows, 32), {n: torch.zeros(rows) for n in names})


def benchmark(train, val, test, tasks=("a", "b")):
    return Benchmark(
        name="mine",
        tasks=TaskSet(make_task(n, "regression") for n in tasks),
        train=train,
        val=val,
        test=test,
        model_factory=build_model,
    )


def test_every_split_holding_every_task_is_accepted():
    bench = benchmark(split("ab"), split("ab"), split("abc"))  # extra targets are allowed
    assert bench.tasks.names == ["a", "b"]
    assert bench.select(["b"]).test.targets.keys() == {"b"}


@pytest.mark.parametrize("which", ["train", "val", "test"])
def test_a_split_without_a_tasks_target_is_refused(which):
    splits = {"train": split("ab"), "val": split("ab"), "test": split("ab")}
    splits[which] = split("a")
    with pytest.raises(ValueError) as error:
        benchmark(**splits)
    assert str(error.value) == (
        f"benchmark 'mine': the {which} split has no target for task(s) ['b']; "
        f"its targets are ['a']"
    )


def test_file_backed_splits_are_checked_by_their_names():
    def read(rows, names):
        return torch.zeros(len(rows), 32), {n: torch.zeros(len(rows)) for n in names}

    full, partial = StreamingSplit(read, 8, ("a", "b")), StreamingSplit(read, 8, ("b",))
    assert target_names(full) == ["a", "b"]
    benchmark(full, full, full)
    with pytest.raises(ValueError, match=r"the val split has no target for task\(s\) \['a'\]"):
        benchmark(full, partial, full)


def test_a_split_that_does_not_say_its_targets_is_not_guessed():
    @dataclasses.dataclass(frozen=True)
    class Opaque:
        size: int = 8

        def __len__(self):
            return self.size

    assert target_names(Opaque()) is None
    assert target_names(split("ab")) == ["a", "b"]
    benchmark(Opaque(), split("ab"), split("ab"))
