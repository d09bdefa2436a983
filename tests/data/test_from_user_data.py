"""``Benchmark.from_tensors`` and ``Benchmark.from_datasets``: the same results as the same rows
in memory, every mismatch refused at construction, and Datasets streamed, never read whole.

The reference is the ``multidigits`` benchmark's own in-memory ``Split`` s (built by its loader,
not by the code under test). Results are compared bit for bit: the streamed batches hold the
same rows in the same order, with the same dtypes, so the same arithmetic runs on them.
"""

from __future__ import annotations

import pickle
import re
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from taskgroup.data import multidigits
from taskgroup.data.benchmark import Benchmark, Split, StreamingSplit, batch_orders
from taskgroup.data.heads import make_heads, make_task
from taskgroup.models import MultiTaskModel
from taskgroup.settings import TrainSettings
from taskgroup.tasks import Task, TaskSet
from taskgroup.training.cotrain import measure_affinity
from taskgroup.training.trainer import train_group

TASKS = ["left_class", "left_parity", "sum", "right_ge5"]
SPLITS = ("train", "val", "test")


@pytest.fixture(scope="module")
def memory() -> Benchmark:
    return multidigits.load(pairs=(192, 64, 48)).select(TASKS)


class Items(torch.utils.data.Dataset):
    """The rows of a :class:`Split` as ``(input, {task: target})`` items; records every index it
    is asked for and refuses anything but one row at a time."""

    def __init__(self, split: Split):
        self.inputs = split.inputs
        self.targets = dict(split.targets)
        self.asked: list[int] = []

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, i):
        if not isinstance(i, int):
            raise TypeError(f"one row at a time, got {type(i).__name__}")
        self.asked.append(i)
        return self.inputs[i], {name: t[i] for name, t in self.targets.items()}


class Batched(Items):
    """:class:`Items` with torch's batched ``__getitems__`` returning the collated batch; refuses
    more rows than ``most`` at once."""

    most = 64

    def __getitems__(self, indices: list[int]):
        if len(indices) > self.most:
            raise AssertionError(f"asked for {len(indices)} rows at once")
        self.asked += indices
        index = torch.as_tensor(indices)
        return self.inputs[index], {name: t[index] for name, t in self.targets.items()}


class ItemList(Items):
    """:class:`Items` whose ``__getitems__`` returns a list of items (as torch's ``Subset``)."""

    def __getitems__(self, indices: list[int]):
        return [self[i] for i in indices]


def pair(split: Split) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    return split.inputs, dict(split.targets)


def from_tensors(memory: Benchmark, **splits) -> Benchmark:
    data = {s: pair(getattr(memory, s)) for s in SPLITS} | splits
    return Benchmark.from_tensors(**data, tasks=memory.tasks, model_factory=memory.model_factory)


def from_datasets(memory: Benchmark, dataset=Items, **splits) -> Benchmark:
    data = {s: dataset(getattr(memory, s)) for s in SPLITS} | splits
    return Benchmark.from_datasets(**data, tasks=memory.tasks, model_factory=memory.model_factory)


def built(memory: Benchmark) -> dict[str, Benchmark]:
    return {
        "tensors": from_tensors(memory),
        "items": from_datasets(memory),
        "list of items": from_datasets(memory, ItemList),
        "batched": from_datasets(memory, Batched),
    }


# --- the same results as in memory -------------------------------------------------------------


def test_measure_affinity_equals_the_in_memory_benchmark_bit_for_bit(memory):
    reference = measure_affinity(memory, steps=12, every=3, batch_size=32, seed=1)
    other_batches = measure_affinity(memory, steps=12, every=3, batch_size=32, seed=2)
    assert not np.array_equal(other_batches.values, reference.values)  # the comparison has teeth
    for name, bench in built(memory).items():
        affinity = measure_affinity(bench, steps=12, every=3, batch_size=32, seed=1)
        assert np.array_equal(affinity.values, reference.values), name
        assert np.array_equal(affinity.trace, reference.trace), name


def test_train_group_equals_the_in_memory_benchmark_bit_for_bit(memory):
    settings = TrainSettings(steps=24, eval_every=8, batch_size=32, seed=3, aggregator="mgda")
    reference = train_group(memory, TASKS[1:], settings)
    assert len(reference.history) == 4  # evaluated at 0, 8, 16, 24: the comparison has teeth
    for name, bench in built(memory).items():
        result = train_group(bench, TASKS[1:], settings)
        for field in ("history", "best_step", "criterion", "val", "test"):
            assert getattr(result, field) == getattr(reference, field), (name, field)


def test_from_tensors_keeps_the_tensors_and_records_sizes(memory):
    bench = from_tensors(memory, info={"owner": "me"})
    assert bench.train.inputs is memory.train.inputs
    assert bench.tasks.names == TASKS and bench.name == "user"
    assert bench.info == {
        "source": "tensors",
        "sizes": {"train": 192, "val": 64, "test": 48},
        "input_shape": [1, 8, 16],
        "owner": "me",
    }
    assert from_datasets(memory).info["source"] == "datasets"


def test_tasks_may_be_a_list_and_targets_numpy_arrays(memory):
    data = {
        s: (
            getattr(memory, s).inputs.numpy(),
            {n: t.numpy() for n, t in pair(getattr(memory, s))[1].items()},
        )
        for s in SPLITS
    }
    bench = Benchmark.from_tensors(
        **data, tasks=list(memory.tasks), model_factory=memory.model_factory
    )
    assert isinstance(bench.tasks, TaskSet)
    assert torch.equal(bench.val.targets["sum"], memory.val.targets["sum"])


# --- streaming ---------------------------------------------------------------------------------


def test_a_dataset_is_read_a_batch_at_a_time_in_the_in_memory_order(memory):
    datasets = {s: Batched(getattr(memory, s)) for s in SPLITS}
    bench = Benchmark.from_datasets(
        **datasets, tasks=memory.tasks, model_factory=memory.model_factory
    )
    # construction reads the first item of each split and train's first two rows, no more
    assert all(len(ds.asked) <= 4 for ds in datasets.values())
    assert set(datasets["val"].asked) == {0} and set(datasets["train"].asked) == {0, 1}
    train = datasets["train"]
    train.asked.clear()
    drawn = list(islice(bench.train.batches(48, seed=5, start=3), 6))
    expected = list(islice(batch_orders(192, 48, seed=5, start=3), 6))
    assert train.asked == torch.cat(expected).tolist()
    for (inputs, targets), rows in zip(drawn, expected, strict=True):
        assert torch.equal(inputs, memory.train.inputs[rows])
        assert all(torch.equal(targets[n], memory.train.targets[n][rows]) for n in TASKS)
    datasets["test"].asked.clear()
    chunks = list(bench.test.chunks(20))
    assert datasets["test"].asked == list(range(48))
    assert [len(c[0]) for c in chunks] == [20, 20, 8]


def test_a_selected_split_collates_only_its_tasks(memory):
    dataset = Items(memory.train)
    split = from_datasets(memory, train=dataset).select(["sum", "left_class"]).train
    inputs, targets = split.rows([5, 2])
    assert list(targets) == ["sum", "left_class"]
    assert torch.equal(targets["sum"], memory.train.targets["sum"][[5, 2]])
    assert torch.equal(inputs, memory.train.inputs[[5, 2]])


def test_a_streamed_benchmark_pickles(memory):
    bench = pickle.loads(pickle.dumps(from_datasets(memory, Batched)))
    assert torch.equal(bench.val.rows([3])[0], memory.val.inputs[[3]])


def test_dataset_items_may_hold_numbers_and_arrays():
    class Plain(torch.utils.data.Dataset):
        def __len__(self):
            return 6

        def __getitem__(self, i):
            return np.full(3, i, dtype=np.float32), {"y": float(i), "c": i % 2}

    tasks = [Task("y", F.mse_loss), make_task("c", "classification")]
    bench = Benchmark.from_datasets(
        train=Plain(), val=Plain(), test=Plain(), tasks=tasks, model_factory=two_heads
    )
    inputs, targets = bench.train.rows([4, 1])
    assert torch.equal(inputs, torch.tensor([[4.0] * 3, [1.0] * 3]))
    assert targets["y"].dtype == torch.float32 and targets["y"].tolist() == [4.0, 1.0]
    assert targets["c"].dtype == torch.int64 and targets["c"].tolist() == [0, 1]


def two_heads(tasks: TaskSet) -> MultiTaskModel:
    """Inputs ``[B, 3]`` -> ``{"y": [B], "c": [B, 2]}``."""
    return MultiTaskModel(torch.nn.Linear(3, 4), make_heads(tasks, 4, classes=2))


# --- bad input, refused at construction --------------------------------------------------------


def replaced(split: Split, name: str, value) -> tuple[torch.Tensor, dict]:
    inputs, targets = pair(split)
    if value is None:
        del targets[name]
    else:
        targets[name] = value
    return inputs, targets


BAD_TENSORS = {
    "a task without a target": (
        lambda m: {"val": replaced(m.val, "sum", None)},
        "split 'val' has no target for task(s) ['sum']",
    ),
    "a target for no task": (
        lambda m: {"train": replaced(m.train, "age", torch.zeros(192))},
        "split 'train' has target(s) ['age'] for no task; the tasks are",
    ),
    "row counts differ": (
        lambda m: {"test": replaced(m.test, "left_parity", m.test.targets["left_parity"][:-1])},
        "split 'test': target 'left_parity' has 47 rows, the inputs have 48",
    ),
    "float targets for a classification task": (
        lambda m: {"train": replaced(m.train, "left_class", m.train.targets["left_class"].float())},
        "split 'train': task 'left_class' is a classification task, so its targets are class "
        "indices of an integer dtype (e.g. torch.int64); got [192] float32",
    ),
    "integer targets for a binary task": (
        lambda m: {"val": replaced(m.val, "right_ge5", m.val.targets["right_ge5"].long())},
        "split 'val': task 'right_ge5' is a binary task (binary cross-entropy on a logit), so its "
        "targets are 0/1 of a floating dtype (e.g. torch.float32); got [64] int64",
    ),
    "a regression target whose shape differs between splits": (
        lambda m: {"val": replaced(m.val, "sum", m.val.targets["sum"][:, None])},
        "split 'val': target 'sum' has rows of shape [1] and dtype torch.float32, but 'train' "
        "has [] and torch.float32",
    ),
    "inputs whose dtype differs between splits": (
        lambda m: {"test": (m.test.inputs.double(), dict(m.test.targets))},
        "split 'test': inputs has rows of shape [1, 8, 16] and dtype torch.float64, but 'train' "
        "has [1, 8, 16] and torch.float32",
    ),
    "an empty split": (
        lambda m: {"test": (m.test.inputs[:0], {n: t[:0] for n, t in m.test.targets.items()})},
        "split 'test' is empty: its inputs have 0 rows",
    ),
    "a split that is not a pair": (
        lambda m: {"val": m.val.inputs},
        "split 'val' must be (inputs, {task name: targets}), got a tensor [64, 1, 8, 16] float32",
    ),
    "targets the loss would broadcast": (
        lambda m: {
            s: replaced(getattr(m, s), "sum", getattr(m, s).targets["sum"][:, None]) for s in SPLITS
        },
        "task 'sum': prediction [2] float32 and target [2, 1] float32 differ in shape, so the loss "
        "broadcasts them",
    ),
    "float64 targets for a float32 model": (
        lambda m: {
            s: replaced(getattr(m, s), "sum", getattr(m, s).targets["sum"].double()) for s in SPLITS
        },
        "task 'sum': prediction [2] float32 and target [2] float64: floating targets must have the "
        "prediction's dtype (float32)",
    ),
    "inputs the model cannot take": (
        lambda m: {
            s: (getattr(m, s).inputs[:, :, :, :8], dict(getattr(m, s).targets)) for s in SPLITS
        },
        "the model of model_factory fails on the first rows of 'train' (inputs [2, 1, 8, 8] "
        "float32): RuntimeError",
    ),
}


@pytest.mark.parametrize("case", list(BAD_TENSORS))
def test_from_tensors_refuses_mismatches_at_construction(memory, case):
    change, message = BAD_TENSORS[case]
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        from_tensors(memory, **change(memory))


def test_the_loss_of_a_task_must_fit_its_targets(memory):
    # a user's task whose kind says nothing: only its loss can tell that these targets do not fit
    tasks = TaskSet(
        [*memory.tasks.select(TASKS[1:]), Task("left_class", F.cross_entropy, kind="mine")]
    )
    data = {s: pair(getattr(memory, s)) for s in SPLITS}
    data["train"][1]["left_class"] = data["train"][1]["left_class"].float()
    for s in ("val", "test"):
        data[s][1]["left_class"] = data[s][1]["left_class"].float()
    message = (
        "task 'left_class': prediction [2, 10] float32 and target [2] float32 (first rows of "
        "'train') do not fit the task's loss: expected target dtype to be Long"
    )
    same_model = lambda tasks: memory.model_factory(memory.tasks)  # noqa: E731
    with pytest.raises(ValueError, match=re.escape(message)):
        Benchmark.from_tensors(**data, tasks=tasks, model_factory=same_model)


def test_the_model_must_predict_every_task_and_be_a_module(memory):
    data = {s: pair(getattr(memory, s)) for s in SPLITS}
    fewer = lambda tasks: memory.model_factory(tasks.select(["sum"]))  # noqa: E731
    with pytest.raises(
        ValueError,
        match=re.escape(
            "predicts no task(s) ['left_class', 'left_parity', 'right_ge5']; it returns ['sum']"
        ),
    ):
        Benchmark.from_tensors(**data, tasks=memory.tasks, model_factory=fewer)
    wanted = "model_factory(tasks) must return a taskgroup.MultiTaskModel(trunk, heads), got dict"
    with pytest.raises(TypeError, match=re.escape(wanted)):
        Benchmark.from_tensors(**data, tasks=memory.tasks, model_factory=lambda tasks: {})
    with pytest.raises(TypeError, match="model_factory must be callable"):
        Benchmark.from_tensors(**data, tasks=memory.tasks, model_factory=None)
    with pytest.raises(
        TypeError, match=re.escape("tasks must be Task objects (taskgroup.Task), got ['str']")
    ):
        Benchmark.from_tensors(**data, tasks=["sum"], model_factory=memory.model_factory)


def test_the_model_check_leaves_the_callers_rng_alone(memory):
    torch.manual_seed(11)
    expected = torch.rand(3)
    torch.manual_seed(11)
    from_tensors(memory)
    assert torch.equal(torch.rand(3), expected)


class Broken(Items):
    """:class:`Items` whose every item's targets are changed by ``change(targets)``."""

    def __init__(self, split: Split, change):
        super().__init__(split)
        self.change = change

    def __getitem__(self, i):
        inputs, targets = super().__getitem__(i)
        return inputs, self.change(dict(targets))


class BatchedWithout(Batched):
    """:class:`Batched` whose batches lack the target of ``sum`` (its items have it)."""

    def __getitems__(self, indices: list[int]):
        inputs, targets = super().__getitems__(indices)
        return inputs, {n: t for n, t in targets.items() if n != "sum"}


class Empty(Items):
    def __len__(self) -> int:
        return 0


class Stream(torch.utils.data.IterableDataset):
    def __iter__(self):
        return iter([])


BAD_DATASETS = {
    "a task without a target": (
        lambda m: {"test": Broken(m.test, lambda t: {n: v for n, v in t.items() if n != "sum"})},
        "split 'test' has no target for task(s) ['sum']",
    ),
    "a target for no task": (
        lambda m: {"train": Broken(m.train, lambda t: t | {"age": torch.tensor(3.0)})},
        "split 'train' has target(s) ['age'] for no task",
    ),
    "float targets for a classification task": (
        lambda m: {"val": Broken(m.val, lambda t: t | {"left_class": t["left_class"].float()})},
        "split 'val': task 'left_class' is a classification task, so its targets are class "
        "indices of an integer dtype (e.g. torch.int64); got [1] float32",
    ),
    "a regression target whose shape differs between splits": (
        lambda m: {"test": Broken(m.test, lambda t: t | {"sum": t["sum"][None]})},
        "split 'test': target 'sum' has rows of shape [1] and dtype torch.float32, but 'train' "
        "has [] and torch.float32",
    ),
    "batches that lack a task": (
        lambda m: {"val": BatchedWithout(m.val)},
        "split 'val': the batch that BatchedWithout.__getitems__ returns has no target for "
        "task(s) ['sum']",
    ),
    "an empty split": (lambda m: {"val": Empty(m.val)}, "split 'val' is an empty Dataset"),
    "an iterable dataset": (
        lambda m: {"train": Stream()},
        "split 'train' must be a map-style Dataset (__len__ and __getitem__",
    ),
    "items that are not pairs": (
        lambda m: {"val": [m.val.inputs[0]]},
        "item 0 of split 'val' must be (input, {task name: target}), got a tensor [1, 8, 16] "
        "float32",
    ),
}


@pytest.mark.parametrize("case", list(BAD_DATASETS))
def test_from_datasets_refuses_mismatches_of_the_first_items(memory, case):
    change, message = BAD_DATASETS[case]
    with pytest.raises((ValueError, TypeError), match=re.escape(message)):
        from_datasets(memory, **change(memory))


# --- the documented example ---------------------------------------------------------------------


def test_the_example_of_docs_api_runs():
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = text[text.index("### Your own data") :]
    code = section[section.index("```python\n") + len("```python\n") :]
    code = code[: code.index("```")]
    namespace: dict = {}
    exec(compile(code, "docs/api.md: Your own data", "exec"), namespace)
    assert namespace["affinity"].values.shape == (3, 3)
    assert isinstance(namespace["streamed"].train, StreamingSplit)
