"""scikit-learn position probes backed by streaming sufficient statistics.

``StreamingRidge`` and ``StreamingLDA`` are scikit-learn estimators (``BaseEstimator`` with
``RegressorMixin`` / ``ClassifierMixin``: ``get_params``, ``set_params``, ``clone`` and ``score``
come from scikit-learn) whose ``partial_fit`` streams batches into a ``LayerStats`` through
``LayerStats.update`` — the same accumulation ``sweep`` uses — so memory does not grow with the
number of samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin

from pe_hooks.core.errors import DataError
from pe_hooks.probes.linear import LDAModel, RidgeModel, Shrinkage, fit_lda, fit_ridge
from pe_hooks.probes.stats import LayerStats


def _as_tensor(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2 or t.shape[0] == 0:
        raise DataError(f"X must be a non-empty [n, d] array, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise DataError("X contains NaN or inf")
    return t.double()


def _accumulate(stats: LayerStats | None, X: Any, y: Any, classes: int) -> LayerStats:
    """Add ``(X, y)`` to ``stats`` (a new single-fold ``LayerStats`` when ``None``)."""
    x = _as_tensor(X)
    yt = torch.as_tensor(np.asarray(y)).reshape(-1)
    if yt.shape[0] != x.shape[0]:
        raise DataError(f"X has {x.shape[0]} rows but y has {yt.shape[0]}")
    if stats is None:
        stats = LayerStats.zeros(1, x.shape[1], classes, 0)
    fold = torch.zeros(x.shape[0], dtype=torch.long)
    c = yt.long().clamp(0, classes - 1) if classes > 1 else fold
    stats.update(x, fold, yt, c)
    return stats


class StreamingRidge(RegressorMixin, BaseEstimator):  # type: ignore[misc]
    """Ridge regression on standardised features (penalty ``alpha`` per sample); ``score`` is R²."""

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha

    def _fit(self, stats: LayerStats | None, X: Any, y: Any) -> StreamingRidge:
        self.stats_ = _accumulate(stats, X, y, 1)
        self.model_: RidgeModel = fit_ridge(self.stats_, alpha=self.alpha)
        return self

    def partial_fit(self, X: Any, y: Any) -> StreamingRidge:
        return self._fit(getattr(self, "stats_", None), X, y)

    def fit(self, X: Any, y: Any) -> StreamingRidge:
        return self._fit(None, X, y)

    def predict(self, X: Any) -> np.ndarray:
        if getattr(self, "model_", None) is None:
            raise DataError("call fit() first")
        return self.model_.predict(_as_tensor(X)).numpy()


class StreamingLDA(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Linear discriminant analysis for integer class labels ``0..n_classes-1``; ``score`` is
    accuracy. ``shrinkage``: ``"auto"`` (chosen from the data by ``optimal_linear_shrinkage``) or a
    fixed factor in [0, 1] towards ``tr(S)/d * I``."""

    def __init__(self, n_classes: int, shrinkage: Shrinkage = "auto") -> None:
        self.n_classes = n_classes
        self.shrinkage = shrinkage

    def _fit(self, stats: LayerStats | None, X: Any, y: Any) -> StreamingLDA:
        yt = np.asarray(y)
        if yt.size and (yt.min() < 0 or yt.max() >= self.n_classes or not np.issubdtype(yt.dtype, np.integer)):
            raise DataError(f"labels must be integers in 0..{self.n_classes - 1}")
        self.stats_ = _accumulate(stats, X, yt, self.n_classes)
        self.classes_ = np.arange(self.n_classes)
        self.model_: LDAModel = fit_lda(self.stats_, shrinkage=self.shrinkage)
        return self

    def partial_fit(self, X: Any, y: Any) -> StreamingLDA:
        return self._fit(getattr(self, "stats_", None), X, y)

    def fit(self, X: Any, y: Any) -> StreamingLDA:
        return self._fit(None, X, y)

    def predict(self, X: Any) -> np.ndarray:
        if getattr(self, "model_", None) is None:
            raise DataError("call fit() first")
        return self.model_.predict(_as_tensor(X)).numpy()
