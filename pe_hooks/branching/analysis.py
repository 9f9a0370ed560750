"""UMAP and scores of branch views: ``analyze(views)`` embeds each view with a seeded UMAP and
scores, in the original space and in UMAP space, how much the picture is organised by branch vs by
position (``pe_hooks.branching.separation``), with the headline scores and their shuffled-label nulls
(``pe_hooks.branching.scores``)."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from pe_hooks.branching.latents import View
from pe_hooks.branching.layer_choice import heldout_position_r2, position_folds
from pe_hooks.branching.scores import headline_scores
from pe_hooks.branching.separation import chance_levels, metrics_frame, separation_metrics, shuffled_control
from pe_hooks.branching.umap_init import steady_umap
from pe_hooks.branching.umap_knn import SMALL_DATA, exact_knn
from pe_hooks.core.atomic import atomic_write_bytes
from pe_hooks.core.errors import DataError


@dataclass
class BranchAnalysis:
    """Views of one layer's latents, their 2-D embeddings and separation metrics (tidy rows)."""

    layer: int
    views: dict[str, View]
    embeddings: dict[str, np.ndarray]
    rows: list[dict[str, Any]]

    @property
    def df(self) -> pd.DataFrame:
        """The metrics as a tidy frame (layer, view, space, metric, value)."""
        return metrics_frame(self.rows)

    def save(self, folder: str | Path) -> dict[str, Path]:
        """Write ``metrics-layer{L}.csv`` and the 2-D embeddings (``embeddings-layer{L}.npz``).

        Several layers' analyses may share a folder, so each file is written atomically (a
        temporary file renamed into place): a file is complete or absent, never truncated.
        """
        out = Path(folder)
        paths = {"csv": out / f"metrics-layer{self.layer}.csv", "npz": out / f"embeddings-layer{self.layer}.npz"}
        buf = io.BytesIO()
        np.savez(buf, **self.embeddings)  # type: ignore[arg-type]
        atomic_write_bytes(paths["npz"], buf.getvalue())
        atomic_write_bytes(paths["csv"], self.df.to_csv(index=False).encode())
        return paths


def umap_embed(
    x: np.ndarray, *, seed: int = 0, n_neighbors: int = 15, min_dist: float = 0.1, metric: str = "euclidean"
) -> np.ndarray:
    """Seeded 2-D UMAP of standardised latents, the same bits on every run: ``random_state`` seeds
    UMAP and ``pe_hooks.branching.umap_init`` makes its spectral initialisation repeatable (UMAP's
    own, except that ARPACK's fresh start vectors, needed when the neighbour graph has cliques of
    identical points, come from a fixed seed instead of new OS entropy). Below
    ``SMALL_DATA`` points the exact neighbour graph UMAP would build is computed in compiled code and
    handed to it (``pe_hooks.branching.umap_knn``: the same embedding, bit for bit, ~20x faster)."""
    if len(x) < 4:
        raise DataError(f"UMAP needs at least 4 points, got {len(x)}")
    z = StandardScaler().fit_transform(x)
    k = min(n_neighbors, len(x) - 1)
    exact = len(z) < SMALL_DATA and metric == "euclidean"
    reducer = steady_umap(
        n_components=2, n_neighbors=k, min_dist=min_dist, metric=metric, random_state=seed,
        n_jobs=1,  # a seeded UMAP runs on one thread anyway; saying so avoids umap's warning
        precomputed_knn=(*exact_knn(z, k), None) if exact else (None, None, None),
    )
    with warnings.catch_warnings():  # no search index: only transform() of new points needs one
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        return np.asarray(reducer.fit_transform(z))


def analyze(
    views: dict[str, View],
    *,
    layer: int = 0,
    embed: bool = True,
    seed: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    k: int = 10,
    window: int = 2,
    control: bool = True,
    n_perm: int = 100,
    progress: bool = True,
) -> BranchAnalysis:
    """UMAP + metrics (original and UMAP space) for each view ``name -> (x, branch, position)``.

    Every view and space gets the separation metrics (``pe_hooks.branching.separation``) and the
    headline scores with their shuffled-label nulls (``pe_hooks.branching.scores``:
    ``path_ratio``, ``knn_branch_purity`` and their ``_null``, ``_null_lo``, ``_null_hi``, ``_p``
    from ``n_perm`` permutations); the original space also gets ``position_r2``, the held-out
    ridge R^2 of position with branches held out (``pe_hooks.branching.layer_choice``): whether
    position can still be read, however little it shapes the picture.

    With ``control``, a ``shuffled`` row scores the first view with its (branch, position) labels
    permuted jointly across tokens (what each metric reads when nothing is organised), and a
    ``chance`` row gives the analytic kNN chance levels of those labels.
    """
    rows: list[dict[str, Any]] = []
    embeddings: dict[str, np.ndarray] = {}

    def add(view: str, space: str, values: dict[str, float]) -> None:
        rows.extend({"layer": layer, "view": view, "space": space, "metric": m, "value": v} for m, v in values.items())

    def scores(x: np.ndarray, b: np.ndarray, p: np.ndarray, standardize: bool) -> dict[str, float]:
        out = separation_metrics(x, b, p, k=k, window=window, seed=seed, standardize=standardize)
        head = headline_scores(x, b, p, k=k, n_perm=n_perm, seed=seed, standardize=standardize)
        return out | {m: v for m, v in head.items() if m not in out}

    for name, (x, b, p) in tqdm(views.items(), desc=f"layer {layer}: views", disable=not progress, leave=False):
        z = StandardScaler().fit_transform(np.asarray(x, dtype=np.float64))
        add(name, "original", scores(x, b, p, True) | {"position_r2": heldout_position_r2(z, p, position_folds(b, None))})
        if embed:
            e = umap_embed(x, seed=seed, n_neighbors=n_neighbors, min_dist=min_dist)
            embeddings[name] = e
            add(name, "umap", scores(e, b, p, False))
    if control and views:
        x, b, p = next(iter(views.values()))
        add("shuffled", "original", shuffled_control(x, b, p, k=k, window=window, seed=seed))
        add("chance", "analytic", chance_levels(b, p, window=window))
    return BranchAnalysis(layer, views, embeddings, rows)
