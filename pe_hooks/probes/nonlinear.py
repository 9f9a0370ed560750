"""Non-linear position probes, held out by sequence, on a bounded sample of whole sequences.

UMAP builds a k-nearest-neighbour graph; LEACE only guarantees that no *linear* probe beats a
constant. These probes ask what a neighbourhood (kNN) or a small non-linear classifier (MLP) can
still read of position.

- ``Reservoir`` (``pe_hooks.probes.reservoir``): a seeded, bounded sample of whole sequences.
- ``probe_positions``: predicts position bins (positions ``1..T`` in ``n_bins`` equal-width bins,
  position 0 / BOS excluded) with
  ``"linear"`` (logistic regression), ``"knn_cosine"`` / ``"knn_euclidean"``
  (``KNeighborsClassifier``, ``k`` neighbours, distance-weighted off) and ``"mlp"`` (``MLPClassifier``,
  one hidden layer, early stopping, fixed seed), every one on features standardised with the
  training fold's statistics. Scored with ``GroupKFold`` by sequence id: no sequence has tokens
  on both sides of a split, so a probe cannot succeed by recognising the sequence (neighbours
  from the same text sit at nearby positions by construction).

Controls reported beside each held-out accuracy:

- ``chance``: ``max(1 / n_bins, majority-bin rate)`` (the bins of ``1..T`` need not be equal).
- ``shuffled``: the same probe, same folds, after permuting the positions *within each sequence*.
  Every sequence keeps exactly its multiset of positions, so the marginal label distribution (and
  each fold's, and each sequence's) is unchanged, and the grouping is unchanged; only the link
  between a token's activation and its position is broken. (Permuting whole sequences' label
  vectors would be the identity here, since every sequence covers the same positions; permuting
  across all tokens would also change the per-sequence label counts.) It should sit at chance:
  above chance it measures how much the probe gains from the fold structure alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch

from pe_hooks.core.errors import DataError
from pe_hooks.probes.reservoir import Reservoir

PROBES = ("linear", "knn_cosine", "knn_euclidean", "mlp")

#: The non-linear probes a sweep can add beside its linear one (``sweep(nonlinear=...)``).
SWEEP_PROBES = ("knn_cosine", "knn_euclidean", "mlp")

__all__ = ["PROBES", "SWEEP_PROBES", "ProbeScore", "Reservoir", "bin_positions", "knn_predictions", "mlp_predictions",
           "probe_positions", "shuffle_within_groups"]


@dataclass
class ProbeScore:
    """Held-out accuracy of one probe with its controls."""

    probe: str
    accuracy: float
    chance: float
    shuffled: float
    n_tokens: int
    n_seqs: int
    n_folds: int
    n_bins: int
    seconds: float = 0.0  # wall time of both fits (real and shuffled labels), all folds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def bin_positions(positions: np.ndarray, max_position: int, n_bins: int) -> np.ndarray:
    """``floor((t - 1) * n_bins / max_position)`` for positions ``1..max_position``."""
    return ((positions.astype(np.int64) - 1) * n_bins) // max_position


def shuffle_within_groups(labels: np.ndarray, groups: np.ndarray, seed: int = 0) -> np.ndarray:
    """Permute ``labels`` within each group (sequence): marginals kept, activation link broken."""
    rng = np.random.default_rng(seed)
    out = labels.copy()
    for g in np.unique(groups):
        idx = np.flatnonzero(groups == g)
        out[idx] = labels[rng.permutation(idx)]
    return out


def _make(probe: str, seed: int, k: int, hidden: int) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier

    if probe == "linear":
        return LogisticRegression(C=0.1, max_iter=100)
    if probe == "knn_cosine":
        return KNeighborsClassifier(n_neighbors=k, metric="cosine", algorithm="brute")
    if probe == "knn_euclidean":
        return KNeighborsClassifier(n_neighbors=k, metric="euclidean", algorithm="brute")
    if probe == "mlp":
        return MLPClassifier(hidden_layer_sizes=(hidden,), alpha=1e-3, early_stopping=True, validation_fraction=0.15,
                             n_iter_no_change=8, max_iter=200, random_state=seed)
    raise DataError(f"unknown probe '{probe}'; use one of {PROBES}")


def _heldout(probe: str, x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], seed: int,
             k: int, hidden: int, threads: int | None) -> float:
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _heldout_inner(probe, x, y, folds, seed, k, hidden)


def _heldout_inner(probe: str, x: np.ndarray, y: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], seed: int,
                   k: int, hidden: int) -> float:


    correct = 0
    for tr, te in folds:
        correct += int((_fit_predict(probe, x, y, tr, te, seed, k, hidden) == y[te]).sum())
    return correct / sum(len(te) for _, te in folds)


def probe_positions(
    x: Any, positions: Any, seq_ids: Any, *, n_bins: int = 8, max_position: int | None = None,
    probes: Sequence[str] = ("knn_cosine", "knn_euclidean", "mlp"), n_folds: int = 4, k: int = 15,
    hidden: int = 64, seed: int = 0, threads: int | None = 1,
) -> dict[str, ProbeScore]:
    """Held-out (grouped by ``seq_ids``) accuracy of each probe at predicting the position bin.

    ``x`` ``[n, d]``, integer ``positions`` ``[n]`` and ``seq_ids`` ``[n]`` (e.g. from
    ``Reservoir.arrays``). Tokens at position 0 are dropped. Returns ``{probe: ProbeScore}``.

    ``threads``: BLAS/OpenMP threads while fitting (default 1; ``None`` leaves them alone). On a
    busy 2-core machine one thread was ~50x faster than the default pool for the logistic and
    MLP probes (200 s -> 3 s for 8 fits at d=576, 4.5k tokens), because of oversubscription.
    """
    from sklearn.model_selection import GroupKFold

    xa = np.asarray(x, dtype=np.float32)
    pa = np.asarray(positions)
    ga = np.asarray(seq_ids)
    if xa.ndim != 2 or xa.shape[0] == 0:
        raise DataError(f"x must be a non-empty [n, d] array, got shape {xa.shape}")
    if pa.shape != (xa.shape[0],) or ga.shape != (xa.shape[0],):
        raise DataError(f"positions and seq_ids must have shape [{xa.shape[0]}], got {pa.shape} and {ga.shape}")
    if not np.isfinite(xa).all():
        raise DataError("x contains NaN or inf")
    bad = [p for p in probes if p not in PROBES]
    if bad:
        raise DataError(f"unknown probes {bad}; use any of {PROBES}")
    keep = pa > 0
    xa, pa, ga = xa[keep], pa[keep].astype(np.int64), ga[keep]
    T = int(pa.max()) if max_position is None else int(max_position)
    if int(pa.max()) > T:
        raise DataError(f"position {int(pa.max())} exceeds max_position {T}")
    n_groups = len(np.unique(ga))
    if n_groups < n_folds:
        raise DataError(f"need at least n_folds={n_folds} sequences, got {n_groups}: stream more data or lower n_folds")
    y = bin_positions(pa, T, n_bins)
    y_shuf = shuffle_within_groups(y, ga, seed)
    counts = np.bincount(y, minlength=n_bins)
    chance = max(1.0 / n_bins, float(counts.max()) / len(y))
    folds = list(GroupKFold(n_splits=n_folds).split(xa, y, ga))
    out = {}
    for p in probes:
        t0 = time.perf_counter()
        acc = _heldout(p, xa, y, folds, seed, k, hidden, threads)
        shuf = _heldout(p, xa, y_shuf, folds, seed, k, hidden, threads)
        out[p] = ProbeScore(p, acc, chance, shuf, len(y), n_groups, n_folds, n_bins, time.perf_counter() - t0)
    return out


def knn_predictions(
    x: torch.Tensor, fold: torch.Tensor, labels: torch.Tensor, *, metrics: Sequence[str] = ("cosine", "euclidean"),
    k: int = 15,
) -> dict[str, torch.Tensor]:
    """Held-out kNN predictions ``{metric: [K, n]}`` for every label set in ``labels`` ``[K, n]``
    (e.g. real and shuffled bins): each token of fold ``f`` takes the majority label (ties: the
    smallest) of its ``k`` nearest tokens among the other folds, on features standardised with
    those folds' statistics; ``metrics`` from ``"cosine"``, ``"euclidean"`` (brute force, as
    scikit-learn's ``KNeighborsClassifier(algorithm="brute")``). One product ``A B^T`` per fold
    serves both metrics, and the neighbours do not depend on the labels, so one search serves
    every label set."""
    bad = [m for m in metrics if m not in ("cosine", "euclidean")]
    if bad:
        raise DataError(f"unknown kNN metric(s) {bad}; use 'cosine' and/or 'euclidean'")
    n_classes = int(labels.max()) + 1
    out = {m: torch.zeros_like(labels) for m in metrics}
    xf = x.float()
    for f in torch.unique(fold).tolist():
        te, tr = fold == f, fold != f
        if not bool(tr.any()):
            raise DataError("kNN needs tokens of at least two folds")
        mean, sd = xf[tr].mean(0), xf[tr].std(0, correction=0).clamp_min(1e-6)
        a, b = (xf[te] - mean) / sd, (xf[tr] - mean) / sd
        dot = a @ b.T
        b_sq = (b * b).sum(-1)
        for metric in metrics:
            if metric == "cosine":  # larger = nearer
                score = dot / (a.norm(dim=-1, keepdim=True).clamp_min(1e-12) * b_sq.sqrt().clamp_min(1e-12)[None])
            else:  # -|a - b|^2 + |a|^2: the same order as the distance
                score = 2 * dot - b_sq[None]
            idx = score.topk(min(k, int(tr.sum())), dim=-1).indices
            for j in range(labels.shape[0]):
                votes = torch.nn.functional.one_hot(labels[j][tr][idx], n_classes).sum(1)
                out[metric][j, te] = votes.argmax(-1)  # first maximum = smallest label on ties
    return out


def mlp_predictions(
    x: torch.Tensor, fold: torch.Tensor, labels: torch.Tensor, *, hidden: int = 64, seed: int = 0,
) -> torch.Tensor:
    """Held-out predictions ``[K, n]`` of scikit-learn's ``MLPClassifier`` (one hidden layer of
    ``hidden`` units, early stopping, fixed seed; the settings of ``probe_positions``) for every
    label set in ``labels`` ``[K, n]``, on features standardised per training fold; one thread."""
    from threadpoolctl import threadpool_limits

    xa = x.float().numpy()
    out = torch.zeros_like(labels)
    folds = [(np.flatnonzero((fold != f).numpy()), np.flatnonzero((fold == f).numpy())) for f in torch.unique(fold).tolist()]
    with threadpool_limits(limits=1):
        for j in range(labels.shape[0]):
            y = labels[j].numpy()
            for tr, te in folds:
                out[j, te] = torch.as_tensor(_fit_predict("mlp", xa, y, tr, te, seed, 15, hidden))
    return out


def _fit_predict(probe: str, x: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray, seed: int, k: int,
                 hidden: int) -> np.ndarray:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.preprocessing import StandardScaler

    sc = StandardScaler().fit(x[tr])
    clf = _make(probe, seed, k, hidden)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(sc.transform(x[tr]), y[tr])
    return np.asarray(clf.predict(sc.transform(x[te])))
