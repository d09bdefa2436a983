"""``aligned_mtl``: align the principal components of the task gradients.

Aligned-MTL replaces G (k×d, thin SVD G = UΣVᵀ of rank r) by the well-conditioned
Ĝ = σ_min U Vᵀ — all singular values set to the smallest non-zero one — and takes d = Ĝᵀw_pref with
the preference weights w_pref = 1/k (Senushkin et al., "Independent Component Alignment for
Multi-Task Learning", CVPR 2023, Algorithm 1). With the eigendecomposition K = GGᵀ = UΛUᵀ this is
d = Gᵀ(B w_pref) with B = √λ_min U Λ^{-1/2} Uᵀ, so only the Gramian is needed (the torchjd form).
``scale="min"`` is the paper's σ_min; ``"median"`` and ``"rmse"`` (the mean eigenvalue) are the
reference implementation's alternatives. Cost after K: one k×k eigendecomposition.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from taskgroup.aggregators.base import EPS, GramianAggregator

SCALES = ("min", "median", "rmse")


class AlignedMTL(GramianAggregator):
    """Equalise the singular values of G, then average (weights B·1/k).

    Args:
        scale: the common singular value: ``"min"`` (paper), ``"median"`` or ``"rmse"``.

    Degenerate input: directions with eigenvalue below ``k · eps · λ_max`` (eps of G's dtype)
    are dropped (rank deficiency, identical rows; rank 1 gives the mean); all-zero G gives 0;
    k = 1 returns the gradient.
    """

    name = "aligned_mtl"
    summary = "equalise the singular values of G, then average (Aligned-MTL)"
    reference = "Senushkin et al., CVPR 2023"

    def __init__(self, *, scale: str = "min", max_norm: float = 0.0) -> None:
        super().__init__(max_norm=max_norm)
        if scale not in SCALES:
            raise ValueError(f"scale must be one of {', '.join(SCALES)}, got {scale!r}")
        self.scale = scale

    def _options_repr(self) -> str:
        return f"scale={self.scale!r}, max_norm={self.max_norm}"

    def _weigh(self, K: np.ndarray, eps: float = EPS) -> tuple[np.ndarray, dict[str, Any]]:
        k = len(K)
        preference = np.full(k, 1.0 / k)
        eigenvalues, vectors = np.linalg.eigh(K)
        top = float(eigenvalues[-1]) if k else 0.0
        keep = eigenvalues > max(top, 0.0) * k * eps  # eps: the gradients' dtype's rounding
        if not top > 0 or not keep.any():
            return preference, {"rank": 0}
        lam, U = eigenvalues[keep], vectors[:, keep]
        common = {"min": lam.min(), "median": np.median(lam), "rmse": lam.mean()}[self.scale]
        B = np.sqrt(common) * (U / np.sqrt(lam)) @ U.T
        return B @ preference, {"rank": int(keep.sum())}
