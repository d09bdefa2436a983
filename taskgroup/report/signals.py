"""What each affinity signal measures, in the words the report, its plots and the terminal table
use: the name, the definition and what the sign means (``affinity.metadata["lookahead"]``)."""

from __future__ import annotations

from dataclasses import dataclass

from taskgroup.affinity.matrix import AffinityMatrix


@dataclass(frozen=True)
class Signal:
    """How to label one affinity signal.

    Attributes:
        key: the ``lookahead`` setting that measured it (``None``: not recorded).
        name: a short name (``"gradient cosine"``).
        formula: its definition in one line, for a colour bar (row i = source, column j = target).
        definition: the definition in a sentence.
        sign: what > 0 and < 0 mean.
        diagonal: what the diagonal holds.
    """

    key: str | None
    name: str
    formula: str
    definition: str
    sign: str
    diagonal: str


_LOOKAHEAD_SIGN = "> 0: the step of source task i lowers target task j's loss; < 0: it raises it"

SIGNALS = {
    "sgd": Signal(
        "sgd",
        "SGD lookahead (TAG)",
        "Z[i, j] = 1 − L_j(after an SGD step on L_i) / L_j(before)",
        "Z[i, j] = 1 − L_j(θ_s − η ∇L_i) / L_j(θ_s): the relative change of target task j's "
        "loss when the shared parameters θ_s take a plain SGD step (learning rate η) on source "
        "task i's loss alone",
        _LOOKAHEAD_SIGN,
        "each task's own improvement from its step",
    ),
    "optimizer": Signal(
        "optimizer",
        "optimizer lookahead (TAG)",
        "Z[i, j] = 1 − L_j(after the optimizer's step on L_i) / L_j(before)",
        "Z[i, j] = 1 − L_j(θ_s + u_i) / L_j(θ_s), where u_i is the step the co-training "
        "optimizer (from its current state, e.g. Adam's moments) would take on source task i's "
        "loss alone",
        _LOOKAHEAD_SIGN,
        "each task's own improvement from its step",
    ),
    "first_order": Signal(
        "first_order",
        "first-order lookahead",
        "Z[i, j] ≈ η g_i·g_j / L_j",
        "Z[i, j] ≈ η g_i·g_j / L_j, the first-order (Taylor) approximation of the SGD "
        "lookahead, read off the Gramian of the shared-parameter gradients g",
        "> 0: to first order, the step of source task i lowers target task j's loss",
        "η |g_i|² / L_i, each task's own first-order improvement",
    ),
    "cosine": Signal(
        "cosine",
        "gradient cosine",
        "cos(g_i, g_j) of the shared-parameter gradients",
        "Z[i, j] = cos(g_i, g_j) = g_i·g_j / (|g_i| |g_j|), the cosine between the gradients "
        "of tasks i and j with respect to the shared parameters (symmetric: row and column alike)",
        "> 0: the gradients are aligned (a step for one helps the other); < 0: they conflict",
        "1 by definition",
    ),
}

UNKNOWN = Signal(
    None,
    "affinity",
    "Z[i, j] (row i = source, column j = target)",
    "Z[i, j], an affinity matrix given as is (how it was measured is not recorded)",
    "> 0 is read as: source task i helps target task j",
    "as given",
)


def signal_of(affinity: AffinityMatrix) -> Signal:
    """The signal ``affinity`` holds, from ``metadata["lookahead"]`` (:data:`UNKNOWN` when it
    is missing or not one of :data:`SIGNALS`)."""
    return SIGNALS.get(str(affinity.metadata.get("lookahead")), UNKNOWN)
