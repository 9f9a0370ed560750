"""UMAP's spectral initialisation made repeatable: ``steady_umap(**kwargs)``.

UMAP (umap-learn 0.5) starts from a spectral layout of its fuzzy neighbour graph, one
``scipy.sparse.linalg.eigsh`` call per connected component with ``v0 = ones`` but no ``rng``. When
a component is a clique of identical points (the ``zero`` view of MiniLM at layer 0: 943 distinct
latents among 3136 tokens, ~40 components) ``v0`` already spans an invariant subspace, ARPACK asks
for a fresh start vector and scipy draws it from ``default_rng()`` -- new OS entropy on every call.
The component's layout then changes from call to call (by up to 1.41 in its own unit; ~4e-6 once
placed in the whole layout), and the optimisation amplifies that into pictures 36-50 units apart.

``steady_umap`` returns a ``umap.UMAP`` whose spectral layout is UMAP's own computation (same graph
trim, same per-component placement, same draws from ``random_state``, same noise) with one change:
``eigsh`` gets a fixed ``rng``. Where ARPACK needs no fresh vector (a connected graph, distinct
points) that ``rng`` is never read, so the embedding is UMAP's own bit for bit
(``tests/test_separation.py``); where it does, the layout is one fixed basis of the same degenerate
eigenspace, so the picture is as good as before and the same on every run. A process-wide patch of
``eigsh`` would do the same but is not ours to make; ``init="random"`` would also repeat, but
changes every picture, including the ones that already repeat.
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: the seed of ARPACK's fresh start vectors (never read where UMAP's own init already repeats)
ARPACK_SEED = 0


def steady_umap(**kwargs: Any) -> Any:
    """``umap.UMAP(**kwargs)`` with a repeatable spectral initialisation (module docstring); an
    integer ``random_state`` is required (it seeds everything else)."""
    import umap

    class SteadyUMAP(umap.UMAP):  # type: ignore[misc]
        def _fit_embed_data(self, X: Any, n_epochs: Any, init: Any, random_state: Any, **kw: Any) -> Any:
            if isinstance(init, str) and init == "spectral" and not self.densmap:
                init = _initial_layout(X, self.graph_, self.n_components, n_epochs, random_state, self._input_distance_func,
                                       self._metric_kwds)
            return super()._fit_embed_data(X, n_epochs, init, random_state, **kw)

    return SteadyUMAP(**kwargs)


def _initial_layout(data: Any, graph: Any, dim: int, n_epochs: Any, random_state: Any, metric: Any,
                    metric_kwds: Any) -> np.ndarray:
    """What ``umap.umap_.simplicial_set_embedding`` computes for ``init="spectral"``: the graph
    trimmed as it trims it, its spectral layout, then UMAP's scaling and noise."""
    from umap.umap_ import noisy_scale_coords

    g = graph.tocoo(copy=True)
    g.sum_duplicates()
    default = 500 if g.shape[0] <= 10000 else 200
    epochs = default if n_epochs is None else max(n_epochs) if isinstance(n_epochs, list) else n_epochs
    g.data[g.data < (g.data.max() / float(epochs if epochs > 10 else default))] = 0.0
    g.eliminate_zeros()
    layout = _spectral_layout(data, g, dim, random_state, metric, metric_kwds)
    return np.asarray(noisy_scale_coords(layout, random_state, max_coord=10, noise=0.0001))


def _spectral_layout(data: Any, graph: Any, dim: int, random_state: Any, metric: Any,
                     metric_kwds: Any) -> np.ndarray:
    """``umap.spectral.spectral_layout`` (``multi_component_layout`` for several components), with
    the one change of the module docstring."""
    import scipy.sparse.csgraph
    from sklearn.metrics import pairwise_distances
    from umap.spectral import component_layout

    n_comp, labels = scipy.sparse.csgraph.connected_components(graph)
    if n_comp == 1:
        return _component_spectral(graph, dim, random_state)
    result = np.empty((graph.shape[0], dim), dtype=np.float32)
    if n_comp > 2 * dim:
        meta = component_layout(data, n_comp, labels, dim, random_state, metric=metric, metric_kwds=metric_kwds)
    else:
        k = int(np.ceil(n_comp / 2.0))
        base = np.hstack([np.eye(k), np.zeros((k, dim - k))])
        meta = np.vstack([base, -base])[:n_comp]
    for label in range(n_comp):
        members = labels == label
        sub = graph.tocsr()[members, :].tocsc()[:, members].tocoo()
        distances = pairwise_distances([meta[label]], meta)
        data_range = distances[distances > 0.0].min() / 2.0
        if sub.shape[0] < 2 * dim or sub.shape[0] <= dim + 1:
            result[members] = random_state.uniform(low=-data_range, high=data_range, size=(sub.shape[0], dim)) + meta[label]
        else:
            emb = _component_spectral(sub, dim, random_state)
            result[members] = emb * (data_range / np.max(np.abs(emb))) + meta[label]
    return result


def _component_spectral(graph: Any, dim: int, random_state: Any) -> np.ndarray:
    """``umap.spectral._spectral_layout`` of one connected graph (``eigsh``, its default for fewer
    than 2 M points), with a fixed ``rng`` for ARPACK's fresh start vectors."""
    from inspect import signature
    from warnings import warn

    import scipy.sparse
    import scipy.sparse.linalg

    n = graph.shape[0]
    sqrt_deg = np.sqrt(np.asarray(graph.sum(axis=0)).squeeze())
    eye = scipy.sparse.identity(n, dtype=np.float64)
    d = scipy.sparse.spdiags(1.0 / sqrt_deg, 0, n, n)
    lap = eye - d * graph * d
    k = dim + 1
    random_state.normal(size=(n, k))  # UMAP draws its unused lobpcg guess: keep the stream in step
    try:
        # scipy < 1.15 has no ``rng``: its Fortran ARPACK drew restarts from its own fixed seed
        fixed = {"rng": np.random.default_rng(ARPACK_SEED)} if "rng" in signature(scipy.sparse.linalg.eigsh).parameters else {}
        values, vectors = scipy.sparse.linalg.eigsh(
            lap, k, which="SM", ncv=max(2 * k + 1, int(np.sqrt(n))), tol=1e-4, v0=np.ones(n), maxiter=n * 5, **fixed
        )
        return np.asarray(vectors[:, np.argsort(values)[1:k]])
    except scipy.sparse.linalg.ArpackError:
        warn("Spectral initialisation failed (too small an eigengap); falling back to random initialisation",
             stacklevel=2)
        return np.asarray(random_state.uniform(low=-10.0, high=10.0, size=(n, dim)))
