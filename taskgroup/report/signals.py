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
    "representation": Signal(
        "representation",
        "first-order, representation gradients",
        "Z[i, j] ≈ η r_i·r_j / L_j, r = ∂L/∂h (trunk output)",
        "Z[i, j] ≈ η r_i·r_j / L_j, the first-order estimate read off the Gramian of the "
        "per-task gradients r_i = ∂L_i/∂h with respect to the trunk's output h (summed over "
        "the batch; only the heads are differentiated)",
        "> 0: to first order, a step of the representation for source task i lowers target "
        "task j's loss",
        "η |r_i|² / L_i",
    ),
    "representation_cosine": Signal(
        "representation_cosine",
        "representation-gradient cosine",
        "cos(r_i, r_j), r = ∂L/∂h (trunk output)",
        "Z[i, j] = cos(r_i, r_j) of the per-task gradients with respect to the trunk's output "
        "(summed over the batch; only the heads are differentiated)",
        "> 0: the tasks pull the representation the same way; < 0: they conflict",
        "1 by definition",
    ),
    "sketch": Signal(
        "sketch",
        "first-order, sketched gradients",
        "Z[i, j] ≈ η (Sᵀg_i)·(Sᵀg_j) / L_j",
        "Z[i, j] ≈ η (Sᵀg_i)·(Sᵀg_j) / L_j: the first-order estimate with the shared-parameter "
        "gradients projected by a fixed random sketch S (unbiased for g_i·g_j)",
        "> 0: to first order, the step of source task i lowers target task j's loss",
        "η |Sᵀg_i|² / L_i",
    ),
    "sketch_cosine": Signal(
        "sketch_cosine",
        "sketched gradient cosine",
        "cos(Sᵀg_i, Sᵀg_j)",
        "Z[i, j] = cos(Sᵀg_i, Sᵀg_j), the cosine of the shared-parameter gradients projected "
        "by a fixed random sketch S",
        "> 0: the gradients are aligned; < 0: they conflict",
        "1 by definition",
    ),
    "linearised": Signal(
        "linearised",
        "linearised SGD lookahead",
        "Z[i, j] = 1 − L_j(f_j − η J_j S Sᵀ g_i) / L_j(f_j)",
        "Z[i, j] = 1 − L_j(f_j − η J_j S Sᵀ g_i) / L_j(f_j): the SGD lookahead on the model "
        "linearised in its shared parameters (J the Jacobian of the outputs, S a random "
        "sketch), in the spirit of Grad-TAG",
        _LOOKAHEAD_SIGN,
        "each task's own improvement from its step",
    ),
    "sampled": Signal(
        "sampled",
        "lookahead, sampled sources",
        "Z[i, j] = 1 − L_j(after the step on L_i) / L_j(before), m of n sources per step",
        "the exact lookahead measured for m of the n source tasks per step (weighted n/m, so "
        "the mean over steps is unbiased for the full matrix)",
        _LOOKAHEAD_SIGN,
        "each task's own improvement from its step",
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
