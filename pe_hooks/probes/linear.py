"""Closed-form linear probes fitted from sufficient statistics.

Ridge (position regression) on standardised features:
``w = (C + alpha * n * I)^-1 c_xy`` in standardised coordinates, with ``C`` the centred scatter
matrix; held-out ``SSE = sum (y - x.w - b)^2`` expands into moments of the test fold, so held-out
``R^2`` and RMSE are exact without keeping a single token.

Linear discriminant analysis (binned position): class means ``mu_c``, pooled within-class
covariance ``S`` shrunk towards ``tr(S)/d * I``, by a fixed factor ``shrinkage`` or, with
``shrinkage="auto"`` (the default), by the factor concept-erasure's ``optimal_linear_shrinkage``
chooses from the data (random-matrix-theory optimal in Frobenius norm); scores ``x S^-1 mu_c - mu_c S^-1 mu_c / 2 + log p_c``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from concept_erasure import optimal_linear_shrinkage

from pe_hooks.core.linalg import ridge_from_moments
from pe_hooks.probes.stats import Labels, LayerStats, label_index

Shrinkage = float | Literal["auto"]


@dataclass
class RidgeModel:
    """``y_hat = x @ w + b``."""

    w: torch.Tensor  # [d]
    b: float

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return x.double() @ self.w + self.b


@dataclass
class LDAModel:
    """``argmax_c (x @ W + b)``."""

    W: torch.Tensor  # [d, C]
    b: torch.Tensor  # [C]

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return (x.double() @ self.W + self.b).argmax(-1)


def fit_ridge(s: LayerStats, labels: Labels = "real", alpha: float = 1e-3) -> RidgeModel:
    """Ridge of the ``labels`` target (real or shuffled positions) from the (single-fold) stats ``s``."""
    return fit_ridges(s, (labels,), alpha)[0]


def fit_ridges(s: LayerStats, labels: tuple[Labels, ...] = ("real", "shuffled"), alpha: float = 1e-3) -> list[RidgeModel]:
    """``fit_ridge`` for several targets of the same tokens: one factorisation serves them all."""
    ks = [label_index(lab) for lab in labels]
    fits = ridge_from_moments(s.n[0], s.sx[0], s.sy[0, ks], s.sxx[0], s.sxy[0, ks], alpha)
    return [RidgeModel(w, b) for w, b in fits]


def ridge_heldout(model: RidgeModel, s: LayerStats, labels: Labels = "real") -> tuple[float, float]:
    """Exact held-out ``(R^2, RMSE)`` of ``model`` on the (single-fold) test stats ``s``."""
    k = label_index(labels)
    n = s.n[0]
    w, b = model.w, model.b
    sse = (
        s.syy[0, k] - 2 * (w @ s.sxy[0, k]) - 2 * b * s.sy[0, k] + w @ s.sxx[0] @ w
        + 2 * b * (w @ s.sx[0]) + n * b * b
    )
    sst = s.syy[0, k] - s.sy[0, k] ** 2 / n
    return float(1 - sse / sst), float((sse.clamp_min(0) / n).sqrt())


def fit_lda(s: LayerStats, labels: Labels = "real", shrinkage: Shrinkage = "auto") -> LDAModel:
    """Shrunk linear discriminant of the ``labels`` bins from the (single-fold) stats ``s``."""
    k = label_index(labels)
    cn = s.cn[0, k]
    present = cn > 0
    mu = torch.zeros_like(s.csx[0, k])
    mu[present] = s.csx[0, k][present] / cn[present, None]
    n = s.n[0]
    between = (mu.T * cn) @ mu
    within = (s.sxx[0] - between) / n  # biased pooled covariance, as scikit-learn's LDA
    if shrinkage == "auto":
        cov = optimal_linear_shrinkage(within, n)
    else:
        d = within.shape[0]
        target = within.diagonal().mean()
        cov = (1 - shrinkage) * within + shrinkage * target * torch.eye(d, dtype=within.dtype)
    sol = torch.linalg.solve(cov, mu.T)  # [d, C]
    prior = (cn / n).clamp_min(1e-12).log()
    b = -0.5 * (mu * sol.T).sum(-1) + prior
    b[~present] = -torch.inf
    return LDAModel(sol, b)
