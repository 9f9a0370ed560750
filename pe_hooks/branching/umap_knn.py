"""The exact neighbour graph UMAP builds for a small data set, computed fast: ``exact_knn``.

For fewer than ``SMALL_DATA`` points (dense data), ``umap.UMAP.fit`` computes every pairwise
distance with ``sklearn.metrics.pairwise_distances(X, metric=<umap's numba euclidean>)``: a callable
metric, hence a Python loop over the ``n (n - 1) / 2`` pairs (4.9 M calls for the 3136 tokens of
the MiniLM report, ~40 s per view on a quiet core, most of a view's UMAP). It then keeps each row's
``n_neighbors`` nearest by a stable argsort (``umap.utils.fast_knn_indices``).

``exact_knn`` computes the same matrix in one compiled loop -- the same distance function on the
same float32 rows, so the same bits -- and keeps the neighbours with the same function; passed to
UMAP as ``precomputed_knn`` it gives the embedding UMAP would have computed itself, bit for bit
(``tests/test_branches.py`` checks it against UMAP's own path). Larger data sets go to UMAP's
approximate search (NN-descent), untouched.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: UMAP computes exact distances below this many points (``umap_.py``: ``X.shape[0] < 4096``).
SMALL_DATA = 4096

_PAIRWISE: Any = None


def _pairwise() -> Any:
    """The compiled loop (built once, on first use: importing numba is slow)."""
    global _PAIRWISE
    if _PAIRWISE is None:
        import numba
        from umap.distances import euclidean

        @numba.njit()  # type: ignore[misc]
        def pairwise(x: np.ndarray) -> np.ndarray:
            n = x.shape[0]
            out = np.zeros((n, n), dtype=np.float32)  # sklearn's output dtype for float32 rows
            for i in range(n):
                for j in range(i + 1, n):
                    d = euclidean(x[i], x[j])
                    out[i, j] = d
                    out[j, i] = d
            return out

        _PAIRWISE = pairwise
    return _PAIRWISE


def exact_distances(x: np.ndarray) -> np.ndarray:
    """``[n, n]`` float32 distances, as ``pairwise_distances(X, metric=umap.distances.euclidean)``
    gives them for ``X = float32 x``: each computed in float64 and stored as float32, upper triangle
    mirrored, zero diagonal."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    return np.asarray(_pairwise()(x32))


def exact_knn(x: np.ndarray, n_neighbors: int) -> tuple[np.ndarray, np.ndarray]:
    """``(indices [n, k] int32, distances [n, k] float32)`` of each point's ``n_neighbors`` nearest
    points, itself first: UMAP's own small-data neighbour graph (module docstring)."""
    from umap.utils import fast_knn_indices

    d = exact_distances(x)
    idx = fast_knn_indices(d, n_neighbors)
    return idx, d[np.arange(d.shape[0])[:, None], idx].copy()
