"""A user's own benchmark, as a package that lives outside the repository: the tests write it
into a tmp folder (:func:`write_package`) and name it in factory recipes (`mytasks:make`) or
declare it as an installed plugin (:func:`write_plugin`). It uses only taskgroup's public API."""

from __future__ import annotations

import textwrap
from pathlib import Path

from tests.recipes import TINY_STAGES

MYTASKS = '''
"""mytasks: four regression tasks in two related pairs (a1, a2 | b1, b2) on 6 features."""

from functools import partial

import torch
from torch import nn
from torch.nn import functional as F

import taskgroup as tg

TASKS = ("a1", "a2", "b1", "b2")
NOISE = 0.1  # the tests change it to make other data from the same recipe


def mae(prediction, target):
    return float((prediction.detach() - target).abs().mean())


class Squeeze(nn.Module):
    def forward(self, x):
        return x.squeeze(-1)


def build_model(tasks, *, width):
    trunk = nn.Sequential(nn.Linear(6, width), nn.ReLU())
    heads = {t.name: nn.Sequential(nn.Linear(width, 1), Squeeze()) for t in tasks}
    return tg.MultiTaskModel(trunk, heads)


def make(*, seed=0, n=128, width=8, drop=None):
    """The benchmark: ``n`` training rows (``n // 2`` validation and test rows) drawn from
    ``seed``; ``drop`` leaves that task's targets out (a broken data set)."""
    generator = torch.Generator().manual_seed(seed)
    directions = torch.randn(2, 6, generator=generator)

    def split(rows):
        x = torch.randn(rows, 6, generator=generator)
        s = x @ directions.T
        noise = NOISE * torch.randn(rows, 4, generator=generator)
        columns = (s[:, 0], s[:, 0] + s[:, 1] / 4, s[:, 1], -s[:, 1])
        targets = {t: c + noise[:, k] for k, (t, c) in enumerate(zip(TASKS, columns))}
        targets.pop(drop, None)
        return tg.data.Split(x, targets)

    tasks = tg.TaskSet(
        tg.Task(t, F.mse_loss, {"mae": mae}, {"mae": False}, kind="regression") for t in TASKS
    )
    return tg.data.Benchmark(
        name="mytasks",
        tasks=tasks,
        train=split(n),
        val=split(n // 2),
        test=split(n // 2),
        model_factory=partial(build_model, width=width),
        defaults=tg.data.TrainingDefaults(lr=1e-2, batch_size=32, steps=20, every=2),
        info={"seed": seed, "n": n},
    )


def boom(**options):
    raise RuntimeError("no data\\nhere")


def not_a_benchmark(**options):
    return {"tasks": TASKS}
'''


def write_package(root: Path, name: str = "mytasks") -> Path:
    """Write the package ``name`` (the source above) under ``root``; returns ``root``."""
    package = root / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(MYTASKS).lstrip())
    return root


def write_plugin(root: Path, entry_points: dict[str, str], name: str = "mytasks") -> Path:
    """Declare the installed distribution ``name`` whose entry points of the group
    ``taskgroup.benchmarks`` are ``entry_points`` (benchmark name -> "module:function"), as an
    installed package's ``.dist-info`` folder under ``root`` (a ``sys.path`` entry)."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = [f"{k} = {v}" for k, v in entry_points.items()]
    (info / "entry_points.txt").write_text("[taskgroup.benchmarks]\n" + "\n".join(lines) + "\n")
    return root


def factory_recipe(factory: str, seed: int = 0, **options) -> str:
    """A tiny recipe (4 tasks, 6 co-training steps, 20 training steps) on ``factory``."""
    table = "".join(f"{k} = {v!r}\n".replace("'", '"') for k, v in options.items())
    return f'seed = {seed}\n[benchmark]\nfactory = "{factory}"\n{table}' + TINY_STAGES
