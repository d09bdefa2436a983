"""The fingerprint of a benchmark's data, and the run directory's refusal of a run on other data
that names the split and the field."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch

from taskgroup.data import fingerprint as fp
from taskgroup.data.benchmark import Split
from taskgroup.data.fingerprint import data_fingerprint, split_fingerprint
from taskgroup.data.planted import load as planted
from taskgroup.rundir import check_identity, claim_run_dir, identity_differences


def tiny(seed=0, rows=20) -> Split:
    g = torch.Generator().manual_seed(seed)
    return Split(
        torch.randn(rows, 3, generator=g),
        {"a": torch.randn(rows, generator=g), "b": torch.randint(0, 4, (rows,), generator=g)},
    )


def test_a_tensor_digest_is_sha256_of_dtype_shape_and_bytes():
    split = tiny()
    x = split.inputs.numpy()
    reference = hashlib.sha256(b"tensor torch.float32 (20, 3);" + x.tobytes()).hexdigest()
    assert split_fingerprint(split)["inputs"] == reference[: fp.DIGITS]


def test_equal_data_gives_equal_fingerprints_and_one_change_changes_one_field():
    a, b = tiny(), tiny()
    assert split_fingerprint(a) == split_fingerprint(b)
    assert split_fingerprint(a) == split_fingerprint(Split(a.inputs.T.contiguous().T, a.targets))
    b.targets["b"][7] += 1
    first, second = split_fingerprint(a), split_fingerprint(b)
    assert [k for k in first["targets"] if first["targets"][k] != second["targets"][k]] == ["b"]
    assert first["inputs"] == second["inputs"] and first["rows"] == second["rows"] == 20


def test_dtype_and_shape_are_part_of_the_digest():
    x = tiny().inputs
    base = split_fingerprint(Split(x, {}))["inputs"]
    assert split_fingerprint(Split(x.reshape(20, 3, 1), {}))["inputs"] != base
    assert split_fingerprint(Split(x.double(), {}))["inputs"] != base
    ints = torch.arange(6).reshape(2, 3)  # the same values as int32 and int64
    assert fp._digest(ints) != fp._digest(ints.int())


def test_a_large_in_memory_split_is_fingerprinted_on_evenly_spaced_rows(monkeypatch):
    monkeypatch.setattr(fp, "FULL_BYTES", 0)
    monkeypatch.setattr(fp, "SAMPLE_ROWS", 5)
    split = tiny(rows=101)  # rows 0, 25, 50, 75, 100 are hashed
    record = split_fingerprint(split)
    assert record["hashed"] == "5 evenly spaced rows" and record["rows"] == 101
    index = [0, 25, 50, 75, 100]
    sampled = Split(split.inputs[index], {k: v[index] for k, v in split.targets.items()})
    monkeypatch.setattr(fp, "FULL_BYTES", 10**9)
    assert {k: v for k, v in split_fingerprint(sampled).items() if k not in ("rows", "hashed")} == {
        k: v for k, v in record.items() if k not in ("rows", "hashed")
    }
    monkeypatch.setattr(fp, "FULL_BYTES", 0)
    split.inputs[26] += 1  # not sampled: the documented blind spot
    assert split_fingerprint(split) == record
    split.inputs[25] += 1
    assert split_fingerprint(split)["inputs"] != record["inputs"]


@dataclasses.dataclass(frozen=True)
class Graphs:
    """Inputs that are not a tensor (like qm9's graph batches)."""

    x: torch.Tensor
    edges: torch.Tensor


class Streamed:
    """A split read on demand: only the DataSplit protocol, rows from a generator function."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y, self.reads = x, y, 0

    def __len__(self) -> int:
        return len(self.x)

    def select(self, names):
        return self

    def batches(self, batch_size, *, seed, start=0):
        raise AssertionError("a fingerprint reads in order")

    def chunks(self, batch_size: int) -> Iterator:
        for begin in range(0, len(self), batch_size):
            self.reads += 1
            rows = slice(begin, begin + batch_size)
            yield Graphs(self.x[rows], self.x[rows].long()), {"y": self.y[rows]}


def test_a_streamed_split_is_fingerprinted_on_its_first_rows(monkeypatch):
    monkeypatch.setattr(fp, "SAMPLE_ROWS", 4)
    x, y = torch.randn(10, 2), torch.randn(10)
    split = Streamed(x, y)
    record = split_fingerprint(split)
    assert split.reads == 1 and record["hashed"] == "first 4 rows" and record["rows"] == 10
    assert record["inputs"] == fp._digest(Graphs(x[:4], x[:4].long()))
    assert record["inputs"] != fp._digest(Graphs(x[:4], x[:4].long() + 1))
    x[9] += 1
    assert split_fingerprint(Streamed(x, y)) == record
    y[0] += 1
    assert split_fingerprint(Streamed(x, y))["targets"]["y"] != record["targets"]["y"]
    assert split_fingerprint(Streamed(x[:9], y[:9]))["rows"] == 9
    assert split_fingerprint(Streamed(x[:3], y[:3]))["hashed"] == "all"
    assert split_fingerprint(Streamed(x[:0], y[:0]))["targets"] == {}


def test_numpy_containers_and_unknown_objects():
    a = np.arange(4, dtype=np.int16)
    assert fp._digest(a) == fp._digest(a.copy()) != fp._digest(a.astype(np.int32))
    assert fp._digest({"k": [1, 2.0, "s"]}) != fp._digest({"k": [1, 2.0, "t"]})
    assert fp._digest(object()) == fp._digest(object())  # only the type: documented


def test_benchmark_fingerprint_follows_seed_and_tasks():
    small = {"n_train": 64, "n_val": 16, "n_test": 16}
    one, same, other = planted(seed=1, **small), planted(seed=1, **small), planted(seed=2, **small)
    assert data_fingerprint(one) == data_fingerprint(same)
    assert data_fingerprint(one)["train"] != data_fingerprint(other)["train"]
    subset = data_fingerprint(one.select(["g0_t1", "g0_t0"]))
    assert list(subset["val"]["targets"]) == ["g0_t0", "g0_t1"]
    assert subset["tasks"] != data_fingerprint(one)["tasks"]
    assert subset["val"]["inputs"] == data_fingerprint(one)["val"]["inputs"]


def identity(seed=0, data=None):
    return {
        "benchmark": "mine",
        "options": {},
        "tasks": ["a"],
        "seed": seed,
        "data": data or {"train": {"rows": 4, "inputs": "x", "targets": {"a": "y"}}},
    }


def test_a_resume_on_other_data_is_refused_naming_split_and_field(tmp_path):
    claim_run_dir(tmp_path, identity())
    assert check_identity(tmp_path, identity())
    other = identity(data={"train": {"rows": 4, "inputs": "x", "targets": {"a": "z"}}})
    with pytest.raises(ValueError) as refused:
        check_identity(tmp_path, other)
    assert str(refused.value) == (
        f"{tmp_path} holds a run on other data (data.train.targets.a: 'y' there, 'z' now); "
        f"choose another --out"
    )
    # another seed explains other data: only the seed is named
    assert identity_differences(identity(), identity(seed=1, data=other["data"])) == [
        ("seed", 0, 1)
    ]
    more = {"train": {"rows": 5, "inputs": "w", "targets": {"a": "z", "b": "v"}}}
    assert [k for k, _, _ in identity_differences(identity(), identity(data=more))] == [
        "data.train.rows",
        "data.train.inputs",
        "data.train.targets.a",
        "data.train.targets.b",
    ]


def test_a_record_without_a_data_fingerprint_is_not_compared_on_it(tmp_path):
    old = identity()
    del old["data"]  # written before taskgroup recorded the data
    claim_run_dir(tmp_path, old)
    assert check_identity(tmp_path, identity())
    with pytest.raises(ValueError, match=r"\(seed: 0 there, 1 now\)"):
        check_identity(tmp_path, identity(seed=1))
