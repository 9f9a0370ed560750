"""An independent held-out position probe for tests (plain scikit-learn, grouped by sequence)."""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from threadpoolctl import threadpool_limits


def bins_of(t: np.ndarray, n_bins: int, t_min: int, t_max: int) -> np.ndarray:
    return np.clip(((t - t_min) * n_bins) // (t_max - t_min + 1), 0, n_bins - 1)


def heldout_position_accuracy(x: np.ndarray, t: np.ndarray, groups: np.ndarray, n_bins: int = 8, folds: int = 4) -> float:
    """Mean accuracy of a logistic-regression probe of binned position, folds grouped by sequence."""
    y = bins_of(t, n_bins, int(t.min()), int(t.max()))
    accs = []
    # one BLAS thread: on 2 shared cores, threaded lbfgs fits were measured ~50x slower
    with threadpool_limits(1):
        for tr, te in GroupKFold(n_splits=folds).split(x, y, groups):
            clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300, C=1.0))
            clf.fit(x[tr], y[tr])
            accs.append(float((clf.predict(x[te]) == y[te]).mean()))
    return float(np.mean(accs))
