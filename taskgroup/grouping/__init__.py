"""Group selection: which tasks to train together, from an affinity matrix.

    import taskgroup as tg
    grouping = tg.select_groups(affinity, budget=3)          # -> tg.Grouping
    curve = tg.grouping.sweep(affinity)                       # budgets 1..n
    tg.grouping.score(affinity, [("a", "b"), ("c", "d")])     # TAG's objective
    tg.select_groups(tg.pair_results(bench, {}), 3, method="hoa")  # Standley's HOA
    tg.grouping.top_groupings(affinity, 3, k=8)                 # a shortlist, best first
    tg.grouping.certify(affinity, grouping, time_limit=600)     # opt-in: a tighter bound, slowly
    tg.grouping.check_groups(groups, tasks)  # names only tasks, covers them, no repeats
    table = tg.grouping.NetworkTable.read_standley("results.txt")  # trained networks + costs
    tg.select_networks(table, 2.5)                               # Standley's selection, exact

See docs/grouping.md for the objective, the singleton convention and the solvers, and
docs/networks.md for the selection among trained networks.
"""

from taskgroup.grouping.certificate import certify
from taskgroup.grouping.hoa import PairTable
from taskgroup.grouping.networks import (
    NetworkSelection,
    NetworkTable,
    cheapest_cover,
    select_networks,
)
from taskgroup.grouping.objective import Grouping, check_groups, score
from taskgroup.grouping.select import METHODS, select_groups, sweep
from taskgroup.grouping.shortlist import top_groupings

__all__ = [
    "METHODS",
    "Grouping",
    "NetworkSelection",
    "NetworkTable",
    "PairTable",
    "certify",
    "cheapest_cover",
    "check_groups",
    "score",
    "select_groups",
    "select_networks",
    "sweep",
    "top_groupings",
]
