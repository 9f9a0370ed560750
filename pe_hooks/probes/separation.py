"""Does a picture separate by content (branch) or by position? Metrics for a set of latents.

For points ``X`` (original space or a 2-D embedding) with a branch id and a position each:

- ``knn_branch_purity``: mean fraction of each point's ``k`` nearest neighbours from the same
  branch (chance = the share of that branch);
- ``knn_position_agreement``: mean fraction of the ``k`` nearest neighbours within ``window``
  positions of the point (high = neighbours are "the same moment" in other branches);
- ``position_spearman``: largest ``|Spearman rho|`` between position and one of the leading
  coordinates (the first 2 principal components in the original space, the 2 axes of an
  embedding): does an axis simply *be* position?
- ``silhouette_branch``: silhouette score of the branch labels (-1..1);
- ``nmi_kmeans_branch`` / ``nmi_kmeans_position``: normalised mutual information of k-means
  clusters (``k`` = number of branches) with the branches vs with equally many position bins —
  the "cluster analysis" question: do clusters follow content or position?
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import normalized_mutual_info_score, silhouette_score
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from pe_hooks.errors import DataError

METRICS = (
    "knn_branch_purity",
    "knn_position_agreement",
    "position_spearman",
    "silhouette_branch",
    "nmi_kmeans_branch",
    "nmi_kmeans_position",
)


def separation_metrics(
    x: np.ndarray, branch: np.ndarray, position: np.ndarray, *, k: int = 10, window: int = 2, seed: int = 0,
    standardize: bool = True,
) -> dict[str, float]:
    """All metrics of the module docstring for points ``x`` ``[n, d]``."""
    x = np.asarray(x, dtype=np.float64)
    branch = np.asarray(branch)
    position = np.asarray(position)
    if x.ndim != 2 or len(x) < 3:
        raise DataError(f"need at least 3 points in an [n, d] array, got shape {x.shape}")
    if not (len(branch) == len(position) == len(x)):
        raise DataError("x, branch and position must have the same length")
    if not np.isfinite(x).all():
        raise DataError("latents contain NaN or inf")
    n_branches = len(np.unique(branch))
    if n_branches < 2:
        raise DataError("need at least two branches")
    z = StandardScaler().fit_transform(x) if standardize and x.shape[1] > 2 else x
    kk = min(k, len(x) - 1)
    nn = NearestNeighbors(n_neighbors=kk + 1).fit(z)
    idx = nn.kneighbors(z, return_distance=False)[:, 1:]
    out: dict[str, float] = {
        "knn_branch_purity": float((branch[idx] == branch[:, None]).mean()),
        "knn_position_agreement": float((np.abs(position[idx] - position[:, None]) <= window).mean()),
    }
    lead = PCA(n_components=2, random_state=seed).fit_transform(z) if z.shape[1] > 2 else z
    rhos = [abs(spearmanr(lead[:, j], position).statistic) for j in range(lead.shape[1])]
    out["position_spearman"] = float(np.nanmax(rhos))
    out["silhouette_branch"] = float(silhouette_score(z, branch))
    km = KMeans(n_clusters=n_branches, n_init=4, random_state=seed).fit_predict(z)
    edges = np.quantile(position, np.linspace(0, 1, n_branches + 1)[1:-1])
    pos_bins = np.digitize(position, edges)
    out["nmi_kmeans_branch"] = float(normalized_mutual_info_score(branch, km))
    out["nmi_kmeans_position"] = float(normalized_mutual_info_score(pos_bins, km))
    return out


def metrics_table(rows: list[dict[str, object]]) -> tuple[pd.DataFrame, str]:
    """A tidy frame (view, space, metric, value) and a Markdown table (views x metrics)."""
    df = pd.DataFrame(rows)
    piv = df.pivot_table(index=["view", "space"], columns="metric", values="value", sort=False)
    cols = [m for m in METRICS if m in piv.columns]
    lines = ["| view | space | " + " | ".join(cols) + " |", "|---|---|" + "---|" * len(cols)]
    for (view, space), row in piv.iterrows():
        lines.append(f"| {view} | {space} | " + " | ".join(f"{row[c]:.3f}" for c in cols) + " |")
    return df, "\n".join(lines)
