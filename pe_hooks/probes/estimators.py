"""scikit-learn-style position probes backed by streaming sufficient statistics.

``fit(X, y)``, ``partial_fit(X, y)`` (stream batches), ``predict``, ``score``, ``get_params`` /
``set_params``: they drop into scikit-learn workflows, and their memory does not grow with the
number of samples.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from pe_hooks.errors import DataError
from pe_hooks.probes.linear import LDAModel, RidgeModel, fit_lda, fit_ridge
from pe_hooks.probes.stats import LayerStats


def _as_tensor(x: Any) -> torch.Tensor:
    t = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if t.ndim != 2 or t.shape[0] == 0:
        raise DataError(f"X must be a non-empty [n, d] array, got shape {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise DataError("X contains NaN or inf")
    return t.double()


class _Streaming:
    _stats: LayerStats | None = None

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_")}

    def set_params(self, **params: Any) -> _Streaming:
        for k, v in params.items():
            setattr(self, k, v)
        return self

    def _update(self, X: Any, y: Any, classes: int) -> None:
        x = _as_tensor(X)
        yt = torch.as_tensor(np.asarray(y)).reshape(-1)
        if yt.shape[0] != x.shape[0]:
            raise DataError(f"X has {x.shape[0]} rows but y has {yt.shape[0]}")
        if self._stats is None:
            self._stats = LayerStats.zeros(1, x.shape[1], classes, 1)
        zeros = torch.zeros(x.shape[0], dtype=torch.long)
        c = yt.long().clamp(0, classes - 1) if classes > 1 else zeros
        self._light_update(x, yt, c)

    def _light_update(self, x: torch.Tensor, y: torch.Tensor, c: torch.Tensor) -> None:
        s = self._stats
        assert s is not None
        yd = y.double()
        s.n[0] += x.shape[0]
        s.sx[0] += x.sum(0)
        s.sxx[0] += x.T @ x
        s.sy[0, 0] += yd.sum()
        s.syy[0, 0] += (yd * yd).sum()
        s.sxy[0, 0] += yd @ x
        s.cn[0, 0].index_add_(0, c, torch.ones_like(yd))
        s.csx[0, 0].index_add_(0, c, x)


class StreamingRidge(_Streaming):
    """Ridge regression on standardised features (penalty ``alpha`` per sample)."""

    def __init__(self, alpha: float = 1e-3) -> None:
        self.alpha = alpha
        self._stats = None
        self.model_: RidgeModel | None = None

    def partial_fit(self, X: Any, y: Any) -> StreamingRidge:
        self._update(X, y, 1)
        assert self._stats is not None
        self.model_ = fit_ridge(self._stats, alpha=self.alpha)
        return self

    def fit(self, X: Any, y: Any) -> StreamingRidge:
        self._stats = None
        return self.partial_fit(X, y)

    def predict(self, X: Any) -> np.ndarray:
        if self.model_ is None:
            raise DataError("call fit() first")
        return self.model_.predict(_as_tensor(X)).numpy()

    def score(self, X: Any, y: Any) -> float:
        """R^2 on (X, y)."""
        yt = np.asarray(y, dtype=np.float64)
        res = ((self.predict(X) - yt) ** 2).sum()
        return float(1 - res / ((yt - yt.mean()) ** 2).sum())


class StreamingLDA(_Streaming):
    """Linear discriminant analysis with shrinkage, for integer class labels ``0..n_classes-1``."""

    def __init__(self, n_classes: int, shrinkage: float = 0.1) -> None:
        self.n_classes = n_classes
        self.shrinkage = shrinkage
        self._stats = None
        self.model_: LDAModel | None = None

    def partial_fit(self, X: Any, y: Any) -> StreamingLDA:
        yt = np.asarray(y)
        if yt.size and (yt.min() < 0 or yt.max() >= self.n_classes or not np.issubdtype(yt.dtype, np.integer)):
            raise DataError(f"labels must be integers in 0..{self.n_classes - 1}")
        self._update(X, yt, self.n_classes)
        assert self._stats is not None
        self.model_ = fit_lda(self._stats, shrinkage=self.shrinkage)
        return self

    def fit(self, X: Any, y: Any) -> StreamingLDA:
        self._stats = None
        return self.partial_fit(X, y)

    def predict(self, X: Any) -> np.ndarray:
        if self.model_ is None:
            raise DataError("call fit() first")
        return self.model_.predict(_as_tensor(X)).numpy()

    def score(self, X: Any, y: Any) -> float:
        """Accuracy on (X, y)."""
        return float((self.predict(X) == np.asarray(y)).mean())
