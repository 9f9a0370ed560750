"""The headline scores of a branches picture, with shuffled-label nulls: do the branches follow
the same path, and does each branch keep to itself?

Points ``z_i`` (standardised latents in the original space, or a 2-D embedding), each with a
branch ``b_i`` and a position ``t_i``; ``d_ij = ||z_i - z_j||^2``; all pairs are ordered pairs.

**Path ratio** (``path_ratio``)::

    A = mean d_ij over pairs with b_i != b_j and t_i == t_j   (two branches at the same moment)
    W = mean d_ij over pairs with b_i == b_j and t_i != t_j   (two moments of the same branch)
    path_ratio = A / W

- ``< 1``: tokens of *different* branches at the *same* position are closer than tokens of the
  *same* branch at different positions: all branches follow one positional path.
- ``= 1``: neither (the expected value when labels carry no structure: the shuffled null).
- ``> 1``: each branch stays in its own region: the branches separate.

With squared distances the score decomposes. For ``z = m(t) + c(b) + e`` (a shared positional
path ``m``, a per-branch offset ``c``, isotropic noise of total variance ``s2``), and every branch
covering the same ``P`` positions, ``A = 2 (V_c + s2)`` and ``W = 2 (V_m + s2)`` in expectation,
where ``V_c`` and ``V_m`` are the sample variances (sums of squares over ``B - 1`` and ``P - 1``)
of the ``B`` branch offsets and of the path over positions. So
``path_ratio = (V_c + s2) / (V_m + s2)``: content spread over positional spread.

It is computed exactly in ``O(n d)`` from group sums: for a group ``G`` of ``n_G`` points,
``sum_{i, j in G} d_ij = 2 (n_G sum_{i in G} ||z_i||^2 - ||sum_{i in G} z_i||^2)``. Pairs with
``t_i == t_j`` minus pairs with ``(b, t)`` equal give ``A``; pairs with ``b_i == b_j`` minus the
same give ``W``.

**kNN branch purity** (``knn_branch_purity``, as in ``pe_hooks.branching.separation``): the share of
each point's ``k`` nearest neighbours that come from its own branch.

**Nulls**: each score is recomputed ``n_perm`` times with the labels permuted across points
(``(branch, position)`` jointly for the path ratio, the branch for the purity; the points and the
kNN graph are fixed). ``*_null`` is the mean over permutations, ``*_null_lo`` / ``*_null_hi`` the
2.5% and 97.5% quantiles, and ``*_p`` the permutation p-value of the observed value being as far
from the null mean as it is (``(1 + #{|null - mean| >= |obs - mean|}) / (1 + n_perm)``).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy import sparse
from sklearn.neighbors import NearestNeighbors
from sklearn.preprocessing import StandardScaler

from pe_hooks.core.errors import DataError

HEADLINE = ("path_ratio", "knn_branch_purity")

#: How to read a path ratio: the verdict printed beside it (``verdict``).
SAME_PATH_BELOW = 0.9
SEPARATE_ABOVE = 1.1


def _codes(*labels: np.ndarray) -> np.ndarray:
    """One integer code per distinct tuple of labels."""
    keys = np.stack([np.unique(np.asarray(v), return_inverse=True)[1] for v in labels], 1)
    return np.unique(keys, axis=0, return_inverse=True)[1].reshape(-1)


def _pair_sums(z: np.ndarray, sq: np.ndarray, codes: np.ndarray) -> tuple[float, float]:
    """(sum of d_ij over ordered pairs inside the groups of ``codes``, number of such pairs)."""
    g = int(codes.max()) + 1
    n_g = np.bincount(codes, minlength=g).astype(np.float64)
    sq_g = np.bincount(codes, weights=sq, minlength=g)
    onehot = sparse.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(g, len(codes)))
    s_g = np.asarray(onehot @ z)
    total = 2.0 * float((n_g * sq_g).sum() - (s_g * s_g).sum())
    return total, float((n_g * n_g).sum())


def path_ratio(z: np.ndarray, branch: np.ndarray, position: np.ndarray) -> float:
    """``A / W`` of the module docstring (``nan`` if either set of pairs is empty)."""
    return permuted_path_ratio(z, branch, position)(None)


def permuted_path_ratio(
    z: np.ndarray, branch: np.ndarray, position: np.ndarray
) -> Callable[[np.ndarray | None], float]:
    """``perm -> path_ratio(z, branch[perm], position[perm])`` (``None``: unpermuted), the label codes
    computed once: the code of a tuple of labels is its rank among the distinct tuples, so the codes
    of permuted labels are the permuted codes -- the same numbers as recomputing them, for the
    ``n_perm`` draws of a null at the cost of one."""
    z = np.asarray(z, dtype=np.float64)
    sq = (z * z).sum(1)
    codes = (_codes(position), _codes(branch), _codes(branch, position))

    def ratio(perm: np.ndarray | None) -> float:
        c_t, c_b, c_tb = codes if perm is None else (c[perm] for c in codes)
        return _ratio(z, sq, c_t, c_b, c_tb)

    return ratio


def _ratio(z: np.ndarray, sq: np.ndarray, c_t: np.ndarray, c_b: np.ndarray, c_tb: np.ndarray) -> float:
    s_t, n_t = _pair_sums(z, sq, c_t)
    s_b, n_b = _pair_sums(z, sq, c_b)
    s_tb, n_tb = _pair_sums(z, sq, c_tb)
    n_a, n_w = n_t - n_tb, n_b - n_tb
    if n_a <= 0 or n_w <= 0:
        return float("nan")
    w = (s_b - s_tb) / n_w
    return float(((s_t - s_tb) / n_a) / w) if w > 0 else float("nan")


def knn_index(z: np.ndarray, k: int) -> np.ndarray:
    """``[n, k]`` indices of each point's ``k`` nearest other points (Euclidean; each point itself is
    dropped, normally column 0, elsewhere when duplicates tie with it)."""
    kk = min(k, len(z) - 1)
    idx = NearestNeighbors(n_neighbors=kk + 1).fit(z).kneighbors(z, return_distance=False)
    self_col = idx == np.arange(len(z))[:, None]
    has_self = self_col.any(1)
    return np.stack([row[~s][:kk] if h else row[:kk] for row, s, h in zip(idx, self_col, has_self)])


def knn_purity(idx: np.ndarray, branch: np.ndarray) -> float:
    """Share of the neighbours in ``idx`` from the point's own branch."""
    return float((branch[idx] == branch[:, None]).mean())


def _null(observed: float, draws: np.ndarray, name: str) -> dict[str, float]:
    mean = float(draws.mean())
    p = (1 + int((np.abs(draws - mean) >= abs(observed - mean) - 1e-12).sum())) / (1 + len(draws))
    return {
        name: observed,
        f"{name}_null": mean,
        f"{name}_null_lo": float(np.quantile(draws, 0.025)),
        f"{name}_null_hi": float(np.quantile(draws, 0.975)),
        f"{name}_p": float(p),
    }


def _permuted(fn: Callable[[np.random.Generator], float], n_perm: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.array([fn(rng) for _ in range(n_perm)])


def headline_scores(
    x: np.ndarray,
    branch: np.ndarray,
    position: np.ndarray,
    *,
    k: int = 10,
    n_perm: int = 200,
    seed: int = 0,
    standardize: bool = True,
) -> dict[str, float]:
    """``path_ratio`` and ``knn_branch_purity`` of points ``x`` ``[n, d]``, each with its
    shuffled-label null (mean, 2.5-97.5% interval, p-value; see the module docstring).

    ``standardize``: standardise the features first (as the other metrics and the UMAP do); set
    ``False`` for a 2-D embedding.
    """
    x = np.asarray(x, dtype=np.float64)
    branch, position = np.asarray(branch), np.asarray(position)
    if x.ndim != 2 or len(x) < 4 or not (len(x) == len(branch) == len(position)):
        raise DataError(f"need an [n, d] array (n >= 4) with one branch and one position per row, got {x.shape}")
    if len(np.unique(branch)) < 2:
        raise DataError("need at least two branches to score the branches' paths")
    z = StandardScaler().fit_transform(x) if standardize and x.shape[1] > 2 else x
    n = len(z)
    ratio = permuted_path_ratio(z, branch, position)  # (branch, position) permuted jointly
    out = _null(ratio(None), _permuted(lambda r: ratio(r.permutation(n)), n_perm, seed), "path_ratio")
    idx = knn_index(z, k)
    out |= _null(knn_purity(idx, branch), _permuted(lambda r: knn_purity(idx, r.permutation(branch)), n_perm, seed),
                 "knn_branch_purity")
    return out


def verdict(ratio: float, lo: float = float("nan"), hi: float = float("nan")) -> str:
    """A few words for a path ratio: "same path", "branches separate", or "neither".

    "same path" needs ``ratio < SAME_PATH_BELOW`` and below the null interval ``lo``;
    "branches separate" needs ``ratio > SEPARATE_ABOVE`` and above ``hi`` (nan bounds are ignored).
    """
    if not np.isfinite(ratio):
        return "–"
    if ratio < SAME_PATH_BELOW and not ratio >= lo:
        return "same path"
    if ratio > SEPARATE_ABOVE and not ratio <= hi:
        return "branches separate"
    return "neither"
