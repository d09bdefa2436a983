"""Group selection: which tasks to train together, from an affinity matrix.

    import taskgroup as tg
    grouping = tg.select_groups(affinity, budget=3)          # -> tg.Grouping
    curve = tg.grouping.sweep(affinity)                       # budgets 1..n
    tg.grouping.score(affinity, [("a", "b"), ("c", "d")])     # TAG's objective

See docs/grouping.md for the objective, the singleton convention and the solvers.
"""

from taskgroup.grouping.objective import Grouping, score
from taskgroup.grouping.select import METHODS, select_groups, sweep

__all__ = ["METHODS", "Grouping", "score", "select_groups", "sweep"]
