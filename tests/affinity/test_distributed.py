"""Two gloo processes on CPU: every rank gets the one-process matrix of the global batch."""

from __future__ import annotations

import os
import socket

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from taskgroup.affinity.lookahead import lookahead_affinity

from .conftest import LOSSES, make_batch, make_model


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(rank: int, world: int, port: int, results) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = make_model()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        x, t = make_batch(n=32)
        half = slice(rank * 16, (rank + 1) * 16)
        local_x, local_t = x[half], {k: v[half] for k, v in t.items()}
        results[rank] = {
            "sgd": lookahead_affinity(model, local_x, local_t, LOSSES, lr=0.1),
            "adam": lookahead_affinity(model, local_x, local_t, LOSSES, optimizer=opt),
            "local": lookahead_affinity(model, local_x, local_t, LOSSES, lr=0.1, distributed=False),
        }
    finally:
        dist.destroy_process_group()


def test_every_rank_gets_the_global_batch_matrix():
    manager = mp.Manager()
    results = manager.dict()
    mp.spawn(_rank_main, args=(2, _free_port(), results), nprocs=2, join=True)
    model = make_model()
    x, t = make_batch(n=32)
    expected_sgd = lookahead_affinity(model, x, t, LOSSES, lr=0.1)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    expected_adam = lookahead_affinity(model, x, t, LOSSES, optimizer=opt)
    for rank in range(2):
        torch.testing.assert_close(results[rank]["sgd"], expected_sgd, atol=1e-5, rtol=0)
        torch.testing.assert_close(results[rank]["adam"], expected_adam, atol=1e-5, rtol=0)
    local0 = lookahead_affinity(model, x[:16], {k: v[:16] for k, v in t.items()}, LOSSES, lr=0.1)
    torch.testing.assert_close(results[0]["local"], local0, atol=1e-6, rtol=0)
