"""Inter-task affinity: lookahead (TAG / IT-MTL), its first-order estimate, tracking and storage."""

from taskgroup.affinity.lookahead import (
    LOOKAHEADS,
    lookahead_affinity,
    measure_lookahead,
    resolve_lookahead,
)
from taskgroup.affinity.matrix import AffinityMatrix
from taskgroup.affinity.tracker import AffinityTracker

__all__ = [
    "LOOKAHEADS",
    "AffinityMatrix",
    "AffinityTracker",
    "lookahead_affinity",
    "measure_lookahead",
    "resolve_lookahead",
]
