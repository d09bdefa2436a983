"""Two gloo processes on CPU: the co-training run (DDP) and a group's training step equal one
process on the global batch; only rank 0 writes."""

from __future__ import annotations

import os
import socket

import numpy as np
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import taskgroup as tg
from taskgroup.distributed import shard


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bench():
    return tg.data.get("planted", n_train=256, n_val=64, n_test=64, groups=2, tasks_per_group=2)


def _spawn(fn, *args):
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(fn, args=(2, _free_port(), results, *args), nprocs=2, join=True)
    return dict(results)


def _init(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)


def _affinity_rank(rank, world, port, results, out):
    _init(rank, world, port)
    try:
        a = tg.measure_affinity(_bench(), steps=6, every=2, batch_size=32, seed=0)
        a.save(os.path.join(out, "affinity.json"))
        results[rank] = (a.values, a.trace)
    finally:
        dist.destroy_process_group()


def test_distributed_cotraining_equals_one_process(tmp_path):
    results = _spawn(_affinity_rank, str(tmp_path))
    single = tg.measure_affinity(_bench(), steps=6, every=2, batch_size=32, seed=0)
    for rank in range(2):
        values, trace = results[rank]
        np.testing.assert_allclose(values, single.values, atol=1e-5, rtol=0)
        np.testing.assert_allclose(trace, single.trace, atol=1e-5, rtol=0)
    assert os.listdir(tmp_path) == ["affinity.json"]  # written once, by rank 0


def test_shard_splits_contiguously_and_refuses_uneven_batches(monkeypatch):
    import taskgroup.distributed as d

    x = torch.arange(8.0)[:, None]
    monkeypatch.setattr(d, "rank_and_world", lambda: (1, 2))
    inputs, targets = shard((x, {"a": x[:, 0]}))
    assert inputs[:, 0].tolist() == [4.0, 5.0, 6.0, 7.0] and targets["a"].tolist() == [4, 5, 6, 7]
    monkeypatch.setattr(d, "rank_and_world", lambda: (0, 3))
    try:
        shard((x, {"a": x[:, 0]}))
    except ValueError as e:
        assert "does not split evenly over 3 processes" in str(e)
    else:
        raise AssertionError("an uneven batch was sharded")


AGGREGATORS = ("mean", "nash_mtl", "pcgrad", "uw", "famo", "dwa")


def _train_rank(rank, world, port, results, out):
    _init(rank, world, port)
    try:
        bench = _bench()
        for name in AGGREGATORS:
            settings = tg.TrainSettings.for_benchmark(
                bench, aggregator=name, steps=12, eval_every=4, batch_size=32, seed=0
            )
            directory = os.path.join(out, name)
            result = tg.train_group(bench, bench.tasks.names, settings, directory=directory)
            results[(rank, name)] = (result.test, result.history)
    finally:
        dist.destroy_process_group()


def test_distributed_group_training_equals_one_process(tmp_path):
    results = _spawn(_train_rank, str(tmp_path / "two"))
    bench = _bench()
    for name in AGGREGATORS:
        settings = tg.TrainSettings.for_benchmark(
            bench, aggregator=name, steps=12, eval_every=4, batch_size=32, seed=0
        )
        single = tg.train_group(bench, bench.tasks.names, settings, directory=tmp_path / name)
        for rank in range(2):
            test, history = results[(rank, name)]
            for task, metrics in single.test.items():
                for metric, value in metrics.items():
                    assert abs(test[task][metric] - value) < 1e-4, (name, rank, task, metric)
            assert [h["step"] for h in history] == [h["step"] for h in single.history]
        one = torch.load(tmp_path / name / "model.pt", weights_only=True)
        two = torch.load(tmp_path / "two" / name / "model.pt", weights_only=True)
        for key in one:
            torch.testing.assert_close(two[key], one[key], atol=1e-5, rtol=0, msg=name)
