"""Does a picture separate by content (branch) or by position? Metrics for a set of latents.

For points ``X`` ``[n, d]`` (the original space, or a 2-D embedding) with a branch id ``b_i`` and a
position ``t_i`` each, and ``N_k(i)`` the ``k`` nearest neighbours of point ``i`` (Euclidean, on
standardised features in the original space):

- ``knn_branch_purity`` = mean_i |{j in N_k(i): b_j = b_i}| / k. Chance:
  mean_i (n_{b_i} - 1) / (n - 1) (= 1/B for B equal branches).
- ``knn_position_agreement`` = mean_i |{j in N_k(i): |t_j - t_i| <= w}| / k (``w`` = ``window``).
  Caveat: a token's neighbours *in its own branch* are usually its predecessor and successor,
  which also count here; hence:
- ``knn_cross_position_agreement``: the same, over the neighbours from *other* branches only
  (points with none are skipped). High = where trajectories of different branches meet, they meet
  at the same moment: "all branches follow the same path". Chance: the share of other-branch
  points within ``w`` positions.
- ``position_spearman`` = max_j |Spearman(t, c_j)| over the leading coordinates ``c_j`` (the first 2
  principal components in the original space, the 2 axes of an embedding): is an axis simply
  position? Chance ~ 0 (null s.d. 1/sqrt(n)).
- ``silhouette_branch``: silhouette score of the branch labels (-1..1; chance ~ 0).
- ``nmi_kmeans_branch`` / ``nmi_kmeans_position``: normalised mutual information of k-means
  clusters (``B`` clusters) with the branches vs with ``B`` equal-count position bins: do
  clusters follow content or position? (chance ~ 0, slightly positive in small samples).

``shuffled_control`` scores the same points with their (branch, position) labels permuted
jointly: the empirical floor of every metric. ``chance_levels`` gives the analytic kNN chances.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score, silhouette_score
from sklearn.preprocessing import StandardScaler

from pe_hooks.branching.scores import knn_index
from pe_hooks.core.errors import DataError

METRICS = (
    "knn_branch_purity",
    "knn_position_agreement",
    "knn_cross_position_agreement",
    "position_spearman",
    "silhouette_branch",
    "nmi_kmeans_branch",
    "nmi_kmeans_position",
)


def _check(x: np.ndarray, branch: np.ndarray, position: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64)
    branch, position = np.asarray(branch), np.asarray(position)
    if x.ndim != 2 or len(x) < 3:
        raise DataError(f"need at least 3 points in an [n, d] array, got shape {x.shape}")
    if not (len(branch) == len(position) == len(x)):
        raise DataError(
            f"x, branch and position must have the same length (got {len(x)}, {len(branch)}, {len(position)})"
        )
    if not np.isfinite(x).all():
        raise DataError("latents contain NaN or inf; drop or fix those rows first")
    if len(np.unique(branch)) < 2:
        raise DataError("need at least two branches to measure separation")
    return x, branch, position


def chance_levels(branch: np.ndarray, position: np.ndarray, *, window: int = 2) -> dict[str, float]:
    """Analytic chance of the kNN metrics: the neighbours drawn uniformly from the other points."""
    branch, position = np.asarray(branch), np.asarray(position)
    n = len(branch)
    same_b = branch[:, None] == branch[None, :]
    near = np.abs(position[:, None] - position[None, :]) <= window
    off = ~np.eye(n, dtype=bool)
    other = ~same_b
    cross = (near & other).sum(1) / np.maximum(other.sum(1), 1)
    return {
        "knn_branch_purity": float(((same_b & off).sum(1) / (n - 1)).mean()),
        "knn_position_agreement": float(((near & off).sum(1) / (n - 1)).mean()),
        "knn_cross_position_agreement": float(cross[other.any(1)].mean()),
        "position_spearman": 0.0,
        "silhouette_branch": 0.0,
        "nmi_kmeans_branch": 0.0,
        "nmi_kmeans_position": 0.0,
    }


def separation_metrics(
    x: np.ndarray, branch: np.ndarray, position: np.ndarray, *, k: int = 10, window: int = 2, seed: int = 0,
    standardize: bool = True,
) -> dict[str, float]:
    """All metrics of the module docstring for points ``x`` ``[n, d]``."""
    x, branch, position = _check(x, branch, position)
    n_branches = len(np.unique(branch))
    z = StandardScaler().fit_transform(x) if standardize and x.shape[1] > 2 else x
    idx = knn_index(z, k)
    same = branch[idx] == branch[:, None]
    near = np.abs(position[idx] - position[:, None]) <= window
    n_cross = (~same).sum(1)
    cross_ok = n_cross > 0
    out: dict[str, float] = {
        "knn_branch_purity": float(same.mean()),
        "knn_position_agreement": float(near.mean()),
        "knn_cross_position_agreement": (
            float(((near & ~same).sum(1)[cross_ok] / n_cross[cross_ok]).mean()) if cross_ok.any() else float("nan")
        ),
    }
    lead = PCA(n_components=2, random_state=seed).fit_transform(z) if z.shape[1] > 2 else z
    rhos = [abs(spearmanr(lead[:, j], position).statistic) for j in range(lead.shape[1])]
    out["position_spearman"] = float(np.nanmax(rhos)) if np.isfinite(rhos).any() else 0.0
    out["silhouette_branch"] = float(silhouette_score(z, branch))
    km = KMeans(n_clusters=n_branches, n_init=4, random_state=seed).fit_predict(z)
    edges = np.quantile(position, np.linspace(0, 1, n_branches + 1)[1:-1])
    pos_bins = np.digitize(position, edges)
    out["nmi_kmeans_branch"] = float(normalized_mutual_info_score(branch, km))
    out["nmi_kmeans_position"] = float(normalized_mutual_info_score(pos_bins, km))
    return out


def shuffled_control(
    x: np.ndarray, branch: np.ndarray, position: np.ndarray, *, k: int = 10, window: int = 2, seed: int = 0,
    standardize: bool = True,
) -> dict[str, float]:
    """``separation_metrics`` with the (branch, position) pairs permuted across points (seeded)."""
    x, branch, position = _check(x, branch, position)
    perm = np.random.default_rng(seed).permutation(len(x))
    return separation_metrics(x, branch[perm], position[perm], k=k, window=window, seed=seed, standardize=standardize)


def metrics_frame(rows: list[dict[str, object]]) -> pd.DataFrame:
    """The tidy frame (layer, view, space, metric, value) of metric rows (Markdown:
    ``pe_hooks.reports.branch_metrics_table``)."""
    if not rows:
        raise DataError("no metric rows to tabulate")
    return pd.DataFrame(rows)
