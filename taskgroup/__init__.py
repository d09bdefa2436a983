"""taskgroup: which tasks should train together, and how each group should train.

The public API (see docs/api.md)::

    import taskgroup as tg
    Z = tg.lookahead_affinity(model, inputs, targets, losses, lr=0.1)      # [n, n] tensor
    A = tg.measure_affinity("multidigits", steps=1500, every=10)           # AffinityMatrix
    grouping = tg.select_groups(A, budget=3)                                # Grouping
    results = tg.train_groups(benchmark, grouping, aggregator="nash_mtl")   # GroupResults

Long calls show tqdm progress bars when stderr is a terminal (``progress=None``; ``True`` forces
them, ``False`` silences them) and log through ``logging.getLogger("taskgroup")``, which has only
a ``NullHandler``: configure logging (e.g. ``logging.basicConfig(level=logging.INFO)``) to see it.
"""

import logging

from taskgroup import aggregators, data, grouping
from taskgroup._version import __version__
from taskgroup.affinity import AffinityMatrix, AffinityTracker, lookahead_affinity
from taskgroup.aggregators import MTLStep
from taskgroup.data import Benchmark
from taskgroup.gradients import task_gradients
from taskgroup.grouping import Grouping, select_groups, select_networks
from taskgroup.models import MultiTaskModel, shared_parameter_names
from taskgroup.settings import AffinitySettings, GroupSettings, TrainSettings
from taskgroup.tasks import Task, TaskSet
from taskgroup.training.cotrain import measure_affinity
from taskgroup.training.groups import GroupResults, train_groups
from taskgroup.training.metrics import delta_m, evaluate
from taskgroup.training.pair_trainings import pair_networks, pair_results
from taskgroup.training.trainer import GroupResult, train_group
from taskgroup.training.verified import verified_selection

logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AffinityMatrix",
    "AffinitySettings",
    "AffinityTracker",
    "Benchmark",
    "GroupResult",
    "GroupResults",
    "GroupSettings",
    "Grouping",
    "MTLStep",
    "MultiTaskModel",
    "Task",
    "TaskSet",
    "TrainSettings",
    "__version__",
    "aggregators",
    "data",
    "delta_m",
    "evaluate",
    "grouping",
    "lookahead_affinity",
    "measure_affinity",
    "pair_networks",
    "pair_results",
    "select_groups",
    "select_networks",
    "shared_parameter_names",
    "task_gradients",
    "train_group",
    "train_groups",
    "verified_selection",
]
